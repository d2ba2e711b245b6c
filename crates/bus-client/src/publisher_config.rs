//! `PublisherConfig`: how the publisher retries, where its outbox lives, what it does when full.

use std::path::PathBuf;
use std::time::Duration;

use cluster_core::event::Subjects;
use cluster_core::ids::NodeId;

/// What `publish` does when the outbox is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Wait for room up to this long, then fail with `OutboxFull`.
    Block(Duration),
    /// Fail with `OutboxFull` at once.
    Reject,
}

/// Settings of a [`Publisher`](crate::Publisher).
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// This node: `node_id` of every envelope.
    pub node_id: NodeId,
    /// The subject builder (its prefix is the platform).
    pub subjects: Subjects,
    /// The SQLite file of the outbox and the sequence blocks.
    pub outbox_path: PathBuf,
    /// The most events the outbox holds.
    pub outbox_capacity: usize,
    /// What `publish` does when the outbox is full.
    pub when_full: WhenFull,
    /// Attempts of one direct publish before the publisher degrades to the outbox.
    pub attempts: u32,
    /// The first retry backoff (doubled per attempt, with jitter).
    pub initial_backoff: Duration,
    /// The largest retry backoff.
    pub max_backoff: Duration,
    /// How long the outbox drainer waits after a failed attempt before trying again.
    pub drain_retry: Duration,
    /// Outbox entries the drainer takes at a time (pipelined across keys).
    pub drain_batch: usize,
    /// Sequence numbers reserved per durable write.
    pub sequence_block: u64,
}

impl PublisherConfig {
    /// Defaults: 100 000 events of outbox, block up to 5 s when full, 3 attempts.
    pub fn new(node_id: NodeId, subjects: Subjects, outbox_path: impl Into<PathBuf>) -> Self {
        PublisherConfig {
            node_id,
            subjects,
            outbox_path: outbox_path.into(),
            outbox_capacity: 100_000,
            when_full: WhenFull::Block(Duration::from_secs(5)),
            attempts: 3,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            drain_retry: Duration::from_millis(500),
            drain_batch: 512,
            sequence_block: 1000,
        }
    }

    /// The backoff before retry `attempt` (1-based): exponential, jitter in [d/2, d].
    pub fn backoff(&self, attempt: u32) -> Duration {
        cluster_core::backoff::Backoff::new(self.initial_backoff, self.max_backoff)
            .jittered(attempt, fastrand::f64())
    }
}
