//! The metrics the backends export.

/// Gauge, 1 for the state each app's backend is in (`app`, `backend`, `state`).
pub const BACKEND_STATE: &str = "cluster_backend_state";
/// Counter of restarts (`app`, `backend`).
pub const BACKEND_RESTARTS: &str = "cluster_backend_restarts_total";
/// Histogram of the seconds from spawning the supervisor to the service running (`app`,
/// `backend`).
pub const BACKEND_START_DURATION: &str = "cluster_backend_start_duration_seconds";
