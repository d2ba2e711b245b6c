//! Shared fixtures: a real etcd (or a real nats-server, its JetStream KV as the coordination
//! store) and demo nodes as separate processes.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use cluster_tests::history::Record;
use cluster_tests::orchestrator::{DemoCluster, DemoSettings};
use testkit::{EtcdServer, NatsServer};

pub(crate) const TTL: Duration = Duration::from_secs(2);
pub(crate) const MARGIN: Duration = Duration::from_millis(600);
/// Bounds a hang only; the tests assert order and outcomes.
pub(crate) const LIMIT: Duration = Duration::from_secs(45);

pub(crate) struct Fixture {
    pub(crate) etcd: EtcdServer,
    pub(crate) cluster: DemoCluster,
    _dir: tempfile::TempDir,
}

pub(crate) async fn fixture(partitions: u32, work: bool) -> Fixture {
    fixture_with(partitions, work, |_| {}).await
}

/// Demo nodes on a real etcd, their settings adjusted by `tweak`.
pub(crate) async fn fixture_with(
    partitions: u32,
    work: bool,
    tweak: impl FnOnce(&mut DemoSettings),
) -> Fixture {
    let etcd = EtcdServer::start().await.expect("etcd");
    let (cluster, dir) = demo_cluster(
        "cluster-e2e-",
        vec![etcd.url()],
        None,
        partitions,
        work,
        tweak,
    );
    Fixture {
        etcd,
        cluster,
        _dir: dir,
    }
}

/// Demo nodes coordinating over NATS JetStream KV on a real nats-server.
pub(crate) struct NatsFixture {
    pub(crate) nats: NatsServer,
    pub(crate) cluster: DemoCluster,
    _dir: tempfile::TempDir,
}

pub(crate) async fn nats_fixture(partitions: u32, work: bool) -> NatsFixture {
    let nats = NatsServer::start().await.expect("nats-server");
    // The etcd address is never dialled: with `nats_kv` set the node coordinates over NATS KV.
    let etcd = vec!["http://127.0.0.1:9".into()];
    let (cluster, dir) = demo_cluster(
        "cluster-e2e-nats-",
        etcd,
        Some(nats.url()),
        partitions,
        work,
        |_| {},
    );
    NatsFixture {
        nats,
        cluster,
        _dir: dir,
    }
}

/// Demo nodes of platform `e2e` in a fresh temporary directory.
fn demo_cluster(
    prefix: &str,
    etcd: Vec<String>,
    nats_kv: Option<String>,
    partitions: u32,
    work: bool,
    tweak: impl FnOnce(&mut DemoSettings),
) -> (DemoCluster, tempfile::TempDir) {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temp dir");
    let mut settings = DemoSettings {
        platform: "e2e".into(),
        etcd,
        nats: None,
        nats_kv,
        ttl: TTL,
        margin: MARGIN,
        partitions,
        work,
        release_delay: Duration::ZERO,
    };
    tweak(&mut settings);
    let cluster = DemoCluster::new(
        env!("CARGO_BIN_EXE_demo-node").as_ref(),
        dir.path(),
        settings,
    );
    (cluster, dir)
}

/// Item id -> every run of it: (node, token).
fn runs(all: &[Record]) -> BTreeMap<String, Vec<(String, u64)>> {
    let mut runs: BTreeMap<String, Vec<(String, u64)>> = BTreeMap::new();
    for r in all.iter().filter(|r| r.event == "work_run") {
        if let Some(id) = &r.detail {
            runs.entry(id.clone())
                .or_default()
                .push((r.node.clone(), r.token));
        }
    }
    runs
}

/// No work item ran twice under one token, nor more than once after its first owner.
fn assert_runs_at_most_once_per_owner(runs: &BTreeMap<String, Vec<(String, u64)>>) {
    for (id, list) in runs {
        let mut tokens: Vec<u64> = list.iter().map(|(_, t)| *t).collect();
        tokens.sort();
        let before = tokens.len();
        tokens.dedup();
        assert_eq!(
            before,
            tokens.len(),
            "{id} ran twice under one token: {list:?}"
        );
        assert!(
            list.len() <= 2,
            "{id} ran more than once after its first owner: {list:?}"
        );
    }
}

/// Starts n1, n2 and n3 and waits until one of them leads the ledger app; returns the leader
/// and its token.
pub(crate) fn start_three_with_a_leader(c: &mut DemoCluster) -> (String, u64) {
    for n in ["n1", "n2", "n3"] {
        c.start(n).unwrap();
    }
    c.wait_for(LIMIT, |c| c.leader("ledger")).expect("a leader")
}

/// Partitions of the ring scenario's app.
pub(crate) const RING_PARTITIONS: u32 = 16;

/// Partition counts per live node once every partition has exactly one owner, spread over
/// `nodes` nodes within one partition of each other.
fn balanced(c: &mut DemoCluster, nodes: usize) -> Option<BTreeMap<String, usize>> {
    let owners = c.ring_owners();
    if owners.len() != RING_PARTITIONS as usize || owners.values().any(|o| o.len() != 1) {
        return None;
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for o in owners.values() {
        *counts.entry(o[0].0.clone()).or_default() += 1;
    }
    let (min, max) = (*counts.values().min()?, *counts.values().max()?);
    (counts.len() == nodes && max - min <= 1).then_some(counts)
}

/// The ring scenario, on any store: 3 nodes, then 4, then 2 (n1 leaves gracefully, n2 is
/// SIGKILLed), with owned work. Every partition ends owned by exactly one live node, none ever
/// had two valid owners, the killed node's partitions went to the survivors with larger tokens,
/// and work was drained on graceful moves and re-run once after the kill, never twice.
pub(crate) fn ring_three_then_four_then_two(c: &mut DemoCluster) {
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
        tracing::info!(
            "n2 is SIGKILLed: its partitions move to the survivors after its lease ends"
        );
        let held: BTreeMap<u32, u64> = c
            .ring_owners()
            .into_iter()
            .filter(|(_, o)| o[0].0 == "n2")
            .map(|(p, o)| (p, o[0].1))
            .collect();
        assert!(!held.is_empty(), "n2 owned partitions before the kill");
        c.kill("n2");
        c.wait_for(LIMIT, |c| balanced(c, 2))
            .expect("ring over two nodes");
        let owners = c.ring_owners();
        for (p, old) in &held {
            let (node, new) = &owners[p][0];
            assert!(
                node == "n3" || node == "n4",
                "partition {p} owned by {node}"
            );
            assert!(new > old, "partition {p}: token {new} after {old}");
        }
        held.into_values().collect()
    };
    {
        tracing::info!("every partition has exactly one live owner; none ever had two");
        for (p, o) in &c.ring_owners() {
            assert!(c.is_running(&o[0].0), "partition {p} owned by a dead node");
        }
        let violations = c.ownership_violations();
        assert!(violations.is_empty(), "{violations:#?}");
    }
    {
        tracing::info!("work: drained on graceful moves, re-run once after the kill, never twice");
        let runs = runs(&c.all_history());
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
