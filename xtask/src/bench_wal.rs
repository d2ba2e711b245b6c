//! `cargo xtask bench wal`: SQLite WAL replication side by side with Litestream, against the
//! same durable nats-server, on the same workloads.
//!
//! Contenders: ours (`wal-sqlite`'s `Replicator`, run as its own process: this binary re-run
//! as `bench wal-replicator`), Litestream at its defaults, and Litestream with
//! `monitor-interval` and `sync-interval` at 10 ms (our poll interval). Workloads: small write
//! transactions at 1,000/s for `WAL_BENCH_SECONDS` (60), then a bulk load of about
//! `WAL_BENCH_BULK_MIB` (1024) MiB. Reported: lag from commit to the next object listed in the
//! bucket (p50/p99; objects are seen on the bucket's metadata subject as they are stored),
//! replicator CPU seconds, bytes stored, and the time to restore the result.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bus_nats::{NatsBusConfig, NatsObjectStore, ObjectBucketSpec};
use cluster_core::ids::{AppName, FencingToken, PlatformName};
use cluster_core::naming::{NamespaceKind, namespace};
use cluster_core::object_store::ObjectStore;
use futures::StreamExt;
use wal_sqlite::{
    GenerationRegistry, ReplicationConfig, ReplicationStores, ReplicationTerm, Replicator, Restore,
    RestoreTarget, StartFrom,
};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ours,
    LitestreamDefault,
    LitestreamFast,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Ours => "wal-sqlite (own process, 10 ms poll)",
            Kind::LitestreamDefault => "Litestream 0.5.17 defaults (1 s)",
            Kind::LitestreamFast => "Litestream 0.5.17 monitor/sync 10 ms",
        }
    }

    fn bucket(self) -> &'static str {
        match self {
            Kind::Ours => "bench_ours",
            Kind::LitestreamDefault => "bench_ls_default",
            Kind::LitestreamFast => "bench_ls_fast",
        }
    }
}

struct Outcome {
    kind: Kind,
    lag_p50: Duration,
    lag_p99: Duration,
    cpu: f64,
    bytes: u64,
    /// `None` when the restore failed (reported, the other contenders still run).
    restore: Option<Duration>,
    db_bytes: u64,
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("failed".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()))
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// CPU seconds (user + system) of a live process.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the command name.
    let ticks: f64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum())
        .unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / hz.max(1.0)
}

fn config(url: &str) -> NatsBusConfig {
    NatsBusConfig {
        call_timeout: Duration::from_secs(10),
        ..NatsBusConfig::new(url)
    }
}

fn registry() -> anyhow::Result<GenerationRegistry> {
    let ns = namespace(
        &PlatformName::new("bench")?,
        Some(&AppName::new("wal")?),
        NamespaceKind::Wal,
    );
    Ok(GenerationRegistry::new(
        Arc::new(coord_mem::MemCoordinator::new()),
        ns,
    ))
}

async fn stores(url: &str, bucket: &str) -> anyhow::Result<ReplicationStores> {
    let wal: Arc<dyn ObjectStore> =
        Arc::new(NatsObjectStore::connect(config(url), &ObjectBucketSpec::new(bucket)).await?);
    let snapshots: Arc<dyn ObjectStore> = Arc::new(
        NatsObjectStore::connect(
            config(url),
            &ObjectBucketSpec::new(format!("{bucket}_snap")),
        )
        .await?,
    );
    Ok(ReplicationStores {
        wal,
        snapshots,
        registry: registry()?,
    })
}

/// The replicator process: `bench wal-replicator` with `WAL_BENCH_DB`, `WAL_BENCH_NATS`,
/// `WAL_BENCH_BUCKET`; runs until killed.
pub(crate) async fn replicator_child() -> anyhow::Result<()> {
    let db = PathBuf::from(std::env::var("WAL_BENCH_DB")?);
    let url = std::env::var("WAL_BENCH_NATS")?;
    let bucket = std::env::var("WAL_BENCH_BUCKET")?;
    let replicator = Replicator::start(
        &db,
        "bench",
        ReplicationConfig {
            snapshot_interval: None,
            ..ReplicationConfig::default()
        },
        stores(&url, &bucket).await?,
        ReplicationTerm::unfenced(FencingToken::new(1)),
        StartFrom::Snapshot,
    )
    .await?;
    println!("READY");
    replicator.stopped().await;
    Ok(())
}

fn open_db(path: &Path) -> anyhow::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.pragma_update(None, "journal_mode", "wal")?;
    conn.execute_batch("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB)")?;
    Ok(conn)
}

