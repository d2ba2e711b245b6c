//! The planner: targets and the fewest moves that reach them.

use std::collections::HashMap;

use super::member::Member;
use super::member::MemberStatus;
use super::ownership_table::OwnershipTable;
use super::partition_move::MoveKind;
use super::partition_move::PartitionMove;
use super::plan::RebalancePlan;
use super::targets::Share;
use super::targets::fair_targets;
use crate::assignment::Assignment;
use crate::ids::NodeId;
use crate::ids::PartitionId;

/// Limits a plan must respect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PlanConstraints {
    /// The most handoffs in flight at once (wave size); at least 1.
    pub max_concurrent_moves: usize,
}

impl Default for PlanConstraints {
    /// 16 concurrent moves.
    fn default() -> Self {
        PlanConstraints {
            max_concurrent_moves: 16,
        }
    }
}

/// A plan that cannot be made from the given input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// `max_concurrent_moves` is zero.
    #[error("max_concurrent_moves must be at least 1")]
    ZeroConcurrency,
    /// The same node appears twice in the membership.
    #[error("node {node} appears more than once in the membership")]
    DuplicateMember {
        /// The node.
        node: NodeId,
    },
    /// The desired assignment has a different partition count than the current one.
    #[error("desired assignment has {desired} partitions but the current one has {current}")]
    PartitionCountMismatch {
        /// Partitions in the current ownership table.
        current: u32,
        /// Partitions in the desired assignment.
        desired: u32,
    },
    /// The desired assignment leaves a partition without an owner.
    #[error("desired assignment leaves {partition} without an owner")]
    UnassignedPartition {
        /// The partition.
        partition: PartitionId,
    },
    /// The desired assignment gives a partition to a node that may not own partitions.
    #[error("desired assignment gives {partition} to {node}, which is not an active member")]
    IneligibleOwner {
        /// The partition.
        partition: PartitionId,
        /// The node.
        node: NodeId,
    },
    /// There are partitions but no active member with a weight above zero.
    #[error("{partitions} partitions but no active member with weight above zero")]
    NoEligibleMember {
        /// How many partitions needed an owner.
        partitions: u32,
    },
}

/// Computes [`RebalancePlan`]s; pure and deterministic.
#[derive(Debug, Clone, Copy, Default)]
pub struct RebalancePlanner {
    constraints: PlanConstraints,
}

/// A partition waiting for a receiver, with the kind its source side decides.
#[derive(Debug, Clone, Copy)]
struct Outgoing {
    partition: u32,
    /// `None`: decided by the receiver (join or rebalance).
    kind: Option<MoveKind>,
}

impl RebalancePlanner {
    /// A planner with validated constraints.
    pub fn new(constraints: PlanConstraints) -> Result<RebalancePlanner, PlanError> {
        if constraints.max_concurrent_moves == 0 {
            return Err(PlanError::ZeroConcurrency);
        }
        Ok(RebalancePlanner { constraints })
    }

    /// The constraints in force.
    pub fn constraints(&self) -> PlanConstraints {
        self.constraints
    }

    /// Plans the moves from `current` to a weighted fair split over the active `members`.
    pub fn plan(
        &self,
        current: &OwnershipTable,
        members: &[Member],
    ) -> Result<RebalancePlan, PlanError> {
        let (sorted, index) = index_members(members)?;

        // Who holds what now; partitions of non-members and unowned ones are set aside.
        let mut held: Vec<Vec<u32>> = vec![Vec::new(); sorted.len()];
        let mut urgent: Vec<Outgoing> = Vec::new();
        for (p, owner) in current.iter() {
            match owner.map(|o| index.get(&o.node)) {
                None => urgent.push(Outgoing {
                    partition: p.0,
                    kind: Some(MoveKind::Initial),
                }),
                Some(None) => urgent.push(Outgoing {
                    partition: p.0,
                    kind: Some(MoveKind::Failover),
                }),
                Some(Some(&m)) => held[m].push(p.0),
            }
        }

        let eligible: Vec<usize> = (0..sorted.len())
            .filter(|&m| sorted[m].is_eligible())
            .collect();
        if eligible.is_empty() && !current.is_empty() {
            return Err(PlanError::NoEligibleMember {
                partitions: current.len(),
            });
        }
        let shares: Vec<Share> = eligible
            .iter()
            .map(|&m| Share {
                weight: sorted[m].weight,
                current: held[m].len() as u32,
            })
            .collect();
        let mut target = vec![0u32; sorted.len()];
        for (&m, t) in eligible.iter().zip(fair_targets(current.len(), &shares)) {
            target[m] = t;
        }

        // What leaves each node: everything from failed and leaving nodes, the surplus of others.
        let mut leaving: Vec<Outgoing> = Vec::new();
        let mut surplus: Vec<(u32, Outgoing)> = Vec::new();
        for (m, partitions) in held.iter().enumerate() {
            let kind = source_kind(sorted[m]);
            let giving = partitions.len().saturating_sub(target[m] as usize);
            // Keep the lowest ids, give away the highest: stable and cheap to explain.
            let out = partitions[partitions.len() - giving..]
                .iter()
                .map(|&p| Outgoing { partition: p, kind });
            match kind {
                Some(MoveKind::Failover) => urgent.extend(out),
                Some(_) => leaving.extend(out),
                None => surplus.extend(out.map(|o| (m as u32, o))),
            }
        }
        urgent.sort_unstable_by_key(|o| o.partition);

        // Receivers in id order, dealt one partition at a time so each wave spreads out.
        let mut receivers: Vec<(usize, u32)> = eligible
            .iter()
            .filter_map(|&m| {
                let deficit = target[m].saturating_sub(held[m].len() as u32);
                (deficit > 0).then_some((m, deficit))
            })
            .collect();
        let pool = urgent
            .into_iter()
            .chain(leaving)
            .chain(surplus.into_iter().map(|(_, o)| o));
        let mut moves = Vec::new();
        let mut cursor = 0usize;
        for out in pool {
            if receivers.is_empty() {
                break;
            }
            cursor %= receivers.len();
            let (m, deficit) = &mut receivers[cursor];
            let to = &sorted[*m];
            let kind = out.kind.unwrap_or(if held[*m].is_empty() {
                MoveKind::Join
            } else {
                MoveKind::Rebalance
            });
            let p = PartitionId(out.partition);
            moves.push(PartitionMove {
                partition: p,
                from: current.owner(p).cloned(),
                to: to.id.clone(),
                kind,
            });
            *deficit -= 1;
            if *deficit == 0 {
                receivers.remove(cursor);
            } else {
                cursor += 1;
            }
        }

        Ok(RebalancePlan {
            moves,
            max_concurrent: self.constraints.max_concurrent_moves,
            targets: sorted
                .iter()
                .zip(&target)
                .map(|(m, &t)| (m.id.clone(), t))
                .collect(),
        })
    }

