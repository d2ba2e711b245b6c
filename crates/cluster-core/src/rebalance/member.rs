//! Cluster members as the planner sees them.

use serde::Deserialize;
use serde::Serialize;

use crate::ids::NodeId;

/// Whether a member may own partitions, and how its partitions leave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberStatus {
    /// Alive and eligible to own partitions.
    Active,
    /// Leaving gracefully: owns nothing in the target, hands off with a drain.
    Leaving,
    /// Failed: owns nothing in the target, and cannot drain or release.
    Failed,
}

/// A cluster member with its relative weight.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Member {
    /// The node.
    pub id: NodeId,
    /// Relative weight; an active member of weight 0 is drained like a leaving one.
    pub weight: u32,
    /// Its status.
    pub status: MemberStatus,
}

impl Member {
    /// An active member.
    pub fn active(id: NodeId, weight: u32) -> Member {
        Member {
            id,
            weight,
            status: MemberStatus::Active,
        }
    }

    /// A member leaving gracefully.
    pub fn leaving(id: NodeId) -> Member {
        Member {
            id,
            weight: 0,
            status: MemberStatus::Leaving,
        }
    }

    /// A failed member.
    pub fn failed(id: NodeId) -> Member {
        Member {
            id,
            weight: 0,
            status: MemberStatus::Failed,
        }
    }

    /// Whether the member may be given partitions.
    pub fn is_eligible(&self) -> bool {
        self.status == MemberStatus::Active && self.weight > 0
    }
}
