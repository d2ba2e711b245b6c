//! Why a publish was not accepted.

use cluster_core::error::Retryable;
use cluster_core::event::BusError;
use cluster_core::event::EnvelopeError;
use cluster_core::event::RouteError;
use cluster_core::ids::PartitionId;

use crate::outbox::OutboxError;

/// Why `Publisher::publish` did not accept an event. Nothing was published or queued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The claim the event is published under ended: its renew deadline passed, or the owner
    /// ended it (`Publisher::end_claim`). Checked before every attempt; if an attempt was in
    /// flight when the claim ended, the event may be in the stream anyway, where consumers
    /// dead-letter it as `stale_epoch` once the next owner has published.
    #[error(
        "claim on shard {shard} has ended (past its renew deadline or released); event refused"
    )]
    ClaimExpired {
        /// The shard.
        shard: PartitionId,
    },
    /// The payload fails its schema, or the schema is unknown.
    #[error("event refused: {0}")]
    Invalid(#[from] RouteError),
    /// The envelope cannot be built (bad ordering key).
    #[error("event refused: {0}")]
    Envelope(#[from] EnvelopeError),
    /// The encoded event is larger than the bus accepts.
    #[error("event of {size} bytes exceeds the bus limit of {max} bytes")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// NATS is unreachable and the outbox is full.
    #[error("NATS is unreachable and the outbox is full ({capacity} events)")]
    OutboxFull {
        /// The outbox capacity.
        capacity: usize,
    },
    /// The bus refused the event for a reason retrying will not fix.
    #[error("event bus refused the event: {0}")]
    Bus(#[source] BusError),
    /// The outbox could not be written.
    #[error("outbox failed: {0}")]
    Outbox(#[source] OutboxError),
    /// The publisher was closed.
    #[error("publisher is closed")]
    Closed,
}

impl Retryable for PublishError {
    /// Retryable while waiting can help: the bus or the outbox's room may come back. A closed
    /// publisher, an ended claim or an invalid event stay refused.
    fn is_retryable(&self) -> bool {
        match self {
            PublishError::OutboxFull { .. } => true,
            PublishError::Outbox(e) => e.is_retryable(),
            // The publisher retries an unavailable bus itself: what reaches the caller is final.
            PublishError::Bus(_)
            | PublishError::ClaimExpired { .. }
            | PublishError::Invalid(_)
            | PublishError::Envelope(_)
            | PublishError::TooLarge { .. }
            | PublishError::Closed => false,
        }
    }

    fn as_metrics_label(&self) -> &'static str {
        match self {
            PublishError::ClaimExpired { .. } => "claim_expired",
            PublishError::Invalid(_) => "invalid",
            PublishError::Envelope(_) => "envelope",
            PublishError::TooLarge { .. } => "too_large",
            PublishError::OutboxFull { .. } => "outbox_full",
            PublishError::Bus(_) => "bus",
            PublishError::Outbox(_) => "outbox",
            PublishError::Closed => "closed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_waiting_for_room_is_retryable() {
        assert!(PublishError::OutboxFull { capacity: 1 }.is_retryable());
        assert!(PublishError::Outbox(OutboxError::Full { capacity: 1 }).is_retryable());
        assert!(!PublishError::Closed.is_retryable());
        let ended = PublishError::ClaimExpired {
            shard: PartitionId(3),
        };
        assert!(!ended.is_retryable());
        assert_eq!(ended.as_metrics_label(), "claim_expired");
    }
}
