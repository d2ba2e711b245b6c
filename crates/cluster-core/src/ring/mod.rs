//! Consistent hashing: a weighted ring of virtual nodes, and fixed partitions placed on it with
//! optional bounded loads.
//!
//! - [`HashRing`]: each node gets `vnodes_per_weight * weight` points on a 64-bit ring; a key
//!   belongs to the first point at or after its hash. [`HashRing::owner`] and
//!   [`HashRing::owners`] (distinct nodes, for replicas) do not allocate.
//! - [`PartitionRing`]: a fixed number of partitions; a key maps to a partition
//!   ([`PartitionRing::partition_for`]) and each partition to a node. With a [`LoadBound`]
//!   (consistent hashing with bounded loads, Mirrokni, Thorup and Zadimoghaddam, 2018), node `i`
//!   carries at most `ceil((1 + eps) * partitions * w_i / sum(w))` partitions.
//!
//! Hashes are xxh3 (64-bit) with fixed seeds ([`stable_hash`]), so every node, on every platform
//! and every version of this crate, computes the same owners from the same membership.
//!
//! ```
//! use cluster_core::ids::NodeId;
//! use cluster_core::ring::{HashRing, LoadBound, PartitionRing, RingConfig};
//!
//! let mut ring = HashRing::new(RingConfig::default());
//! for (name, weight) in [("a", 1), ("b", 1), ("c", 2)] {
//!     ring.add_node(NodeId::new(name)?, weight)?;
//! }
//! let owner = ring.owner("user:42").expect("ring is not empty");
//! let replicas: Vec<&NodeId> = ring.owners("user:42", 2).collect();
//! assert_eq!(replicas[0], owner);
//! assert_ne!(replicas[0], replicas[1]);
//!
//! let partitions = PartitionRing::new(ring, 256, Some(LoadBound::new(0.25)?))?;
//! let p = partitions.partition_for("user:42");
//! assert!(partitions.owner_of(p).is_some());
//! for node in partitions.ring().nodes() {
//!     assert!(partitions.load(&node.id) <= partitions.capacity(&node.id));
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod hash;
mod hash_ring;
mod owners;
mod partition_ring;
mod ring_error;

pub use hash::partition_of;
pub use hash::stable_hash;
pub use hash_ring::HashRing;
pub use hash_ring::RingConfig;
pub use hash_ring::RingNode;
pub use owners::Owners;
pub use partition_ring::LoadBound;
pub use partition_ring::PartitionRing;
pub use ring_error::RingError;
