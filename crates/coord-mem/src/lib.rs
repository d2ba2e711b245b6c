//! In-process Coordinator adapter.
//!
//! A real adapter, not a mock: it implements the same port and passes the same contract suite as
//! the etcd, Consul and NATS adapters. Used by `cluster agent --dev` and by fast tests.
#![warn(clippy::unwrap_used)]
