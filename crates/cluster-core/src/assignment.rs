//! Which node owns each partition.
//!
//! An [`Assignment`] is the partition-to-owner table of one app: produced by a
//! [`PartitionRing`](crate::ring::PartitionRing), published by the leader, and compared by the
//! rebalance planner. Partition ids are dense: `0..len()`.
//!
//! ```
//! use cluster_core::assignment::Assignment;
//! use cluster_core::ids::{NodeId, PartitionId};
//!
//! let a = NodeId::new("a")?;
//! let assignment = Assignment::from_owners([Some(a.clone()), None, Some(a.clone())]);
//! assert_eq!(assignment.owner(PartitionId(2)), Some(&a));
//! assert_eq!(assignment.partitions_of(&a).count(), 2);
//! assert_eq!(assignment.unowned().collect::<Vec<_>>(), vec![PartitionId(1)]);
//! # Ok::<(), cluster_core::ids::IdError>(())
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::Serialize;

use crate::ids::NodeId;
use crate::ids::PartitionId;

/// The owner (or none) of each partition `0..len()`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Assignment {
    owners: Vec<Option<NodeId>>,
}

impl Assignment {
    /// An assignment of `partitions` partitions, all unowned.
    pub fn unassigned(partitions: u32) -> Assignment {
        Assignment {
            owners: vec![None; partitions as usize],
        }
    }

    /// An assignment from the owner of each partition in id order.
    pub fn from_owners(owners: impl IntoIterator<Item = Option<NodeId>>) -> Assignment {
        Assignment {
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
    pub fn owner(&self, p: PartitionId) -> Option<&NodeId> {
        self.owners.get(p.0 as usize)?.as_ref()
    }

    /// Sets the owner of `p`; ignored if `p` is out of range.
    pub fn set_owner(&mut self, p: PartitionId, owner: Option<NodeId>) {
        if let Some(slot) = self.owners.get_mut(p.0 as usize) {
            *slot = owner;
        }
    }

    /// Every partition with its owner.
    pub fn iter(&self) -> impl Iterator<Item = (PartitionId, Option<&NodeId>)> {
        self.owners
            .iter()
            .enumerate()
            .map(|(i, o)| (PartitionId(i as u32), o.as_ref()))
    }

    /// The partitions owned by `node`.
    pub fn partitions_of<'a>(&'a self, node: &'a NodeId) -> impl Iterator<Item = PartitionId> + 'a {
        self.iter()
            .filter(move |(_, o)| *o == Some(node))
            .map(|(p, _)| p)
    }

    /// The partitions with no owner.
    pub fn unowned(&self) -> impl Iterator<Item = PartitionId> + '_ {
        self.iter().filter(|(_, o)| o.is_none()).map(|(p, _)| p)
    }

    /// How many partitions each owner holds.
    pub fn counts(&self) -> BTreeMap<&NodeId, u32> {
        let mut counts = BTreeMap::new();
        for owner in self.owners.iter().flatten() {
            *counts.entry(owner).or_insert(0) += 1;
        }
        counts
    }

    /// The partitions whose owner differs between `self` and `other` (compared up to the
    /// longer of the two).
    pub fn moved_from<'a>(
        &'a self,
        other: &'a Assignment,
    ) -> impl Iterator<Item = PartitionId> + 'a {
        let len = self.owners.len().max(other.owners.len());
        (0..len as u32)
            .map(PartitionId)
            .filter(move |&p| self.owner(p) != other.owner(p))
    }
}
