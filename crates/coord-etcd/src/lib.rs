//! Coordinator adapter over etcd v3.
//!
//! Implements `cluster_core`'s coordination port with etcd leases, transactions guarded by
//! `mod_revision`, and watches with full history.
#![warn(clippy::unwrap_used)]
