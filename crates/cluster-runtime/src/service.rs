//! An app's service under its role: the [`Backend`] started when a term (or an active slot)
//! begins, after the database is promoted and before `on_active`, and ready once the service's
//! critical health checks pass within the start timeout; stopped first when the role ends,
//! before the database's tail is shipped. Each step is audited with its duration.
//!
//! The service's health checks exist only while it runs: they are registered when it starts
//! and removed when it stops, so a standby with no service running is not unhealthy.

use std::sync::Arc;
use std::time::Duration;

use cluster_core::backend::{Backend, BackendState, SafeDeadline, StartRequest};
use cluster_core::ids::FencingToken;
use futures::StreamExt;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::audit::{AuditKind, AuditRecord};
use crate::context::AppContext;
use crate::error::HookResult;
use crate::health::{CheckSpec, HealthRegistry};

/// One health check of a service: its spec and the probe.
#[derive(Clone)]
pub struct ServiceCheck {
    /// When and how it runs.
    pub spec: CheckSpec,
    /// The probe.
    pub probe: Arc<dyn Fn() -> BoxFuture<'static, HookResult> + Send + Sync>,
}

impl std::fmt::Debug for ServiceCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceCheck")
            .field("spec", &self.spec)
            .finish()
    }
}

/// How an app runs its service.
#[derive(Clone, Debug)]
pub struct ServiceOptions {
    /// How long the service may take, from start to its critical checks passing, before the
    /// term is given up.
    pub start_timeout: Duration,
    /// Its health checks, run while it runs; the critical ones decide readiness.
    pub checks: Vec<ServiceCheck>,
    /// Environment for the service besides `CLUSTER_APP`, `CLUSTER_NODE` and `CLUSTER_TOKEN`.
    pub env: Vec<(String, String)>,
}

impl Default for ServiceOptions {
    /// A 30 s start timeout, no checks, no extra environment.
    fn default() -> Self {
        ServiceOptions {
            start_timeout: Duration::from_secs(30),
            checks: Vec::new(),
            env: Vec::new(),
        }
    }
}

/// The backend of one registered app, with what starting it needs.
pub(crate) struct ServiceRole {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) options: ServiceOptions,
    pub(crate) health: HealthRegistry,
    /// Stops the checks of the current run.
    checks_stop: std::sync::Mutex<Option<CancellationToken>>,
}

impl ServiceRole {
    pub(crate) fn new(
        backend: Arc<dyn Backend>,
        options: ServiceOptions,
        health: HealthRegistry,
    ) -> ServiceRole {
        ServiceRole {
            backend,
            options,
            health,
            checks_stop: std::sync::Mutex::new(None),
        }
    }

    /// Starts the service for `token` and waits until it is ready. A fenced start (`session`)
    /// never outlives the session's safe deadline. The error says which step failed.
    pub(crate) async fn start(
        &self,
        ctx: &AppContext,
        token: FencingToken,
        session: Option<&coord_client::Session>,
    ) -> Result<(), String> {
        let app = ctx.app().to_string();
        let began = coord_client::instant_now();
        let mut env = vec![
            ("CLUSTER_APP".to_owned(), app.clone()),
            ("CLUSTER_NODE".to_owned(), ctx.node().to_string()),
            ("CLUSTER_TOKEN".to_owned(), token.get().to_string()),
        ];
        env.extend(self.options.env.iter().cloned());
        let fence = session.map(|s| {
            let s = s.clone();
            Arc::new(move || {
                s.safe_until()
                    .map(|d| d.saturating_duration_since(coord_client::mono_now()))
            }) as SafeDeadline
        });
        self.backend
            .start(StartRequest { env, fence })
            .await
            .map_err(|e| format!("backend start: {e}"))?;
        let stop = CancellationToken::new();
        for check in &self.options.checks {
            let probe = check.probe.clone();
            self.health
                .register(check.spec.clone(), move || probe(), stop.clone());
        }
        if let Some(old) = self
            .checks_stop
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(stop)
        {
            old.cancel();
        }
        let critical: Vec<&str> = self
            .options
            .checks
            .iter()
            .filter(|c| c.spec.critical)
            .map(|c| c.spec.name.as_str())
            .collect();
        let ready = async {
            loop {
                if critical.iter().all(|c| self.health.passing(c)) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        let failed = self.failed();
        tokio::select! {
            _ = ready => {}
            reason = failed => return Err(format!("the service failed before it was ready: {reason}")),
            _ = tokio::time::sleep(self.options.start_timeout) => {
                let failing: Vec<&str> = critical
                    .iter()
                    .copied()
                    .filter(|c| !self.health.passing(c))
                    .collect();
                return Err(format!(
                    "not ready within {:?}: checks {failing:?} not passing",
                    self.options.start_timeout
                ));
            }
        }
        let took = began.elapsed();
        ctx.shared.audit.record(
            AuditRecord::new(AuditKind::BackendStarted)
                .app(&app)
                .token(token)
                .detail(format!(
                    "{} backend ready in {} ms",
                    self.backend.kind(),
                    took.as_millis()
                )),
        );
        Ok(())
    }

    /// Stops the service and its checks; audited with the time it took.
    pub(crate) async fn stop(&self, ctx: &AppContext, token: Option<FencingToken>) {
        let began = coord_client::instant_now();
        let was = self.backend.state();
        if let Some(stop) = self
            .checks_stop
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            stop.cancel();
        }
        for check in &self.options.checks {
            self.health.remove(&check.spec.name);
        }
        let result = self.backend.stop().await;
        if matches!(was, BackendState::Stopped) {
            return;
        }
        let app = ctx.app().to_string();
        let detail = match result {
            Ok(()) => format!("stopped in {} ms", began.elapsed().as_millis()),
            Err(e) => format!("stop failed after {} ms: {e}", began.elapsed().as_millis()),
        };
        ctx.shared.audit.record(
            AuditRecord::new(AuditKind::BackendStopped)
                .app(&app)
                .maybe_token(token)
                .detail(detail),
        );
    }

    /// Resolves when the backend fails (restarts exhausted, or it exited for good), with why.
    pub(crate) async fn failed(&self) -> String {
        let mut states = self.backend.states();
        while let Some(s) = states.next().await {
            if let BackendState::Failed { reason } = s {
                return reason;
            }
        }
        std::future::pending().await
    }

    /// Starts `service` (if the app has one) for a term or slot; false, audited as a rollback,
    /// if it does not get ready. The one entry point of the election and the slot loops.
    pub(crate) async fn start_or_roll_back(
        service: Option<&ServiceRole>,
        ctx: &AppContext,
        token: FencingToken,
        session: Option<&coord_client::Session>,
    ) -> bool {
        let Some(svc) = service else { return true };
        match svc.start(ctx, token, session).await {
            Ok(()) => true,
            Err(e) => {
                let app = ctx.app().to_string();
                tracing::warn!(app, error = %e, "the service did not start");
                ctx.shared.audit.record(
                    AuditRecord::new(AuditKind::FailoverRolledBack)
                        .app(&app)
                        .token(token)
                        .detail(format!("service start failed: {e}")),
                );
                false
            }
        }
    }

    /// Resolves when `service` fails, with why; never without a service.
    pub(crate) async fn failed_if_any(service: Option<&ServiceRole>) -> String {
        match service {
            Some(s) => s.failed().await,
            None => std::future::pending().await,
        }
    }

    /// The backend's state and restarts, for `/status`.
    pub(crate) fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": self.backend.kind(),
            "state": self.backend.state(),
            "restarts": self.backend.restarts(),
        })
    }
}
