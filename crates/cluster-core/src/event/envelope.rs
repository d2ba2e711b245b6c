//! The versioned event envelope: what every event looks like on the wire (JSON).
//!
//! ```json
//! { "event_id": "0190f7c2-…", "event_type": "task.started", "schema_version": "2.1",
//!   "occurred_at": "2026-01-31T12:00:00.000Z", "node_id": "node-1", "shard": 7,
//!   "ordering_key": "task-42", "sequence": 1031, "epoch": 88,
//!   "causation_id": null, "correlation_id": "0190f7c1-…", "payload": { … } }
//! ```
//!
//! `(epoch, sequence)` orders the events of one ordering key: `epoch` is the publisher's fencing
//! token for the key's shard (a new owner has a larger one), `sequence` grows with every event
//! of the key the owner publishes (gaps allowed). Events without an ordering key are unordered
//! and deduplicated by `event_id`.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::Deserialize;
use serde::Serialize;

use crate::event::event_id::EventId;
use crate::event::subject::LifecycleKind;
use crate::event::subject::Subject;
use crate::event::subject::SubjectError;
use crate::event::subject::SubjectToken;
use crate::event::subject::Subjects;
use crate::event::timestamp::Timestamp;
use crate::ids::FencingToken;
use crate::ids::NodeId;
use crate::ids::PartitionId;

/// The longest ordering key accepted, in bytes.
pub const MAX_ORDERING_KEY_LEN: usize = 256;

/// Why bytes are not a valid envelope.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Not JSON, or JSON without the envelope's fields and types.
    #[error("malformed envelope: {0}")]
    Malformed(#[source] Arc<serde_json::Error>),
    /// The ordering key is empty or too long.
    #[error("ordering key of {len} bytes is invalid: it must be 1..={max} bytes")]
    BadOrderingKey {
        /// Its length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// The envelope's major version is not the one in its subject.
    #[error("envelope says major {envelope} but arrived on {subject} (major {subject_major:?})")]
    SubjectMismatch {
        /// The envelope's major.
        envelope: u32,
        /// The subject.
        subject: String,
        /// The subject's major, if it has one.
        subject_major: Option<u32>,
    },
}

impl From<serde_json::Error> for EnvelopeError {
    fn from(e: serde_json::Error) -> Self {
        EnvelopeError::Malformed(Arc::new(e))
    }
}

/// A string that is not `major.minor`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a schema version (MAJOR.MINOR)")]
pub struct SchemaVersionError {
    /// The rejected value.
    pub value: String,
}

/// A payload schema's version: a new major breaks compatibility, a new minor does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SchemaVersion {
    /// Incremented for a breaking change; part of the subject.
    pub major: u32,
    /// Incremented for a compatible change.
    pub minor: u32,
}

impl SchemaVersion {
    /// `major.minor`.
    pub const fn new(major: u32, minor: u32) -> SchemaVersion {
        SchemaVersion { major, minor }
    }
}

impl fmt::Display for SchemaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl FromStr for SchemaVersion {
    type Err = SchemaVersionError;
    fn from_str(s: &str) -> Result<SchemaVersion, SchemaVersionError> {
        let err = || SchemaVersionError {
            value: s.to_owned(),
        };
        let (major, minor) = s.split_once('.').ok_or_else(err)?;
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(major) || !digits(minor) {
            return Err(err());
        }
        Ok(SchemaVersion {
            major: major.parse().map_err(|_| err())?,
            minor: minor.parse().map_err(|_| err())?,
        })
    }
}

impl TryFrom<String> for SchemaVersion {
    type Error = SchemaVersionError;
    fn try_from(value: String) -> Result<SchemaVersion, SchemaVersionError> {
        value.parse()
    }
}

impl From<SchemaVersion> for String {
    fn from(v: SchemaVersion) -> String {
        v.to_string()
    }
}

/// What an event is about: a lifecycle kind, or the platform itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventFamily {
    /// A lifecycle event, published per shard.
    Lifecycle(LifecycleKind),
    /// A platform-wide event.
    Platform,
}

/// An event's type, `{family}.{name}` on the wire: `task.started`, `platform.node_joined`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EventType {
    family: EventFamily,
    name: SubjectToken,
}

impl EventType {
    /// A lifecycle event type.
    pub fn lifecycle(kind: LifecycleKind, name: &str) -> Result<EventType, SubjectError> {
        Ok(EventType {
            family: EventFamily::Lifecycle(kind),
            name: SubjectToken::new(name)?,
        })
    }

    /// A platform event type.
    pub fn platform(name: &str) -> Result<EventType, SubjectError> {
        Ok(EventType {
            family: EventFamily::Platform,
            name: SubjectToken::new(name)?,
        })
    }

    /// The family.
    pub fn family(&self) -> EventFamily {
        self.family
    }

