//! The backend port: what runs an app's service on a node while the node holds the app's role.
//!
//! The runtime starts a backend when a term (or an active slot) begins, after the app's database
//! is promoted and before `on_active`, and stops it when the role ends, before the database's
//! tail is shipped. Adapters: the supervised process in the `backends` crate (systemd and
//! docker planned).
//!
//! Every adapter keeps these invariants:
//!
//! 1. **`start` is idempotent.** Starting a running backend leaves it running and succeeds.
//!    `start` returns once the service is running (its process exists), not once it is ready:
//!    readiness is the app's health checks.
//! 2. **`stop` ends everything `start` started.** It returns only once every process of the
//!    service (children and grandchildren included) has exited, after a graceful stop and, past
//!    the grace, by force. Stopping a stopped backend succeeds.
//! 3. **A fenced start never outlives its term.** A [`StartRequest`] with a [`SafeDeadline`]
//!    gives the time the term may still act; no process of the service runs past it, *even if
//!    the caller stops answering* (a frozen or killed agent): the adapter arranges the kill
//!    outside the caller's process, from the last deadline it was given. An unfenced start
//!    (pool apps) outlives a pause of the caller but not its death.
//! 4. **Exits are reported.** Every exit of the service is a [`BackendEvent::Exited`] with the
//!    restart decision; when the restart policy gives up the backend is
//!    [`BackendState::Failed`] (and stays so until the next `start`), and the runtime ends the
//!    term: no half-leader serves.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::error::Retryable;

/// The time the term may still act, read whenever the adapter needs it; `None` once the term is
/// over. A duration, not an instant, so that the port needs no clock: the adapter adds it to
/// its own clock's now.
pub type SafeDeadline = Arc<dyn Fn() -> Option<Duration> + Send + Sync>;

/// What a start needs besides the backend's own configuration.
#[derive(Clone, Default)]
pub struct StartRequest {
    /// Environment for the service (`CLUSTER_APP`, `CLUSTER_NODE`, `CLUSTER_TOKEN`...).
    pub env: Vec<(String, String)>,
    /// The term's deadline; `None` for an unfenced start.
    pub fence: Option<SafeDeadline>,
}

impl std::fmt::Debug for StartRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartRequest")
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("fenced", &self.fence.is_some())
            .finish()
    }
}

/// Where a backend stands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum BackendState {
    /// Nothing runs.
    Stopped,
    /// Being started.
    Starting,
    /// The service runs.
    Running {
        /// Its main process, when it has one.
        pid: Option<u32>,
    },
    /// It exited and is restarted after a pause.
    Restarting {
        /// The restart about to be made (1 for the first).
        attempt: u32,
    },
    /// Being stopped.
    Stopping,
    /// The restart policy gave up (or the service could not be started).
    Failed {
        /// Why.
        reason: String,
    },
}

impl BackendState {
    /// Every state's name, in the order of the variants.
    pub const NAMES: [&'static str; 6] = [
        "stopped",
        "starting",
        "running",
        "restarting",
        "stopping",
        "failed",
    ];

    /// The state's name, for metrics and tables.
    pub fn name(&self) -> &'static str {
        match self {
            BackendState::Stopped => "stopped",
            BackendState::Starting => "starting",
            BackendState::Running { .. } => "running",
            BackendState::Restarting { .. } => "restarting",
            BackendState::Stopping => "stopping",
            BackendState::Failed { .. } => "failed",
        }
    }
}

/// Something that happened to the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendEvent {
    /// The service started.
    Started {
        /// Its main process.
        pid: Option<u32>,
    },
    /// The service exited.
    Exited {
        /// How (`exit status 1`, `killed by signal 9`, `killed at the term's deadline`).
        status: String,
        /// Whether it exited successfully (status 0).
        success: bool,
        /// Whether the backend restarts it.
        restarting: bool,
    },
    /// The restart policy gave up after this many restarts.
    RestartsExhausted {
        /// Restarts made in the window.
        restarts: u32,
    },
    /// `stop` finished: nothing of the service runs.
    Stopped,
}

/// Why a backend call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The service could not be started (a missing program, a bad user, a failing spawn).
    #[error("{backend} backend: cannot start: {reason}")]
    Start {
        /// The backend's kind.
        backend: &'static str,
        /// Why.
        reason: String,
    },
    /// The service exited before it was running, or its restarts ran out.
    #[error("{backend} backend: {reason}")]
    Failed {
        /// The backend's kind.
        backend: &'static str,
        /// Why.
        reason: String,
    },
    /// Stopping did not finish.
    #[error("{backend} backend: stop: {reason}")]
    Stop {
        /// The backend's kind.
        backend: &'static str,
        /// Why.
        reason: String,
    },
}

impl Retryable for BackendError {
    fn is_retryable(&self) -> bool {
        false
    }

    fn as_metrics_label(&self) -> &'static str {
        match self {
            BackendError::Start { .. } => "start",
            BackendError::Failed { .. } => "failed",
            BackendError::Stop { .. } => "stop",
        }
    }
}

/// Runs an app's service; see the module's invariants.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The kind, for metrics and logs (`process`).
    fn kind(&self) -> &'static str;

    /// Starts the service (idempotent); returns once it runs.
    async fn start(&self, request: StartRequest) -> Result<(), BackendError>;

    /// Stops it and everything it started; returns once all of it has exited (idempotent).
    async fn stop(&self) -> Result<(), BackendError>;

    /// The state now.
    fn state(&self) -> BackendState;

    /// The state now and every change after it.
    fn states(&self) -> BoxStream<'static, BackendState>;

    /// Every event from now on.
    fn events(&self) -> BoxStream<'static, BackendEvent>;

    /// Restarts made since the last `start`.
    fn restarts(&self) -> u32;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_name_is_listed_once() {
        let states = [
            BackendState::Stopped,
            BackendState::Starting,
            BackendState::Running { pid: None },
            BackendState::Restarting { attempt: 1 },
            BackendState::Stopping,
            BackendState::Failed {
                reason: String::new(),
            },
        ];
        let names: Vec<_> = states.iter().map(BackendState::name).collect();
        assert_eq!(names, BackendState::NAMES);
    }
}
