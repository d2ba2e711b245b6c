//! Restore: point in time, a position, snapshots with retention, and damaged or missing
//! segments reported instead of applied; a restart after a foreign TRUNCATE starts a new
//! generation without a gap.

use crate::fixtures;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cluster_core::ids::FencingToken;
use fixtures::*;
use wal_sqlite::{
    ReplicationError, ReplicationTerm, Replicator, Restore, RestoreTarget, Retention, Snapshots,
    StartFrom,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_in_time_and_position_restores_hold_exactly_their_prefix() {
    testkit::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let coord = Arc::new(coord_mem::MemCoordinator::new());
    let stores = dir_stores(dir.path(), coord.clone());
    let primary_path = dir.path().join("primary.db");
    let primary = open_ledger(&primary_path);
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
    let restore = Restore::new(stores.wal.clone(), stores.snapshots.clone());
    let (p1, t1, rows1) = {
        tracing::info!("phase 1: 100 transactions, synced; the time is noted");
        for tx in 0..100 {
            write_tx(&primary, tx);
        }
        let p = replicator.sync().await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        (p, SystemTime::now(), rows(&primary_path))
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    let (p2, rows2) = {
        tracing::info!("phase 2: a snapshot in the middle, then 100 more");
        let snapshots = Snapshots::new(
            stores.wal.clone(),
            stores.snapshots.clone(),
            Some(replicator.clone()),
        );
        let snap = snapshots.create().await.unwrap();
        assert_eq!(snap.position, p1);
        for tx in 100..200 {
            write_tx(&primary, tx);
        }
        (replicator.sync().await.unwrap(), rows(&primary_path))
    };
    for tx in 200..250 {
        write_tx(&primary, tx);
    }
    let p3 = replicator.sync().await.unwrap();
    {
        tracing::info!("restoring to the noted time gives exactly phase 1");
        let dest = dir.path().join("pitr.db");
        let report = restore.run(RestoreTarget::Time(t1), &dest).await.unwrap();
        assert_eq!(report.position, p1);
        assert_eq!(rows(&dest), rows1);
        integrity_ok(&dest);
    }
    {
        tracing::info!(
            "restoring to a position gives exactly that prefix, starting from the newer snapshot"
        );
        let dest = dir.path().join("pos.db");
        let report = restore
            .run(RestoreTarget::Position(p2), &dest)
            .await
            .unwrap();
        assert_eq!(report.position, p2);
        assert_eq!(
            report.snapshot,
            format!("{:016x}-{:016x}", p1.generation, p1.index)
        );
        assert_eq!(rows(&dest), rows2);
    }
    {
        tracing::info!("latest equals the primary");
        let dest = dir.path().join("latest.db");
        let report = restore.run(RestoreTarget::Latest, &dest).await.unwrap();
        assert_eq!(report.position, p3);
        assert_eq!(rows(&dest), rows(&primary_path));
        let t = report.timings;
        assert!(
            t.segments >= t.segments_fetch_wait && !t.verify.is_zero(),
            "every phase is timed: {t:?}"
        );
    }
    {
        tracing::info!("retention keeps one snapshot and deletes the segments behind it");
        let snapshots = Snapshots::new(
            stores.wal.clone(),
            stores.snapshots.clone(),
            Some(replicator.clone()),
        );
        let newest = snapshots.create().await.unwrap();
        assert_eq!(newest.position, p3);
        snapshots
            .apply_retention(Retention {
                keep: 1,
                max_age: None,
            })
            .await
            .unwrap();
        let left = snapshots.list().await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].position, p3);
        let segs = stores.wal.list("gen/").await.unwrap();
        assert!(
            segs.iter().all(|i| !i.name.as_str().contains("/seg/")),
            "no segment is behind the only snapshot: {segs:?}"
        );
        write_tx(&primary, 999);
        let p4 = replicator.sync().await.unwrap();
        let dest = dir.path().join("after-retention.db");
        assert_eq!(
            restore
                .run(RestoreTarget::Latest, &dest)
                .await
                .unwrap()
                .position,
            p4
        );
        assert_eq!(rows(&dest), rows(&primary_path));
    }
    replicator.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_and_missing_segments_are_reported_not_applied() {
    testkit::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let coord = Arc::new(coord_mem::MemCoordinator::new());
    let stores = dir_stores(dir.path(), coord.clone());
    let primary_path = dir.path().join("primary.db");
    let primary = open_ledger(&primary_path);
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
    for tx in 0..5 {
        write_tx(&primary, tx);
        replicator.sync().await.unwrap();
    }
    replicator.stop().await.unwrap();
    let seg = |i: u64| {
        dir.path()
            .join("wal")
            .join(format!("gen%{:016x}%seg%{i:016x}", 1))
    };
    let restore = Restore::new(stores.wal.clone(), stores.snapshots.clone());
    {
        tracing::info!("a flipped byte in segment 3 stops the restore there, naming it");
        let mut bytes = std::fs::read(seg(3)).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        std::fs::write(seg(3), &bytes).unwrap();
        let dest = dir.path().join("r1.db");
        match restore.run(RestoreTarget::Latest, &dest).await {
            Err(ReplicationError::Segment {
                generation: 1,
                index: 3,
                ..
            }) => {}
            other => panic!("expected segment 1/3 reported damaged, got {other:?}"),
        }
        assert!(!dest.exists(), "nothing is put in place");
    }
    {
        tracing::info!("a missing segment 3 with 4 and 5 present is reported missing");
        std::fs::remove_file(seg(3)).unwrap();
        let dest = dir.path().join("r2.db");
        match restore.run(RestoreTarget::Latest, &dest).await {
            Err(ReplicationError::MissingSegment {
                generation: 1,
                index: 3,
            }) => {}
            other => panic!("expected segment 1/3 missing, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_a_foreign_truncate_starts_a_new_generation_without_a_gap() {
    testkit::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let coord = Arc::new(coord_mem::MemCoordinator::new());
    let stores = dir_stores(dir.path(), coord.clone());
    let primary_path = dir.path().join("primary.db");
    let primary = open_ledger(&primary_path);
    let start = || {
        Replicator::start(
            &primary_path,
            "node-a",
            fast_config(),
            stores.clone(),
            ReplicationTerm::unfenced(FencingToken::new(1)),
            StartFrom::Snapshot,
        )
    };
    let first = start().await.unwrap();
    for tx in 0..50 {
        write_tx(&primary, tx);
    }
    let p1 = first.sync().await.unwrap();
    let p1 = {
        tracing::info!(
            "while capture holds the WAL, the application's TRUNCATE checkpoint loses nothing"
        );
        primary.busy_timeout(Duration::from_millis(200)).unwrap();
        let (busy, _, _): (i64, i64, i64) = primary
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        primary.busy_timeout(Duration::from_secs(10)).unwrap();
        tracing::info!(busy, "TRUNCATE returned");
        for tx in 1000..1020 {
            write_tx(&primary, tx);
        }
        let p = first.sync().await.unwrap();
        assert_eq!(p.generation, p1.generation, "the same generation goes on");
        p
    };
    first.stop().await.unwrap();
    {
        tracing::info!("replicator down: writes and a TRUNCATE checkpoint");
        for tx in 50..80 {
            write_tx(&primary, tx);
        }
        primary
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        for tx in 80..90 {
            write_tx(&primary, tx);
        }
    }
    let second = start().await.unwrap();
    let p2 = second.sync().await.unwrap();
    {
        tracing::info!(
            "a new generation began, the old one is sealed at its last segment, and a restore has every row"
        );
        assert_eq!(p2.generation, p1.generation + 1);
        let (old, _) = stores
            .registry
            .record(p1.generation)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(old.sealed_through, Some(p1.index));
        let dest = dir.path().join("restored.db");
        let restore = Restore::new(stores.wal.clone(), stores.snapshots.clone());
        restore.run(RestoreTarget::Latest, &dest).await.unwrap();
        assert_eq!(rows(&dest), rows(&primary_path));
        assert_eq!(rows(&dest).len(), 220);
        tracing::info!("the old generation still restores to its own end");
        let old_dest = dir.path().join("old.db");
        restore
            .run(RestoreTarget::Position(p1), &old_dest)
            .await
            .unwrap();
        assert_eq!(rows(&old_dest).len(), 140);
    }
    second.stop().await.unwrap();
}
