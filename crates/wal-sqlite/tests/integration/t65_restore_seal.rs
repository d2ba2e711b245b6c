//! A restore stops at a generation's seal: segments put past it (a fenced-out primary's late
//! put) are never part of the history.

use crate::fixtures;

use std::sync::Arc;

use cluster_core::ids::FencingToken;
use fixtures::*;
use wal_sqlite::{Position, ReplicationTerm, Replicator, Restore, RestoreTarget, StartFrom};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_latest_stops_at_the_seal() {
    testkit::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let coord = Arc::new(coord_mem::MemCoordinator::new());
    let stores = dir_stores(dir.path(), coord.clone());
    let db = dir.path().join("a.db");
    let conn = open_ledger(&db);
    let rep = Replicator::start(
        &db,
        "a",
        fast_config(),
        stores.clone(),
        ReplicationTerm::unfenced(FencingToken::new(1)),
        StartFrom::Snapshot,
    )
    .await
    .unwrap();
    let mut last = None;
    for tx in 0..11 {
        write_tx(&conn, tx);
        last = Some(rep.sync().await.unwrap());
    }
    assert_eq!(last.map(|p| p.index), Some(11));
    rep.stop().await.unwrap();
    assert_eq!(stores.registry.seal(1, 10).await.unwrap(), 10);
    let dest = dir.path().join("restored.db");
    let report = Restore::new(stores.wal.clone(), stores.snapshots.clone())
        .with_registry(stores.registry.clone())
        .run(RestoreTarget::Latest, &dest)
        .await
        .unwrap();
    assert_eq!(
        report.position,
        Position {
            generation: 1,
            index: 10
        }
    );
    assert_eq!(rows(&dest).len(), 20, "transactions 0..10, not the 11th");
}
