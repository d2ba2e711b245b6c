//! The planner's output.

use serde::Deserialize;
use serde::Serialize;

use super::ownership_table::OwnershipTable;
use super::partition_move::PartitionMove;
use crate::assignment::Assignment;
use crate::ids::NodeId;

/// The moves that take the current ownership to the target, in waves of bounded size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebalancePlan {
    pub(super) moves: Vec<PartitionMove>,
    pub(super) max_concurrent: usize,
    pub(super) targets: Vec<(NodeId, u32)>,
}

impl RebalancePlan {
    /// Every move, in execution order (wave by wave).
    pub fn moves(&self) -> &[PartitionMove] {
        &self.moves
    }

    /// Whether nothing needs to move.
    pub fn is_empty(&self) -> bool {
        self.moves.is_empty()
    }

    /// The moves grouped into waves; the moves of one wave may run concurrently, and a wave
    /// starts only after the previous one has finished.
    pub fn waves(&self) -> impl Iterator<Item = &[PartitionMove]> {
        self.moves.chunks(self.max_concurrent.max(1))
    }

    /// The most moves that run at once.
    pub fn max_concurrent(&self) -> usize {
        self.max_concurrent
    }

    /// The target partition count of each node the plan considered, sorted by node id.
    pub fn targets(&self) -> &[(NodeId, u32)] {
        &self.targets
    }

    /// The target count of `node` (0 if it is not eligible).
    pub fn target_of(&self, node: &NodeId) -> u32 {
        self.targets
            .binary_search_by(|(id, _)| id.cmp(node))
            .map_or(0, |i| self.targets[i].1)
    }

    /// The owners once every move has run.
    pub fn final_assignment(&self, current: &OwnershipTable) -> Assignment {
        let mut assignment = current.assignment();
        for m in &self.moves {
            assignment.set_owner(m.partition, Some(m.to.clone()));
        }
        assignment
    }
}
