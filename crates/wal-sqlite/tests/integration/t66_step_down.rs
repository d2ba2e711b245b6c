//! A graceful stop ships the captured tail before it returns, retrying past a failed put until
//! the tail is shipped or the term ends; a tail it could not ship is reported, not hidden.

use crate::fixtures;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_core::ids::FencingToken;
use fixtures::*;
use wal_sqlite::{
    ReplicationConfig, ReplicationTerm, Replicator, Restore, RestoreTarget, StartFrom,
};

fn slow_retry() -> ReplicationConfig {
    ReplicationConfig {
        // Longer than the test takes: a stop within it must not wait for the loop's retry.
        retry_delay: Duration::from_secs(600),
        ..fast_config()
    }
}

async fn wait_degraded(rep: &Replicator) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while rep.stats().degraded.is_none() {
        assert!(std::time::Instant::now() < deadline, "the put never failed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_right_after_a_failed_put_still_ships_the_async_commit() {
    testkit::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let coord = Arc::new(coord_mem::MemCoordinator::new());
    let (stores, faulty) = faulty_dir_stores(dir.path(), coord.clone());
    let db = dir.path().join("a.db");
    let conn = open_ledger(&db);
    let rep = Replicator::start(
        &db,
        "a",
        slow_retry(),
        stores.clone(),
        ReplicationTerm::unfenced(FencingToken::new(1)),
        StartFrom::Snapshot,
    )
    .await
    .unwrap();
    write_tx(&conn, 1);
    rep.sync().await.unwrap();
    faulty.fail_next_puts("/seg/", 1);
    write_tx(&conn, 2);
    wait_degraded(&rep).await;
    rep.stop().await.unwrap();
    let dest = dir.path().join("successor.db");
    Restore::new(stores.wal.clone(), stores.snapshots.clone())
        .run(RestoreTarget::Latest, &dest)
        .await
        .unwrap();
    assert_eq!(rows(&dest), rows(&db), "the successor has the async commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_that_cannot_be_shipped_before_the_term_ends_is_reported() {
    testkit::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let coord = Arc::new(coord_mem::MemCoordinator::new());
    let (stores, faulty) = faulty_dir_stores(dir.path(), coord.clone());
    let db = dir.path().join("a.db");
    let conn = open_ledger(&db);
    let deadline = Arc::new(Mutex::new(Some(
        tokio::time::Instant::now() + Duration::from_secs(3600),
    )));
    let d = deadline.clone();
    let rep = Replicator::start(
        &db,
        "a",
        slow_retry(),
        stores.clone(),
        ReplicationTerm {
            token: FencingToken::new(1),
            fence: None,
            safe_until: Some(Arc::new(move || *d.lock().unwrap())),
        },
        StartFrom::Snapshot,
    )
    .await
    .unwrap();
    write_tx(&conn, 1);
    let shipped = rep.sync().await.unwrap();
    faulty.fail_next_puts("/seg/", u64::MAX);
    write_tx(&conn, 2);
    wait_degraded(&rep).await;
    // The term ends soon; the store stays down until then.
    *deadline.lock().unwrap() = Some(tokio::time::Instant::now() + Duration::from_millis(300));
    let stopped = rep.stop().await;
    match stopped {
        Err(wal_sqlite::ReplicationError::TailNotShipped {
            shipped: at,
            segments,
            ..
        }) => {
            assert_eq!(at, Some(shipped));
            assert_eq!(segments, 1);
        }
        other => panic!("the lost tail must be reported: {other:?}"),
    }
}
