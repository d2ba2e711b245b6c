//! `owner(key)` on 64 nodes, like for like: every hashing scheme hashes the same key bytes with
//! the same function, xxh3-64 (seed 0, one shot, our `stable_hash`), so rows differ only in how
//! they place the hash.
//!
//! - `hash_then_place/64_nodes`: the hashing schemes, our `HashRing` against the `hashring`
//!   crate (given an xxh3 `BuildHasher`) and the jump algorithm on the xxh3 key hash.
//! - `lookup/partition_ring_table`: `PartitionRing::owner`, which is not a hashing scheme but a
//!   read of the partition-to-owner table placed in `PartitionRing::new`; reported on its own.
//! - `reference_other_hashers/64_nodes`: the peers as they come (SipHash-1-3) and `hashring`
//!   with xxhash-rust's streaming `Xxh3DefaultBuilder`; context only, not like for like.
//!
//! Each is run on 4,096 keys cycled (hot in cache) and on 2,000,000 distinct keys (generated once,
//! outside the timed loop, so the tables' cache misses count).
//!
//! Run: `cargo bench -p cluster-core --bench ring` (1 s warm-up, 3 s measurement per id).

use std::hash::BuildHasher;
use std::hash::Hash;
use std::hash::Hasher;
use std::hint::black_box;
use std::time::Duration;

use cluster_core::ids::NodeId;
use cluster_core::ring::HashRing;
use cluster_core::ring::PartitionRing;
use cluster_core::ring::RingConfig;
use cluster_core::ring::stable_hash;
use criterion::BenchmarkGroup;
use criterion::BenchmarkId;
use criterion::Criterion;
use criterion::criterion_group;
use criterion::criterion_main;
use criterion::measurement::WallTime;
use xxhash_rust::xxh3::Xxh3DefaultBuilder;
use xxhash_rust::xxh3::xxh3_64;
use xxhash_rust::xxh3::xxh3_64_with_seed;

const NODES: usize = 64;
const PARTITIONS: u32 = 4096;
/// `user:NNNNNNNN`.
const KEY_LEN: usize = 13;
const HOT_KEYS: usize = 4096;
const COLD_KEYS: usize = 2_000_000;

/// `n` distinct keys `user:NNNNNNNN`, packed back to back (`KEY_LEN` bytes each).
fn keys(n: usize) -> Vec<u8> {
    let mut buf = Vec::with_capacity(n * KEY_LEN);
    for i in 0..n {
        buf.extend_from_slice(format!("user:{i:08}").as_bytes());
    }
    assert_eq!(buf.len(), n * KEY_LEN);
    buf
}

/// Hands out the keys of a packed buffer in order, wrapping around.
struct Cycle<'a> {
    keys: &'a [u8],
    pos: usize,
}

impl<'a> Cycle<'a> {
    fn new(keys: &'a [u8]) -> Cycle<'a> {
        Cycle { keys, pos: 0 }
    }

    #[inline(always)]
    fn next_key(&mut self) -> &'a [u8] {
        let key = &self.keys[self.pos..self.pos + KEY_LEN];
        self.pos += KEY_LEN;
        if self.pos == self.keys.len() {
            self.pos = 0;
        }
        key
    }
}

/// A key as `hashring` sees it: hashes as exactly its bytes, in one `write` (a `&str` would
/// append a 0xff terminator), so an xxh3 hasher computes `stable_hash(key)`.
struct Key<'a>(&'a [u8]);

impl Hash for Key<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.0);
    }
}

/// `BuildHasher` for `hashring`: one-shot xxh3-64 (seed 0) of the first write, which is our
/// `stable_hash`; later writes (only when hashing the peer's node values, at build time) are
/// chained through the seed.
#[derive(Clone, Copy, Default)]
struct Xxh3OneShot;

struct Xxh3OneShotHasher {
    hash: Option<u64>,
}

impl BuildHasher for Xxh3OneShot {
    type Hasher = Xxh3OneShotHasher;

    fn build_hasher(&self) -> Xxh3OneShotHasher {
        Xxh3OneShotHasher { hash: None }
    }
}

impl Hasher for Xxh3OneShotHasher {
    #[inline(always)]
    fn write(&mut self, bytes: &[u8]) {
        self.hash = Some(match self.hash {
            None => xxh3_64(bytes),
            Some(h) => xxh3_64_with_seed(bytes, h),
        });
    }

    #[inline(always)]
    fn finish(&self) -> u64 {
        self.hash.unwrap_or_else(|| xxh3_64(&[]))
    }
}

