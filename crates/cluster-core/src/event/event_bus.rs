//! The EventBus port: a durable, deduplicating, at-least-once message log with durable
//! consumers. JetStream is the model; `bus-nats` and `bus-mem` implement it.
//!
//! # Contract
//!
//! Implementations must keep these, and pass `testkit::event_bus`'s suite:
//!
//! - **Durable publish.** [`EventBus::publish`] resolves `Ok` only once the message is stored
//!   under the stream's durability settings; after that it is delivered to every consumer whose
//!   filter matches, even across a restart of the bus (for `bus-nats`: replicas 3, or
//!   `sync_interval: always` on a single server).
//! - **Dedup by message id.** A message whose `message_id` was stored within the stream's
//!   duplicate window is not stored again; the ack says `duplicate: true` and carries the
//!   original's sequence.
//! - **Order.** A stream assigns increasing sequences in the order it stores messages. A
//!   consumer receives messages in stream order, except that redeliveries (after a nak or an
//!   expired ack wait) come again later.
//! - **At least once.** A delivery not acknowledged within `ack_wait`, or nak'ed, is delivered
//!   again with a higher `delivered` count, up to `max_deliver` deliveries; `term` stops
//!   redelivery. Acknowledged messages are not delivered again to the same durable consumer,
//!   including after it is resubscribed.
//! - **Exclusive.** With `exclusive` set, one subscriber of a durable consumer at a time gets
//!   deliveries; another gets them only once the first is dropped or has not pulled for the
//!   pin timeout.
//! - **Position.** [`EventBus::consumer_position`] tells a durable consumer's ack floor (every
//!   stream sequence up to it is acknowledged) and the highest stream sequence delivered to it;
//!   [`EventBus::read`] returns a stored message by sequence. After a crash, deliveries still
//!   outstanding from the old instance come back only after their ack wait, behind newer
//!   messages; a consumer that must keep order reads that range itself first.
//! - **Errors.** An unreachable bus gives [`BusError::Unavailable`] within the adapter's call
//!   timeout, never a hang; everything else is a non-retryable error naming what is wrong.
//!   An `Unavailable` publish has an unknown outcome (the message may still be stored, as when
//!   a client re-sends its buffer on reconnect): re-send it with the same message id.
//!
//! The port carries bytes. Envelopes, schemas, ordering, the outbox and dead letters are built
//! once above it (see `bus-client`'s `Publisher` and `Consumer`).

use std::time::Duration;

use async_trait::async_trait;

use crate::event::bus_error::BusError;
use crate::event::subject::Subject;
use crate::event::subject::SubjectFilter;

/// A message to store on the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusMessage {
    /// Where it goes.
    pub subject: Subject,
    /// The dedup id (`Nats-Msg-Id`).
    pub message_id: String,
    /// The bytes.
    pub payload: Vec<u8>,
}

/// The bus's receipt for a stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusAck {
    /// The stream that stored it.
    pub stream: String,
    /// Its sequence in that stream.
    pub sequence: u64,
    /// Whether it was a duplicate of a message already stored.
    pub duplicate: bool,
}

/// A stream: which subjects it stores and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    /// The stream's name (`[A-Za-z0-9_-]`).
    pub name: String,
    /// The subjects it stores.
    pub subjects: Vec<SubjectFilter>,
    /// Copies kept (1 or 3 on a cluster).
    pub replicas: usize,
    /// How long message ids are remembered for dedup.
    pub duplicate_window: Duration,
    /// How long messages are kept; `None` keeps them until limits apply.
    pub max_age: Option<Duration>,
}

impl StreamSpec {
    /// A stream with one replica, a 2-minute duplicate window and no age limit.
    pub fn new(name: impl Into<String>, subjects: Vec<SubjectFilter>) -> StreamSpec {
        StreamSpec {
            name: name.into(),
            subjects,
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
            max_age: None,
        }
    }

    /// Checks the fields every adapter relies on.
    pub fn validate(&self) -> Result<(), BusError> {
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(BusError::InvalidSpec {
                field: "stream.name",
                reason: "must be non-empty [A-Za-z0-9_-]",
            });
        }
        if self.subjects.is_empty() {
            return Err(BusError::InvalidSpec {
                field: "stream.subjects",
                reason: "must not be empty",
            });
        }
        if self.replicas == 0 {
            return Err(BusError::InvalidSpec {
                field: "stream.replicas",
                reason: "must be at least 1",
            });
        }
        Ok(())
    }
}

/// A durable consumer of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionSpec {
    /// The stream.
    pub stream: String,
    /// The durable consumer's name: resubscribing with it resumes after the last ack.
    pub durable: String,
    /// Which subjects of the stream it receives (empty: all).
    pub filters: Vec<SubjectFilter>,
    /// How long a delivery may stay unacknowledged before it is delivered again.
    pub ack_wait: Duration,
    /// The most deliveries of one message.
    pub max_deliver: u32,
    /// The most deliveries outstanding (unacknowledged) at once.
    pub max_ack_pending: u32,
    /// Deliver to one subscriber at a time (JetStream: a pinned-client priority group); others
    /// stand by. The pin moves once its holder is dropped or stops pulling for this long.
    pub exclusive: Option<Duration>,
}

