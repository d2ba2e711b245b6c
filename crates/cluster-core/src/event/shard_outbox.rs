//! The `ShardOutbox` trait: what a partition's owner empties before it lets the partition go.

use std::time::Duration;

use async_trait::async_trait;

use crate::ids::FencingToken;
use crate::ids::PartitionId;

/// Events accepted for a shard but not yet published (a publisher's durable outbox, filled
/// while the bus is unreachable). A graceful handoff drains the moving partition's shard before
/// the release, so the next owner's events, with their larger epoch, come after every event of
/// the old owner; consumers would otherwise dead-letter the late ones as `stale_epoch`.
#[async_trait]
pub trait ShardOutbox: Send + Sync {
    /// Waits until nothing of `shard` waits, at most `limit`.
    async fn drain_shard(&self, shard: PartitionId, limit: Duration) -> Result<(), DrainTimeout>;

    /// Ends this owner's claim on `shard` at `epoch`, after its work stopped and before the
    /// claim is released: events of `shard` under `epoch` or older are refused from now on,
    /// and this waits (at most `limit`) until none is in flight. The default does nothing, for
    /// outboxes that publish nothing directly.
    async fn end_claim(
        &self,
        shard: PartitionId,
        epoch: FencingToken,
        limit: Duration,
    ) -> Result<(), DrainTimeout> {
        let _ = (shard, epoch, limit);
        Ok(())
    }
}

/// Why a graceful handoff could not drain a shard's outbox.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("shard {shard} still has {remaining} events in the outbox after {waited:?}")]
pub struct DrainTimeout {
    /// The shard.
    pub shard: PartitionId,
    /// Events still waiting.
    pub remaining: usize,
    /// How long it waited.
    pub waited: Duration,
}
