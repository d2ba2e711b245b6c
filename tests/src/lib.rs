//! Cross-crate end-to-end scenarios, and what they share: the history format the demo node
//! writes, and an orchestrator that runs demo nodes as separate OS processes.
//!
//! The scenarios live in `tests/`, one binary per feature area. The `demo-node` binary hosts an
//! active-passive app (`ledger`) and a ring app (`jobs`, 64 partitions by default) on real etcd;
//! `cargo xtask demo` runs three of them and shows a failover.
// Test code measures and waits on real time directly.
#![allow(clippy::disallowed_methods)]

pub mod failover_bench;
pub mod history;
pub mod orchestrator;
pub mod ownership;
