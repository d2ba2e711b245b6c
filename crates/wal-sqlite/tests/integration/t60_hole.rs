//! A standby that falls behind past retention, or finds a segment missing below later ones,
//! never seals its generation at a stale position: following, it rebuilds from the newest
//! snapshot; promoting, it reaches the generation's head or refuses with `MissingSegment`.

use crate::fixtures;

use std::sync::Arc;
use std::time::Duration;

use cluster_core::ids::FencingToken;
use cluster_core::object_store::ObjectName;
use fixtures::*;
use wal_sqlite::{
    Position, PromotionOptions, ReplicationConfig, ReplicationError, ReplicationStores,
    ReplicationTerm, Replicator, Retention, Standby, StartFrom,
};

fn retaining_one() -> ReplicationConfig {
    ReplicationConfig {
        retention: Retention {
            keep: 1,
            max_age: None,
        },
        ..fast_config()
    }
}

fn segment_name(generation: u64, index: u64) -> ObjectName {
    ObjectName::new(format!("gen/{generation:016x}/seg/{index:016x}")).unwrap()
}

/// A primary that ships one segment per synced transaction.
async fn primary(
    dir: &std::path::Path,
    stores: &ReplicationStores,
) -> (rusqlite::Connection, Replicator, std::path::PathBuf) {
    let path = dir.join("primary.db");
    let conn = open_ledger(&path);
    let rep = Replicator::start(
        &path,
        "a",
        retaining_one(),
        stores.clone(),
        ReplicationTerm::unfenced(FencingToken::new(1)),
        StartFrom::Snapshot,
    )
    .await
    .unwrap();
    (conn, rep, path)
}

async fn synced(
    conn: &rusqlite::Connection,
    rep: &Replicator,
    txs: std::ops::Range<u64>,
) -> Position {
    let mut p = None;
    for tx in txs {
        write_tx(conn, tx);
        p = Some(rep.sync().await.unwrap());
    }
    p.unwrap()
}

