//! coord-etcd against the contract suite on a 3-member etcd cluster whose raft leader was killed:
//! every case runs on the two survivors, through a client that still lists the dead member.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cluster_core::coordination::Coordinator;
use cluster_core::ids::Revision;
use coord_etcd::{EtcdConfig, EtcdCoordinator};
use testkit::coordination::{ClientFault, CoordHarness, TimingProfile};
use testkit::{EtcdCluster, FaultProxy};

struct ClusterHarness {
    cluster: EtcdCluster,
    dead: usize,
}

fn config(endpoints: Vec<String>) -> EtcdConfig {
    EtcdConfig {
        call_timeout: Duration::from_secs(1),
        keep_alive_interval: Duration::from_millis(500),
        keep_alive_timeout: Duration::from_secs(1),
        ..EtcdConfig::new(endpoints)
    }
}

impl ClusterHarness {
    fn alive(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.cluster.members().len()).filter(move |i| *i != self.dead)
    }
}

#[async_trait]
impl CoordHarness for ClusterHarness {
    async fn client(&self) -> Arc<dyn Coordinator> {
        Arc::new(
            EtcdCoordinator::connect(config(self.cluster.urls()))
                .await
                .unwrap(),
        )
    }

    async fn faultable_client(&self) -> (Arc<dyn Coordinator>, Box<dyn ClientFault>) {
        let member = self.alive().next().unwrap();
        let proxy = FaultProxy::start(self.cluster.member(member).client_addr()).unwrap();
        let coord = EtcdCoordinator::connect(config(vec![proxy.url("http")]))
            .await
            .unwrap();
        (Arc::new(coord), Box::new(proxy))
    }

    async fn stop_store(&mut self) {
        let alive: Vec<usize> = self.alive().collect();
        for i in alive {
            self.cluster.kill(i);
        }
    }

    async fn start_store(&mut self) {
        let alive: Vec<usize> = self.alive().collect();
        for i in alive {
            self.cluster.restart(i).await.unwrap();
        }
    }

    async fn compact(&self, revision: Revision) -> bool {
        let member = self.alive().next().unwrap();
        let url = self.cluster.member(member).url();
        let coord = EtcdCoordinator::connect(config(vec![url])).await.unwrap();
        let mut kv = coord.client().kv_client();
        kv.compact(revision.0 as i64, None).await.unwrap();
        true
    }

    fn timing(&self) -> TimingProfile {
        TimingProfile {
            ttl: Duration::from_secs(2),
            margin: Duration::from_millis(700),
            // A new raft leader extends every lease by its TTL once (etcd's lessor promotion).
            expiry_factor: 2,
            call_timeout: Duration::from_secs(1),
        }
    }
}

async fn harness() -> ClusterHarness {
    let mut cluster = EtcdCluster::start(3).await.unwrap();
    let dead = cluster.leader().await.expect("a raft leader");
    cluster.kill(dead);
    // Wait until the survivors elected a new leader.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut led = false;
        for i in (0..3).filter(|i| *i != dead) {
            led |= cluster.member(i).is_leader().await;
        }
        if led {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no new raft leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ClusterHarness { cluster, dead }
}

testkit::coordination_contract_suite!(harness());
