//! The weighted ring of virtual nodes.

use super::hash::stable_hash;
use super::hash::vnode_hash;
use super::owners::Owners;
use super::ring_error::RingError;
use crate::ids::NodeId;

/// The most virtual nodes one ring may hold (keeps indices in `u32` and memory bounded).
const MAX_POINTS: u64 = 1 << 24;

/// One virtual node: its ring position and the index of its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Point {
    hash: u64,
    node: u32,
}

/// Marks a bucket whose owner depends on where in the bucket the hash falls.
const MIXED: u32 = u32::MAX;

/// One entry of the lookup index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bucket {
    first_point: u32,
    owner: u32,
}

/// How a [`HashRing`] places nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RingConfig {
    /// Virtual nodes per unit of weight; more gives a more even spread, at a larger ring.
    pub vnodes_per_weight: u32,
}

impl Default for RingConfig {
    /// 256 virtual nodes per unit of weight: about 6% standard deviation in a node's share.
    fn default() -> Self {
        RingConfig {
            vnodes_per_weight: 256,
        }
    }
}

/// A node on the ring with its relative weight.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RingNode {
    /// The node.
    pub id: NodeId,
    /// Its relative weight (at least 1).
    pub weight: u32,
}

/// A consistent-hash ring with weighted virtual nodes.
///
/// Owners depend only on the set of (node, weight) pairs and the config, never on the order
/// nodes were added in.
#[derive(Debug, Clone)]
pub struct HashRing {
    config: RingConfig,
    /// Sorted by id, so node indices are the same on every instance.
    nodes: Vec<RingNode>,
    /// Virtual nodes by position, ascending; hash and node side by side so a lookup reads one
    /// cache line.
    points: Vec<Point>,
    /// For each bucket of the top `64 - shift` hash bits: the first point at or after it, and
    /// the owner of the whole bucket when no point falls inside it.
    index: Vec<Bucket>,
    shift: u32,
}

impl HashRing {
    /// An empty ring.
    pub fn new(config: RingConfig) -> HashRing {
        HashRing {
            config,
            nodes: Vec::new(),
            points: Vec::new(),
            index: vec![
                Bucket {
                    first_point: 0,
                    owner: MIXED,
                };
                2
            ],
            shift: 63,
        }
    }

    /// A ring holding `nodes` (id, weight).
    pub fn with_nodes(
        config: RingConfig,
        nodes: impl IntoIterator<Item = (NodeId, u32)>,
    ) -> Result<HashRing, RingError> {
        let mut ring = HashRing::new(config);
        for (id, weight) in nodes {
            ring.insert_node(id, weight)?;
        }
        ring.rebuild();
        Ok(ring)
    }

    /// Adds a node with a relative weight.
    pub fn add_node(&mut self, id: NodeId, weight: u32) -> Result<(), RingError> {
        self.insert_node(id, weight)?;
        self.rebuild();
        Ok(())
    }

    /// Removes a node.
    pub fn remove_node(&mut self, id: &NodeId) -> Result<(), RingError> {
        let at = self
            .nodes
            .binary_search_by(|n| n.id.cmp(id))
            .map_err(|_| RingError::UnknownNode { node: id.clone() })?;
        self.nodes.remove(at);
        self.rebuild();
        Ok(())
    }

    /// The config the ring was built with.
    pub fn config(&self) -> RingConfig {
        self.config
    }

    /// The nodes on the ring, sorted by id.
    pub fn nodes(&self) -> &[RingNode] {
        &self.nodes
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the ring has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Number of virtual nodes on the ring.
    pub fn point_count(&self) -> usize {
        self.points.len()
    }

    /// The weight of `id`, if it is on the ring.
    pub fn weight(&self, id: &NodeId) -> Option<u32> {
        self.node_index(id).map(|i| self.nodes[i].weight)
    }

    /// The node owning `key`, or `None` if the ring is empty. Does not allocate.
    pub fn owner(&self, key: impl AsRef<[u8]>) -> Option<&NodeId> {
        self.owner_of_hash(stable_hash(key.as_ref()))
    }

    /// The node owning ring position `hash`.
    pub fn owner_of_hash(&self, hash: u64) -> Option<&NodeId> {
        // Most buckets hold no point, so their owner is known without touching the points.
        let bucket = self.index[(hash >> self.shift) as usize];
        if bucket.owner != MIXED {
            return Some(&self.nodes[bucket.owner as usize].id);
        }
        let point = self.point_at_or_after(hash)?;
        Some(&self.nodes[self.points[point].node as usize].id)
    }

    /// Up to `n` distinct nodes for `key`, owner first, walking the ring clockwise.
    ///
    /// Does not allocate. Each step checks the points already walked for repeats, so asking
    /// for many replicas on a large ring costs more than a handful.
    pub fn owners(&self, key: impl AsRef<[u8]>, n: usize) -> Owners<'_> {
        let start = self.point_at_or_after(stable_hash(key.as_ref()));
        Owners::new(self, start, n.min(self.nodes.len()))
    }

