//! On a real durable nats-server: a standby follows a primary with continuous writes while an
//! open reader checks the ledger; the object store goes down in async mode (writes go on, the
//! replica catches up after) and in sync mode (`sync()` fails `Unavailable`, then works again).

use crate::fixtures;

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

/// A durable nats-server, a primary with one committed transaction under `config`, and a
/// standby that has applied it (generation 1).
struct Pair {
    nats: NatsServer,
    dir: tempfile::TempDir,
    primary_path: std::path::PathBuf,
    replica_path: std::path::PathBuf,
    primary: rusqlite::Connection,
    replicator: Replicator,
    standby: Standby,
}

impl Pair {
    async fn start(config: ReplicationConfig) -> Pair {
        testkit::init_tracing();
        let nats = NatsServer::start_with(NatsOptions::durable())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let coord = Arc::new(coord_mem::MemCoordinator::new());
        let stores = nats_stores(&nats, coord).await;
        let primary_path = dir.path().join("primary.db");
        let replica_path = dir.path().join("replica.db");
        let primary = open_ledger(&primary_path);
        write_tx(&primary, 0);
        let replicator = Replicator::start(
            &primary_path,
            "node-a",
            config,
            stores.clone(),
            ReplicationTerm::unfenced(FencingToken::new(1)),
            StartFrom::Snapshot,
        )
        .await
        .unwrap();
        let standby = Standby::start(&replica_path, standby_config(), stores)
            .await
            .unwrap();
        let p = replicator.sync().await.unwrap();
        assert_eq!(p.generation, 1);
        assert_eq!(standby.wait_for(p, Duration::from_secs(30)).await, Some(p));
        Pair {
            nats,
            dir,
            primary_path,
            replica_path,
            primary,
            replicator,
            standby,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_over_nats_with_store_outages_in_both_modes() {
    let _slot = testkit::test_slot().await;
    let Pair {
        mut nats,
        dir: _dir,
        primary_path,
        replica_path,
        primary,
        replicator,
        standby,
    } = Pair::start(config()).await;
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

/// Runs `PRAGMA wal_checkpoint(TRUNCATE)` without waiting; true if it completed (no reader held
/// the WAL).
fn truncate_completed(conn: &rusqlite::Connection) -> bool {
    let busy: i64 = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
        .unwrap();
    busy == 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_down_past_the_wal_limit_lets_go_of_the_wal_and_resumes_in_a_new_generation() {
    let _slot = testkit::test_slot().await;
    let Pair {
        mut nats,
        dir: _dir,
        primary_path,
        replica_path,
        primary,
        replicator,
        standby,
    } = Pair::start(ReplicationConfig {
        max_wal_bytes: 512 << 10,
        ..config()
    })
    .await;
    let probe = rusqlite::Connection::open(&primary_path).unwrap();
    probe.busy_timeout(Duration::ZERO).unwrap();
    let mut tx = 1;
    {
        tracing::info!("store down, WAL under the limit: capture holds it against a truncate");
        nats.stop();
        for _ in 0..10 {
            write_tx(&primary, tx);
            tx += 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !truncate_completed(&probe),
            "capture lets nobody truncate frames it has not shipped"
        );
    }
    {
        tracing::info!("past the limit: capture lets go, the application's truncate completes");
        for _ in 0..400 {
            write_tx(&primary, tx);
            tx += 1;
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !truncate_completed(&probe) {
            assert!(
                std::time::Instant::now() < deadline,
                "capture never let go of a WAL past max_wal_bytes"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for _ in 0..20 {
            write_tx(&primary, tx);
            tx += 1;
        }
    }
    {
        tracing::info!("store back: a new generation from a snapshot, the replica equal again");
        nats.restart().await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let p = loop {
            match replicator.sync().await {
                Ok(p) if p.generation > 1 => break p,
                Ok(p) => tracing::info!(?p, "still the old generation"),
                Err(e) => tracing::info!(error = %e, "waiting for the store"),
            }
            assert!(std::time::Instant::now() < deadline, "no new generation");
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        assert_eq!(
            p.generation, 2,
            "the history resumes in the next generation"
        );
        assert_eq!(standby.wait_for(p, Duration::from_secs(30)).await, Some(p));
        assert_eq!(rows(&replica_path), rows(&primary_path));
        assert_eq!(rows(&replica_path).len() as u64, 2 * tx);
        integrity_ok(&replica_path);
    }
    standby.stop().await.unwrap();
    replicator.stop().await.unwrap();
}
