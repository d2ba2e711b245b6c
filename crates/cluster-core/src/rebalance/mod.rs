//! Rebalance planning: from who owns what now to a [`RebalancePlan`] of safe handoffs.
//!
//! The [`RebalancePlanner`] takes the current [`OwnershipTable`] (owner and fencing token of
//! each partition), the membership ([`Member`]: weight and [`MemberStatus`]) and
//! [`PlanConstraints`], and computes a target count per node (weighted fair share, largest
//! remainder) and the fewest moves that reach it: exactly
//! `sum over nodes of max(0, current_i - target_i)` moves of owned partitions, plus one claim per
//! unowned partition.
//!
//! [`RebalancePlanner::plan_to`] instead moves to a given [`Assignment`](crate::assignment::Assignment),
//! such as a [`PartitionRing`](crate::ring::PartitionRing)'s bounded-load placement: one move per
//! partition whose owner differs.
//!
//! Each [`PartitionMove`] is a handoff made of separate [`HandoffStep`]s, planned by
//! [`MoveKind`]:
//!
//! | kind                           | steps                                                                    |
//! |--------------------------------|--------------------------------------------------------------------------|
//! | join, leave, rebalance         | stop intake -> drain -> transfer queued -> release(token) -> claim(> token) |
//! | failover (owner failed/unknown)| await lease expiry(token) -> claim(> token) -> adopt queued              |
//! | initial (unowned)              | claim                                                                    |
//!
//! So a partition never has two owners with valid tokens: the old token is released (or its
//! lease has expired) before the new owner claims with a larger one, and it is unowned only
//! between its own release and claim. Moves run in waves of at most
//! [`PlanConstraints::max_concurrent_moves`]; failovers and initial claims come first (their
//! partitions are unserved), then leaves, then joins and rebalancing.
//!
//! ```
//! use cluster_core::ids::{FencingToken, NodeId, PartitionId};
//! use cluster_core::rebalance::{
//!     Member, MemberStatus, MoveKind, OwnershipTable, PartitionOwner, PlanConstraints,
//!     RebalancePlanner, StepAction,
//! };
//!
//! let (a, b) = (NodeId::new("a")?, NodeId::new("b")?);
//! // Node a owns all four partitions; b joins.
//! let current = OwnershipTable::from_owners(
//!     (0..4).map(|p| Some(PartitionOwner { node: a.clone(), token: FencingToken::new(10 + p) })),
//! );
//! let members = [Member::active(a.clone(), 1), Member::active(b.clone(), 1)];
//! let planner = RebalancePlanner::new(PlanConstraints::default())?;
//! let plan = planner.plan(&current, &members)?;
//!
//! assert_eq!(plan.moves().len(), 2);
//! let first = &plan.moves()[0];
//! assert_eq!(first.kind, MoveKind::Join);
//! let actions: Vec<StepAction> = first.steps().map(|s| s.action).collect();
//! assert_eq!(actions.len(), 5);
//! assert!(matches!(actions[3], StepAction::Release { .. }));
//! assert!(matches!(actions[4], StepAction::Claim { .. }));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod member;
mod ownership_table;
mod partition_move;
mod plan;
mod planner;
mod ring_reconciler;
mod targets;

pub use member::Member;
pub use member::MemberStatus;
pub use ownership_table::OwnershipTable;
pub use ownership_table::PartitionOwner;
pub use partition_move::HandoffStep;
pub use partition_move::MoveKind;
pub use partition_move::PartitionMove;
pub use partition_move::StepAction;
pub use plan::RebalancePlan;
pub use planner::PlanConstraints;
pub use planner::PlanError;
pub use planner::RebalancePlanner;
pub use ring_reconciler::HeldPartition;
pub use ring_reconciler::RingCommand;
pub use ring_reconciler::RingObservation;
pub use ring_reconciler::SeenClaim;
pub use ring_reconciler::reconcile;
