//! Compression: segments and snapshots of a compressible database are stored smaller than
//! their plain bytes, and restore and a following standby read them back exactly; objects
//! stored plain (as before compression, manifest without a `compression` field) still restore.

use crate::fixtures;

use std::sync::Arc;
use std::time::Duration;

use cluster_core::ids::FencingToken;
use cluster_core::object_store::{ObjectName, ObjectStore};
use fixtures::*;
use rusqlite::Connection;
use wal_sqlite::{
    Compression, ReplicationConfig, ReplicationTerm, Replicator, Restore, RestoreTarget, Snapshots,
    Standby, StartFrom,
};

/// A database whose pages compress well: repeated text in every row.
fn write_text(conn: &Connection, from: u64, count: u64) {
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    for i in from..from + count {
        conn.execute(
            "INSERT INTO notes(id, body) VALUES (?1, ?2)",
            rusqlite::params![i as i64, format!("note {i}: ").repeat(40)],
        )
        .unwrap();
    }
    conn.execute_batch("COMMIT").unwrap();
}

fn open_notes(path: &std::path::Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.pragma_update(None, "journal_mode", "wal").unwrap();
    conn.execute_batch("CREATE TABLE IF NOT EXISTS notes(id INTEGER PRIMARY KEY, body TEXT)")
        .unwrap();
    conn
}

fn notes(path: &std::path::Path) -> Vec<(i64, String)> {
    let conn = Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT id, body FROM notes ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

async fn stored_bytes(store: &Arc<dyn ObjectStore>, prefix: &str) -> u64 {
    store
        .list(prefix)
        .await
        .unwrap()
        .iter()
        .map(|i| i.size)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_segments_and_snapshots_are_smaller_and_round_trip() {
    testkit::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let coord = Arc::new(coord_mem::MemCoordinator::new());
    let stores = dir_stores(dir.path(), coord.clone());
    let primary_path = dir.path().join("primary.db");
    let replica_path = dir.path().join("replica.db");
    let primary = open_notes(&primary_path);
    write_text(&primary, 0, 200);
    let config = fast_config();
    assert_eq!(config.compression_level, 1, "compressed by default");
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
    let standby = Standby::start(&replica_path, standby_config(), stores.clone())
        .await
        .unwrap();
    for round in 0..10 {
        write_text(&primary, 1000 + round * 100, 100);
    }
    let p = replicator.sync().await.unwrap();
    {
        tracing::info!("segments are stored compressed, and the stats say by how much");
        let stats = replicator.stats();
        assert!(stats.segments_shipped >= 1, "{stats:?}");
        let ratio = stats.compression_ratio().unwrap();
        assert!(ratio > 3.0, "ratio {ratio}: {stats:?}");
        let in_store = stored_bytes(&stores.wal, "gen/").await;
        assert!(
            in_store < stats.plain_bytes_shipped / 3,
            "{in_store} stored for {} plain",
            stats.plain_bytes_shipped
        );
    }
    let snap = {
        tracing::info!("a snapshot is stored compressed too");
        let snapshots = Snapshots::new(
            stores.wal.clone(),
            stores.snapshots.clone(),
            Some(replicator.clone()),
        );
        let snap = snapshots.create().await.unwrap();
        assert_eq!(snap.compression, Compression::Zstd);
        let in_store = stored_bytes(&stores.snapshots, &format!("snap/{}/part/", snap.id)).await;
        assert_eq!(in_store, snap.stored_size());
        assert!(
            in_store < snap.size / 3,
            "{in_store} stored for {}",
            snap.size
        );
        let (size, stored) = replicator.stats().last_snapshot_bytes.unwrap();
        assert_eq!((size, stored), (snap.size, in_store));
        snap
    };
    write_text(&primary, 5000, 100);
    let end = replicator.sync().await.unwrap();
    assert!(end > p);
    {
        tracing::info!("the standby followed the compressed segments exactly");
        assert_eq!(
            standby.wait_for(end, Duration::from_secs(20)).await,
            Some(end)
        );
        assert_eq!(notes(&replica_path), notes(&primary_path));
        integrity_ok(&replica_path);
    }
    {
        tracing::info!("a restore reads the compressed snapshot and segments back exactly");
        let dest = dir.path().join("restored.db");
        let report = Restore::new(stores.wal.clone(), stores.snapshots.clone())
            .run(RestoreTarget::Latest, &dest)
            .await
            .unwrap();
        assert_eq!(report.position, end);
        assert!(report.position > snap.position);
        assert_eq!(notes(&dest), notes(&primary_path));
        integrity_ok(&dest);
    }
    standby.stop().await.unwrap();
    replicator.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_stored_before_compression_still_restore() {
    testkit::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let coord = Arc::new(coord_mem::MemCoordinator::new());
    let stores = dir_stores(dir.path(), coord.clone());
    let primary_path = dir.path().join("primary.db");
    let primary = open_notes(&primary_path);
    write_text(&primary, 0, 100);
    let replicator = Replicator::start(
        &primary_path,
        "node-a",
        ReplicationConfig {
            compression_level: 0,
            ..fast_config()
        },
        stores.clone(),
        ReplicationTerm::unfenced(FencingToken::new(1)),
        StartFrom::Snapshot,
    )
    .await
    .unwrap();
    write_text(&primary, 100, 100);
    let end = replicator.sync().await.unwrap();
    replicator.stop().await.unwrap();
    let stats = replicator.stats();
    assert_eq!(stats.bytes_shipped, stats.plain_bytes_shipped, "{stats:?}");
    {
        tracing::info!("segments are plain `WALSEG01`; the manifest loses its compression field");
        for info in stores.wal.list("gen/").await.unwrap() {
            if info.name.as_str().contains("/seg/") {
                let object = stores.wal.get(&info.name).await.unwrap().unwrap();
                assert_eq!(&object.data[..8], b"WALSEG01");
            }
        }
        let manifests: Vec<ObjectName> = stores
            .snapshots
            .list("snap/")
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.name)
            .filter(|n| n.as_str().ends_with("/manifest"))
            .collect();
        assert_eq!(manifests.len(), 1);
        let object = stores.snapshots.get(&manifests[0]).await.unwrap().unwrap();
        let mut json: serde_json::Value = serde_json::from_slice(&object.data).unwrap();
        assert_eq!(json["compression"], "none");
        let fields = json.as_object_mut().unwrap();
        fields.remove("compression");
        for part in fields["parts"].as_array_mut().unwrap() {
            assert!(part.get("stored_size").is_none());
        }
        stores
            .snapshots
            .put(&manifests[0], serde_json::to_vec(&json).unwrap())
            .await
            .unwrap();
    }
    let dest = dir.path().join("restored.db");
    let report = Restore::new(stores.wal.clone(), stores.snapshots.clone())
        .run(RestoreTarget::Latest, &dest)
        .await
        .unwrap();
    assert_eq!(report.position, end);
    assert_eq!(notes(&dest), notes(&primary_path));
    integrity_ok(&dest);
}
