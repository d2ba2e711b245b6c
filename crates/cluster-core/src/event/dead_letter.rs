//! Dead letters: events a consumer will not apply, published with the reason instead of dropped.

use std::fmt;

use serde::Deserialize;
use serde::Serialize;

use crate::event::envelope::Envelope;

/// Why an event was dead-lettered; also the last level of its dead-letter subject and the
/// `reason` label of `event_bus_dead_letters_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterReason {
    /// The bytes are not a valid envelope.
    Malformed,
    /// The consumer has no schema for the event's major.
    UnknownMajor,
    /// The consumer has no schema for the event's type.
    UnknownType,
    /// The payload fails its schema.
    SchemaInvalid,
    /// The event's epoch is older than one already applied for its key.
    StaleEpoch,
    /// The handler kept failing.
    HandlerFailed,
    /// JetStream's delivery limit was about to be reached.
    MaxDeliveries,
}

impl DeadLetterReason {
    /// Every reason.
    pub const ALL: [DeadLetterReason; 7] = [
        DeadLetterReason::Malformed,
        DeadLetterReason::UnknownMajor,
        DeadLetterReason::UnknownType,
        DeadLetterReason::SchemaInvalid,
        DeadLetterReason::StaleEpoch,
        DeadLetterReason::HandlerFailed,
        DeadLetterReason::MaxDeliveries,
    ];

    /// The reason named `name` (its snake_case name), if any.
    pub fn parse(name: &str) -> Option<DeadLetterReason> {
        DeadLetterReason::ALL
            .into_iter()
            .find(|r| r.as_str() == name)
    }

    /// The snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::Malformed => "malformed",
            DeadLetterReason::UnknownMajor => "unknown_major",
            DeadLetterReason::UnknownType => "unknown_type",
            DeadLetterReason::SchemaInvalid => "schema_invalid",
            DeadLetterReason::StaleEpoch => "stale_epoch",
            DeadLetterReason::HandlerFailed => "handler_failed",
            DeadLetterReason::MaxDeliveries => "max_deliveries",
        }
    }
}

impl fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is published on `{prefix}.deadletter.{reason}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Why.
    pub reason: DeadLetterReason,
    /// The details, for people (the decode error, the violated rule, the handler's error).
    pub detail: String,
    /// The consumer that gave up.
    pub consumer: String,
    /// The subject the event arrived on.
    pub subject: String,
    /// The event's stream sequence.
    pub stream_sequence: u64,
    /// How many times it was delivered.
    pub delivered: u32,
    /// The decoded envelope, when it could be decoded.
    pub envelope: Option<Envelope>,
    /// The raw bytes as (lossy) UTF-8, when it could not.
    pub raw: Option<String>,
}

impl DeadLetter {
    /// The `Nats-Msg-Id` of the dead letter: one per consumer and stream position, so a
    /// consumer that dead-letters the same delivery twice (crash before term) publishes once.
    pub fn message_id(&self) -> String {
        format!("dl.{}.{}", self.consumer, self.stream_sequence)
    }
}
