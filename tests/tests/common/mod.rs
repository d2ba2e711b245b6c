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
    let etcd = EtcdServer::start().await.expect("etcd");
    let dir = tempfile::Builder::new()
        .prefix("cluster-e2e-")
        .tempdir()
        .expect("temp dir");
    let settings = DemoSettings {
        platform: "e2e".into(),
        etcd: vec![etcd.url()],
        nats: None,
        nats_kv: None,
        ttl: TTL,
        margin: MARGIN,
        partitions,
        work,
    };
    let cluster = DemoCluster::new(
        env!("CARGO_BIN_EXE_demo-node").as_ref(),
        dir.path(),
        settings,
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
    let dir = tempfile::Builder::new()
        .prefix("cluster-e2e-nats-")
        .tempdir()
        .expect("temp dir");
    let settings = DemoSettings {
        platform: "e2e".into(),
        // Never dialled: with `nats_kv` set the node coordinates over NATS KV only.
        etcd: vec!["http://127.0.0.1:9".into()],
        nats: None,
        nats_kv: Some(nats.url()),
        ttl: TTL,
        margin: MARGIN,
        partitions,
        work,
    };
    let cluster = DemoCluster::new(
        env!("CARGO_BIN_EXE_demo-node").as_ref(),
        dir.path(),
        settings,
    );
    NatsFixture {
        nats,
        cluster,
        _dir: dir,
    }
}

/// Item id -> every run of it: (node, token).
pub(crate) fn runs(all: &[Record]) -> BTreeMap<String, Vec<(String, u64)>> {
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
pub(crate) fn assert_runs_at_most_once_per_owner(runs: &BTreeMap<String, Vec<(String, u64)>>) {
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
