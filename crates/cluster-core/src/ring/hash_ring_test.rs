use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;

fn id(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

fn ring_of(names: &[&str]) -> HashRing {
    HashRing::with_nodes(RingConfig::default(), names.iter().map(|n| (id(n), 1))).unwrap()
}

#[test]
fn empty_ring_has_no_owner() {
    let ring = HashRing::new(RingConfig::default());
    assert_eq!(ring.owner("k"), None);
    assert_eq!(ring.owners("k", 3).count(), 0);
}

#[test]
fn membership_errors_name_the_node() {
    let mut ring = ring_of(&["a"]);
    assert_eq!(
        ring.add_node(id("a"), 1),
        Err(RingError::DuplicateNode { node: id("a") })
    );
    assert_eq!(
        ring.add_node(id("b"), 0),
        Err(RingError::ZeroWeight { node: id("b") })
    );
    assert_eq!(
        ring.remove_node(&id("z")),
        Err(RingError::UnknownNode { node: id("z") })
    );
    assert!(matches!(
        ring.add_node(id("huge"), u32::MAX),
        Err(RingError::TooManyPoints { .. })
    ));
    assert_eq!(ring.len(), 1);
    let mut zero = HashRing::new(RingConfig {
        vnodes_per_weight: 0,
    });
    assert_eq!(zero.add_node(id("a"), 1), Err(RingError::ZeroVnodes));
}

#[test]
fn single_node_owns_everything() {
    let ring = ring_of(&["only"]);
    for k in 0..100u32 {
        assert_eq!(ring.owner(k.to_le_bytes()), Some(&id("only")));
    }
    assert_eq!(ring.owners("x", 5).count(), 1);
}

#[test]
fn weights_scale_the_share() {
    let mut ring = HashRing::new(RingConfig::default());
    ring.add_node(id("light"), 1).unwrap();
    ring.add_node(id("heavy"), 3).unwrap();
    assert_eq!(ring.point_count(), 4 * 256);
    assert_eq!(ring.weight(&id("heavy")), Some(3));
    let heavy = (0..40_000u32)
        .filter(|k| ring.owner(k.to_le_bytes()) == Some(&id("heavy")))
        .count();
    let share = heavy as f64 / 40_000.0;
    assert!((0.68..0.82).contains(&share), "heavy share {share}");
}

#[test]
fn lookups_agree_with_a_linear_scan() {
    let ring = ring_of(&["a", "b", "c", "d", "e"]);
    for k in 0..2_000u32 {
        let h = stable_hash(&k.to_le_bytes());
        let expected = ring.points.iter().position(|p| p.hash >= h).unwrap_or(0);
        let node = &ring.nodes()[ring.points[expected].node as usize].id;
        assert_eq!(ring.owner_of_hash(h), Some(node));
    }
    // Edges of the hash space.
    assert!(ring.owner_of_hash(0).is_some());
    assert!(ring.owner_of_hash(u64::MAX).is_some());
}

fn arb_names() -> impl Strategy<Value = BTreeSet<String>> {
    proptest::collection::btree_set("[a-z][a-z0-9-]{0,10}", 1..12)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn ring_is_deterministic_across_instances_and_insertion_order(
        names in arb_names(),
        keys in proptest::collection::vec(any::<u64>(), 1..50),
    ) {
        let names: Vec<NodeId> = names.into_iter().map(|n| id(&n)).collect();
        let config = RingConfig { vnodes_per_weight: 32 };
        let forward = HashRing::with_nodes(config, names.iter().map(|n| (n.clone(), 1))).unwrap();
        let mut backward = HashRing::new(config);
        for n in names.iter().rev() {
            backward.add_node(n.clone(), 1).unwrap();
        }
        for k in keys {
            let k = k.to_le_bytes();
            prop_assert_eq!(forward.owner(k), backward.owner(k));
            prop_assert!(forward.owners(k, 3).eq(backward.owners(k, 3)));
        }
    }

    #[test]
    fn owners_are_distinct_and_start_with_the_owner(
        names in arb_names(),
        key in any::<u64>(),
        n in 0usize..15,
    ) {
        let ring = HashRing::with_nodes(
            RingConfig { vnodes_per_weight: 16 },
            names.iter().map(|s| (id(s), 1)),
        ).unwrap();
        let key = key.to_le_bytes();
        let owners: Vec<&NodeId> = ring.owners(key, n).collect();
        prop_assert_eq!(owners.len(), n.min(ring.len()));
        let distinct: BTreeSet<&NodeId> = owners.iter().copied().collect();
        prop_assert_eq!(distinct.len(), owners.len());
        if n > 0 {
            prop_assert_eq!(Some(owners[0]), ring.owner(key));
        }
    }

    #[test]
    fn joins_and_leaves_move_only_the_keys_they_must(
        names in arb_names(),
        newcomer in "[A-Z][a-z]{0,6}",
        keys in proptest::collection::vec(any::<u64>(), 1..200),
    ) {
        let config = RingConfig { vnodes_per_weight: 32 };
        let before = HashRing::with_nodes(config, names.iter().map(|s| (id(s), 1))).unwrap();
        let mut after = before.clone();
        let newcomer = id(&newcomer);
        after.add_node(newcomer.clone(), 1).unwrap();
        for k in &keys {
            let k = k.to_le_bytes();
            let (old, new) = (before.owner(k), after.owner(k));
            // A join moves keys only onto the new node.
            prop_assert!(old == new || new == Some(&newcomer));
        }
        let leaver = before.nodes()[0].id.clone();
        let mut without = before.clone();
        without.remove_node(&leaver).unwrap();
        for k in &keys {
            let k = k.to_le_bytes();
            // A leave moves only the leaver's keys.
            if before.owner(k) != Some(&leaver) {
                prop_assert_eq!(before.owner(k), without.owner(k));
            }
        }
    }
}

/// The owner by definition: the first point at or after `h`, wrapping.
fn scan_owner(ring: &HashRing, h: u64) -> &NodeId {
    let point = ring.points.iter().position(|p| p.hash >= h).unwrap_or(0);
    &ring.nodes()[ring.points[point].node as usize].id
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn indexed_lookup_matches_the_definition(
        names in arb_names(),
        vnodes in 1u32..40,
        hashes in proptest::collection::vec(any::<u64>(), 1..50),
    ) {
        let ring = HashRing::with_nodes(
            RingConfig { vnodes_per_weight: vnodes },
            names.iter().map(|s| (id(s), 1)),
        ).unwrap();
        // Random hashes, every point's own hash and its neighbours, and bucket edges.
        let mut probes = hashes;
        for p in &ring.points {
            probes.extend([p.hash, p.hash.wrapping_sub(1), p.hash.wrapping_add(1)]);
        }
        for b in 0..ring.index.len() as u64 {
            let start = b << ring.shift;
            probes.extend([start, start.wrapping_sub(1)]);
        }
        for h in probes {
            prop_assert_eq!(ring.owner_of_hash(h), Some(scan_owner(&ring, h)));
        }
    }
}
