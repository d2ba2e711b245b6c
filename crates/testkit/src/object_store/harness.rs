//! What an adapter provides to run the suite, and the helpers the cases share.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cluster_core::object_store::ObjectName;
use cluster_core::object_store::ObjectStore;

/// A fresh bucket under test.
#[async_trait]
pub trait ObjectStoreHarness: Send + Sync {
    /// A new client of the bucket.
    async fn store(&self) -> Arc<dyn ObjectStore>;

    /// Makes the store unreachable to every client, keeping its data; returns `false` if this
    /// kind of store cannot go down (a local directory), and the outage case is skipped.
    async fn stop_store(&mut self) -> bool;

    /// Brings the store back with its data.
    async fn start_store(&mut self);

    /// The adapter's per-call deadline: a call to an unreachable store fails within it.
    fn call_timeout(&self) -> Duration;
}

/// A name; panics on an invalid one (cases use fixed names).
pub fn name(s: &str) -> ObjectName {
    ObjectName::new(s).unwrap_or_else(|e| panic!("{e}"))
}

/// `len` bytes whose content depends on `seed` and on the position, so a misplaced chunk shows.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .rotate_left(u32::from(seed) % 31) as u8
                ^ seed
        })
        .collect()
}
