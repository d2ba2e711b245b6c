//! The primary is SIGKILLed mid-write (a separate process) on a real nats-server, with the
//! generation records in NATS KV: the promoted standby holds every commit acknowledged by
//! `sync()`, and in async mode a prefix of the commits; never a gap or a torn transaction.
//! The primary SIGSTOPped past its lease while a standby is promoted: once resumed it writes on
//! locally, but none of those writes reaches a replica.

use crate::fixtures;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bus_nats::{NatsBusConfig, NatsObjectStore, ObjectBucketSpec};
use cluster_core::coordination::{Coordinator, Key, KvStore};
use cluster_core::ids::{AppName, FencingToken, NodeId, PlatformName};
use cluster_core::lease::LeaseTiming;
use cluster_core::naming::{NamespaceKind, namespace};
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

const LEASE: LeaseTiming = LeaseTiming {
    ttl: Duration::from_secs(2),
    margin: Duration::from_millis(600),
};

/// Opens a session on NATS KV and campaigns for the ledger's election until it leads.
async fn elected_term(url: &str, node: &str) -> ReplicationTerm {
    let coord: Arc<dyn Coordinator> = Arc::new(
        coord_nats::NatsCoordinator::connect(coord_nats::NatsConfig::new([url.to_owned()]))
            .await
            .unwrap(),
    );
    let session = coord_client::Session::open(coord.clone(), NodeId::new(node).unwrap(), LEASE)
        .await
        .unwrap();
    let ns = namespace(
        &PlatformName::new("test").unwrap(),
        Some(&AppName::new("ledger").unwrap()),
        NamespaceKind::Election,
    );
    let key = Key::new(ns, "leader").unwrap();
    let term = coord.campaign(&key, node, session.lease()).await.unwrap();
    ReplicationTerm::from_session(term.token, term.fence(), session)
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
    let term = match std::env::var("WAL_CRASH_MODE").unwrap().as_str() {
        // A term won in an election under a lease on NATS KV: shipping ends at its deadline.
        "lease" => elected_term(&url, "primary").await,
        _ => ReplicationTerm::unfenced(FencingToken::new(1)),
    };
    let replicator = Replicator::start(
        &db,
        "primary",
        fast_config(),
        stores(&url).await,
        term,
        StartFrom::Snapshot,
    )
    .await
    .unwrap();
    let stopped = replicator.clone();
    tokio::spawn(async move {
        stopped.stopped().await;
        println!("FENCED {}", stopped.stats().fenced);
    });
    println!("READY");
    for tx in 0.. {
        write_tx(&conn, tx);
        if sync {
            replicator.sync().await.unwrap();
        }
        println!("COMMITTED {tx}");
    }
}

/// The primary as a child process, and its output lines.
fn spawn_primary(
    dir: &Path,
    url: &str,
    mode: &str,
) -> (
    std::process::Child,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            &testkit::process::test_name(module_path!(), "child_primary_writes_until_killed"),
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, dir)
        .env("WAL_CRASH_NATS", url)
        .env("WAL_CRASH_MODE", mode)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, lines)
}

/// The transaction number of a `COMMITTED n` line.
fn parse(line: &str) -> Option<i64> {
    line.split_once("COMMITTED ")
        .and_then(|(_, n)| n.trim().parse().ok())
}

async fn crash_and_promote(mode: &str) {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let nats = testkit::NatsServer::start_with(testkit::NatsOptions::durable())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut child, mut lines) = spawn_primary(dir.path(), &nats.url(), mode);
    let mut committed = BTreeSet::new();
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

/// Sends `signal` to the child.
fn signal(child: &std::process::Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) on a child we own; no memory is involved.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstopped_primary_resumed_after_a_promotion_reaches_no_replica() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let nats = testkit::NatsServer::start_with(testkit::NatsOptions::durable())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut child, mut lines) = spawn_primary(dir.path(), &nats.url(), "lease");
    let s = stores(&nats.url()).await;
    let mut before = BTreeSet::new();
    {
        tracing::info!("the primary leads under a 2 s lease and writes; SIGSTOP after 200 commits");
        loop {
            let line = lines.recv().await.expect("child output");
            if line.contains("READY") {
                break;
            }
        }
        while before.len() < 200 {
            if let Some(n) = parse(&lines.recv().await.expect("child output")) {
                before.insert(n);
            }
        }
        signal(&child, libc::SIGSTOP);
        // Whatever the pipe still holds was printed before the stop.
        while let Ok(Some(line)) =
            tokio::time::timeout(Duration::from_millis(300), lines.recv()).await
        {
            if let Some(n) = parse(&line) {
                before.insert(n);
            }
        }
    }
    let standby = Standby::start(
        &dir.path().join("b-replica.db"),
        standby_config(),
        s.clone(),
    )
    .await
    .unwrap();
    let b_db = dir.path().join("b.db");
    let (b, at) = {
        tracing::info!("the stopped primary's lease expires; b wins the election and promotes");
        let term = tokio::time::timeout(Duration::from_secs(30), elected_term(&nats.url(), "b"))
            .await
            .expect("b leads once the paused primary's lease expires");
        let b = standby
            .promote(&b_db, "b", fast_config(), term, None)
            .await
            .unwrap();
        let conn = open_ledger(&b_db);
        for tx in 1_000_000..1_000_050 {
            write_tx(&conn, tx);
        }
        let at = b.sync().await.unwrap();
        (b, at)
    };
    let mut after = BTreeSet::new();
    {
        tracing::info!("SIGCONT: the old primary writes on locally and its replicator is fenced");
        signal(&child, libc::SIGCONT);
        let fenced = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.recv().await {
                if let Some(n) = parse(&line) {
                    after.insert(n);
                }
                if line.starts_with("FENCED") {
                    return line;
                }
            }
            panic!("the child ended without reporting its replicator's end");
        })
        .await
        .expect("the resumed primary's replicator stops");
        assert_eq!(fenced, "FENCED true");
        // Let it write on for a moment, then end it.
        let until = tokio::time::Instant::now() + Duration::from_millis(500);
        while let Ok(Some(line)) = tokio::time::timeout_at(until, lines.recv()).await {
            if let Some(n) = parse(&line) {
                after.insert(n);
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!after.is_empty(), "the resumed primary committed locally");
    }
    {
        tracing::info!("a fresh replica of the new generation holds none of the resumed writes");
        let c_replica = dir.path().join("c-replica.db");
        let c = Standby::start(&c_replica, standby_config(), s.clone())
            .await
            .unwrap();
        let reached = c.wait_for(at, Duration::from_secs(30)).await;
        assert!(reached.is_some(), "the replica never reached {at:?}");
        integrity_ok(&c_replica);
        let held: BTreeSet<i64> = rows(&c_replica).into_iter().map(|(tx, _)| tx).collect();
        let old: BTreeSet<i64> = held.iter().copied().filter(|tx| *tx < 1_000_000).collect();
        assert!(
            old.is_subset(&before),
            "writes after the resume reached a replica: {:?}",
            old.difference(&before).collect::<Vec<_>>()
        );
        assert!(held.is_disjoint(&after));
        assert!((1_000_000..1_000_050).all(|tx| held.contains(&tx)));
        c.stop().await.unwrap();
    }
    b.stop().await.unwrap();
}
