//! Ring ownership with real etcd and nodes as separate OS processes: 3 nodes, then 4, then 2
//! (one leaves gracefully, one is SIGKILLed). Checked from the nodes' history files (stamped with
//! CLOCK_MONOTONIC and tokens): every partition ends owned by exactly one live node, no
//! partition ever had two valid owners, work was drained on graceful moves and re-run once after
//! the kill.

mod common;

use std::collections::BTreeMap;

use cluster_tests::history::Record;
use cluster_tests::orchestrator::DemoCluster;
use common::{LIMIT, assert_runs_at_most_once_per_owner, fixture, runs};

const PARTITIONS: u32 = 16;

/// Partition counts per live node once every partition has exactly one owner, spread over
/// `nodes` nodes within one partition of each other.
fn balanced(c: &mut DemoCluster, nodes: usize) -> Option<BTreeMap<String, usize>> {
    let owners = c.ring_owners();
    if owners.len() != PARTITIONS as usize || owners.values().any(|o| o.len() != 1) {
        return None;
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for o in owners.values() {
        *counts.entry(o[0].0.clone()).or_default() += 1;
    }
    let (min, max) = (*counts.values().min()?, *counts.values().max()?);
    (counts.len() == nodes && max - min <= 1).then_some(counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_three_then_four_then_two_keeps_one_owner_and_hands_work_over() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let mut f = fixture(PARTITIONS, true).await;
    let c = &mut f.cluster;

    {
        tracing::info!("three nodes share the ring");
        for n in ["n1", "n2", "n3"] {
            c.start(n).unwrap();
        }
        c.wait_for(LIMIT, |c| balanced(c, 3))
            .expect("ring over three nodes");
    }
    {
        tracing::info!("a fourth node joins: partitions move to it");
        c.start("n4").unwrap();
        let counts = c
            .wait_for(LIMIT, |c| balanced(c, 4))
            .expect("ring over four nodes");
        assert!(counts["n4"] >= 4, "{counts:?}");
    }
    let n1_tokens: Vec<u64> = {
        tracing::info!("n1 leaves gracefully: its partitions are handed off after draining");
        c.stop("n1", LIMIT).expect("n1 exits");
        c.wait_for(LIMIT, |c| balanced(c, 3))
            .expect("ring over three nodes again");
        let released: Vec<Record> = c
            .history("n1")
            .into_iter()
            .filter(|r| r.event == "release")
            .collect();
        assert!(!released.is_empty());
        assert!(
            released
                .iter()
                .all(|r| r.detail.as_deref() == Some("handoff")),
            "every partition of a leaving node is handed off: {released:?}"
        );
        released.iter().map(|r| r.token).collect()
    };
    let killed_tokens: Vec<u64> = {
        tracing::info!("n2 is SIGKILLed: its partitions move after its lease ends");
        let held: Vec<u64> = c
            .ring_owners()
            .values()
            .filter(|o| o[0].0 == "n2")
            .map(|o| o[0].1)
            .collect();
        c.kill("n2");
        c.wait_for(LIMIT, |c| balanced(c, 2))
            .expect("ring over two nodes");
        held
    };
    {
        tracing::info!("no partition ever had two valid owners");
        let violations = c.ownership_violations();
        assert!(violations.is_empty(), "{violations:#?}");
    }
    {
        tracing::info!("work: drained on graceful moves, re-run once after the kill, never twice");
        let all = c.all_history();
        let runs = runs(&all);
        assert_runs_at_most_once_per_owner(&runs);
        let creator_token = |id: &str| -> Option<u64> { id.split('-').nth(1)?.parse().ok() };
        let rerun_from = |tokens: &[u64]| -> usize {
            runs.iter()
                .filter(|(id, list)| {
                    creator_token(id).is_some_and(|t| tokens.contains(&t)) && list.len() == 2
                })
                .count()
        };
        assert_eq!(
            rerun_from(&n1_tokens),
            0,
            "work of a gracefully moved partition was re-run"
        );
        assert!(
            rerun_from(&killed_tokens) >= 1,
            "the killed node's in-flight work was re-run by the new owners"
        );
    }
}
