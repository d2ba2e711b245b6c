//! On a 3-server NATS cluster with R3 buckets, a standby whose client talks to a follower cut
//! off from its peers never promotes on that follower's stale view: every read that decides
//! the seal is answered by the stream leader, so the promotion fails instead of sealing below
//! a segment the store acknowledged, and succeeds with every synced commit once healed.

use crate::fixtures;
use cluster_core::error::Retryable;

use std::sync::Arc;
use std::time::Duration;

use bus_nats::{NatsBusConfig, NatsObjectStore, ObjectBucketSpec};
use cluster_core::coordination::KvStore;
use cluster_core::ids::FencingToken;
use cluster_core::object_store::ObjectStore;
use fixtures::*;
use testkit::NatsCluster;
use wal_sqlite::{ReplicationStores, ReplicationTerm, Replicator, Standby, StartFrom};

async fn stores_on(url: &str, kv: Arc<dyn KvStore>) -> ReplicationStores {
    let config = NatsBusConfig {
        call_timeout: Duration::from_millis(1500),
        ignore_discovered_servers: true,
        ..NatsBusConfig::new(url)
    };
    let open = |name: &str| ObjectBucketSpec {
        replicas: 3,
        ..ObjectBucketSpec::new(name)
    };
    let wal: Arc<dyn ObjectStore> = Arc::new(
        NatsObjectStore::connect(config.clone(), &open("ha_wal"))
            .await
            .unwrap(),
    );
    let snapshots: Arc<dyn ObjectStore> = Arc::new(
        NatsObjectStore::connect(config, &open("ha_snapshots"))
            .await
            .unwrap(),
    );
    ReplicationStores {
        wal,
        snapshots,
        registry: registry(kv),
    }
}

/// The name of the server leading `stream`, as member `i`'s monitor reports it.
async fn stream_leader(cluster: &NatsCluster, stream: &str) -> Option<String> {
    for m in cluster.members() {
        let jsz = m.monitor_json("/jsz?streams=true").await?;
        for account in jsz.get("account_details")?.as_array()? {
            for s in account
                .get("stream_detail")
                .and_then(|d| d.as_array())
                .into_iter()
                .flatten()
            {
                if s.get("name").and_then(|n| n.as_str()) == Some(stream)
                    && let Some(leader) = s
                        .get("cluster")
                        .and_then(|c| c.get("leader"))
                        .and_then(|l| l.as_str())
                {
                    return Some(leader.to_owned());
                }
            }
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_pinned_to_a_cut_off_follower_never_seals_below_an_acknowledged_segment() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let cluster = NatsCluster::start(3).await.unwrap();
    let coord = Arc::new(coord_mem::MemCoordinator::new());
    let admin = stores_on(&cluster.member(0).url(), coord.clone()).await;
    let leader = {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(l) = stream_leader(&cluster, "OBJ_ha_wal").await {
                break l;
            }
            assert!(std::time::Instant::now() < deadline, "no stream leader");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    // Member i is named n{i}; the standby's client talks to a follower of the WAL stream, the
    // primary's to the leader.
    let leader_i: usize = leader.trim_start_matches('n').parse().unwrap();
    let follower_i = (leader_i + 1) % 3;
    tracing::info!(leader, follower_i, "WAL stream placement");
    let primary_stores = stores_on(&cluster.member(leader_i).url(), coord.clone()).await;
    let standby_stores = stores_on(&cluster.member(follower_i).url(), coord.clone()).await;
    drop(admin);
    let dir = tempfile::tempdir().unwrap();
    let a_db = dir.path().join("a.db");
    let a = open_ledger(&a_db);
    let a_rep = Replicator::start(
        &a_db,
        "a",
        fast_config(),
        primary_stores.clone(),
        ReplicationTerm::unfenced(FencingToken::new(1)),
        StartFrom::Snapshot,
    )
    .await
    .unwrap();
    let replica = dir.path().join("b-replica.db");
    let b = Standby::start(&replica, standby_config(), standby_stores.clone())
        .await
        .unwrap();
    for tx in 0..5 {
        write_tx(&a, tx);
    }
    let p = a_rep.sync().await.unwrap();
    assert_eq!(b.wait_for(p, Duration::from_secs(30)).await, Some(p));
    tracing::info!("the standby's server is cut off; the primary commits X with sync and stops");
    cluster.isolate(follower_i);
    write_tx(&a, 999);
    let x = a_rep.sync().await.unwrap();
    assert!(x.index > p.index);
    a_rep.stop().await.unwrap();
    let promoted = dir.path().join("b.db");
    let first = b
        .promote(
            &promoted,
            "b",
            fast_config(),
            ReplicationTerm::unfenced(FencingToken::new(2)),
            None,
        )
        .await;
    let (g1, _) = coord_record(&primary_stores).await;
    match first {
        Ok(rep) => {
            assert!(
                rows(&promoted).iter().any(|(tx, _)| *tx == 999),
                "promoted on a stale replica: sealed at {:?}, X acknowledged at {x}",
                g1
            );
            rep.stop().await.unwrap();
        }
        Err(e) => {
            tracing::info!(error = %e, "promotion through the cut-off server failed");
            assert_eq!(g1, None, "a failed promotion seals nothing");
            cluster.heal();
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            let probe = store_layout_segment(x.index);
            while !matches!(standby_stores.wal.head(&probe).await, Ok(Some(_))) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the healed server never reached the leader"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // The healed server's JetStream can still answer 503 (temporarily unavailable)
            // for a moment after it reached the leader: a promotion refused that way is
            // retried, as the runtime retries a failed term; any other error fails the test.
            let rep = loop {
                let b = Standby::start(&replica, standby_config(), standby_stores.clone())
                    .await
                    .unwrap();
                match b
                    .promote(
                        &promoted,
                        "b",
                        fast_config(),
                        ReplicationTerm::unfenced(FencingToken::new(2)),
                        None,
                    )
                    .await
                {
                    Ok(rep) => break rep,
                    Err(e) if e.is_retryable() && std::time::Instant::now() < deadline => {
                        tracing::info!(error = %e, "promotion after the heal: retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(e) => panic!("promotion after the heal failed: {e}"),
                }
            };
            assert!(rows(&promoted).iter().any(|(tx, _)| *tx == 999));
            assert_eq!(coord_record(&primary_stores).await.0, Some(x.index));
            rep.stop().await.unwrap();
        }
    }
}

async fn coord_record(stores: &ReplicationStores) -> (Option<u64>, ()) {
    let (g1, _) = stores.registry.record(1).await.unwrap().unwrap();
    (g1.sealed_through, ())
}

fn store_layout_segment(index: u64) -> cluster_core::object_store::ObjectName {
    cluster_core::object_store::ObjectName::new(format!("gen/{:016x}/seg/{index:016x}", 1)).unwrap()
}