    /// Plans the moves from `current` to exactly `desired` (for example a
    /// [`PartitionRing`](crate::ring::PartitionRing) assignment): one move per partition whose
    /// owner differs, with the same handoff steps and wave order as [`RebalancePlanner::plan`].
    pub fn plan_to(
        &self,
        current: &OwnershipTable,
        desired: &Assignment,
        members: &[Member],
    ) -> Result<RebalancePlan, PlanError> {
        if current.len() != desired.len() {
            return Err(PlanError::PartitionCountMismatch {
                current: current.len(),
                desired: desired.len(),
            });
        }
        let (sorted, index) = index_members(members)?;
        let mut held = vec![0u32; sorted.len()];
        for (_, owner) in current.iter() {
            if let Some(&m) = owner.and_then(|o| index.get(&o.node)) {
                held[m] += 1;
            }
        }
        let mut target = vec![0u32; sorted.len()];
        let (mut urgent, mut leaving, mut rest) = (Vec::new(), Vec::new(), Vec::new());
        for (p, want) in desired.iter() {
            let want = want.ok_or(PlanError::UnassignedPartition { partition: p })?;
            let to = index
                .get(want)
                .copied()
                .filter(|&m| sorted[m].is_eligible())
                .ok_or_else(|| PlanError::IneligibleOwner {
                    partition: p,
                    node: want.clone(),
                })?;
            target[to] += 1;
            let from = current.owner(p);
            if from.map(|f| &f.node) == Some(want) {
                continue;
            }
            let kind = match from {
                None => MoveKind::Initial,
                Some(f) => match index.get(&f.node) {
                    None => MoveKind::Failover,
                    Some(&m) => source_kind(sorted[m]).unwrap_or(if held[to] == 0 {
                        MoveKind::Join
                    } else {
                        MoveKind::Rebalance
                    }),
                },
            };
            let bucket = match kind {
                MoveKind::Initial | MoveKind::Failover => &mut urgent,
                MoveKind::Leave => &mut leaving,
                MoveKind::Join | MoveKind::Rebalance => &mut rest,
            };
            bucket.push(PartitionMove {
                partition: p,
                from: from.cloned(),
                to: want.clone(),
                kind,
            });
        }
        urgent.append(&mut leaving);
        urgent.append(&mut rest);
        Ok(RebalancePlan {
            moves: urgent,
            max_concurrent: self.constraints.max_concurrent_moves,
            targets: sorted
                .iter()
                .zip(&target)
                .map(|(m, &t)| (m.id.clone(), t))
                .collect(),
        })
    }
}

/// Members sorted by id, and an index from id to position; refuses duplicates.
fn index_members(members: &[Member]) -> Result<(Vec<&Member>, HashMap<&NodeId, usize>), PlanError> {
    let mut sorted: Vec<&Member> = members.iter().collect();
    sorted.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    if let Some(w) = sorted.windows(2).find(|w| w[0].id == w[1].id) {
        return Err(PlanError::DuplicateMember {
            node: w[0].id.clone(),
        });
    }
    let index = sorted.iter().enumerate().map(|(i, m)| (&m.id, i)).collect();
    Ok((sorted, index))
}

/// The kind of every move out of `member` when its status decides it (it may own nothing),
/// or `None` when it stays and the receiver decides (join or rebalance).
fn source_kind(member: &Member) -> Option<MoveKind> {
    match member.status {
        MemberStatus::Failed => Some(MoveKind::Failover),
        MemberStatus::Leaving => Some(MoveKind::Leave),
        MemberStatus::Active if !member.is_eligible() => Some(MoveKind::Leave),
        MemberStatus::Active => None,
    }
}

#[cfg(test)]
#[path = "planner_test.rs"]
mod tests;

#[cfg(test)]
#[path = "safety_test.rs"]
mod safety_tests;
