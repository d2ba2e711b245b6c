//! Ring lookups must not allocate: checked with a counting global allocator.
//!
//! This binary holds a single test so no other test allocates concurrently.

use std::alloc::GlobalAlloc;
use std::alloc::Layout;
use std::alloc::System;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;

use cluster_core::ids::NodeId;
use cluster_core::ring::HashRing;
use cluster_core::ring::LoadBound;
use cluster_core::ring::PartitionRing;
use cluster_core::ring::RingConfig;

struct CountingAllocator;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

#[test]
fn owner_owners_and_partition_lookups_do_not_allocate() {
    let ring = HashRing::with_nodes(
        RingConfig::default(),
        (0..64).map(|i| (NodeId::new(format!("node-{i}")).unwrap(), 1 + i % 3)),
    )
    .unwrap();
    let partitions =
        PartitionRing::new(ring.clone(), 1024, Some(LoadBound::new(0.25).unwrap())).unwrap();
    let keys: Vec<[u8; 8]> = (0..10_000u64).map(u64::to_le_bytes).collect();

    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let mut found = 0usize;
    for key in &keys {
        found += usize::from(ring.owner(key).is_some());
        found += ring.owners(key, 3).count();
        found += usize::from(partitions.owner(key).is_some());
        found += partitions.partition_for(key).0 as usize % 2;
    }
    let after = ALLOCATIONS.load(Ordering::Relaxed);

    assert!(found > 0);
    assert_eq!(
        after - before,
        0,
        "lookups allocated {} times",
        after - before
    );
}
