//! Ordering and duplicate decisions for consumers: pure functions over what was applied.
//!
//! A consumer keeps, per shard, the highest epoch it applied there (the shard's high-water
//! epoch); per ordering key, the highest `(epoch, sequence)` it applied (an [`OrderMark`]); the
//! `event_id`s of applied events without a key; and at most one hold per key: the stream
//! position of an event whose handler failed, which later events of that key must wait behind.
//! [`decide`] and [`decide_unkeyed`] turn that record and one delivered event into what to do;
//! the consumer stores the record in the same transaction as the handler's effect.
//!
//! The epoch is a fencing token of the shard, not of the key: once an event of epoch 10 was
//! applied on a shard, an event of epoch 9 on that shard comes from an owner that lost it,
//! whatever its key, and with or without a key. It is stale ([`ApplyDecision::StaleShardEpoch`]).
//!
//! ```
//! use cluster_core::event::{decide, decide_unkeyed, ApplyDecision, KeyRecord, OrderMark, EventPosition};
//! use cluster_core::ids::FencingToken;
//!
//! let applied = KeyRecord { applied: Some(OrderMark::new(FencingToken::new(5), 10)), ..KeyRecord::default() };
//! let shard = Some(FencingToken::new(5));
//! let next = EventPosition { mark: OrderMark::new(FencingToken::new(5), 11), stream_sequence: 40 };
//! assert_eq!(decide(shard, &applied, &next), ApplyDecision::Apply);
//! let old_owner = EventPosition { mark: OrderMark::new(FencingToken::new(4), 99), stream_sequence: 41 };
//! assert!(matches!(decide(shard, &applied, &old_owner), ApplyDecision::StaleShardEpoch { .. }));
//! // Another key, or no key at all: still stale on this shard.
//! assert!(matches!(decide(shard, &KeyRecord::default(), &old_owner), ApplyDecision::StaleShardEpoch { .. }));
//! assert!(matches!(decide_unkeyed(shard, FencingToken::new(4), false), ApplyDecision::StaleShardEpoch { .. }));
//! ```

use std::cmp::Ordering;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::Serialize;

use crate::ids::FencingToken;

/// The position of an event in its key's order: the publisher's epoch, then its sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OrderMark {
    /// The publisher's fencing token for the key's shard.
    pub epoch: FencingToken,
    /// The publisher's sequence for the key.
    pub sequence: u64,
}

impl OrderMark {
    /// A mark.
    pub const fn new(epoch: FencingToken, sequence: u64) -> OrderMark {
        OrderMark { epoch, sequence }
    }
}

impl PartialOrd for OrderMark {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrderMark {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.epoch, self.sequence).cmp(&(other.epoch, other.sequence))
    }
}

impl fmt::Display for OrderMark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({}, {})", self.epoch, self.sequence)
    }
}

/// What a consumer has recorded for one ordering key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyRecord {
    /// The highest mark applied.
    pub applied: Option<OrderMark>,
    /// The stream sequence of an event of this key whose handler failed and is being retried.
    pub held_at: Option<u64>,
}

/// Where a delivered keyed event stands: its mark and its position in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPosition {
    /// The event's `(epoch, sequence)`.
    pub mark: OrderMark,
    /// Its sequence in the stream (publication order).
    pub stream_sequence: u64,
}

/// What to do with one delivered event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyDecision {
    /// Run the handler and record the event in the same transaction.
    Apply,
    /// Already applied (or superseded within the same epoch): acknowledge, do nothing.
    Duplicate,
    /// Published under an epoch older than one already applied for the key: a stale owner's
    /// event. Dead-letter it as `stale_epoch`; never apply it, never drop it silently.
    StaleEpoch {
        /// The mark already applied.
        applied: OrderMark,
    },
    /// Published under an epoch older than the shard's high-water epoch (an event of a newer
    /// owner of the shard was applied, for any key or none): a stale owner's event. Dead-letter
    /// it as `stale_epoch`; never apply it, never drop it silently.
    StaleShardEpoch {
        /// The shard's high-water epoch.
        high_water: FencingToken,
    },
    /// An earlier event of the key failed and is being retried: wait behind it.
    HeldBehind {
        /// The stream sequence of the event being retried.
        blocker: u64,
    },
}