/// Standby B stops at (1,5); the primary ships on to (1,50), snapshots at (1,40) (retention
/// deletes segments 1..=40 and the base snapshot), then commits X with `sync()` and stops.
async fn lag_past_retention(
    dir: &std::path::Path,
    stores: &ReplicationStores,
) -> (std::path::PathBuf, Position, std::path::PathBuf) {
    let (conn, rep, primary_path) = primary(dir, stores).await;
    let replica = dir.join("b-replica.db");
    let b = Standby::start(&replica, standby_config(), stores.clone())
        .await
        .unwrap();
    let p5 = synced(&conn, &rep, 0..5).await;
    assert_eq!(b.wait_for(p5, Duration::from_secs(20)).await, Some(p5));
    assert_eq!(b.stop().await.unwrap(), Some(p5));
    synced(&conn, &rep, 5..40).await;
    let snap = rep.snapshot().await.unwrap();
    assert_eq!(snap.position.index, 40);
    synced(&conn, &rep, 40..50).await;
    let x = synced(&conn, &rep, 999..1000).await;
    assert!(
        stores.wal.get(&segment_name(1, 6)).await.unwrap().is_none(),
        "retention deleted the segment B needs next"
    );
    rep.stop().await.unwrap();
    (replica, x, primary_path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_behind_retention_rebuilds_from_the_newest_snapshot_while_following() {
    testkit::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let coord = Arc::new(coord_mem::MemCoordinator::new());
    let stores = dir_stores(dir.path(), coord.clone());
    let (replica, x, primary_path) = lag_past_retention(dir.path(), &stores).await;
    let b = Standby::start(&replica, standby_config(), stores.clone())
        .await
        .unwrap();
    assert_eq!(b.wait_for(x, Duration::from_secs(20)).await, Some(x));
    b.stop().await.unwrap();
    assert_eq!(rows(&replica), rows(&primary_path));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_behind_retention_promotes_with_every_synced_commit() {
    testkit::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let coord = Arc::new(coord_mem::MemCoordinator::new());
    let stores = dir_stores(dir.path(), coord.clone());
    let (replica, x, _) = lag_past_retention(dir.path(), &stores).await;
    let b = Standby::start(&replica, standby_config(), stores.clone())
        .await
        .unwrap();
    let promoted = dir.path().join("b.db");
    let result = b
        .promote(
            &promoted,
            "b",
            fast_config(),
            ReplicationTerm::unfenced(FencingToken::new(2)),
            None,
        )
        .await;
    let (g1, _) = stores.registry.record(1).await.unwrap().unwrap();
    match result {
        Ok(rep) => {
            assert!(
                rows(&promoted).iter().any(|(tx, _)| *tx == 999),
                "the synced commit X is in the promoted database"
            );
            assert_eq!(g1.sealed_through, Some(x.index), "sealed at the head");
            rep.stop().await.unwrap();
        }
        Err(ReplicationError::MissingSegment { .. }) => {
            assert_eq!(g1.sealed_through, None, "a refused promotion seals nothing");
        }
        Err(e) => panic!("unexpected: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hole_no_snapshot_bridges_refuses_promotion_and_seals_nothing() {
    testkit::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let coord = Arc::new(coord_mem::MemCoordinator::new());
    let stores = dir_stores(dir.path(), coord.clone());
    let (conn, rep, _) = primary(dir.path(), &stores).await;
    let replica = dir.path().join("b-replica.db");
    let b = Standby::start(&replica, standby_config(), stores.clone())
        .await
        .unwrap();
    let p5 = synced(&conn, &rep, 0..5).await;
    assert_eq!(b.wait_for(p5, Duration::from_secs(20)).await, Some(p5));
    b.stop().await.unwrap();
    synced(&conn, &rep, 5..20).await;
    rep.stop().await.unwrap();
    assert!(stores.wal.delete(&segment_name(1, 10)).await.unwrap());
    let b = Standby::start(&replica, standby_config(), stores.clone())
        .await
        .unwrap();
    let result = b
        .promote(
            &dir.path().join("b.db"),
            "b",
            fast_config(),
            ReplicationTerm::unfenced(FencingToken::new(2)),
            None,
        )
        .await;
    assert!(
        matches!(
            result,
            Err(ReplicationError::MissingSegment {
                generation: 1,
                index: 10
            })
        ),
        "{:?}",
        result.map(|r| r.stats())
    );
    let (g1, _) = stores.registry.record(1).await.unwrap().unwrap();
    assert_eq!(g1.sealed_through, None, "a refused promotion seals nothing");
    tracing::info!("told to accept the loss, it promotes and seals where it stands");
    let b = Standby::start(&replica, standby_config(), stores.clone())
        .await
        .unwrap();
    let rep = b
        .promote_with(
            &dir.path().join("b.db"),
            "b",
            fast_config(),
            ReplicationTerm::unfenced(FencingToken::new(2)),
            None,
            PromotionOptions {
                accept_data_loss: true,
            },
        )
        .await
        .unwrap();
    let (g1, _) = stores.registry.record(1).await.unwrap().unwrap();
    assert_eq!(g1.sealed_through, Some(9));
    rep.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_segment_that_cannot_be_read_is_not_sealed_away() {
    testkit::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let coord = Arc::new(coord_mem::MemCoordinator::new());
    let (stores, faulty) = faulty_dir_stores(dir.path(), coord.clone());
    let (conn, rep, _) = primary(dir.path(), &stores).await;
    let replica = dir.path().join("b-replica.db");
    let b = Standby::start(&replica, standby_config(), stores.clone())
        .await
        .unwrap();
    let p9 = synced(&conn, &rep, 0..9).await;
    assert_eq!(b.wait_for(p9, Duration::from_secs(20)).await, Some(p9));
    // A lagging replica answers the reads: segment 10 is listed but not readable.
    faulty
        .hide
        .lock()
        .unwrap()
        .push(segment_name(1, 10).as_str().to_owned());
    let p10 = synced(&conn, &rep, 9..10).await;
    assert_eq!(p10.index, 10);
    rep.stop().await.unwrap();
    let result = b
        .promote(
            &dir.path().join("b.db"),
            "b",
            fast_config(),
            ReplicationTerm::unfenced(FencingToken::new(2)),
            None,
        )
        .await;
    assert!(
        matches!(
            result,
            Err(ReplicationError::MissingSegment {
                generation: 1,
                index: 10
            })
        ),
        "{:?}",
        result.map(|r| r.stats())
    );
    let (g1, _) = stores.registry.record(1).await.unwrap().unwrap();
    assert_eq!(
        g1.sealed_through, None,
        "never a seal below a listed segment"
    );
}
