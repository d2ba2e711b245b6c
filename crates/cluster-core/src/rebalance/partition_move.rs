//! One partition's handoff and its steps.

use serde::Deserialize;
use serde::Serialize;

use super::ownership_table::PartitionOwner;
use crate::ids::FencingToken;
use crate::ids::NodeId;
use crate::ids::PartitionId;

/// Why a partition moves; decides its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MoveKind {
    /// The partition has no owner: claim it.
    Initial,
    /// The owner failed or is not a member: wait for its lease to expire, then claim.
    Failover,
    /// The owner is leaving gracefully: full handoff.
    Leave,
    /// The receiver owned nothing before this plan (a new node): full handoff.
    Join,
    /// Both nodes stay; the partition evens out load: full handoff.
    Rebalance,
}

/// What one step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum StepAction {
    /// The old owner stops taking new work for the partition.
    StopIntake,
    /// The old owner finishes its in-flight work.
    Drain,
    /// The old owner hands its queued work over to the new owner.
    TransferQueued,
    /// The old owner releases its claim, conditional on still holding `token`.
    Release {
        /// The token being released.
        token: FencingToken,
    },
    /// The new owner waits until the failed owner's lease (claim `token`) has expired.
    AwaitLeaseExpiry {
        /// The failed owner's token.
        token: FencingToken,
    },
    /// The new owner claims the partition with a token larger than `above`.
    Claim {
        /// The newest token known for the partition.
        above: FencingToken,
    },
    /// The new owner takes over queued work the failed owner left, under its new token.
    AdoptQueued,
}

/// One step of a handoff: which node does what to which partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HandoffStep<'a> {
    /// The partition handed off.
    pub partition: PartitionId,
    /// The node that performs the step.
    pub actor: &'a NodeId,
    /// What it does.
    pub action: StepAction,
}

/// A partition moving from its current owner (if any) to a new one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PartitionMove {
    /// The partition.
    pub partition: PartitionId,
    /// The current owner and its token, if any.
    pub from: Option<PartitionOwner>,
    /// The new owner.
    pub to: NodeId,
    /// Why it moves.
    pub kind: MoveKind,
}

impl PartitionMove {
    /// The newest token known for the partition (the claim must be larger).
    pub fn released_token(&self) -> FencingToken {
        self.from.as_ref().map_or(FencingToken::ZERO, |f| f.token)
    }

    /// The steps of this handoff, in the order they must run. Does not allocate.
    pub fn steps(&self) -> impl Iterator<Item = HandoffStep<'_>> + '_ {
        let token = self.released_token();
        let script: &'static [Script] = match (&self.from, self.kind) {
            (None, _) | (_, MoveKind::Initial) => INITIAL,
            (Some(_), MoveKind::Failover) => FAILOVER,
            (Some(_), _) => GRACEFUL,
        };
        script.iter().map(move |step| {
            let (action, by_old_owner) = match step {
                Script::StopIntake => (StepAction::StopIntake, true),
                Script::Drain => (StepAction::Drain, true),
                Script::TransferQueued => (StepAction::TransferQueued, true),
                Script::Release => (StepAction::Release { token }, true),
                Script::AwaitLeaseExpiry => (StepAction::AwaitLeaseExpiry { token }, false),
                Script::Claim => (StepAction::Claim { above: token }, false),
                Script::AdoptQueued => (StepAction::AdoptQueued, false),
            };
            let actor = match (&self.from, by_old_owner) {
                (Some(from), true) => &from.node,
                _ => &self.to,
            };
            HandoffStep {
                partition: self.partition,
                actor,
                action,
            }
        })
    }
}

/// The shape of a step before tokens and actors are filled in.
#[derive(Debug, Clone, Copy)]
enum Script {
    StopIntake,
    Drain,
    TransferQueued,
    Release,
    AwaitLeaseExpiry,
    Claim,
    AdoptQueued,
}

/// Join, leave and rebalance: the old owner is alive and hands off in full.
const GRACEFUL: &[Script] = &[
    Script::StopIntake,
    Script::Drain,
    Script::TransferQueued,
    Script::Release,
    Script::Claim,
];

/// The old owner is gone: nothing can be drained or released; its lease must run out first.
const FAILOVER: &[Script] = &[Script::AwaitLeaseExpiry, Script::Claim, Script::AdoptQueued];

/// Nobody owns the partition.
const INITIAL: &[Script] = &[Script::Claim];