fn spawn_contender(
    kind: Kind,
    dir: &Path,
    db: &Path,
    url: &str,
) -> anyhow::Result<(std::process::Child, Option<PathBuf>)> {
    match kind {
        Kind::Ours => {
            let child = std::process::Command::new(std::env::current_exe()?)
                .args(["bench", "wal-replicator"])
                .env("WAL_BENCH_DB", db)
                .env("WAL_BENCH_NATS", url)
                .env("WAL_BENCH_BUCKET", kind.bucket())
                .env("RUST_LOG", "warn")
                .stdout(std::process::Stdio::piped())
                .spawn()?;
            Ok((child, None))
        }
        Kind::LitestreamDefault | Kind::LitestreamFast => {
            let intervals = if kind == Kind::LitestreamFast {
                (
                    "    monitor-interval: 10ms\n",
                    "      sync-interval: 10ms\n",
                )
            } else {
                ("", "")
            };
            let yml = dir.join("litestream.yml");
            std::fs::write(
                &yml,
                format!(
                    "dbs:\n  - path: {}\n{}    replica:\n      type: nats\n      url: {}/{}\n{}",
                    db.display(),
                    intervals.0,
                    url,
                    kind.bucket(),
                    intervals.1
                ),
            )?;
            let bin = testkit::tools::Tool::Litestream
                .find()
                .context("litestream not found: run cargo xtask deps")?;
            let child = std::process::Command::new(bin)
                .args(["replicate", "-config"])
                .arg(&yml)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()?;
            Ok((child, Some(yml)))
        }
    }
}

async fn run(kind: Kind, url: &str, seconds: u64, bulk_mib: u64) -> anyhow::Result<Outcome> {
    let dir = std::env::temp_dir().join(format!(
        "xtask-bench-wal-{}-{}",
        std::process::id(),
        kind.bucket()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("bench.db");
    let conn = open_db(&db)?;
    conn.execute("INSERT INTO t(v) VALUES (randomblob(100))", [])?;
    // Buckets exist before either replicator starts (Litestream requires it).
    let wal_store =
        NatsObjectStore::connect(config(url), &ObjectBucketSpec::new(kind.bucket())).await?;
    let client = async_nats::connect(url).await?;
    let arrivals = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let mut meta = client
        .subscribe(format!("$O.{}.M.>", kind.bucket()))
        .await?;
    let seen = arrivals.clone();
    let watcher = tokio::spawn(async move {
        while meta.next().await.is_some() {
            seen.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Instant::now());
        }
    });
    let (mut child, yml) = spawn_contender(kind, &dir, &db, url)?;
    let pid = child.id();
    if let Some(stdout) = child.stdout.take() {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(stdout).lines();
        let ready = tokio::task::spawn_blocking(move || {
            lines.any(|l| l.map(|l| l.contains("READY")).unwrap_or(false))
        })
        .await?;
        anyhow::ensure!(ready, "our replicator did not start");
    } else {
        let deadline = Instant::now() + Duration::from_secs(20);
        while arrivals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
        {
            anyhow::ensure!(
                Instant::now() < deadline,
                "litestream stored nothing in 20 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu_before = cpu_seconds(pid);
    // Workload 1: 1,000 small transactions per second.
    let commits = tokio::task::spawn_blocking(
        move || -> anyhow::Result<(rusqlite::Connection, Vec<Instant>)> {
            let mut commits = Vec::new();
            let start = Instant::now();
            let total = seconds * 1000;
            for i in 0..total {
                let due = start + Duration::from_millis(i);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                conn.execute("INSERT INTO t(v) VALUES (randomblob(100))", [])?;
                commits.push(Instant::now());
            }
            Ok((conn, commits))
        },
    )
    .await??;
    let (conn, commits) = commits;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut lags: Vec<Duration> = {
        let arrivals = arrivals.lock().unwrap_or_else(|p| p.into_inner()).clone();
        commits
            .iter()
            .filter_map(|c| {
                let i = arrivals.partition_point(|a| a < c);
                arrivals.get(i).map(|a| *a - *c)
            })
            .collect()
    };
    lags.sort();
    // Workload 2: a bulk load in 4 MiB transactions.
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let rows_per_tx = 1000;
        let txs = bulk_mib / 4;
        for _ in 0..txs {
            conn.execute_batch("BEGIN")?;
            for _ in 0..rows_per_tx {
                conn.execute("INSERT INTO t(v) VALUES (randomblob(4096))", [])?;
            }
            conn.execute_batch("COMMIT")?;
        }
        Ok(())
    })
    .await??;
    // Done once the bucket has been quiet for 5 s since the load ended (more than either
    // replicator's interval); the restore below checks that nothing is missing.
    let loaded = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let last = arrivals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last()
            .copied()
            .map_or(loaded, |l| l.max(loaded));
        if last.elapsed() > Duration::from_secs(5) {
            break;
        }
    }
    let cpu = cpu_seconds(pid) - cpu_before;
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
    let _ = child.wait();
    watcher.abort();
    let js = async_nats::jetstream::new(client.clone());
    let mut bytes = 0;
    for bucket in [kind.bucket().to_owned(), format!("{}_snap", kind.bucket())] {
        if let Ok(mut stream) = js.get_stream(format!("OBJ_{bucket}")).await {
            bytes += stream.info().await.map(|i| i.state.bytes).unwrap_or(0);
        }
    }
    let db_bytes = std::fs::metadata(&db)?.len();
    let expected: i64 =
        rusqlite::Connection::open(&db)?.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?;
    let dest = dir.join("restored.db");
    let started = Instant::now();
    let restored = match &yml {
        None => {
            let s = stores(url, kind.bucket()).await?;
            Restore::new(s.wal, s.snapshots)
                .run(RestoreTarget::Latest, &dest)
                .await
                .map(|_| ())
                .map_err(anyhow::Error::from)
        }
        Some(yml) => {
            let bin = testkit::tools::Tool::Litestream
                .find()
                .context("litestream")?;
            let status = std::process::Command::new(bin)
                .args(["restore", "-config"])
                .arg(yml)
                .arg("-o")
                .arg(&dest)
                .arg(&db)
                .status()?;
            if status.success() {
                Ok(())
            } else {
                Err(anyhow::anyhow!("litestream restore failed: {status}"))
            }
        }
    };
    let restore = match restored {
        Ok(()) => {
            let elapsed = started.elapsed();
            let rows: i64 = rusqlite::Connection::open(&dest)?.query_row(
                "SELECT count(*) FROM t",
                [],
                |r| r.get(0),
            )?;
            anyhow::ensure!(
                rows == expected,
                "{}: restored {rows} rows of {expected}",
                kind.label()
            );
            Some(elapsed)
        }
        Err(e) => {
            println!("  restore failed: {e:#}");
            None
        }
    };
    drop(wal_store);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Outcome {
        kind,
        lag_p50: percentile(&lags, 0.5),
        lag_p99: percentile(&lags, 0.99),
        cpu,
        bytes,
        restore,
        db_bytes,
    })
}

