//! bus-client's integration tests, one binary for all of them (one link instead of one per
//! file): each module is one area, named as its file.
// Test code measures and waits on real time directly.
#![allow(clippy::disallowed_methods)]

mod catch_up;
mod claim;
mod crash;
mod dead_letter_final;
mod fixtures;
mod holds;
mod outage;
mod outbox_refused;
mod publish_consume;
mod replicated;
mod stale_epoch;
