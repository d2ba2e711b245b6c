use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

fn id(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

fn app(s: &str) -> AppName {
    AppName::new(s).unwrap()
}

fn node(name: &str, labels: &[(&str, &str)], apps: &[&str], load: u32) -> NodeCandidate {
    NodeCandidate {
        id: id(name),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        apps: apps.iter().map(|a| app(a)).collect(),
        load,
        schedulable: true,
    }
}

#[test]
fn hard_rules_exclude_with_every_reason() {
    let rules = PlacementRules::new(vec![
        PlacementRule::OnLabel {
            key: "disk".into(),
            value: "ssd".into(),
        },
        PlacementRule::OnNodes {
            nodes: [id("n1"), id("n2")].into(),
        },
        PlacementRule::WithApp { app: app("cache") },
    ]);
    let mut down = node("n3", &[], &[], 0);
    down.schedulable = false;
    let placement = rules.rank(&[
        node("n1", &[("disk", "ssd")], &["cache"], 0),
        node("n2", &[("disk", "hdd")], &["cache"], 0),
        down,
    ]);
    assert_eq!(placement.best(), Some(&id("n1")));
    assert_eq!(
        placement.reasons_for(&id("n2")),
        &[ExclusionReason::MissingLabel {
            key: "disk".into(),
            value: "ssd".into()
        }]
    );
    assert_eq!(
        placement.reasons_for(&id("n3")),
        &[
            ExclusionReason::NotSchedulable,
            ExclusionReason::MissingLabel {
                key: "disk".into(),
                value: "ssd".into()
            },
            ExclusionReason::NotListed,
            ExclusionReason::AppAbsent { app: app("cache") },
        ]
    );
    assert!(placement.reasons_for(&id("n1")).is_empty());
}

#[test]
fn soft_rules_rank_then_load_then_id() {
    let rules = PlacementRules::new(vec![
        PlacementRule::PreferLabel {
            key: "zone".into(),
            value: "a".into(),
            weight: 5,
        },
        PlacementRule::PreferLabel {
            key: "gpu".into(),
            value: "yes".into(),
            weight: -3,
        },
    ]);
    let placement = rules.rank(&[
        node("d", &[("zone", "a"), ("gpu", "yes")], &[], 0),
        node("c", &[("zone", "b")], &[], 1),
        node("b", &[("zone", "a")], &[], 2),
        node("a", &[("zone", "a")], &[], 2),
    ]);
    let order: Vec<(&str, i64)> = placement
        .ranked
        .iter()
        .map(|r| (r.id.as_str(), r.score))
        .collect();
    assert_eq!(order, vec![("a", 5), ("b", 5), ("d", 2), ("c", 0)]);
    assert!(placement.excluded.is_empty());
}

#[test]
fn rules_deserialise_from_config() {
    let json = r#"[
        {"rule": "on_label", "key": "zone", "value": "eu"},
        {"rule": "prefer_label", "key": "disk", "value": "ssd", "weight": 3},
        {"rule": "away_from_app", "app": "orders"}
    ]"#;
    let rules: PlacementRules = serde_json::from_str(json).unwrap();
    assert_eq!(rules.rules().len(), 3);
    assert!(
        serde_json::from_str::<PlacementRules>(r#"[{"rule": "with_app", "app": "Bad"}]"#).is_err()
    );
}

fn arb_node() -> impl Strategy<Value = NodeCandidate> {
    (
        "[a-z][0-9]{0,2}",
        proptest::collection::btree_map("[ab]", "[xy]", 0..3),
        proptest::collection::btree_set("[pq]", 0..3),
        0u32..5,
        any::<bool>(),
    )
        .prop_map(|(name, labels, apps, load, schedulable)| NodeCandidate {
            id: id(&name),
            labels,
            apps: apps.iter().map(|a| app(a)).collect(),
            load,
            schedulable,
        })
}

fn arb_rule() -> impl Strategy<Value = PlacementRule> {
    prop_oneof![
        ("[ab]", "[xy]").prop_map(|(key, value)| PlacementRule::OnLabel { key, value }),
        ("[ab]", "[xy]").prop_map(|(key, value)| PlacementRule::AvoidLabel { key, value }),
        ("[ab]", "[xy]", -5i32..5).prop_map(|(key, value, weight)| PlacementRule::PreferLabel {
            key,
            value,
            weight
        }),
        "[pq]".prop_map(|a| PlacementRule::WithApp { app: app(&a) }),
        "[pq]".prop_map(|a| PlacementRule::AwayFromApp { app: app(&a) }),
    ]
}

proptest! {
    #[test]
    fn every_candidate_is_either_ranked_or_explained(
        nodes in proptest::collection::vec(arb_node(), 0..10),
        rules in proptest::collection::vec(arb_rule(), 0..5),
    ) {
        let rules = PlacementRules::new(rules);
        let placement = rules.rank(&nodes);
        prop_assert_eq!(placement.ranked.len() + placement.excluded.len(), nodes.len());
        for e in &placement.excluded {
            prop_assert!(!e.reasons.is_empty());
        }
        for pair in placement.ranked.windows(2) {
            prop_assert!((-pair[0].score, pair[0].load) <= (-pair[1].score, pair[1].load));
        }
        // Soft rules never exclude; hard rules alone decide eligibility.
        let hard_only = PlacementRules::new(
            rules.rules().iter().filter(|r| !matches!(r, PlacementRule::PreferLabel { .. })).cloned().collect(),
        );
        prop_assert_eq!(hard_only.rank(&nodes).ranked.len(), placement.ranked.len());
    }
}
