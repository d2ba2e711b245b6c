//! Events: the subject taxonomy, the versioned envelope, payload schemas and their
//! compatibility, the ordering and dedup rules consumers apply, and the EventBus port.
//!
//! | item | what |
//! | --- | --- |
//! | [`Subjects`] | builds every subject and subscription filter; bad tokens are errors |
//! | [`Envelope`], [`EventId`], [`SchemaVersion`], [`EventType`] | one event on the wire (JSON) |
//! | [`Schema`], [`SchemaRegistry`] | JSON Schema subset per `(event_type, major)`; routing by version |
//! | [`check_compatibility`], [`compare_registries`] | backward and forward compatibility, separately |
//! | [`decide`], [`OrderMark`], [`RedeliveryPolicy`] | what a consumer does with a delivery |
//! | [`DeadLetter`], [`DeadLetterReason`] | what a consumer publishes instead of dropping |
//! | [`EventBus`] | the port: durable, deduplicating publish and durable consumers |
//! | [`OutgoingEvent`] | what callers give a publisher |
//! | [`ShardOutbox`], [`DrainTimeout`] | what a partition's owner drains before a graceful release |
//! | [`Topology`], [`Durability`] | the platform's streams (events, dead letters, audit), named once |
//!
//! Nothing here does I/O: the adapters (`bus-nats`, `bus-mem`) move bytes, and the publisher
//! and consumer built on the port (`bus-client`) apply these rules.

mod bus_error;
mod compatibility;
mod dead_letter;
mod envelope;
mod event_bus;
mod event_id;
mod ordering;
mod outgoing_event;
mod schema;
mod schema_registry;
mod shard_outbox;
mod subject;
mod timestamp;
mod topology;

pub use bus_error::{BusError, BusErrorSource, BusOperation};
pub use compatibility::{
    CompatibilityReport, Incompatibility, accepts_subset, check_compatibility,
};
pub use dead_letter::{DeadLetter, DeadLetterReason};
pub use envelope::{
    Envelope, EnvelopeError, EventFamily, EventType, MAX_ORDERING_KEY_LEN, SchemaVersion,
    SchemaVersionError,
};
pub use event_bus::{
    BusAck, BusMessage, ConsumerPosition, Delivery, DeliveryAck, DeliveryStream, EventBus,
    StoredMessage, StreamSpec, SubscriptionSpec,
};
pub use event_id::{EventId, EventIdError};
pub use ordering::{
    ApplyDecision, EventPosition, KeyRecord, OrderMark, RedeliveryPolicy, RetryDecision, decide,
    decide_unkeyed,
};
pub use outgoing_event::OutgoingEvent;
pub use schema::{Additional, JsonType, Schema, SchemaError, SchemaViolation};
pub use schema_registry::{
    RegisteredSchema, RegistryError, RouteError, SchemaChange, SchemaRegistry, compare_registries,
};
pub use shard_outbox::{DrainTimeout, ShardOutbox};
pub use subject::{
    Level, LifecycleKind, LifecycleSubject, MAX_TOKEN_LEN, Subject, SubjectError, SubjectFilter,
    SubjectToken, Subjects,
};
pub use timestamp::{Timestamp, TimestampError};
pub use topology::{Durability, Topology};
