//! cluster-tests's integration tests, one binary for all of them (one link instead of one per
//! file): each module is one area, named as its file.

mod common;
mod e2e_active_passive;
mod e2e_on_nats_kv;
mod e2e_ring;
mod e2e_ring_pause;
