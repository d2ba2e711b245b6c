//! After a capture gap, one failed attempt to start the next generation (a coordinator blip)
//! does not leave the replicator degraded for good: it retries, starts the generation and
//! ships later commits.

use crate::fixtures;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cluster_core::coordination::KvStore;
use cluster_core::ids::FencingToken;
use fixtures::*;
use wal_sqlite::{ReplicationConfig, ReplicationTerm, Replicator, StartFrom};

fn truncate_completed(conn: &rusqlite::Connection) -> bool {
    let busy: i64 = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
        .unwrap();
    busy == 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failed_generation_start_after_a_gap_is_retried() {
    testkit::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let kv = Arc::new(FlakyKv {
        inner: Arc::new(coord_mem::MemCoordinator::new()),
        fail_key: "head".into(),
        fail_gets: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });
    let (stores, faulty) = faulty_dir_stores(dir.path(), kv.clone() as Arc<dyn KvStore>);
    let path = dir.path().join("primary.db");
    let conn = open_ledger(&path);
    let rep = Replicator::start(
        &path,
        "a",
        ReplicationConfig {
            checkpoint_wal_bytes: 16 << 10,
            max_wal_bytes: 64 << 10,
            retry_delay: Duration::from_millis(5),
            ..fast_config()
        },
        stores.clone(),
        ReplicationTerm::unfenced(FencingToken::new(1)),
        StartFrom::Snapshot,
    )
    .await
    .unwrap();
    write_tx(&conn, 0);
    rep.sync().await.unwrap();
    assert_eq!(rep.stats().generations_started, 1);
    let probe = rusqlite::Connection::open(&path).unwrap();
    probe.busy_timeout(Duration::ZERO).unwrap();
    {
        tracing::info!("store down past the WAL limit: capture lets go, the WAL restarts (a gap)");
        faulty.fail_next_puts("/seg/", u64::MAX);
        let mut tx = 1;
        loop {
            write_tx(&conn, tx);
            tx += 1;
            if tx % 20 == 0 && truncate_completed(&probe) {
                break;
            }
            assert!(tx < 100_000, "capture never let go of the WAL");
            if tx % 20 == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        for tx in 500_000..500_010 {
            write_tx(&conn, tx);
        }
    }
    {
        tracing::info!("store back, but the coordinator fails the next read of the head once");
        kv.fail_gets.store(1, Ordering::SeqCst);
        faulty.fail_next_puts("/seg/", 0);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while rep.stats().generations_started < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "no new generation after one failed start (failed reads: {}, stats {:?})",
                kv.failed.load(Ordering::SeqCst),
                rep.stats()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(kv.failed.load(Ordering::SeqCst), 1, "the blip happened");
    }
    write_tx(&conn, 900_000);
    let p = rep.sync().await.unwrap();
    assert_eq!(p.generation, 2);
    assert!(rep.stats().degraded.is_none(), "{:?}", rep.stats());
    rep.stop().await.unwrap();
}