    /// The name within the family (the subject's last level).
    pub fn name(&self) -> &SubjectToken {
        &self.name
    }

    /// The subject an event of this type, major and shard is published on.
    pub fn subject(&self, subjects: &Subjects, major: u32, shard: PartitionId) -> Subject {
        match self.family {
            EventFamily::Lifecycle(kind) => subjects.lifecycle(major, kind, shard, &self.name),
            EventFamily::Platform => subjects.platform(major, &self.name),
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.family {
            EventFamily::Lifecycle(kind) => write!(f, "{kind}.{}", self.name),
            EventFamily::Platform => write!(f, "platform.{}", self.name),
        }
    }
}

impl FromStr for EventType {
    type Err = SubjectError;
    fn from_str(s: &str) -> Result<EventType, SubjectError> {
        let bad = || SubjectError::NotInTaxonomy {
            subject: s.to_owned(),
            expected: "{workflow|task|node|ownership|job|platform}.{name}",
        };
        let (family, name) = s.split_once('.').ok_or_else(bad)?;
        if family == "platform" {
            return EventType::platform(name);
        }
        let kind = LifecycleKind::parse(family).ok_or_else(bad)?;
        EventType::lifecycle(kind, name)
    }
}

impl TryFrom<String> for EventType {
    type Error = SubjectError;
    fn try_from(value: String) -> Result<EventType, SubjectError> {
        value.parse()
    }
}

impl From<EventType> for String {
    fn from(t: EventType) -> String {
        t.to_string()
    }
}

/// One event as it travels: identity, type and version, origin, order, causality, payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// Unique id (UUIDv7); the dedup key of events without an ordering key.
    pub event_id: EventId,
    /// What happened.
    pub event_type: EventType,
    /// The payload schema's version.
    pub schema_version: SchemaVersion,
    /// When it happened, by the publisher's wall clock (informational).
    pub occurred_at: Timestamp,
    /// The publishing node.
    pub node_id: NodeId,
    /// The shard (partition) the event belongs to.
    pub shard: PartitionId,
    /// The key whose events are ordered, if any (a workflow id, a task id).
    pub ordering_key: Option<String>,
    /// The publisher's sequence for the ordering key: grows, may have gaps.
    pub sequence: u64,
    /// The publisher's fencing token for the shard when it published: the epoch consumers
    /// order and refuse by ("epoch" means this token and nothing else in the platform).
    pub epoch: FencingToken,
    /// The event that caused this one.
    pub causation_id: Option<EventId>,
    /// The request or workflow this event belongs to.
    pub correlation_id: Option<EventId>,
    /// The event's data, valid under the schema of `(event_type, schema_version.major)`.
    pub payload: serde_json::Value,
}

impl Envelope {
    /// The JSON bytes of the envelope.
    pub fn encode(&self) -> Result<Vec<u8>, EnvelopeError> {
        Ok(serde_json::to_vec(self)?)
    }

    /// Decodes and checks an envelope.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        let envelope: Envelope = serde_json::from_slice(bytes)?;
        envelope.check()?;
        Ok(envelope)
    }

    /// Decodes an envelope and checks that it arrived on a subject of its major version.
    pub fn decode_from(subject: &str, bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        let envelope = Envelope::decode(bytes)?;
        let subject_major = subject
            .split('.')
            .nth(1)
            .and_then(|v| v.strip_prefix('v'))
            .and_then(|m| m.parse().ok());
        if subject_major != Some(envelope.schema_version.major) {
            return Err(EnvelopeError::SubjectMismatch {
                envelope: envelope.schema_version.major,
                subject: subject.to_owned(),
                subject_major,
            });
        }
        Ok(envelope)
    }

    /// Checks the rules serde cannot express.
    pub fn check(&self) -> Result<(), EnvelopeError> {
        if let Some(key) = &self.ordering_key
            && (key.is_empty() || key.len() > MAX_ORDERING_KEY_LEN)
        {
            return Err(EnvelopeError::BadOrderingKey {
                len: key.len(),
                max: MAX_ORDERING_KEY_LEN,
            });
        }
        Ok(())
    }

    /// The subject this envelope is published on.
    pub fn subject(&self, subjects: &Subjects) -> Subject {
        self.event_type
            .subject(subjects, self.schema_version.major, self.shard)
    }

    /// The `Nats-Msg-Id` of this envelope: the event id, suffixed with the major during a
    /// dual-publish window (JetStream dedups per stream, so both majors need distinct ids).
    pub fn message_id(&self, dual_publish: bool) -> String {
        if dual_publish {
            self.event_id
                .message_id_for_major(self.schema_version.major)
        } else {
            self.event_id.to_string()
        }
    }
}

#[cfg(test)]
#[path = "envelope_test.rs"]
mod tests;
