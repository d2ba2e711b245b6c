//! The cluster domain.
//!
//! Everything here is pure: identifiers and fencing tokens, the lease state machine, the
//! consistent-hash ring with bounded loads, the rebalance planner, placement rules, the node
//! health state machine, the event envelope and schema rules, and the port traits that adapters
//! implement (`Coordinator`, `EventBus`, `ObjectStore`, `Clock`, ...). No module reads a clock,
//! opens a socket or touches a file: time comes in as a value, and effects go out through ports.
#![warn(missing_docs)]
#![warn(clippy::unwrap_used)]

pub mod assignment;
pub mod backend;
pub mod backoff;
pub mod clock;
pub mod config;
pub mod coordination;
pub mod dedup_window;
pub mod error;
pub mod event;
pub mod fencing;
pub mod ids;
pub mod lease;
pub mod naming;
pub mod node_health;
pub mod object_store;
pub mod placement;
pub mod rate_limiter;
pub mod rebalance;
pub mod ring;
pub mod time;
