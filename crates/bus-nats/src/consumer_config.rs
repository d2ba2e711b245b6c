//! `ConsumerConfig`: which events a consumer reads, where its record lives, how it retries.

use std::path::PathBuf;
use std::time::Duration;

use cluster_core::event::RetryPolicy;
use cluster_core::event::SubjectFilter;
use cluster_core::event::Subjects;

/// Settings of a [`Consumer`](crate::Consumer).
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// The durable consumer's name; also names its record in the database.
    pub name: String,
    /// The stream to read.
    pub stream: String,
    /// The subjects to read: one shard's subject per consumer keeps per-key order.
    pub filters: Vec<SubjectFilter>,
    /// The subject builder (dead letters go to `{prefix}.deadletter.{reason}`).
    pub subjects: Subjects,
    /// The SQLite file holding the record and the handler's effects.
    pub database: PathBuf,
    /// Redelivery and dead-letter limits.
    pub retry: RetryPolicy,
    /// How long a delivery may go unacknowledged before JetStream delivers it again.
    pub ack_wait: Duration,
    /// Deliveries outstanding at once.
    pub max_ack_pending: u32,
    /// How long ids of events without a key are remembered (at least 24 hours by default).
    pub seen_retention: Duration,
    /// Shadow mode: read, decide and run the handler, but commit nothing, publish no dead
    /// letter, and acknowledge every delivery (consumers are read-only during a rollout).
    pub shadow: bool,
}

impl ConsumerConfig {
    /// Defaults: 30 s ack wait, 256 outstanding, 24 h retention, not shadow.
    pub fn new(
        name: impl Into<String>,
        stream: impl Into<String>,
        filters: Vec<SubjectFilter>,
        subjects: Subjects,
        database: impl Into<PathBuf>,
    ) -> ConsumerConfig {
        ConsumerConfig {
            name: name.into(),
            stream: stream.into(),
            filters,
            subjects,
            database: database.into(),
            retry: RetryPolicy::default(),
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 256,
            seen_retention: Duration::from_secs(24 * 3600),
            shadow: false,
        }
    }
}
