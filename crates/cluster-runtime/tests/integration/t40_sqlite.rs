//! A replicated SQLite database follows the election: the leader writes, hands over, and the
//! new leader's promoted database holds every synced commit; the old leader becomes a standby.

use crate::common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cluster_core::coordination::Coordinator;
use cluster_core::object_store::ObjectStores;
use cluster_runtime::{App, AppHandle, AuditKind, Platform};
use coord_mem::MemCoordinator;
use store_dir::DirObjectStores;
use wal_sqlite::Retention;

struct Node {
    platform: Platform,
    app: AppHandle,
    db: PathBuf,
    running: common::Running,
}

async fn start(
    coord: Arc<dyn Coordinator>,
    buckets: &Arc<dyn ObjectStores>,
    dir: &std::path::Path,
    name: &str,
) -> Node {
    let platform = Platform::builder("sql", name)
        .coordinator(coord)
        .object_stores(buckets.clone())
        .lease_ttl(Duration::from_secs(2))
        .lease_margin(Duration::from_millis(700))
        .build()
        .unwrap();
    let db = dir.join(format!("{name}.db"));
    let app = platform
        .register(
            App::builder("ledger")
                .active_passive()
                .with_sqlite(
                    &db,
                    dir.join(format!("{name}.replica.db")),
                    None,
                    Retention::default(),
                )
                .build()
                .unwrap(),
        )
        .unwrap();
    Node {
        running: common::Running::spawn(&platform),
        platform,
        app,
        db,
    }
}

fn rows(path: &std::path::Path) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("SELECT count(*) FROM ledger", [], |r| r.get(0))
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_new_leader_promotes_the_replica_with_every_commit_on_a_directory() {
    testkit::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let buckets: Arc<dyn ObjectStores> = Arc::new(DirObjectStores::new(dir.path().join("buckets")));
    let store = MemCoordinator::new();
    let coords: [Arc<dyn Coordinator>; 2] = [Arc::new(store.connect()), Arc::new(store.connect())];
    the_new_leader_promotes_the_replica_with_every_commit(dir.path(), buckets, coords).await;
}

/// Everything on one real nats-server: JetStream KV as the coordination store (no
/// `put_if_held` across buckets: the generation head moves by fence check and CAS) and the
/// Object Store for segments and snapshots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_new_leader_promotes_the_replica_with_every_commit_on_nats() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let server = testkit::NatsServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = bus_nats::NatsBusConfig {
        call_timeout: Duration::from_secs(2),
        ..bus_nats::NatsBusConfig::new(server.url())
    };
    let buckets: Arc<dyn ObjectStores> = Arc::new(
        bus_nats::NatsObjectStores::connect(config, 1)
            .await
            .unwrap(),
    );
    let mut coords = Vec::new();
    for _ in 0..2 {
        let config = coord_nats::NatsConfig {
            call_timeout: Duration::from_secs(1),
            ..coord_nats::NatsConfig::new([server.url()])
        };
        let coord: Arc<dyn Coordinator> =
            Arc::new(coord_nats::NatsCoordinator::connect(config).await.unwrap());
        coords.push(coord);
    }
    let coords: [Arc<dyn Coordinator>; 2] = coords.try_into().ok().unwrap();
    the_new_leader_promotes_the_replica_with_every_commit(dir.path(), buckets, coords).await;
}

