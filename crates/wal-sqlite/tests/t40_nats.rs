//! On a real durable nats-server: a standby follows a primary with continuous writes while an
//! open reader checks the ledger; the object store goes down in async mode (writes go on, the
//! replica catches up after) and in sync mode (`sync()` fails `Unavailable`, then works again).

#[path = "fixtures/mod.rs"]
mod fixtures;

use std::sync::Arc;
use std::time::Duration;

use bus_nats::{NatsBusConfig, NatsObjectStore, ObjectBucketSpec};
use cluster_core::ids::FencingToken;
use cluster_core::object_store::ObjectStore;
use fixtures::*;
use testkit::{NatsOptions, NatsServer};
use wal_sqlite::{
    ReplicationConfig, ReplicationError, ReplicationStores, ReplicationTerm, Replicator, Standby,
    StartFrom,
};

async fn nats_stores(server: &NatsServer, kv: Arc<coord_mem::MemCoordinator>) -> ReplicationStores {
    let config = NatsBusConfig {
        call_timeout: Duration::from_millis(500),
        ping_interval: Duration::from_millis(500),
        ..NatsBusConfig::new(server.url())
    };
    let wal: Arc<dyn ObjectStore> = Arc::new(
        NatsObjectStore::connect(config.clone(), &ObjectBucketSpec::new("test_ledger_wal"))
            .await
            .unwrap(),
    );
    let snapshots: Arc<dyn ObjectStore> = Arc::new(
        NatsObjectStore::connect(config, &ObjectBucketSpec::new("test_ledger_snapshots"))
            .await
            .unwrap(),
    );
    ReplicationStores {
        wal,
        snapshots,
        registry: registry(kv),
    }
}

fn config() -> ReplicationConfig {
    ReplicationConfig {
        sync_timeout: Duration::from_secs(2),
        ..fast_config()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_over_nats_with_store_outages_in_both_modes() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let mut nats = NatsServer::start_with(NatsOptions::durable())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let coord = Arc::new(coord_mem::MemCoordinator::new());
    let stores = nats_stores(&nats, coord.clone()).await;
    let primary_path = dir.path().join("primary.db");
    let replica_path = dir.path().join("replica.db");
    let primary = open_ledger(&primary_path);
    write_tx(&primary, 0);
    let replicator = Replicator::start(
        &primary_path,
        "node-a",
        config(),
        stores.clone(),
        ReplicationTerm::unfenced(FencingToken::new(1)),
        StartFrom::Snapshot,
    )
    .await
    .unwrap();
    let standby = Standby::start(&replica_path, standby_config(), stores.clone())
        .await
        .unwrap();
    let p = replicator.sync().await.unwrap();
    assert_eq!(standby.wait_for(p, Duration::from_secs(30)).await, Some(p));
    let reader = InvariantReader::start(replica_path.clone());
    let mut tx = 1;
    {
        tracing::info!("continuous writes; equal at each checked boundary");
        for round in 0..3 {
            for _ in 0..100 {
                write_tx(&primary, tx);
                tx += 1;
            }
            let p = replicator.sync().await.unwrap();
            assert_eq!(standby.wait_for(p, Duration::from_secs(30)).await, Some(p));
            assert_eq!(rows(&replica_path), rows(&primary_path), "round {round}");
            integrity_ok(&replica_path);
        }
    }
    {
        tracing::info!("store down, async: commits go on, lag grows, sync fails Unavailable");
        nats.stop();
        for _ in 0..50 {
            write_tx(&primary, tx);
            tx += 1;
        }
        let err = replicator.sync().await.unwrap_err();
        assert!(matches!(err, ReplicationError::Unavailable { .. }), "{err}");
        assert!(replicator.stats().degraded.is_some());
        assert!(replicator.lag() > Duration::ZERO);
    }
    {
        tracing::info!("store back: everything captured during the outage is shipped and applied");
        nats.restart().await.unwrap();
        let mut attempt = 0;
        let p = loop {
            match replicator.sync().await {
                Ok(p) => break p,
                Err(e) if attempt < 30 => {
                    attempt += 1;
                    tracing::info!(error = %e, "waiting for the store");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(e) => panic!("store did not come back: {e}"),
            }
        };
        assert_eq!(p.generation, 1, "no gap: the same generation goes on");
        assert_eq!(standby.wait_for(p, Duration::from_secs(30)).await, Some(p));
        assert_eq!(rows(&replica_path), rows(&primary_path));
        assert_eq!(replicator.lag(), Duration::ZERO);
    }
    let checks = reader.finish();
    tracing::info!(checks, stats = ?replicator.stats(), "reader saw only whole transactions");
    standby.stop().await.unwrap();
    replicator.stop().await.unwrap();
}
