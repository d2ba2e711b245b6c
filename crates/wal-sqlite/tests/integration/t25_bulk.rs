//! A bulk load of transactions larger than a segment, with small commits mixed in.

use crate::fixtures;

use std::sync::Arc;

use cluster_core::ids::FencingToken;
use fixtures::*;
use wal_sqlite::{ReplicationTerm, Replicator, Restore, RestoreTarget, StartFrom};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_transactions_larger_than_a_segment_restore_whole() {
    testkit::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let coord = Arc::new(coord_mem::MemCoordinator::new());
    let stores = dir_stores(dir.path(), coord.clone());
    let path = dir.path().join("primary.db");
    let conn = open_ledger(&path);
    let config = wal_sqlite::ReplicationConfig {
        max_segment_bytes: 1 << 20,
        ..fast_config()
    };
    let rep = Replicator::start(
        &path,
        "a",
        config,
        stores.clone(),
        ReplicationTerm::unfenced(FencingToken::new(1)),
        StartFrom::Snapshot,
    )
    .await
    .unwrap();
    for tx in 0..200 {
        write_tx(&conn, tx);
    }
    {
        tracing::info!("eight 4 MiB transactions while capture runs");
        for _ in 0..8 {
            conn.execute_batch(
                "BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
                 INSERT INTO ledger(tx, amount, memo) SELECT -1, 0, randomblob(4096) FROM n; COMMIT;",
            )
            .unwrap();
        }
        for tx in 200..220 {
            write_tx(&conn, tx);
        }
    }
    let p = rep.sync().await.unwrap();
    let dest = dir.path().join("restored.db");
    let report = Restore::new(stores.wal.clone(), stores.snapshots.clone())
        .run(RestoreTarget::Latest, &dest)
        .await
        .unwrap();
    assert_eq!(report.position, p);
    assert_eq!(rows(&dest), rows(&path));
    integrity_ok(&dest);
    rep.stop().await.unwrap();
}
