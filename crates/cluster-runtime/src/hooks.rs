//! Application hooks: what an app runs when its role or the cluster changes.
//!
//! Each hook is an async closure taking a context and returning [`HookResult`]. The runtime runs
//! hooks one at a time per app, in a fixed order, each under a timeout, and never twice for one
//! transition:
//!
//! ```text
//! on_start
//!   on_passive                       (the node starts as a standby)
//!   on_active(token) / on_passive    alternate strictly, one per role change
//!   on_own(partition, token) / on_release(partition)   per partition, alternate strictly
//!   on_leader_change, on_member_join, on_member_leave, on_health_change   as they happen
//! on_stop
//! ```
//!
//! A failing or timed-out `on_active` steps the node down (resign, then `on_passive`) instead of
//! leaving a half-initialised leader. Leader- and owner-scoped work gets a cancellation token that
//! fires the moment the role is lost, before `on_passive` / `on_release` run.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::error::{BoxError, HookResult};

/// A hook taking context `C`.
pub(crate) struct Hook<C> {
    f: Arc<dyn Fn(C) -> BoxFuture<'static, HookResult> + Send + Sync>,
}

impl<C> Clone for Hook<C> {
    fn clone(&self) -> Self {
        Hook { f: self.f.clone() }
    }
}

impl<C> std::fmt::Debug for Hook<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}

impl<C: Send + 'static> Hook<C> {
    /// Wraps an async closure.
    pub(crate) fn new<F, Fut>(f: F) -> Self
    where
        F: Fn(C) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HookResult> + Send + 'static,
    {
        Hook {
            f: Arc::new(move |c| Box::pin(f(c))),
        }
    }

    /// Runs the hook under `timeout`, recording its duration as `cluster_hook_duration_seconds`.
    pub(crate) async fn run(
        &self,
        app: &str,
        name: &'static str,
        ctx: C,
        timeout: Duration,
    ) -> HookResult {
        let started = coord_client::instant_now();
        let outcome = match tokio::time::timeout(timeout, (self.f)(ctx)).await {
            Ok(r) => r,
            Err(_) => Err(Box::new(HookTimedOut {
                hook: name,
                after: timeout,
            }) as BoxError),
        };
        let status = if outcome.is_ok() { "ok" } else { "error" };
        metrics::histogram!(crate::metric_definitions::HOOK_DURATION, "hook" => name, "app" => app.to_owned(), "status" => status)
            .record(started.elapsed().as_secs_f64());
        if let Err(e) = &outcome {
            tracing::warn!(app, hook = name, error = %e, "hook failed");
        }
        outcome
    }
}

/// A hook ran past its timeout.
#[derive(Debug, thiserror::Error)]
#[error("hook {hook} did not finish within {after:?}")]
pub struct HookTimedOut {
    /// The hook.
    pub hook: &'static str,
    /// Its timeout.
    pub after: Duration,
}

/// Runs an optional hook; a missing hook succeeds.
pub(crate) async fn run_optional<C: Send + 'static>(
    hook: &Option<Hook<C>>,
    app: &str,
    name: &'static str,
    ctx: C,
    timeout: Duration,
) -> HookResult {
    match hook {
        Some(h) => h.run(app, name, ctx, timeout).await,
        None => Ok(()),
    }
}
