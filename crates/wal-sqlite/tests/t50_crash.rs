//! The primary is SIGKILLed mid-write (a separate process) on a real nats-server, with the
//! generation records in NATS KV: the promoted standby holds every commit acknowledged by
//! `sync()`, and in async mode a prefix of the commits; never a gap or a torn transaction.

#[path = "fixtures/mod.rs"]
mod fixtures;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bus_nats::{NatsBusConfig, NatsObjectStore, ObjectBucketSpec};
use cluster_core::coordination::KvStore;
use cluster_core::ids::FencingToken;
use cluster_core::object_store::ObjectStore;
use fixtures::*;
use wal_sqlite::{ReplicationStores, ReplicationTerm, Replicator, Standby, StartFrom};

const CHILD: &str = "WAL_CRASH_CHILD_DIR";

async fn stores(url: &str) -> ReplicationStores {
    let config = NatsBusConfig {
        call_timeout: Duration::from_millis(800),
        ..NatsBusConfig::new(url)
    };
    let wal: Arc<dyn ObjectStore> = Arc::new(
        NatsObjectStore::connect(config.clone(), &ObjectBucketSpec::new("crash_wal"))
            .await
            .unwrap(),
    );
    let snapshots: Arc<dyn ObjectStore> = Arc::new(
        NatsObjectStore::connect(config, &ObjectBucketSpec::new("crash_snapshots"))
            .await
            .unwrap(),
    );
    let kv: Arc<dyn KvStore> = Arc::new(
        coord_nats::NatsCoordinator::connect(coord_nats::NatsConfig::new([url.to_owned()]))
            .await
            .unwrap(),
    );
    ReplicationStores {
        wal,
        snapshots,
        registry: registry(kv),
    }
}

/// Runs only as the child: a primary writing until it is killed, printing each commit once
/// it counts (after `sync()` in sync mode, after COMMIT in async mode).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_primary_writes_until_killed() {
    let Some(dir) = std::env::var_os(CHILD) else {
        return;
    };
    let url = std::env::var("WAL_CRASH_NATS").unwrap();
    let sync = std::env::var("WAL_CRASH_MODE").unwrap() == "sync";
    let db = Path::new(&dir).join("primary.db");
    let conn = open_ledger(&db);
    let replicator = Replicator::start(
        &db,
        "primary",
        fast_config(),
        stores(&url).await,
        ReplicationTerm::unfenced(FencingToken::new(1)),
        StartFrom::Snapshot,
    )
    .await
    .unwrap();
    println!("READY");
    for tx in 0.. {
        write_tx(&conn, tx);
        if sync {
            replicator.sync().await.unwrap();
        }
        println!("COMMITTED {tx}");
    }
}

async fn crash_and_promote(mode: &str) {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let nats = testkit::NatsServer::start_with(testkit::NatsOptions::durable())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_primary_writes_until_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, dir.path())
        .env("WAL_CRASH_NATS", nats.url())
        .env("WAL_CRASH_MODE", mode)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut committed = BTreeSet::new();
    let parse = |line: &str| -> Option<i64> {
        line.split_once("COMMITTED ")
            .and_then(|(_, n)| n.trim().parse().ok())
    };
    {
        tracing::info!(mode, "the primary process starts writing");
        while let Some(line) = lines.recv().await {
            if line.contains("READY") {
                break;
            }
        }
    }
    let s = stores(&nats.url()).await;
    let replica = dir.path().join("replica.db");
    let standby = Standby::start(&replica, standby_config(), s.clone())
        .await
        .unwrap();
    {
        tracing::info!("after a few hundred commits, SIGKILL");
        while committed.len() < 300 {
            let line = lines.recv().await.expect("child output");
            if let Some(n) = parse(&line) {
                committed.insert(n);
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        while let Some(line) = lines.recv().await {
            if let Some(n) = parse(&line) {
                committed.insert(n);
            }
        }
    }
    let promoted = dir.path().join("promoted.db");
    let replicator = {
        tracing::info!("the standby is promoted");
        standby
            .promote(
                &promoted,
                "standby",
                fast_config(),
                ReplicationTerm::unfenced(FencingToken::new(2)),
                None,
            )
            .await
            .unwrap()
    };
    {
        tracing::info!(
            "no gap, no torn transaction; sync mode: every acknowledged commit is there"
        );
        integrity_ok(&promoted);
        let rows = rows(&promoted);
        let mut per_tx = std::collections::BTreeMap::<i64, Vec<i64>>::new();
        for (tx, amount) in &rows {
            per_tx.entry(*tx).or_default().push(*amount);
        }
        for (tx, amounts) in &per_tx {
            assert_eq!(amounts.len(), 2, "tx {tx} torn");
            assert_eq!(amounts.iter().sum::<i64>(), 0, "tx {tx} torn");
        }
        let held: Vec<i64> = per_tx.keys().copied().collect();
        let prefix: Vec<i64> = (0..held.len() as i64).collect();
        assert_eq!(
            held, prefix,
            "the promoted database holds a prefix of the commits"
        );
        if mode == "sync" {
            let missing: Vec<_> = committed
                .iter()
                .filter(|n| !per_tx.contains_key(n))
                .collect();
            assert!(missing.is_empty(), "acknowledged commits lost: {missing:?}");
        }
        tracing::info!(held = held.len(), reported = committed.len(), "promoted");
    }
    replicator.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_primary_loses_no_sync_acknowledged_commit() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    crash_and_promote("sync").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_primary_in_async_mode_leaves_a_prefix() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    crash_and_promote("async").await;
}
