use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;
use crate::ring::RingConfig;

fn id(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

fn ring(nodes: &[(&str, u32)]) -> HashRing {
    HashRing::with_nodes(
        RingConfig::default(),
        nodes.iter().map(|(n, w)| (id(n), *w)),
    )
    .unwrap()
}

#[test]
fn construction_errors_are_typed() {
    let r = ring(&[("a", 1)]);
    assert_eq!(
        PartitionRing::new(r.clone(), 0, None).unwrap_err(),
        RingError::ZeroPartitions
    );
    assert_eq!(
        PartitionRing::new(HashRing::new(RingConfig::default()), 8, None).unwrap_err(),
        RingError::EmptyRing
    );
    for eps in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            LoadBound::new(eps),
            Err(RingError::InvalidEpsilon { .. })
        ));
    }
}

#[test]
fn capacity_follows_the_formula() {
    let b = LoadBound::new(0.25).unwrap();
    // ceil(1.25 * 100 * 1 / 4) = 32
    assert_eq!(b.capacity(100, 1, 4), 32);
    // ceil(1.25 * 100 * 2 / 4) = 63 (62.5 rounds up)
    assert_eq!(b.capacity(100, 2, 4), 63);
    // Tiny shares still get one slot.
    assert_eq!(b.capacity(1, 1, 1000), 1);
}

#[test]
fn keys_map_to_partitions_independently_of_membership() {
    let small = PartitionRing::new(ring(&[("a", 1)]), 64, None).unwrap();
    let big = PartitionRing::new(ring(&[("a", 1), ("b", 1), ("c", 1)]), 64, None).unwrap();
    for k in 0..500u32 {
        let k = k.to_le_bytes();
        assert_eq!(small.partition_for(k), big.partition_for(k));
        assert!(small.partition_for(k).0 < 64);
        assert_eq!(big.owner(k), big.owner_of(big.partition_for(k)));
    }
    assert_eq!(big.owner_of(PartitionId(64)), None);
}

#[test]
fn assignment_matches_owner_of_and_loads() {
    let pr = PartitionRing::new(ring(&[("a", 1), ("b", 2)]), 300, None).unwrap();
    let assignment = pr.assignment();
    assert_eq!(assignment.len(), 300);
    for (p, owner) in assignment.iter() {
        assert_eq!(owner, pr.owner_of(p));
    }
    let counts = assignment.counts();
    assert_eq!(counts[&id("a")], pr.load(&id("a")));
    assert_eq!(pr.load(&id("a")) + pr.load(&id("b")), 300);
    assert_eq!(pr.capacity(&id("a")), u32::MAX);
    assert_eq!(pr.load(&id("nobody")), 0);
}

fn arb_nodes() -> impl Strategy<Value = Vec<(String, u32)>> {
    proptest::collection::btree_map("[a-z][a-z0-9]{0,6}", 1u32..5, 1..20)
        .prop_map(|m| m.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn bounded_load_is_respected(
        nodes in arb_nodes(),
        partitions in 1u32..2_000,
        eps in prop_oneof![Just(0.25), 0.01f64..2.0],
    ) {
        let r = HashRing::with_nodes(
            RingConfig { vnodes_per_weight: 16 },
            nodes.iter().map(|(n, w)| (id(n), *w)),
        ).unwrap();
        let bound = LoadBound::new(eps).unwrap();
        let pr = PartitionRing::new(r, partitions, Some(bound)).unwrap();
        let weight_sum: u64 = nodes.iter().map(|(_, w)| u64::from(*w)).sum();
        let mut total = 0;
        for (n, w) in &nodes {
            let load = pr.load(&id(n));
            prop_assert!(load <= bound.capacity(partitions, *w, weight_sum));
            prop_assert!(load <= pr.capacity(&id(n)));
            total += load;
        }
        prop_assert_eq!(total, partitions);
        prop_assert!(pr.assignment().unowned().next().is_none());
    }

    #[test]
    fn placement_is_deterministic_across_instances(
        nodes in arb_nodes(),
        partitions in 1u32..500,
    ) {
        let config = RingConfig { vnodes_per_weight: 16 };
        let a = HashRing::with_nodes(config, nodes.iter().map(|(n, w)| (id(n), *w))).unwrap();
        let b = HashRing::with_nodes(config, nodes.iter().rev().map(|(n, w)| (id(n), *w))).unwrap();
        let bound = Some(LoadBound::new(0.25).unwrap());
        let a = PartitionRing::new(a, partitions, bound).unwrap();
        let b = PartitionRing::new(b, partitions, bound).unwrap();
        prop_assert_eq!(a.assignment(), b.assignment());
    }

    #[test]
    fn unbounded_join_moves_partitions_only_to_the_newcomer(
        nodes in arb_nodes(),
        partitions in 1u32..500,
    ) {
        let config = RingConfig { vnodes_per_weight: 16 };
        let before = HashRing::with_nodes(config, nodes.iter().map(|(n, w)| (id(n), *w))).unwrap();
        let mut after = before.clone();
        let newcomer = id("Newcomer");
        after.add_node(newcomer.clone(), 1).unwrap();
        let before = PartitionRing::new(before, partitions, None).unwrap().assignment();
        let after = PartitionRing::new(after, partitions, None).unwrap().assignment();
        let moved: BTreeSet<_> = after.moved_from(&before).collect();
        for p in moved {
            prop_assert_eq!(after.owner(p), Some(&newcomer));
        }
    }
}
