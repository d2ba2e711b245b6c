//! `OutgoingEvent`: what a caller hands the publisher; the publisher fills in identity and order.

use crate::event::envelope::EventType;
use crate::event::envelope::SchemaVersion;
use crate::event::event_id::EventId;
use crate::ids::FencingToken;
use crate::ids::PartitionId;
use crate::time::MonoTime;

/// An event to publish on behalf of the owner of `shard`.
///
/// The publisher assigns `event_id`, `sequence`, `occurred_at` and `node_id`, validates the
/// payload against its schema, and refuses the event once `valid_until` has passed: an owner
/// whose claim may have expired must not publish, nor queue events for later.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingEvent {
    /// What happened.
    pub event_type: EventType,
    /// The payload's schema version.
    pub schema_version: SchemaVersion,
    /// The shard (partition) the event belongs to.
    pub shard: PartitionId,
    /// The key whose events are ordered, if any.
    pub ordering_key: Option<String>,
    /// The owner's fencing token for `shard`.
    pub epoch: FencingToken,
    /// The claim's renew deadline (`Session::safe_until`) on the monotonic clock.
    pub valid_until: MonoTime,
    /// The event that caused this one.
    pub causation_id: Option<EventId>,
    /// The request or workflow this event belongs to.
    pub correlation_id: Option<EventId>,
    /// The payload.
    pub payload: serde_json::Value,
    /// During a dual-publish window: the same event under a second major, with its payload.
    pub also_as: Option<(SchemaVersion, serde_json::Value)>,
}
