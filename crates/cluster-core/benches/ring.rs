//! `owner(key)` on 64 nodes: our ring against the `hashring` crate and jump consistent hash.
//!
//! Run: `cargo bench -p cluster-core --bench ring -- --measurement-time 3 --warm-up-time 1`

use std::hint::black_box;

use cluster_core::ids::NodeId;
use cluster_core::ring::HashRing;
use cluster_core::ring::PartitionRing;
use cluster_core::ring::RingConfig;
use cluster_core::ring::stable_hash;
use criterion::Criterion;
use criterion::criterion_group;
use criterion::criterion_main;

const NODES: usize = 64;
const KEYS: usize = 4096;

fn node_names() -> Vec<String> {
    (0..NODES).map(|i| format!("node-{i:02}")).collect()
}

fn keys() -> Vec<String> {
    (0..KEYS).map(|i| format!("user:{i:08}")).collect()
}

fn owner_64_nodes(c: &mut Criterion) {
    let names = node_names();
    let keys = keys();
    let config = RingConfig::default();
    let ring = HashRing::with_nodes(
        config,
        names
            .iter()
            .map(|n| (NodeId::new(n.as_str()).expect("valid node id"), 1)),
    )
    .expect("ring builds");
    let partitioned = PartitionRing::new(ring.clone(), 4096, None).expect("partitions place");

    // The peer gets the same number of virtual nodes per node, as it would be used in practice.
    let mut peer_vnodes: hashring::HashRing<(usize, u32)> = hashring::HashRing::new();
    for i in 0..NODES {
        for v in 0..config.vnodes_per_weight {
            peer_vnodes.add((i, v));
        }
    }
    let mut peer_plain: hashring::HashRing<usize> = hashring::HashRing::new();
    for i in 0..NODES {
        peer_plain.add(i);
    }
    let jump = jumphash::JumpHasher::new_with_keys(0x0123_4567, 0x89ab_cdef);

    let mut group = c.benchmark_group("owner_64_nodes");
    let mut i = 0usize;
    let mut next_key = || {
        i = (i + 1) % KEYS;
        keys[i].as_str()
    };
    group.bench_function("cluster_core::HashRing::owner", |b| {
        b.iter(|| black_box(ring.owner(black_box(next_key()))))
    });
    group.bench_function("cluster_core::PartitionRing::owner", |b| {
        b.iter(|| black_box(partitioned.owner(black_box(next_key()))))
    });
    group.bench_function("hashring (256 vnodes/node)", |b| {
        b.iter(|| black_box(peer_vnodes.get(&black_box(next_key()))))
    });
    group.bench_function("hashring (1 point/node)", |b| {
        b.iter(|| black_box(peer_plain.get(&black_box(next_key()))))
    });
    group.bench_function("jump consistent hash (jumphash)", |b| {
        b.iter(|| black_box(jump.slot(&black_box(next_key()), NODES as u32)))
    });
    // The jump algorithm alone, fed the same xxh3 key hash as our ring: the floor for any
    // hash-then-place scheme.
    group.bench_function("jump consistent hash (xxh3 key hash)", |b| {
        b.iter(|| {
            let key = black_box(next_key());
            black_box(jump_slot(stable_hash(key.as_bytes()), NODES as i64))
        })
    });
    group.finish();
}

/// Jump consistent hash (Lamping and Veach, 2014).
fn jump_slot(mut key: u64, buckets: i64) -> i64 {
    let (mut b, mut j) = (-1i64, 0i64);
    while j < buckets {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b
}

criterion_group!(benches, owner_64_nodes);
criterion_main!(benches);