    /// Index of `id` in [`HashRing::nodes`].
    pub(crate) fn node_index(&self, id: &NodeId) -> Option<usize> {
        self.nodes.binary_search_by(|n| n.id.cmp(id)).ok()
    }

    pub(crate) fn point_node(&self, point: usize) -> u32 {
        self.points[point].node
    }

    /// The first point at or after `hash`, wrapping to the first point.
    pub(crate) fn point_at_or_after(&self, hash: u64) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let mut i = self.index[(hash >> self.shift) as usize].first_point as usize;
        while i < self.points.len() && self.points[i].hash < hash {
            i += 1;
        }
        Some(if i == self.points.len() { 0 } else { i })
    }

    fn insert_node(&mut self, id: NodeId, weight: u32) -> Result<(), RingError> {
        if self.config.vnodes_per_weight == 0 {
            return Err(RingError::ZeroVnodes);
        }
        if weight == 0 {
            return Err(RingError::ZeroWeight { node: id });
        }
        match self.nodes.binary_search_by(|n| n.id.cmp(&id)) {
            Ok(_) => Err(RingError::DuplicateNode { node: id }),
            Err(at) => {
                let points = self.total_points() + self.points_of(weight);
                if points > MAX_POINTS {
                    return Err(RingError::TooManyPoints {
                        points,
                        max: MAX_POINTS,
                    });
                }
                self.nodes.insert(at, RingNode { id, weight });
                Ok(())
            }
        }
    }

    fn points_of(&self, weight: u32) -> u64 {
        u64::from(self.config.vnodes_per_weight) * u64::from(weight)
    }

    fn total_points(&self) -> u64 {
        self.nodes.iter().map(|n| self.points_of(n.weight)).sum()
    }

    /// Recomputes points and index; `insert_node` has already bounded the point count.
    fn rebuild(&mut self) {
        let mut points: Vec<Point> = Vec::with_capacity(self.total_points() as usize);
        for (i, node) in self.nodes.iter().enumerate() {
            let count = self.config.vnodes_per_weight.saturating_mul(node.weight);
            points.extend((0..count).map(|v| Point {
                hash: vnode_hash(node.id.as_str(), v),
                node: i as u32,
            }));
        }
        // Ties (equal hashes) break by node index, which follows node id: deterministic.
        points.sort_unstable_by_key(|p| (p.hash, p.node));
        self.points = points;
        self.build_index();
    }

    /// Builds the bucket index: two buckets per point, so most buckets hold no point (their
    /// owner is stored directly) and the rest hold about one.
    fn build_index(&mut self) {
        let bits = usize::BITS - self.points.len().max(2).next_power_of_two().leading_zeros();
        let bits = bits.clamp(1, 25);
        self.shift = 64 - bits;
        let buckets = 1usize << bits;
        let len = self.points.len();
        let mut index = Vec::with_capacity(buckets);
        let mut point = 0usize;
        for bucket in 0..buckets {
            let start = (bucket as u64) << self.shift;
            while point < len && self.points[point].hash < start {
                point += 1;
            }
            // Last hash of the bucket; the bucket is "empty" if the first point at or after its
            // start is also past its end (or there is none and the ring wraps).
            let end = start | (u64::MAX >> bits);
            let owner = if len == 0 {
                MIXED
            } else if point == len {
                self.points[0].node
            } else if self.points[point].hash > end {
                self.points[point].node
            } else {
                MIXED
            };
            index.push(Bucket {
                first_point: point as u32,
                owner,
            });
        }
        self.index = index;
    }
}

#[cfg(test)]
#[path = "hash_ring_test.rs"]
mod tests;
