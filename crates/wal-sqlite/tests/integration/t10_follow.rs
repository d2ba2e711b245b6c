//! A standby follows a primary with continuous writes (local directory store, in-process
//! coordinator): equal at every checked boundary, and an open reader never sees a torn
//! transaction.

use crate::fixtures;

use std::sync::Arc;
use std::time::Duration;

use cluster_core::ids::FencingToken;
use fixtures::*;
use wal_sqlite::{ReplicationTerm, Replicator, Standby, StartFrom};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_equals_primary_at_every_boundary_and_readers_never_see_a_torn_transaction() {
    testkit::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let coord = Arc::new(coord_mem::MemCoordinator::new());
    let stores = dir_stores(dir.path(), coord.clone());
    let primary_path = dir.path().join("primary.db");
    let replica_path = dir.path().join("replica.db");
    let primary = open_ledger(&primary_path);
    write_tx(&primary, 0);
    let replicator = Replicator::start(
        &primary_path,
        "node-a",
        fast_config(),
        stores.clone(),
        ReplicationTerm::unfenced(FencingToken::new(1)),
        StartFrom::Snapshot,
    )
    .await
    .unwrap();
    let standby = Standby::start(&replica_path, standby_config(), stores.clone())
        .await
        .unwrap();
    {
        tracing::info!("the standby bootstraps from the base snapshot");
        let p = replicator.sync().await.unwrap();
        assert_eq!(standby.wait_for(p, Duration::from_secs(20)).await, Some(p));
    }
    let reader = InvariantReader::start(replica_path.clone());
    let mut tx = 1;
    for round in 0..4 {
        tracing::info!(round, "writes, then the replica is compared at a boundary");
        for _ in 0..150 {
            write_tx(&primary, tx);
            tx += 1;
            if tx % 50 == 0 {
                // The application's own checkpoints are allowed.
                primary
                    .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    .unwrap();
            }
        }
        let p = replicator.sync().await.unwrap();
        assert_eq!(standby.wait_for(p, Duration::from_secs(20)).await, Some(p));
        assert_eq!(rows(&replica_path), rows(&primary_path), "round {round}");
        integrity_ok(&replica_path);
    }
    {
        tracing::info!(
            "the capture checkpointed along the way and the reader saw only whole transactions"
        );
        let stats = replicator.stats();
        assert!(stats.segments_shipped > 4, "{stats:?}");
        let wal_len = std::fs::metadata(dir.path().join("primary.db-wal")).map_or(0, |m| m.len());
        assert!(
            wal_len < 4 << 20,
            "the WAL was checkpointed and reused: {wal_len} bytes"
        );
        let checks = reader.finish();
        assert!(checks > 0);
        tracing::info!(checks, stats = ?stats, "done");
    }
    standby.stop().await.unwrap();
    replicator.stop().await.unwrap();
}
