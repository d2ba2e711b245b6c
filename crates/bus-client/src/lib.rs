//! The client side of the event port: the publisher and consumer built on `EventBus`.
//!
//! Everything here takes an `Arc<dyn EventBus>` (`cluster_core::event::EventBus`), so it works
//! on any EventBus: `bus-nats` on JetStream, `bus-mem` in memory.
//!
//! - [`Publisher`]: validates payloads against their schemas, stamps envelopes with a UUIDv7
//!   id and a durable per-key sequence, publishes with retries (one unacknowledged publish per
//!   ordering key, keys pipelined), and degrades to a SQLite [`Outbox`] when the bus is
//!   unreachable, draining it in order on recovery.
//! - [`Consumer`]: a durable consumer that applies each event exactly once per key order: its
//!   dedup and order record is committed in the same SQLite transaction as the
//!   [`EventHandler`]'s effect; stale epochs, unknown majors and malformed events go to the
//!   dead-letter subject with the reason.
//! - [`Topology`] (re-exported from `cluster_core::event`): the platform's streams.
//! - [`metric_definitions`]: every metric by its exact name.
//!
//! Durability: an acknowledged event is durable only if the bus makes it so (on NATS: a stream
//! with 3 replicas, or a server with `sync_interval: always`; docs/event-bus.md).
#![warn(missing_docs)]
#![warn(clippy::unwrap_used)]

mod consumer;
mod consumer_config;
mod consumer_store;
mod event_handler;
pub mod metric_definitions;
mod outbox;
mod publish_error;
mod publisher;
mod publisher_config;
mod sequence_store;
mod sqlite;

/// The error of [`Publisher::drain_shard`] (defined with the port).
pub use cluster_core::event::DrainTimeout;
/// The platform's streams (defined with the port, so the runtime names them the same way).
pub use cluster_core::event::{Durability, Topology};
pub use consumer::{Consumer, ConsumerError};
pub use consumer_config::ConsumerConfig;
pub use event_handler::{EventHandler, HandlerError};
pub use metric_definitions::{ConsumerMetrics, PublisherMetrics};
pub use outbox::{HeldKey, Outbox, OutboxEntry, OutboxError, StoredEntry};
pub use publish_error::PublishError;
pub use publisher::{Delivered, OpenError, PublishReceipt, Publisher, PublisherStatus};
pub use publisher_config::{PublisherConfig, WhenFull};
pub use sequence_store::SequenceStore;