async fn the_new_leader_promotes_the_replica_with_every_commit(
    dir: &std::path::Path,
    buckets: Arc<dyn ObjectStores>,
    coords: [Arc<dyn Coordinator>; 2],
) {
    let [a, b] = coords;
    let nodes = vec![
        start(a, &buckets, dir, "a").await,
        start(b, &buckets, dir, "b").await,
    ];
    let leader = {
        tracing::info!("the leader's database is promoted (first generation) before on_active");
        common::eventually("a leader with a database", Duration::from_secs(20), || {
            nodes
                .iter()
                .any(|n| n.app.election().is_leader() && n.app.db().is_some())
        })
        .await;
        nodes
            .iter()
            .position(|n| n.app.election().is_leader())
            .unwrap()
    };
    {
        tracing::info!("the leader commits 100 rows and waits for them to be shipped");
        let conn = rusqlite::Connection::open(&nodes[leader].db).unwrap();
        conn.pragma_update(None, "journal_mode", "wal").unwrap();
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS ledger (id INTEGER PRIMARY KEY, amount INTEGER)",
        )
        .unwrap();
        for i in 0..100 {
            conn.execute("INSERT INTO ledger (amount) VALUES (?1)", [i])
                .unwrap();
        }
        nodes[leader].app.db().unwrap().sync().await.unwrap();
        tracing::info!(
            "10 more rows, not synced: a graceful step-down ships them before resigning"
        );
        for i in 0..10 {
            conn.execute("INSERT INTO ledger (amount) VALUES (?1)", [i])
                .unwrap();
        }
        drop(conn);
    }
    let follower = 1 - leader;
    {
        tracing::info!("step down: the other node promotes its replica and leads");
        nodes[leader].app.election().step_down().await.unwrap();
        common::eventually(
            "the other node leads with its database",
            Duration::from_secs(30),
            || nodes[follower].app.election().is_leader() && nodes[follower].app.db().is_some(),
        )
        .await;
        assert_eq!(
            rows(&nodes[follower].db),
            110,
            "every commit of the term is in the promoted database"
        );
        assert!(
            nodes[leader].app.db().is_none(),
            "the old leader no longer replicates as primary"
        );
        let kinds: Vec<AuditKind> = nodes[follower]
            .platform
            .audit()
            .iter()
            .map(|e| e.kind)
            .collect();
        for kind in [
            AuditKind::PromotionStarted,
            AuditKind::DatabaseVerified,
            AuditKind::PromotionCompleted,
        ] {
            assert!(kinds.contains(&kind), "{kind:?} missing from {kinds:?}");
        }
    }
    {
        tracing::info!(
            "the new leader writes; the old leader, now a standby, follows into its replica"
        );
        let conn = rusqlite::Connection::open(&nodes[follower].db).unwrap();
        for i in 0..40 {
            conn.execute("INSERT INTO ledger (amount) VALUES (?1)", [i])
                .unwrap();
        }
        drop(conn);
        nodes[follower].app.db().unwrap().sync().await.unwrap();
        let replica = dir.join(format!("{}.replica.db", nodes[leader].platform.node()));
        common::eventually(
            "the old leader's replica has every row",
            Duration::from_secs(30),
            || rows(&replica) == 150,
        )
        .await;
    }
    {
        tracing::info!("the leader snapshots; the snapshot restores to the same rows");
        let snapshots = nodes[follower].app.snapshots().unwrap();
        let taken = snapshots.create().await.unwrap();
        assert_eq!(
            snapshots.latest().await.unwrap().map(|m| m.id),
            Some(taken.id.clone())
        );
        assert!(
            snapshots
                .list()
                .await
                .unwrap()
                .iter()
                .any(|m| m.id == taken.id)
        );
        let restored = dir.join("restored.db");
        snapshots.restore(&taken.id, &restored).await.unwrap();
        assert_eq!(rows(&restored), 150);
    }
    {
        tracing::info!("replication metrics are on the platform's /metrics");
        let text = nodes[follower].platform.metrics();
        for name in [
            "wal_replication_lag_seconds",
            "wal_segments_shipped_total",
            "wal_bytes_shipped_total",
            "wal_snapshot_age_seconds",
        ] {
            assert!(text.contains(name), "{name} missing from /metrics");
        }
    }
    for n in nodes {
        n.running.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_database_needs_an_active_passive_app_and_object_stores() {
    let dir = tempfile::tempdir().unwrap();
    let pool = App::builder("ledger")
        .pool()
        .with_sqlite(
            dir.path().join("a.db"),
            dir.path().join("r.db"),
            None,
            Retention::default(),
        )
        .build();
    assert!(pool.is_err(), "a pool app cannot have a database");
    let same = App::builder("ledger")
        .active_passive()
        .with_sqlite(
            dir.path().join("a.db"),
            dir.path().join("a.db"),
            None,
            Retention::default(),
        )
        .build();
    assert!(
        same.is_err(),
        "the replica path must differ from the database path"
    );
    let store = MemCoordinator::new();
    let coord: Arc<dyn Coordinator> = Arc::new(store.connect());
    let platform = Platform::builder("sql", "a")
        .coordinator(coord)
        .build()
        .unwrap();
    let app = App::builder("ledger")
        .active_passive()
        .with_sqlite(
            dir.path().join("a.db"),
            dir.path().join("r.db"),
            None,
            Retention::default(),
        )
        .build()
        .unwrap();
    let Err(err) = platform.register(app) else {
        panic!("registered an app with a database but no object stores");
    };
    assert!(err.to_string().contains("object_stores"), "{err}");
}
