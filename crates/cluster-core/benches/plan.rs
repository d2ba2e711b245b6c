//! Rebalance planning at scale: 1,000 nodes x 100,000 partitions.
//!
//! Run: `cargo bench -p cluster-core --bench plan -- --measurement-time 3 --warm-up-time 1`

use std::hint::black_box;

use cluster_core::ids::FencingToken;
use cluster_core::ids::NodeId;
use cluster_core::rebalance::Member;
use cluster_core::rebalance::OwnershipTable;
use cluster_core::rebalance::PartitionOwner;
use cluster_core::rebalance::PlanConstraints;
use cluster_core::rebalance::RebalancePlanner;
use cluster_core::ring::HashRing;
use cluster_core::ring::LoadBound;
use cluster_core::ring::PartitionRing;
use cluster_core::ring::RingConfig;
use criterion::Criterion;
use criterion::criterion_group;
use criterion::criterion_main;

const NODES: usize = 1_000;
const PARTITIONS: u32 = 100_000;

fn node(i: usize) -> NodeId {
    NodeId::new(format!("node-{i:04}")).expect("valid node id")
}

/// Partitions spread round-robin over the first `owners` nodes.
fn balanced_over(owners: usize) -> OwnershipTable {
    OwnershipTable::from_owners((0..PARTITIONS).map(|p| {
        Some(PartitionOwner {
            node: node(p as usize % owners),
            token: FencingToken::new(u64::from(p) + 1),
        })
    }))
}

fn plan_1000_nodes_100k_partitions(c: &mut Criterion) {
    let planner = RebalancePlanner::new(PlanConstraints {
        max_concurrent_moves: 64,
    })
    .expect("valid constraints");
    let all_active: Vec<Member> = (0..NODES).map(|i| Member::active(node(i), 1)).collect();

    let join_current = balanced_over(NODES - 1);
    let mut failed = all_active.clone();
    for m in failed.iter_mut().step_by(100) {
        *m = Member::failed(m.id.clone());
    }
    let mut mixed = failed.clone();
    for i in 0..10 {
        mixed[i * 100 + 1] = Member::leaving(node(i * 100 + 1));
        mixed.push(Member::active(node(NODES + i), 2));
    }
    let steady = balanced_over(NODES);
    let empty = OwnershipTable::unowned(PARTITIONS);

    let mut group = c.benchmark_group("plan_1000x100k");
    group.sample_size(20);
    group.bench_function("one node joins", |b| {
        b.iter(|| black_box(planner.plan(&join_current, &all_active)))
    });
    group.bench_function("ten nodes fail", |b| {
        b.iter(|| black_box(planner.plan(&steady, &failed)))
    });
    group.bench_function("ten fail, ten leave, ten join", |b| {
        b.iter(|| black_box(planner.plan(&steady, &mixed)))
    });
    group.bench_function("initial assignment", |b| {
        b.iter(|| black_box(planner.plan(&empty, &all_active)))
    });
    group.bench_function("steady state (no moves)", |b| {
        b.iter(|| black_box(planner.plan(&steady, &all_active)))
    });
    // Moving to a ring placement (bounded loads, eps 0.25) after one node joins; placing the
    // partitions on the ring is not timed, only planning the handoffs.
    let ring = HashRing::with_nodes(
        RingConfig::default(),
        all_active.iter().map(|m| (m.id.clone(), 1)),
    )
    .expect("ring builds");
    let bound = Some(LoadBound::new(0.25).expect("valid eps"));
    let mut before = ring.clone();
    before
        .remove_node(&node(NODES - 1))
        .expect("node is on the ring");
    let before = PartitionRing::new(before, PARTITIONS, bound).expect("places");
    let ring_current = OwnershipTable::from_owners(before.assignment().iter().map(|(p, o)| {
        o.map(|o| PartitionOwner {
            node: o.clone(),
            token: FencingToken::new(u64::from(p.0) + 1),
        })
    }));
    let desired = PartitionRing::new(ring, PARTITIONS, bound)
        .expect("places")
        .assignment();
    group.bench_function("plan_to ring placement, one node joins", |b| {
        b.iter(|| black_box(planner.plan_to(&ring_current, &desired, &all_active)))
    });
    group.finish();
}

criterion_group!(benches, plan_1000_nodes_100k_partitions);
criterion_main!(benches);
