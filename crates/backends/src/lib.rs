//! Backends that run an app's service behind cluster-core's `Backend` port: a supervised
//! process today (systemd and docker planned).
//!
//! The process backend runs each service under `cluster supervise` ([`supervisor`]), a small
//! process of its own that the agent feeds with the term's deadline ([`protocol`]) on the clock
//! every process of the machine shares ([`boottime`]); it kills the service by that deadline
//! even if the agent is frozen, and stops it when the agent dies.
#![warn(missing_docs)]
#![warn(clippy::unwrap_used)]

pub mod boottime;
pub mod log_file;
pub mod metric_definitions;
pub mod process;
pub mod protocol;
pub mod supervisor;

pub use log_file::LogFileSpec;
pub use process::{ProcessBackend, ProcessSpec, RestartPolicy, SupervisorCommand};
pub use supervisor::SupervisorArgs;
