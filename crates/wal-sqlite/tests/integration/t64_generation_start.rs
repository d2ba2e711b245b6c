//! A promoter that dies between registering its generation and writing the generation's
//! manifest leaves nothing that blocks the next promotion or any later restore.

use crate::fixtures;

use std::sync::Arc;
use std::time::Duration;

use cluster_core::ids::FencingToken;
use fixtures::*;
use wal_sqlite::{ReplicationTerm, Replicator, Restore, RestoreTarget, Standby, StartFrom};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoter_lost_before_its_manifest_blocks_no_later_bootstrap_or_restore() {
    testkit::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let coord = Arc::new(coord_mem::MemCoordinator::new());
    let (stores, faulty) = faulty_dir_stores(dir.path(), coord.clone());
    let a_db = dir.path().join("a.db");
    let a = open_ledger(&a_db);
    let a_rep = Replicator::start(
        &a_db,
        "a",
        fast_config(),
        stores.clone(),
        ReplicationTerm::unfenced(FencingToken::new(1)),
        StartFrom::Snapshot,
    )
    .await
    .unwrap();
    let b = Standby::start(
        &dir.path().join("b-replica.db"),
        standby_config(),
        stores.clone(),
    )
    .await
    .unwrap();
    let c = Standby::start(
        &dir.path().join("c-replica.db"),
        standby_config(),
        stores.clone(),
    )
    .await
    .unwrap();
    for tx in 0..10 {
        write_tx(&a, tx);
    }
    let p = a_rep.sync().await.unwrap();
    assert_eq!(b.wait_for(p, Duration::from_secs(20)).await, Some(p));
    assert_eq!(c.wait_for(p, Duration::from_secs(20)).await, Some(p));
    a_rep.stop().await.unwrap();
    tracing::info!("B promotes and is lost after registering its generation, before its manifest");
    faulty.fail_next_puts("/manifest", 1);
    let b_result = b
        .promote(
            &dir.path().join("b.db"),
            "b",
            fast_config(),
            ReplicationTerm::unfenced(FencingToken::new(2)),
            None,
        )
        .await;
    assert!(b_result.is_err(), "the failpoint stopped B's promotion");
    tracing::info!("C promotes and writes");
    let c_db = dir.path().join("c.db");
    let c_rep = c
        .promote(
            &c_db,
            "c",
            fast_config(),
            ReplicationTerm::unfenced(FencingToken::new(3)),
            None,
        )
        .await
        .unwrap();
    let c_conn = open_ledger(&c_db);
    for tx in 100..110 {
        write_tx(&c_conn, tx);
    }
    let pc = c_rep.sync().await.unwrap();
    tracing::info!("a fresh standby bootstraps, and a restore of the latest history works");
    let d_replica = dir.path().join("d-replica.db");
    let d = Standby::start(&d_replica, standby_config(), stores.clone())
        .await
        .unwrap();
    assert_eq!(d.wait_for(pc, Duration::from_secs(20)).await, Some(pc));
    d.stop().await.unwrap();
    assert_eq!(rows(&d_replica), rows(&c_db));
    let restored = dir.path().join("restored.db");
    let report = Restore::new(stores.wal.clone(), stores.snapshots.clone())
        .run(RestoreTarget::Latest, &restored)
        .await
        .unwrap();
    assert_eq!(report.position, pc);
    assert_eq!(rows(&restored), rows(&c_db));
    c_rep.stop().await.unwrap();
}
