//! App drivers: each registered app's mode run under the node's sessions, health-change
//! dispatch, and the ring hand-off on leave.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::app::AppMode;
use crate::context::HealthChange;
use crate::election::{self, Role};
use crate::health::HealthStatus;
use crate::hooks::run_optional;
use crate::ring::{self, RingHandle, RingSettings};
use crate::slots;

use super::*;

impl Platform {
    /// Runs `on_health_change` on every app when the node's health changes.
    pub(super) async fn dispatch_health(self, stop: CancellationToken) {
        let mut status = self.inner.health.subscribe();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                changed = status.changed() => if changed.is_err() { return },
            }
            let now: HealthStatus = *status.borrow_and_update();
            let apps = self.inner.registered_apps();
            for a in apps {
                let change = HealthChange {
                    app: a.ctx.clone(),
                    status: now,
                };
                let timeout = a.app.hook_timeout.unwrap_or(self.inner.timing.hook_timeout);
                let _ = run_optional(
                    &a.app.hooks.on_health_change,
                    a.app.name.as_str(),
                    "on_health_change",
                    change,
                    timeout,
                )
                .await;
            }
        }
    }

    /// Runs one app: `on_start`, its mode's driver, `on_stop`.
    pub(super) async fn drive_app(self, app: Arc<RegisteredApp>, stop: CancellationToken) {
        let inner = &self.inner;
        let name = app.app.name.to_string();
        let timeout = app.app.hook_timeout.unwrap_or(inner.timing.hook_timeout);
        let hooks = Arc::new(app.app.hooks.clone());
        let _ = run_optional(&hooks.on_start, &name, "on_start", app.ctx.clone(), timeout).await;
        let observer_stop = stop.child_token();
        if matches!(app.app.mode, AppMode::ActivePassive) {
            tokio::spawn(election::observe_leader(
                app.ctx.clone(),
                hooks.clone(),
                timeout,
                app.leader_tx.clone(),
                observer_stop.clone(),
            ));
        }
        let settle = {
            let app = app.clone();
            let mut roles = app.role_tx.subscribe();
            let ring = app.ring.as_ref().map(|(_, h)| h.clone());
            let stop = stop.clone();
            tokio::spawn(async move {
                // Settled again under every session: after a rejoin the app is not ready until
                // its ring has its share again (or its role is decided).
                loop {
                    let Some(session) = app.ctx.shared.sessions.next_live(&stop).await else {
                        return;
                    };
                    let settled = async {
                        match &ring {
                            Some(ring) => {
                                let _ = ring.settled().await;
                            }
                            None => {
                                let _ = roles.wait_for(|r| *r != Role::Starting).await;
                            }
                        }
                    };
                    tokio::select! {
                        _ = settled => { app.settled.send_replace(true); }
                        _ = session.lost() => continue,
                        _ = stop.cancelled() => return,
                    }
                    tokio::select! {
                        _ = session.lost() => { app.settled.send_replace(false); }
                        _ = stop.cancelled() => return,
                    }
                }
            })
        };
        match app.app.mode {
            AppMode::ActivePassive => {
                let sqlite = match (&app.app.sqlite, &inner.object_stores) {
                    (Some(spec), Some(provider)) => {
                        let retry = inner
                            .timing
                            .step_down_backoff
                            .max(crate::timing::pace::DATABASE_OPEN_RETRY);
                        crate::sqlite::SqliteRole::open_retrying(
                            &app.ctx,
                            spec,
                            provider.as_ref(),
                            retry,
                            &stop,
                        )
                        .await
                        .map(|role| {
                            let role = Arc::new(role);
                            let _ = app.sqlite.set(role.clone());
                            role
                        })
                    }
                    _ => None,
                };
                let step_down_rx = app
                    .step_down_rx
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take();
                // An app with a database whose buckets never opened (stopped first) does not run.
                if let Some(rx) = step_down_rx
                    && (app.app.sqlite.is_none() || sqlite.is_some())
                {
                    let driver = election::Driver {
                        ctx: app.ctx.clone(),
                        hooks: hooks.clone(),
                        timeout,
                        backoff: inner.timing.step_down_backoff,
                        role_tx: app.role_tx.clone(),
                        sqlite,
                        service: app.service.clone(),
                    };
                    election::drive(driver, rx, stop.clone()).await;
                }
            }
            AppMode::Pool => {
                slots::drive_pool(
                    app.ctx.clone(),
                    hooks.clone(),
                    timeout,
                    app.role_tx.clone(),
                    app.service.clone(),
                    stop.clone(),
                )
                .await
            }
            AppMode::Replicas(n) => {
                slots::drive_replicas(
                    app.ctx.clone(),
                    hooks.clone(),
                    timeout,
                    n,
                    app.role_tx.clone(),
                    app.service.clone(),
                    stop.clone(),
                )
                .await
            }
            AppMode::Ring { partitions } => {
                if let Some((publisher, _)) = &app.ring {
                    let settings = RingSettings {
                        partitions,
                        hook_timeout: timeout,
                        drain_timeout: inner.timing.drain_timeout,
                        max_concurrent_moves: inner.max_concurrent_moves,
                        outbox: app.app.outbox.clone(),
                    };
                    app.role_tx.send_replace(Role::Passive);
                    ring::drive(
                        app.ctx.clone(),
                        hooks.clone(),
                        settings,
                        inner.members.subscribe(),
                        publisher.clone(),
                        stop.clone(),
                    )
                    .await;
                    app.role_tx.send_replace(Role::Stopped);
                }
            }
        }
        observer_stop.cancel();
        settle.abort();
        let _ = run_optional(&hooks.on_stop, &name, "on_stop", app.ctx.clone(), timeout).await;
    }

    /// Marks the node leaving and waits (within half the shutdown budget) for ring apps to hand
    /// their partitions to other nodes.
    pub(super) async fn leave_rings(&self, apps: &[Arc<RegisteredApp>]) {
        let rings: Vec<RingHandle> = apps
            .iter()
            .filter_map(|a| a.ring.as_ref().map(|(_, h)| h.clone()))
            .collect();
        if rings.is_empty() {
            return;
        }
        let Some(session) = self.inner.sessions.current() else {
            return;
        };
        let record = self.member_record(true);
        if let Err(e) = self
            .inner
            .coord
            .update_member(&self.members_ns(), &record, session.lease())
            .await
        {
            tracing::warn!(error = %e, "could not announce leaving; partitions are released instead");
            return;
        }
        let others = self
            .inner
            .members
            .borrow()
            .keys()
            .any(|n| n != &self.inner.node);
        if !others {
            return;
        }
        let budget = self.inner.timing.shutdown_timeout / 2;
        let wait = async {
            for ring in &rings {
                let mut view = ring.view.clone();
                let _ = view.wait_for(|v| v.mine.is_empty()).await;
            }
        };
        let _ = tokio::time::timeout(budget, wait).await;
    }
}
