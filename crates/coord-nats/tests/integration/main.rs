//! coord-nats's integration tests, one binary for all of them (one link instead of one per
//! file): each module is one area, named as its file.
// Test code measures and waits on real time directly.
#![allow(clippy::disallowed_methods)]

mod app_bucket;
mod cluster_failover;
mod common;
mod contract;
mod contract_cluster;
mod lease_keys;
mod put_if_held;
mod watch_restarts;
