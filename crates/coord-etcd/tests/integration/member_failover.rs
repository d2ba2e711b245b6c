//! A leader keeps its term while etcd's raft leader member is killed under it.

use std::sync::Arc;
use std::time::Duration;

use cluster_core::coordination::{Coordinator, Key};
use cluster_core::ids::{NodeId, PlatformName};
use cluster_core::lease::LeaseTiming;
use cluster_core::naming::{NamespaceKind, namespace};
use coord_client::Session;
use coord_etcd::{EtcdConfig, EtcdCoordinator};
use testkit::EtcdCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn term_survives_raft_leader_kill_and_fenced_writes_keep_working() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let mut cluster = EtcdCluster::start(3).await.unwrap();
    let config = EtcdConfig {
        call_timeout: Duration::from_secs(1),
        keep_alive_interval: Duration::from_millis(500),
        keep_alive_timeout: Duration::from_secs(1),
        ..EtcdConfig::new(cluster.urls())
    };
    let coord: Arc<dyn Coordinator> = Arc::new(EtcdCoordinator::connect(config).await.unwrap());
    let platform = PlatformName::new("failover").unwrap();
    let election = Key::new(
        namespace(&platform, None, NamespaceKind::Election),
        "leader",
    )
    .unwrap();
    let data = Key::new(namespace(&platform, None, NamespaceKind::Kv), "state").unwrap();
    // A TTL well above etcd's election time, so a raft failover fits inside one lease.
    let timing = LeaseTiming::new(Duration::from_secs(5), Duration::from_secs(1)).unwrap();
    let session = Session::open(coord.clone(), NodeId::new("n1").unwrap(), timing)
        .await
        .unwrap();
    let term = coord
        .campaign(&election, "n1", session.lease())
        .await
        .unwrap();
    coord
        .put_if_held(&data, b"before".to_vec(), &term.fence())
        .await
        .unwrap();

    {
        tracing::info!("kill etcd's raft leader member");
        let raft_leader = cluster.leader().await.expect("raft leader");
        cluster.kill(raft_leader);
    }
    {
        tracing::info!("the session stays alive and the term's fenced writes commit again");
        let mut written = false;
        for _ in 0..100 {
            assert!(
                session.is_alive(),
                "session lost during a raft failover within its TTL"
            );
            if coord
                .put_if_held(&data, b"after".to_vec(), &term.fence())
                .await
                .is_ok()
            {
                written = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(written, "fenced write never committed after the failover");
        let leader = coord.leader(&election).await.unwrap().unwrap();
        assert_eq!((leader.holder.as_str(), leader.token), ("n1", term.token));
        tokio::time::sleep(timing.ttl).await;
        assert!(session.is_alive(), "session lost after the failover");
    }
}
