//! The ring reconciler: what one node must do about each partition, decided from what it sees.
//!
//! Pure, like the rest of the core: the runtime gathers a [`RingObservation`] (the target
//! assignment, the claims the store shows, what this node holds, its session's lease), calls
//! [`reconcile`], and executes the [`RingCommand`]s it returns, in order. A graceful handoff
//! ([`RingCommand::Handoff`]) is executed as the source-side steps of the
//! [`PartitionMove`](super::PartitionMove) it names, the same steps the planner's safety property
//! test runs.
//!
//! The rules, per partition:
//!
//! | this node | the store shows | session | command |
//! |---|---|---|---|
//! | holds it, serving | our claim, same token | the claim's lease | `Handoff` if the target is another node |
//! | holds it (serving or handing off) | anything | another lease, or none | `Drop` |
//! | holds it, serving | not our claim | the claim's lease | `Drop` |
//! | holds it, handing off | not our claim | the claim's lease | `Cut` (the handoff task finishes it) |
//! | does not hold it | our claim under our live lease | live | `Adopt` if targeted here and newer than any token it let go of, else `ReleaseStray` |
//! | does not hold it | no claim | live | `Claim` if targeted here and not backing off |
//!
//! So a claim or release whose outcome was lost in transit is reconciled from the store's view
//! (adopted, or released again), and nothing is ever claimed while the store shows an owner:
//! the store's create-if-absent claim, bound to the owner's lease, is what makes two valid owners
//! impossible; the reconciler only ever stops holding what it can no longer prove.

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use crate::coordination::LeaseId;
use crate::ids::FencingToken;
use crate::ids::NodeId;
use crate::ids::PartitionId;

/// A claim as the store shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenClaim {
    /// The owner.
    pub owner: NodeId,
    /// The claim's fencing token.
    pub token: FencingToken,
    /// The lease the claim is bound to.
    pub lease: LeaseId,
}

/// A partition this node holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldPartition {
    /// The token it holds the partition with.
    pub token: FencingToken,
    /// The session lease its claim was made under.
    pub lease: LeaseId,
    /// Whether a handoff of it is under way.
    pub handing_off: bool,
}

/// What one node sees of a ring.
#[derive(Debug, Clone, Copy)]
pub struct RingObservation<'a> {
    /// This node.
    pub me: &'a NodeId,
    /// The lease of this node's live session, if it has one.
    pub session: Option<&'a LeaseId>,
    /// The target owner of each partition (index = partition).
    pub target: &'a [Option<NodeId>],
    /// The claim of each partition as the store shows it (index = partition).
    pub claims: &'a [Option<SeenClaim>],
    /// The partitions this node holds.
    pub held: &'a BTreeMap<u32, HeldPartition>,
    /// Partitions this node must not claim now (a recent `on_own` failure).
    pub backing_off: &'a BTreeSet<u32>,
    /// Per partition, the newest token this node has let go of (handed off, dropped, released):
    /// a claim at or below it is never adopted again, even if a lagging view still shows it.
    pub retired: &'a BTreeMap<u32, FencingToken>,
}

/// What the runtime must do for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RingCommand {
    /// The authority to hold the partition is gone (the session was lost or replaced, or the
    /// store no longer shows the claim): stop its work now, forget it, `on_release(lost)`.
    /// Nothing is released: the claim is not ours to release any more, or ends with its lease.
    Drop {
        /// The partition.
        partition: PartitionId,
        /// The token it was held with.
        token: FencingToken,
    },
    /// A partition being handed off whose claim the store no longer shows: stop its work now;
    /// the handoff finishes its own steps.
    Cut {
        /// The partition.
        partition: PartitionId,
    },
    /// The partition is free and targeted here: claim it.
    Claim {
        /// The partition.
        partition: PartitionId,
    },
    /// The store shows our claim under our live lease, and we do not hold it (the claim's reply
    /// was lost): hold and serve it with that claim.
    Adopt {
        /// The partition.
        partition: PartitionId,
        /// The claim's token.
        token: FencingToken,
    },
    /// The store shows our claim under our live lease that we neither hold nor want (a claim
    /// whose reply was lost, a release lost on the way): release it with its token. Always
    /// safe: the store deletes the claim only while it still carries that token.
    ReleaseStray {
        /// The partition.
        partition: PartitionId,
        /// The claim's token.
        token: FencingToken,
    },
    /// The target gives the partition to another node: hand it off gracefully.
    Handoff {
        /// The partition.
        partition: PartitionId,
        /// The token it is held with.
        token: FencingToken,
        /// The target owner.
        to: NodeId,
    },
}

/// The commands that bring this node's holdings in line with `view`, losses first.
pub fn reconcile(view: &RingObservation<'_>) -> Vec<RingCommand> {
    let mut losses = Vec::new();
    let mut rest = Vec::new();
    let partitions = view.target.len().max(view.claims.len());
    for p in 0..partitions {
        let partition = PartitionId(p as u32);
        let target = view.target.get(p).and_then(Option::as_ref);
        let claim = view.claims.get(p).and_then(Option::as_ref);
        match view.held.get(&(p as u32)) {
            Some(held) => {
                let session_ok = view.session == Some(&held.lease);
                let store_ok = claim.is_some_and(|c| &c.owner == view.me && c.token == held.token);
                if !session_ok || (!store_ok && !held.handing_off) {
                    losses.push(RingCommand::Drop {
                        partition,
                        token: held.token,
                    });
                } else if !store_ok {
                    losses.push(RingCommand::Cut { partition });
                } else if !held.handing_off
                    && let Some(to) = target.filter(|t| *t != view.me)
                {
                    rest.push(RingCommand::Handoff {
                        partition,
                        token: held.token,
                        to: to.clone(),
                    });
                }
            }
            None => {
                let Some(lease) = view.session else { continue };
                let wanted = target == Some(view.me) && !view.backing_off.contains(&(p as u32));
                let retired = view.retired.get(&(p as u32)).copied();
                match claim {
                    Some(c) if &c.owner == view.me && &c.lease == lease => {
                        let adoptable = retired.is_none_or(|r| c.token > r);
                        rest.push(if wanted && adoptable {
                            RingCommand::Adopt {
                                partition,
                                token: c.token,
                            }
                        } else {
                            RingCommand::ReleaseStray {
                                partition,
                                token: c.token,
                            }
                        });
                    }
                    Some(_) => {}
                    None if wanted => rest.push(RingCommand::Claim { partition }),
                    None => {}
                }
            }
        }
    }
    losses.extend(rest);
    losses
}

#[cfg(test)]
#[path = "ring_reconciler_test.rs"]
mod tests;