/// Whether `epoch` is below the shard's high-water epoch.
fn below_high_water(
    shard_high_water: Option<FencingToken>,
    epoch: FencingToken,
) -> Option<ApplyDecision> {
    match shard_high_water {
        Some(high_water) if epoch < high_water => {
            Some(ApplyDecision::StaleShardEpoch { high_water })
        }
        _ => None,
    }
}

/// Decides what to do with a keyed event given its shard's high-water epoch and its key's
/// record.
///
/// In this order: an event at or below the key's mark under the same epoch was applied already
/// (`Duplicate`, whatever happened since); an epoch below the shard's high-water is stale; a
/// hold on an earlier position makes it wait; an epoch below the key's is stale; else apply.
pub fn decide(
    shard_high_water: Option<FencingToken>,
    record: &KeyRecord,
    event: &EventPosition,
) -> ApplyDecision {
    if let Some(applied) = record.applied
        && event.mark.epoch == applied.epoch
        && event.mark <= applied
    {
        return ApplyDecision::Duplicate;
    }
    if let Some(stale) = below_high_water(shard_high_water, event.mark.epoch) {
        return stale;
    }
    if let Some(blocker) = record.held_at
        && blocker < event.stream_sequence
    {
        return ApplyDecision::HeldBehind { blocker };
    }
    match record.applied {
        Some(applied) if event.mark.epoch < applied.epoch => ApplyDecision::StaleEpoch { applied },
        _ => ApplyDecision::Apply,
    }
}

/// Decides what to do with an event without an ordering key, given its shard's high-water
/// epoch, its epoch, and whether its id was seen.
pub fn decide_unkeyed(
    shard_high_water: Option<FencingToken>,
    epoch: FencingToken,
    seen: bool,
) -> ApplyDecision {
    if seen {
        return ApplyDecision::Duplicate;
    }
    below_high_water(shard_high_water, epoch).unwrap_or(ApplyDecision::Apply)
}

/// What a consumer does after a handler failure or while an event is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Ask for redelivery after this delay.
    RetryAfter(Duration),
    /// Give up: dead-letter the event with this reason and terminate it.
    DeadLetter(crate::event::dead_letter::DeadLetterReason),
}

/// How often and how patiently a consumer retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedeliveryPolicy {
    /// Handler attempts before an event is dead-lettered as `handler_failed`.
    pub handler_attempts: u32,
    /// JetStream's `max_deliver`: the consumer dead-letters before reaching it.
    pub max_deliver: u32,
    /// The first redelivery delay.
    pub initial_delay: Duration,
    /// The largest redelivery delay.
    pub max_delay: Duration,
}

impl Default for RedeliveryPolicy {
    fn default() -> Self {
        RedeliveryPolicy {
            handler_attempts: 5,
            max_deliver: 50,
            initial_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RedeliveryPolicy {
    /// The delay before delivery `delivered + 1`: doubling from `initial_delay`, capped.
    pub fn delay(&self, delivered: u32) -> Duration {
        let shift = delivered.saturating_sub(1).min(20);
        self.initial_delay
            .saturating_mul(1u32 << shift)
            .min(self.max_delay)
    }

    /// After the handler failed on delivery number `delivered` (1-based).
    pub fn after_failure(&self, delivered: u32) -> RetryDecision {
        use crate::event::dead_letter::DeadLetterReason;
        if delivered >= self.handler_attempts {
            RetryDecision::DeadLetter(DeadLetterReason::HandlerFailed)
        } else if delivered + 1 >= self.max_deliver {
            RetryDecision::DeadLetter(DeadLetterReason::MaxDeliveries)
        } else {
            RetryDecision::RetryAfter(self.delay(delivered))
        }
    }

    /// For an event held behind a failing one, on delivery number `delivered`.
    pub fn while_held(&self, delivered: u32) -> RetryDecision {
        use crate::event::dead_letter::DeadLetterReason;
        if delivered + 1 >= self.max_deliver {
            RetryDecision::DeadLetter(DeadLetterReason::MaxDeliveries)
        } else {
            RetryDecision::RetryAfter(self.delay(delivered).min(self.initial_delay * 4))
        }
    }
}

#[cfg(test)]
#[path = "ordering_test.rs"]
mod tests;
