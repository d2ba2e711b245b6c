//! Fixed partitions placed on a [`HashRing`], optionally with bounded loads.

use super::hash::partition_hash;
use super::hash::partition_of;
use super::hash_ring::HashRing;
use super::ring_error::RingError;
use crate::assignment::Assignment;
use crate::ids::NodeId;
use crate::ids::PartitionId;

/// The bounded-load factor: no node carries more than `(1 + eps)` times its fair share.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadBound {
    eps: f64,
}

impl LoadBound {
    /// A bound with the given `eps` (> 0, finite); 0.25 is a good default.
    pub fn new(eps: f64) -> Result<LoadBound, RingError> {
        if eps.is_finite() && eps > 0.0 {
            Ok(LoadBound { eps })
        } else {
            Err(RingError::InvalidEpsilon { eps })
        }
    }

    /// The `eps` of this bound.
    pub fn eps(&self) -> f64 {
        self.eps
    }

    /// `ceil((1 + eps) * total * weight / weight_sum)`: the most a node of `weight` may carry.
    pub fn capacity(&self, total: u32, weight: u32, weight_sum: u64) -> u32 {
        let weight_sum = weight_sum.max(1);
        let share = f64::from(total) * f64::from(weight) / weight_sum as f64;
        let cap = ((1.0 + self.eps) * share).ceil().min(f64::from(u32::MAX)) as u32;
        // Never below the exact ceil of the fair share (computed in integers, immune to float
        // rounding), so capacities always sum to at least `total`; never below 1.
        let fair = (u64::from(total) * u64::from(weight)).div_ceil(weight_sum);
        cap.max(u32::try_from(fair).unwrap_or(u32::MAX)).max(1)
    }
}

/// A fixed number of partitions, each owned by one node of a [`HashRing`].
///
/// A key maps to a partition by its hash alone, so the key-to-partition map never changes; only
/// the partition-to-node map follows membership. Partition `p` sits on the ring at a fixed
/// position and belongs to the first node clockwise from it; with a [`LoadBound`], partitions
/// are placed in id order and a node at capacity is skipped (Mirrokni et al.).
#[derive(Debug, Clone)]
pub struct PartitionRing {
    ring: HashRing,
    partitions: u32,
    bound: Option<LoadBound>,
    /// Node index (into `ring.nodes()`) of each partition's owner.
    owner: Vec<u32>,
    capacity: Vec<u32>,
    load: Vec<u32>,
}

impl PartitionRing {
    /// Places `partitions` partitions on `ring`, with bounded loads if `bound` is given.
    pub fn new(
        ring: HashRing,
        partitions: u32,
        bound: Option<LoadBound>,
    ) -> Result<PartitionRing, RingError> {
        if partitions == 0 {
            return Err(RingError::ZeroPartitions);
        }
        if ring.is_empty() {
            return Err(RingError::EmptyRing);
        }
        let weight_sum: u64 = ring.nodes().iter().map(|n| u64::from(n.weight)).sum();
        let capacity: Vec<u32> = ring
            .nodes()
            .iter()
            .map(|n| match bound {
                Some(b) => b.capacity(partitions, n.weight, weight_sum),
                None => u32::MAX,
            })
            .collect();
        let mut load = vec![0u32; ring.len()];
        let mut owner = Vec::with_capacity(partitions as usize);
        let points = ring.point_count();
        for p in 0..partitions {
            let mut point = ring.point_at_or_after(partition_hash(p)).unwrap_or(0);
            // Terminates: capacities sum to more than `partitions` and every node has a point.
            loop {
                let node = ring.point_node(point) as usize;
                if load[node] < capacity[node] {
                    load[node] += 1;
                    owner.push(node as u32);
                    break;
                }
                point = (point + 1) % points;
            }
        }
        Ok(PartitionRing {
            ring,
            partitions,
            bound,
            owner,
            capacity,
            load,
        })
    }

    /// The ring the partitions are placed on.
    pub fn ring(&self) -> &HashRing {
        &self.ring
    }

    /// Gives back the ring, e.g. to change membership and place again.
    pub fn into_ring(self) -> HashRing {
        self.ring
    }

    /// Number of partitions.
    pub fn partition_count(&self) -> u32 {
        self.partitions
    }

    /// The load bound in force, if any.
    pub fn bound(&self) -> Option<LoadBound> {
        self.bound
    }

    /// The partition of `key`; depends only on the key and the partition count.
    pub fn partition_for(&self, key: impl AsRef<[u8]>) -> PartitionId {
        partition_of(key.as_ref(), self.partitions)
    }

    /// The owner of partition `p`, or `None` if `p` is out of range. Does not allocate.
    pub fn owner_of(&self, p: PartitionId) -> Option<&NodeId> {
        let node = *self.owner.get(p.0 as usize)?;
        Some(&self.ring.nodes()[node as usize].id)
    }

    /// The owner of `key`'s partition. Does not allocate.
    pub fn owner(&self, key: impl AsRef<[u8]>) -> Option<&NodeId> {
        self.owner_of(self.partition_for(key))
    }

    /// How many partitions `node` owns (0 if it is not on the ring).
    pub fn load(&self, node: &NodeId) -> u32 {
        self.ring.node_index(node).map_or(0, |i| self.load[i])
    }

    /// The most partitions `node` may own (`u32::MAX` without a bound, 0 if not on the ring).
    pub fn capacity(&self, node: &NodeId) -> u32 {
        self.ring.node_index(node).map_or(0, |i| self.capacity[i])
    }

    /// The owner of every partition.
    pub fn assignment(&self) -> Assignment {
        let nodes = self.ring.nodes();
        Assignment::from_owners(
            self.owner
                .iter()
                .map(|&n| Some(nodes[n as usize].id.clone())),
        )
    }
}

#[cfg(test)]
#[path = "partition_ring_test.rs"]
mod tests;