impl SubscriptionSpec {
    /// A consumer with a 30 s ack wait, 50 deliveries and 1000 outstanding.
    pub fn new(
        stream: impl Into<String>,
        durable: impl Into<String>,
        filters: Vec<SubjectFilter>,
    ) -> SubscriptionSpec {
        SubscriptionSpec {
            stream: stream.into(),
            durable: durable.into(),
            filters,
            ack_wait: Duration::from_secs(30),
            max_deliver: 50,
            max_ack_pending: 1000,
            exclusive: None,
        }
    }

    /// Checks the fields every adapter relies on.
    pub fn validate(&self) -> Result<(), BusError> {
        if self.durable.is_empty()
            || !self
                .durable
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(BusError::InvalidSpec {
                field: "subscription.durable",
                reason: "must be non-empty [A-Za-z0-9_-]",
            });
        }
        if self.max_deliver < 2 {
            return Err(BusError::InvalidSpec {
                field: "subscription.max_deliver",
                reason: "must be at least 2",
            });
        }
        if self.max_ack_pending == 0 {
            return Err(BusError::InvalidSpec {
                field: "subscription.max_ack_pending",
                reason: "must be at least 1",
            });
        }
        Ok(())
    }
}

/// A durable consumer's progress through its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConsumerPosition {
    /// Every stream sequence up to and including this one is acknowledged (0: none).
    pub ack_floor: u64,
    /// The highest stream sequence delivered so far (0: none).
    pub delivered: u64,
}

/// A message read from a stream by sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Its subject.
    pub subject: String,
    /// Its bytes.
    pub payload: Vec<u8>,
    /// Its stream sequence.
    pub sequence: u64,
}

/// How a delivery is settled.
#[async_trait]
pub trait DeliveryAck: Send + Sync {
    /// Done: never deliver it again to this consumer.
    async fn ack(&self) -> Result<(), BusError>;
    /// Not now: deliver it again after `delay`.
    async fn nak(&self, delay: Duration) -> Result<(), BusError>;
    /// Never: stop delivering it (after dead-lettering it).
    async fn term(&self) -> Result<(), BusError>;
    /// Still working: restart the ack-wait timer.
    async fn in_progress(&self) -> Result<(), BusError>;
}

/// One delivery of a stored message to a consumer.
pub struct Delivery {
    /// The subject it was published on.
    pub subject: String,
    /// The bytes.
    pub payload: Vec<u8>,
    /// Its stream sequence.
    pub stream_sequence: u64,
    /// Which delivery this is (1 for the first).
    pub delivered: u32,
    /// Messages still waiting for this consumer after this one (its lag).
    pub pending: u64,
    /// Settles the delivery.
    pub ack: Box<dyn DeliveryAck>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("subject", &self.subject)
            .field("stream_sequence", &self.stream_sequence)
            .field("delivered", &self.delivered)
            .field("pending", &self.pending)
            .field("bytes", &self.payload.len())
            .finish()
    }
}

/// The deliveries of one durable consumer, in stream order (redeliveries later).
#[async_trait]
pub trait DeliveryStream: Send {
    /// The next delivery; `None` once closed. Waits while nothing is pending.
    async fn next(&mut self) -> Option<Result<Delivery, BusError>>;
}

/// A durable message log with deduplication and durable consumers. See the module docs for
/// the contract every implementation keeps.
#[async_trait]
pub trait EventBus: Send + Sync + std::fmt::Debug {
    /// Creates the stream, or updates it to `spec` (idempotent).
    async fn ensure_stream(&self, spec: &StreamSpec) -> Result<(), BusError>;

    /// Stores one message; resolves once it is durable or refused.
    async fn publish(&self, message: BusMessage) -> Result<BusAck, BusError>;

    /// Creates or resumes the durable consumer `spec.durable` and streams its deliveries.
    async fn subscribe(&self, spec: &SubscriptionSpec)
    -> Result<Box<dyn DeliveryStream>, BusError>;

    /// Where durable consumer `durable` of `stream` stands.
    async fn consumer_position(
        &self,
        stream: &str,
        durable: &str,
    ) -> Result<ConsumerPosition, BusError>;

    /// The message at `sequence` of `stream`; `None` if there is none (deleted or not yet).
    async fn read(&self, stream: &str, sequence: u64) -> Result<Option<StoredMessage>, BusError>;

    /// The first message of `stream` in `from..=to` whose subject matches `filter`; `None` if
    /// there is none. Answered by the stream's leader, like [`EventBus::read`].
    ///
    /// The default reads the range one message at a time; an adapter whose server can find the
    /// next match itself (JetStream's `next_by_subj`) answers in one call however far apart the
    /// matches are, which a consumer of one shard of a stream shared by many needs.
    async fn read_next_matching(
        &self,
        stream: &str,
        from: u64,
        to: u64,
        filter: &SubjectFilter,
    ) -> Result<Option<StoredMessage>, BusError> {
        for sequence in from..=to {
            if let Some(message) = self.read(stream, sequence).await?
                && filter.matches(&message.subject)
            {
                return Ok(Some(message));
            }
        }
        Ok(None)
    }

    /// The largest message the bus accepts, in bytes.
    fn max_payload(&self) -> usize;
}
