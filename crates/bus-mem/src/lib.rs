//! In-process EventBus for dev mode and fast tests.
//!
//! [`MemEventBus`] keeps streams, message-id dedup windows and durable consumers in memory,
//! with the same contract as JetStream (`testkit::event_bus`'s suite runs against both): durable
//! publish (for the life of the process), dedup by message id within the window, stream order,
//! at-least-once delivery with nak, term, ack wait and `max_deliver`, and durable consumers that
//! resume after their last ack. [`MemEventBus::set_down`] makes it unreachable, as a stopped
//! server would be. Time is tokio's, so tests may pause it.
//!
//! [`MemObjectStore`] is the ObjectStore port in memory, passing `testkit::object_store`'s suite;
//! [`MemObjectStore::set_down`] makes it unreachable.
#![warn(missing_docs)]
#![warn(clippy::unwrap_used)]

mod mem_delivery;
mod mem_event_bus;
mod mem_object_store;
mod mem_stream;

pub use mem_event_bus::{DEFAULT_MAX_PAYLOAD, MemEventBus};
pub use mem_object_store::MemObjectStore;
