//! The NATS adapter: the `EventBus` and `ObjectStore` ports over NATS JetStream.
//!
//! - [`NatsEventBus`]: the `cluster_core::event::EventBus` port over JetStream (file storage,
//!   `Nats-Msg-Id` dedup, durable pull consumers with explicit acks).
//! - [`NatsObjectStore`], [`NatsObjectStores`]: the `ObjectStore` port over JetStream Object
//!   Store buckets.
//! - [`NatsBusConfig`]: how both connect.
//!
//! The publisher, consumer and outbox built on the port live in `bus-client`, which works on
//! any EventBus. Durability: an acknowledged event is durable only on a stream with 3 replicas,
//! or on a server with `sync_interval: always` (docs/event-bus.md).
#![warn(missing_docs)]
#![warn(clippy::unwrap_used)]

mod config;
mod nats_delivery;
mod nats_error;
mod nats_event_bus;
mod nats_object_store;

pub use config::NatsBusConfig;
pub use nats_event_bus::NatsEventBus;
pub use nats_object_store::{NatsObjectStore, NatsObjectStores, ObjectBucketSpec};
