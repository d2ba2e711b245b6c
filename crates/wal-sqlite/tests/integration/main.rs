//! wal-sqlite's integration tests, one binary for all of them (one link instead of one per
//! file): each module is one area, named as its file.
// Test code measures and waits on real time directly.
#![allow(clippy::disallowed_methods)]

mod fixtures;
mod t10_follow;
mod t20_restore;
mod t25_bulk;
mod t26_compression;
mod t30_promotion;
mod t40_nats;
mod t50_crash;
mod t60_hole;
mod t61_leader_reads;
mod t62_seal_fence;
mod t63_recovery;
mod t64_generation_start;
mod t65_restore_seal;
mod t66_step_down;
