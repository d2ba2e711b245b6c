//! The stable 64-bit hash every ring computation uses.

use xxhash_rust::xxh3::xxh3_64;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Seed space for virtual-node points; the vnode index is added to it.
const VNODE_SEED: u64 = 0x9e37_79b9_7f4a_7c15;
/// Seed for partition positions on the ring.
const PARTITION_SEED: u64 = 0x5851_f42d_4c95_7f2d;

/// The xxh3 64-bit hash of `bytes` (seed 0): identical on every platform and version.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    xxh3_64(bytes)
}

/// The partition of `key` among `partitions` (at least 1): depends only on the key and the count.
///
/// Every node and every version computes the same partition, so work can be routed by key
/// without asking anyone.
pub fn partition_of(key: &[u8], partitions: u32) -> crate::ids::PartitionId {
    crate::ids::PartitionId(reduce(stable_hash(key), partitions.max(1)))
}

/// The ring position of virtual node `index` of `node`.
pub(crate) fn vnode_hash(node: &str, index: u32) -> u64 {
    xxh3_64_with_seed(node.as_bytes(), VNODE_SEED.wrapping_add(u64::from(index)))
}

/// The ring position of partition `partition`.
pub(crate) fn partition_hash(partition: u32) -> u64 {
    xxh3_64_with_seed(&partition.to_le_bytes(), PARTITION_SEED)
}

/// Maps a hash uniformly onto `0..n` without division (Lemire's multiply-shift).
pub(crate) fn reduce(hash: u64, n: u32) -> u32 {
    ((u128::from(hash) * u128::from(n)) >> 64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_pinned() {
        // These values must never change: every node must agree on owners across versions.
        assert_eq!(stable_hash(b""), 0x2d06_8005_38d3_94c2);
        assert_eq!(stable_hash(b"key"), stable_hash(b"key"));
        assert_ne!(vnode_hash("a", 0), vnode_hash("a", 1));
        assert_ne!(partition_hash(0), partition_hash(1));
    }

    #[test]
    fn reduce_stays_in_range() {
        for h in [0, 1, u64::MAX / 2, u64::MAX] {
            assert!(reduce(h, 7) < 7);
        }
        assert_eq!(reduce(u64::MAX, 1), 0);
    }
}
