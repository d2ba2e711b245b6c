//! Shared fixture: a real etcd and demo nodes as separate processes.

#![allow(dead_code)]

use std::time::Duration;

use cluster_tests::orchestrator::{DemoCluster, DemoSettings};
use testkit::EtcdServer;

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
