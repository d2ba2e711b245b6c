//! Current owners of partitions with their fencing tokens.

use serde::Deserialize;
use serde::Serialize;

use crate::assignment::Assignment;
use crate::ids::FencingToken;
use crate::ids::NodeId;
use crate::ids::PartitionId;

/// A partition's owner and the token of its claim.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PartitionOwner {
    /// The owning node.
    pub node: NodeId,
    /// The fencing token of its claim.
    pub token: FencingToken,
}

/// The owner (or none) of each partition `0..len()`, with tokens: the planner's input.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OwnershipTable {
    owners: Vec<Option<PartitionOwner>>,
}

impl OwnershipTable {
    /// A table of `partitions` unowned partitions.
    pub fn unowned(partitions: u32) -> OwnershipTable {
        OwnershipTable {
            owners: vec![None; partitions as usize],
        }
    }

    /// A table from each partition's owner in id order.
    pub fn from_owners(owners: impl IntoIterator<Item = Option<PartitionOwner>>) -> OwnershipTable {
        OwnershipTable {
            owners: owners.into_iter().collect(),
        }
    }

    /// Number of partitions.
    pub fn len(&self) -> u32 {
        self.owners.len() as u32
    }

    /// Whether there are no partitions.
    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }

    /// The owner of `p`, if any.
    pub fn owner(&self, p: PartitionId) -> Option<&PartitionOwner> {
        self.owners.get(p.0 as usize)?.as_ref()
    }

    /// Sets the owner of `p`; ignored if `p` is out of range.
    pub fn set_owner(&mut self, p: PartitionId, owner: Option<PartitionOwner>) {
        if let Some(slot) = self.owners.get_mut(p.0 as usize) {
            *slot = owner;
        }
    }

    /// Every partition with its owner.
    pub fn iter(&self) -> impl Iterator<Item = (PartitionId, Option<&PartitionOwner>)> {
        self.owners
            .iter()
            .enumerate()
            .map(|(i, o)| (PartitionId(i as u32), o.as_ref()))
    }

    /// The owners without tokens.
    pub fn assignment(&self) -> Assignment {
        Assignment::from_owners(
            self.owners
                .iter()
                .map(|o| o.as_ref().map(|o| o.node.clone())),
        )
    }
}
