//! Movement when node n+1 joins, and bounded-load capacity, measured over seeds.
//!
//! Not a timing benchmark: it prints how many keys change owner when one node joins a ring of
//! n nodes (n in 4, 16, 64; 10^6 keys; 20 seeds), relative to the ideal K/(n+1), for the plain
//! ring and, separately, for partitions with bounded loads (eps = 0.25), and checks that no node
//! ever carries more than its capacity.
//!
//! Run: `cargo bench -p cluster-core --bench movement`

use std::process::ExitCode;

use cluster_core::ids::NodeId;
use cluster_core::ring::HashRing;
use cluster_core::ring::LoadBound;
use cluster_core::ring::PartitionRing;
use cluster_core::ring::RingConfig;

const KEYS: u64 = 1_000_000;
const SEEDS: u64 = 20;
const SIZES: [usize; 3] = [4, 16, 64];
const PARTITIONS: u32 = 4096;
const EPS: f64 = 0.25;

fn node(seed: u64, i: usize) -> NodeId {
    NodeId::new(format!("s{seed}-node-{i}")).expect("valid node id")
}

fn ring(seed: u64, n: usize) -> HashRing {
    HashRing::with_nodes(RingConfig::default(), (0..n).map(|i| (node(seed, i), 1)))
        .expect("ring builds")
}

fn key(seed: u64, k: u64) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..].copy_from_slice(&k.to_le_bytes());
    bytes
}

#[derive(Default)]
struct Stats {
    ratios: Vec<f64>,
}

impl Stats {
    fn mean(&self) -> f64 {
        self.ratios.iter().sum::<f64>() / self.ratios.len() as f64
    }
    fn worst(&self) -> f64 {
        self.ratios.iter().copied().fold(0.0, f64::max)
    }
}

/// Keys that change owner between `before` and `after`, as a multiple of K/(n+1).
fn moved_ratio(
    seed: u64,
    n: usize,
    before: impl Fn(&[u8]) -> Option<NodeId>,
    after: impl Fn(&[u8]) -> Option<NodeId>,
) -> f64 {
    let moved = (0..KEYS)
        .filter(|&k| {
            let key = key(seed, k);
            before(&key) != after(&key)
        })
        .count();
    moved as f64 / (KEYS as f64 / (n as f64 + 1.0))
}

fn main() -> ExitCode {
    let bound = LoadBound::new(EPS).expect("valid eps");
    let mut capacity_violations = 0u32;
    let mut ok = true;
    println!(
        "keys={KEYS} seeds={SEEDS} vnodes_per_weight={}",
        RingConfig::default().vnodes_per_weight
    );
    println!(
        "| n | plain ring mean | plain ring worst | bounded (eps={EPS}, {PARTITIONS} partitions) mean | bounded worst | bounded max load / capacity |"
    );
    println!("|---|---|---|---|---|---|");
    for n in SIZES {
        let (mut plain, mut bounded) = (Stats::default(), Stats::default());
        let mut max_fill = 0.0f64;
        for seed in 0..SEEDS {
            let before = ring(seed, n);
            let mut after = before.clone();
            after.add_node(node(seed, n), 1).expect("node joins");
            plain.ratios.push(moved_ratio(
                seed,
                n,
                |k| before.owner(k).cloned(),
                |k| after.owner(k).cloned(),
            ));

            let pb = PartitionRing::new(before, PARTITIONS, Some(bound)).expect("places");
            let pa = PartitionRing::new(after, PARTITIONS, Some(bound)).expect("places");
            for pr in [&pb, &pa] {
                for rn in pr.ring().nodes() {
                    let (load, cap) = (pr.load(&rn.id), pr.capacity(&rn.id));
                    if load > cap {
                        capacity_violations += 1;
                    }
                    max_fill = max_fill.max(f64::from(load) / f64::from(cap));
                }
            }
            bounded.ratios.push(moved_ratio(
                seed,
                n,
                |k| pb.owner(k).cloned(),
                |k| pa.owner(k).cloned(),
            ));
        }
        ok &= plain.mean() <= 1.1 && plain.worst() <= 1.25;
        println!(
            "| {n} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
            plain.mean(),
            plain.worst(),
            bounded.mean(),
            bounded.worst(),
            max_fill
        );
    }
    println!(
        "capacity violations (bounded mode, every node, every seed, before and after): {capacity_violations}"
    );
    println!(
        "plain-ring target (mean <= 1.10, worst <= 1.25): {}",
        if ok { "met" } else { "MISSED" }
    );
    if ok && capacity_violations == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