/// Runs every contender on both workloads and prints the table.
pub(crate) async fn wal() -> anyhow::Result<()> {
    let seconds = env_u64("WAL_BENCH_SECONDS", 60);
    let bulk_mib = env_u64("WAL_BENCH_BULK_MIB", 1024);
    let nats = testkit::NatsServer::start_with(testkit::NatsOptions::durable())
        .await
        .context("starting nats-server")?;
    println!(
        "nats-server {} (sync_interval: always); {seconds} s at 1,000 tx/s, then a {bulk_mib} MiB bulk load",
        nats.version()
    );
    let mut outcomes = Vec::new();
    for kind in [Kind::Ours, Kind::LitestreamDefault, Kind::LitestreamFast] {
        println!("running {}", kind.label());
        let outcome = run(kind, &nats.url(), seconds, bulk_mib).await?;
        println!(
            "  lag p50 {} p99 {}, cpu {:.1} s, stored {:.1} MiB, restore {}",
            ms(outcome.lag_p50),
            ms(outcome.lag_p99),
            outcome.cpu,
            outcome.bytes as f64 / (1 << 20) as f64,
            secs(outcome.restore)
        );
        outcomes.push(outcome);
    }
    println!();
    println!(
        "| replicator | commit-to-object lag p50 | p99 | replicator CPU s (both workloads) | bytes stored | restore of the {:.0} MiB result |",
        outcomes
            .first()
            .map_or(0.0, |o| o.db_bytes as f64 / (1 << 20) as f64)
    );
    println!("|---|---|---|---|---|---|");
    for o in &outcomes {
        println!(
            "| {} | {} | {} | {:.1} | {:.1} MiB | {} |",
            o.kind.label(),
            ms(o.lag_p50),
            ms(o.lag_p99),
            o.cpu,
            o.bytes as f64 / (1 << 20) as f64,
            secs(o.restore)
        );
    }
    Ok(())
}
