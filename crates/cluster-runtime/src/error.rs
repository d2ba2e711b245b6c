//! Errors of the runtime.

use std::time::Duration;

use cluster_core::coordination::CoordError;
use cluster_core::error::Retryable;
use cluster_core::ids::IdError;

/// A boxed error from application code (hooks, health checks).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a hook returns: `Ok(())` or any error, which the runtime reports and acts on.
pub type HookResult = Result<(), BoxError>;

/// Why the runtime refused or failed an operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// A setting is invalid or settings cannot be safe together; names the field.
    #[error(transparent)]
    Config(#[from] cluster_core::config::ConfigError),
    /// A name or id is invalid.
    #[error(transparent)]
    Id(#[from] IdError),
    /// The coordination store refused or failed.
    #[error(transparent)]
    Coord(#[from] CoordError),
    /// An app with this name is registered already.
    #[error("app {0} is registered twice")]
    DuplicateApp(String),
    /// The operation needs a running platform.
    #[error("the platform is not running")]
    NotRunning,
    /// The operation does not apply to this app's mode.
    #[error("app {app} is not in {needed} mode")]
    WrongMode {
        /// The app.
        app: String,
        /// The mode the operation needs.
        needed: &'static str,
    },
    /// A wait ran out.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The HTTP endpoint could not be served.
    #[error("http endpoint: {0}")]
    Http(#[source] std::io::Error),
}

impl RuntimeError {
    pub(crate) fn config(field: &'static str, reason: impl Into<String>) -> Self {
        RuntimeError::Config(cluster_core::config::ConfigError::new(
            "runtime", field, reason,
        ))
    }
}

impl Retryable for RuntimeError {
    fn is_retryable(&self) -> bool {
        match self {
            RuntimeError::Coord(e) => e.is_retryable(),
            RuntimeError::Timeout(_) => true,
            RuntimeError::Config(_)
            | RuntimeError::Id(_)
            | RuntimeError::DuplicateApp(_)
            | RuntimeError::NotRunning
            | RuntimeError::WrongMode { .. }
            | RuntimeError::Http(_) => false,
        }
    }

    fn as_metrics_label(&self) -> &'static str {
        match self {
            RuntimeError::Config(_) => "config",
            RuntimeError::Id(_) => "invalid_id",
            RuntimeError::Coord(e) => e.as_metrics_label(),
            RuntimeError::DuplicateApp(_) => "duplicate_app",
            RuntimeError::NotRunning => "not_running",
            RuntimeError::WrongMode { .. } => "wrong_mode",
            RuntimeError::Timeout(_) => "timeout",
            RuntimeError::Http(_) => "http",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cluster_core::coordination::Operation;

    #[test]
    fn a_store_outage_or_timeout_is_retryable_and_a_bad_config_is_not() {
        let outage = RuntimeError::Coord(CoordError::timed_out(Operation::Read, Duration::ZERO));
        assert!(outage.is_retryable());
        assert_eq!(outage.as_metrics_label(), "unavailable");
        assert!(RuntimeError::Timeout(Duration::from_secs(1)).is_retryable());
        let stale = RuntimeError::Coord(CoordError::bad_request("no"));
        assert!(!stale.is_retryable());
        let config = RuntimeError::config("timing.ttl", "must be positive");
        assert!(!config.is_retryable());
        assert_eq!(config.as_metrics_label(), "config");
        assert!(!RuntimeError::NotRunning.is_retryable());
    }
}
