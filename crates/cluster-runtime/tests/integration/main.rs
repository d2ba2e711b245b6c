//! cluster-runtime's integration tests, one binary for all of them (one link instead of one per
//! file): each module is one area, named as its file.
// Test code measures and waits on real time directly.
#![allow(clippy::disallowed_methods)]

mod common;
mod t10_active_passive;
mod t20_ring;
mod t25_ownership;
mod t30_on_nats_kv;
mod t35_on_etcd;
mod t40_sqlite;
mod t50_modes;
