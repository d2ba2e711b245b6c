//! The platform runtime.
//!
//! Composes the coordination and event-bus ports into `Platform` and `App`: node lifecycle,
//! election, ownership and rebalance execution, the job coordinator, placement, discovery,
//! health and metrics over HTTP, and audit.
#![warn(clippy::unwrap_used)]