/// The same node set in every structure: 64 nodes, 256 virtual nodes each where points are used.
struct Rings {
    ours: HashRing,
    partitioned: PartitionRing,
    peer_vnodes_xxh3: hashring::HashRing<(usize, u32), Xxh3OneShot>,
    peer_plain_xxh3: hashring::HashRing<usize, Xxh3OneShot>,
    peer_vnodes_sip: hashring::HashRing<(usize, u32)>,
    peer_vnodes_xxh3_streaming: hashring::HashRing<(usize, u32), Xxh3DefaultBuilder>,
    jump: jumphash::JumpHasher,
}

fn rings() -> Rings {
    let config = RingConfig::default();
    let ours = HashRing::with_nodes(
        config,
        (0..NODES).map(|i| {
            (
                NodeId::new(format!("node-{i:02}")).expect("valid node id"),
                1,
            )
        }),
    )
    .expect("ring builds");
    let partitioned = PartitionRing::new(ours.clone(), PARTITIONS, None).expect("partitions place");

    // The peer gets the same number of virtual nodes per node (the same ring size).
    let mut peer_vnodes_xxh3 = hashring::HashRing::with_hasher(Xxh3OneShot);
    let mut peer_vnodes_sip = hashring::HashRing::new();
    let mut peer_vnodes_xxh3_streaming = hashring::HashRing::with_hasher(Xxh3DefaultBuilder);
    let mut peer_plain_xxh3 = hashring::HashRing::with_hasher(Xxh3OneShot);
    for i in 0..NODES {
        for v in 0..config.vnodes_per_weight {
            peer_vnodes_xxh3.add((i, v));
            peer_vnodes_sip.add((i, v));
            peer_vnodes_xxh3_streaming.add((i, v));
        }
        peer_plain_xxh3.add(i);
    }
    Rings {
        ours,
        partitioned,
        peer_vnodes_xxh3,
        peer_plain_xxh3,
        peer_vnodes_sip,
        peer_vnodes_xxh3_streaming,
        jump: jumphash::JumpHasher::new_with_keys(0x0123_4567, 0x89ab_cdef),
    }
}

fn owner_64_nodes(c: &mut Criterion) {
    // Every xxh3 row hashes the same bytes to the same value.
    let probe = b"user:00000042";
    assert_eq!(Xxh3OneShot.hash_one(Key(probe)), stable_hash(probe));
    assert_eq!(Xxh3DefaultBuilder.hash_one(Key(probe)), stable_hash(probe));

    let r = rings();
    let key_sets = [
        ("4096_keys_cycled", keys(HOT_KEYS)),
        ("2M_distinct_keys", keys(COLD_KEYS)),
    ];

    let mut group = c.benchmark_group("hash_then_place/64_nodes");
    for (set, keys) in &key_sets {
        let keys = keys.as_slice();
        bench(
            &mut group,
            "HashRing::owner (256 vnodes/node)",
            set,
            keys,
            |k| r.ours.owner(k),
        );
        bench(
            &mut group,
            "hashring xxh3 (256 vnodes/node)",
            set,
            keys,
            |k| r.peer_vnodes_xxh3.get(&Key(k)),
        );
        bench(&mut group, "hashring xxh3 (1 point/node)", set, keys, |k| {
            r.peer_plain_xxh3.get(&Key(k))
        });
        // The jump algorithm alone on the same xxh3 key hash.
        bench(&mut group, "jump xxh3", set, keys, |k| {
            jump_slot(stable_hash(k), NODES as i64)
        });
    }
    group.finish();

    let mut group = c.benchmark_group("lookup/partition_ring_table");
    for (set, keys) in &key_sets {
        bench(
            &mut group,
            "PartitionRing::owner (4096 partitions)",
            set,
            keys,
            |k| r.partitioned.owner(k),
        );
    }
    group.finish();

    let mut group = c.benchmark_group("reference_other_hashers/64_nodes");
    for (set, keys) in &key_sets {
        let keys = keys.as_slice();
        bench(
            &mut group,
            "hashring SipHash (256 vnodes/node)",
            set,
            keys,
            |k| r.peer_vnodes_sip.get(&Key(k)),
        );
        bench(
            &mut group,
            "hashring Xxh3DefaultBuilder (256 vnodes/node)",
            set,
            keys,
            |k| r.peer_vnodes_xxh3_streaming.get(&Key(k)),
        );
        bench(&mut group, "jumphash SipHash", set, keys, |k| {
            r.jump.slot(&Key(k), NODES as u32)
        });
    }
    group.finish();
}

/// Times `lookup` on the keys of `keys`, one key per iteration, in order, wrapping around.
fn bench<R>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    set: &str,
    keys: &[u8],
    lookup: impl Fn(&[u8]) -> R,
) {
    let mut cycle = Cycle::new(keys);
    group.bench_function(BenchmarkId::new(name, set), |b| {
        b.iter(|| black_box(lookup(black_box(cycle.next_key()))))
    });
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

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = owner_64_nodes
}
criterion_main!(benches);
