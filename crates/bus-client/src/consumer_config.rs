//! `ConsumerConfig`: which events a consumer reads, where its record lives, how it retries.

use std::path::PathBuf;
use std::time::Duration;

use cluster_core::event::RedeliveryPolicy;
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
    pub retry: RedeliveryPolicy,
    /// How long a delivery may go unacknowledged before JetStream delivers it again.
    pub ack_wait: Duration,
    /// Deliveries outstanding at once.
    pub max_ack_pending: u32,
    /// How long ids of events without a key are remembered (at least 24 hours by default).
    pub seen_retention: Duration,
    /// Pin timeout of the exclusive (pinned-client) consumer: only one instance at a time gets
    /// the deliveries, so per-key order holds even if two processes run the same consumer; a
    /// standby takes over once the holder has not pulled for this long. `None` (the default):
    /// not exclusive; run one instance per shard's consumer yourself (on the shard's owner).
    /// A pull that is reopened after an error starts on standby, so with a pin the consumer
    /// pauses for up to the pin timeout after each reconnect.
    pub exclusive: Option<Duration>,
    /// Shadow mode: read, decide and run the handler, but commit nothing, publish no dead
    /// letter, and acknowledge every delivery (consumers are read-only during a rollout). A
    /// shadow consumer reads through its own durable, `{name}-shadow`, so turning shadow mode
    /// off later resumes the real durable where it was, with nothing skipped.
    pub shadow: bool,
}

impl ConsumerConfig {
    /// Defaults: 30 s ack wait, 256 outstanding, 24 h retention, not exclusive, not shadow.
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
            retry: RedeliveryPolicy::default(),
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 256,
            seen_retention: Duration::from_secs(24 * 3600),
            exclusive: None,
            shadow: false,
        }
    }
}
