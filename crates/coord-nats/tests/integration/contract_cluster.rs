//! coord-nats against the contract suite on a 3-node JetStream cluster whose meta leader was
//! killed before the case. Clients list all three servers, the dead one too, each behind a
//! fault proxy. "The store down" is a second server killed (no quorum left) and every client
//! connection refused; "back" restarts that server and lets clients in again.
//!
//! Buckets created during the case are R2 on the two survivors: JetStream refuses to place (or
//! stalls placing) an R3 stream while one of three peers is offline. R3 buckets losing a peer
//! after they were created are covered by `cluster_failover.rs`.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cluster_core::coordination::Coordinator;
use cluster_core::ids::Revision;
use coord_nats::{NatsConfig, NatsCoordinator};
use testkit::coordination::{ClientFault, CoordHarness, TimingProfile};
use testkit::{FaultProxy, Mode, NatsCluster};

struct ClusterHarness {
    cluster: NatsCluster,
    dead: usize,
    /// One proxy per member; every client connects through them.
    proxies: Vec<FaultProxy>,
    /// The survivor killed by `stop_store`, if any.
    stopped: Option<usize>,
}

/// Three servers on two cores: watch heartbeats at the adapter's default (1 s) rather than the
/// single-server tests' 500 ms, so a busy moment is not taken for a dead watch.
fn config(servers: Vec<String>) -> NatsConfig {
    NatsConfig {
        servers,
        replicas: Some(2),
        watch_heartbeat: Duration::from_secs(1),
        ..common::config(String::new())
    }
}

impl ClusterHarness {
    fn survivors(&self) -> Vec<usize> {
        (0..3).filter(|i| *i != self.dead).collect()
    }

    fn urls(&self) -> Vec<String> {
        self.proxies.iter().map(|p| p.url("nats")).collect()
    }
}

/// The meta leader's index, as member `i` reports it.
async fn meta_leader(cluster: &NatsCluster, i: usize) -> Option<usize> {
    let jsz = cluster.member(i).monitor_json("/jsz").await?;
    let name = jsz.get("meta_cluster")?.get("leader")?.as_str()?.to_owned();
    name.strip_prefix('n')?.parse().ok()
}

#[async_trait]
impl CoordHarness for ClusterHarness {
    async fn client(&self) -> Arc<dyn Coordinator> {
        Arc::new(NatsCoordinator::connect(config(self.urls())).await.unwrap())
    }

    async fn faultable_client(&self) -> (Arc<dyn Coordinator>, Box<dyn ClientFault>) {
        let member = self.survivors()[0];
        let proxy = FaultProxy::start(self.proxies[member].addr()).unwrap();
        let coord = NatsCoordinator::connect(config(vec![proxy.url("nats")]))
            .await
            .unwrap();
        (Arc::new(coord), Box::new(proxy))
    }

    async fn stop_store(&mut self) {
        // Two of three servers down: no quorum. And no client gets through to the last one.
        let victim = self.survivors()[0];
        self.cluster.kill(victim);
        self.stopped = Some(victim);
        for proxy in &self.proxies {
            proxy.set_mode(Mode::Refuse);
            proxy.cut();
        }
    }

    async fn start_store(&mut self) {
        if let Some(victim) = self.stopped.take() {
            self.cluster.restart(victim).await.unwrap();
        }
        for proxy in &self.proxies {
            proxy.heal();
        }
    }

    async fn compact(&self, _revision: Revision) -> bool {
        false
    }

    fn timing(&self) -> TimingProfile {
        TimingProfile {
            ttl: Duration::from_secs(2),
            margin: Duration::from_millis(700),
            expiry_factor: 1,
            call_timeout: Duration::from_secs(1),
        }
    }
}

async fn harness() -> ClusterHarness {
    let mut cluster = NatsCluster::start(3).await.unwrap();
    let started = Instant::now();
    let dead = loop {
        if let Some(leader) = meta_leader(&cluster, 0).await {
            break leader;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no meta leader"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    cluster.kill(dead);
    let killed = Instant::now();
    let survivor = (0..3).find(|i| *i != dead).unwrap_or(0);
    loop {
        if meta_leader(&cluster, survivor)
            .await
            .is_some_and(|l| l != dead)
        {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "no new meta leader"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::info!(dead, reelected_after = ?killed.elapsed(), "meta leader killed");
    let proxies = (0..3)
        .map(|i| FaultProxy::start(cluster.member(i).client_addr()).unwrap())
        .collect();
    ClusterHarness {
        cluster,
        dead,
        proxies,
        stopped: None,
    }
}

// Every case pays for a fresh 3-node cluster and a meta-leader election after the kill (4-8 s
// that NATS does not let us shorten), so the cluster runs the cases where replication and
// failover change the outcome; all 24 cases run against a single server in contract.rs.
testkit::coordination_contract_suite!(@cases harness();
    lease_grant_renew_revoke,
    lease_expiry_deletes_bound_keys,
    session_lost_fires_before_store_expiry,
    kv_conditional_writes,
    watch_survives_store_restart,
    election_resign_hands_over_with_larger_token,
    election_killed_holder_replaced_with_larger_token,
    claims_conflict_transfer_release,
    store_down_gives_unavailable,
);
