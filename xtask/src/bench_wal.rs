//! `cargo xtask bench wal`: SQLite WAL replication side by side with Litestream, against the
//! same durable nats-server, on the same workloads.
//!
//! Contenders: ours (`wal-sqlite`'s `Replicator`, run as its own process: this binary re-run
//! as `bench wal-replicator`), Litestream at its defaults, and Litestream with
//! `monitor-interval` and `sync-interval` at 10 ms (our poll interval). Workloads: small write
//! transactions at 1,000/s for `WAL_BENCH_SECONDS` (60), then a bulk load of about
//! `WAL_BENCH_BULK_MIB` (1024) MiB. Reported: commit-to-object lag, per commit, to the moment
//! the object that contains it is stored (p50/p99; objects are seen on the bucket's metadata
//! subject as they are stored), replicator CPU seconds, bytes stored, and the time to restore
//! the result from NATS (ours also prints where its restore's time went). A contender whose
//! restore fails fails the bench. `WAL_BENCH_ONLY` (a contender's bucket: `bench_ours`,
//! `bench_ls_default`, `bench_ls_fast`) runs one contender alone, for quick experiments.
//!
//! Which object contains a commit: ours, the segment whose transactions include it (segments
//! are contiguous and each header counts its transactions); Litestream, the L0 LTX file whose
//! header's WAL range (salts, offset, size) covers the commit's frame, read from the
//! `-shm` wal-index header right after the commit.

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bus_nats::{NatsBusConfig, NatsObjectStore, ObjectBucketSpec};
use cluster_core::ids::{AppName, FencingToken, PlatformName};
use cluster_core::naming::{NamespaceKind, namespace};
use cluster_core::object_store::{ObjectName, ObjectStore};
use futures::StreamExt;
use wal_sqlite::{
    GenerationRegistry, ReplicationConfig, ReplicationStores, ReplicationTerm, Replicator, Restore,
    RestoreTarget, SegmentHeader, StartFrom,
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
    /// Commits whose containing object was found (of all commits of the first workload).
    matched: (usize, usize),
    cpu: f64,
    bytes: u64,
    /// Ours: plain and stored bytes of the segments and snapshots it shipped.
    compression: Option<(u64, u64)>,
    restore: Duration,
    db_bytes: u64,
}

/// Where a commit ended in the WAL: the wal-index header right after it.
#[derive(Clone, Copy)]
struct WalPoint {
    salts: (u32, u32),
    /// `mxFrame`: the commit's frame.
    frame: u32,
}

/// Reads `mxFrame` and the salts from the `-shm` file's wal-index header.
fn wal_point(shm: &std::fs::File) -> std::io::Result<WalPoint> {
    let mut hdr = [0u8; 48];
    shm.read_exact_at(&mut hdr, 0)?;
    let word = |at: usize| [hdr[at], hdr[at + 1], hdr[at + 2], hdr[at + 3]];
    Ok(WalPoint {
        // The salts are the WAL header's bytes, copied as they are; mxFrame is native.
        salts: (u32::from_be_bytes(word(32)), u32::from_be_bytes(word(36))),
        frame: u32::from_ne_bytes(word(16)),
    })
}

/// Every object name stored in the bucket, with the time its metadata was seen.
type Arrivals = Arc<Mutex<Vec<(Instant, String)>>>;

/// The objects of `store` whose names pass `keep`, with their bytes (16 gets at a time).
async fn fetch_all(
    store: &NatsObjectStore,
    keep: impl Fn(&str) -> bool,
) -> anyhow::Result<Vec<(ObjectName, Vec<u8>)>> {
    let names: Vec<ObjectName> = store
        .list("")
        .await?
        .into_iter()
        .map(|i| i.name)
        .filter(|n| keep(n.as_str()))
        .collect();
    futures::stream::iter(names)
        .map(|name| async move {
            let object = store
                .get(&name)
                .await?
                .with_context(|| format!("{name} listed but gone"))?;
            Ok::<_, anyhow::Error>((name, object.data))
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// For each commit of ours, when the segment holding it was stored: segments are contiguous,
/// so commit k is in the first segment whose running transaction count reaches k.
async fn containing_ours(
    store: &NatsObjectStore,
    commits: usize,
    arrived: &HashMap<String, Instant>,
) -> anyhow::Result<Vec<Option<Instant>>> {
    let mut segments: Vec<(SegmentHeader, String)> = Vec::new();
    for (name, data) in fetch_all(store, |n| n.contains("/seg/")).await? {
        let header = SegmentHeader::from_stored(&data).with_context(|| format!("{name}"))?;
        segments.push((header, name.as_str().to_owned()));
    }
    segments.sort_by_key(|(h, _)| (h.generation, h.index));
    let total: u64 = segments
        .iter()
        .map(|(h, _)| u64::from(h.transactions))
        .sum();
    // Transactions before the first workload commit (none expected: the base snapshot holds
    // the setup) are skipped.
    let before = total.saturating_sub(commits as u64);
    let mut out = Vec::with_capacity(commits);
    let mut upto = 0u64;
    for (header, name) in &segments {
        upto += u64::from(header.transactions);
        while (out.len() as u64) + before < upto && out.len() < commits {
            out.push(arrived.get(name).copied());
        }
    }
    out.resize(commits, None);
    Ok(out)
}

/// An L0 LTX file's WAL range (offset, size) and when it was stored, kept by WAL salts.
type LtxRange = (u64, u64, Option<Instant>);

/// For each commit of Litestream, when the L0 LTX file whose WAL range covers it was stored.
async fn containing_litestream(
    store: &NatsObjectStore,
    points: &[WalPoint],
    page_size: u64,
    arrived: &HashMap<String, Instant>,
) -> anyhow::Result<Vec<Option<Instant>>> {
    let mut ranges: HashMap<(u32, u32), Vec<LtxRange>> = HashMap::new();
    for (name, data) in fetch_all(store, |n| n.contains("ltx/0/")).await? {
        // LTX header (big-endian): magic "LTX1", ..., WALOffset at 48, WALSize at 56,
        // WALSalt1 at 64, WALSalt2 at 68.
        anyhow::ensure!(
            data.len() >= 100 && &data[..4] == b"LTX1",
            "{name} is not an LTX file"
        );
        let u64_at =
            |at: usize| u64::from_be_bytes(data[at..at + 8].try_into().unwrap_or_default());
        let u32_at =
            |at: usize| u32::from_be_bytes(data[at..at + 4].try_into().unwrap_or_default());
        ranges.entry((u32_at(64), u32_at(68))).or_default().push((
            u64_at(48),
            u64_at(56),
            arrived.get(name.as_str()).copied(),
        ));
    }
    for r in ranges.values_mut() {
        r.sort_by_key(|(offset, _, _)| *offset);
    }
    Ok(points
        .iter()
        .map(|p| {
            // The commit frame ends at this WAL byte offset.
            let end = 32 + u64::from(p.frame) * (24 + page_size);
            let r = ranges.get(&p.salts)?;
            let i = r.partition_point(|(offset, _, _)| *offset < end);
            let (offset, size, at) = r.get(i.checked_sub(1)?)?;
            (end <= offset + size).then_some(*at)?
        })
        .collect())
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

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
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
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = replicator.stopped() => {}
        _ = term.recv() => {
            let s = replicator.stats();
            let (snap_plain, snap_stored) = s.last_snapshot_bytes.unwrap_or((0, 0));
            println!(
                "STATS {} {}",
                s.plain_bytes_shipped + snap_plain,
                s.bytes_shipped + snap_stored
            );
        }
    }
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

/// Lets the bucket's stream have more consumers than nats-server's default of 1,000 per stream
/// (2.15+; zero or -1 mean that default): a Litestream restore opens every LTX file of its
/// plan at once, each read an ordered consumer, and more than 1,000 files fail the restore
/// with "maximum consumers limit reached".
async fn raise_consumer_limit(client: &async_nats::Client, bucket: &str) -> anyhow::Result<()> {
    let js = async_nats::jetstream::new(client.clone());
    let mut stream = js.get_stream(format!("OBJ_{bucket}")).await?;
    let mut config = stream.info().await?.config.clone();
    config.max_consumers = 1_000_000;
    js.update_stream(config)
        .await
        .context("raising the stream's consumer limit")?;
    Ok(())
}

/// Runs `litestream restore` into `dest`; its output on failure.
fn litestream_restore(yml: &Path, db: &Path, dest: &Path) -> anyhow::Result<()> {
    let bin = testkit::tools::Tool::Litestream
        .find()
        .context("litestream")?;
    let out = std::process::Command::new(bin)
        .args(["restore", "-config"])
        .arg(yml)
        .arg("-o")
        .arg(dest)
        .arg(db)
        .output()?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
    anyhow::bail!(
        "litestream restore failed ({}):\n{}",
        out.status,
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    )
}

async fn run(kind: Kind, url: &str, seconds: u64, bulk_mib: u64) -> anyhow::Result<Outcome> {
    let dir = std::env::temp_dir().join(format!(
        "xtask-bench-wal-{}-{}",
        std::process::id(),
        kind.bucket()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let result = run_in(kind, &dir, url, seconds, bulk_mib).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run_in(
    kind: Kind,
    dir: &Path,
    url: &str,
    seconds: u64,
    bulk_mib: u64,
) -> anyhow::Result<Outcome> {
    let db = dir.join("bench.db");
    let conn = open_db(&db)?;
    conn.execute("INSERT INTO t(v) VALUES (randomblob(100))", [])?;
    let page_size: u64 = conn
        .query_row("PRAGMA page_size", [], |r| r.get::<_, u32>(0))?
        .into();
    // Buckets exist before either replicator starts (Litestream requires it).
    let wal_store =
        NatsObjectStore::connect(config(url), &ObjectBucketSpec::new(kind.bucket())).await?;
    let client = async_nats::connect(url).await?;
    if kind != Kind::Ours {
        raise_consumer_limit(&client, kind.bucket()).await?;
    }
    let arrivals: Arrivals = Arc::new(Mutex::new(Vec::new()));
    let mut meta = client
        .subscribe(format!("$O.{}.M.>", kind.bucket()))
        .await?;
    let seen = arrivals.clone();
    let watcher = tokio::spawn(async move {
        while let Some(message) = meta.next().await {
            let at = Instant::now();
            let Ok(info) = serde_json::from_slice::<serde_json::Value>(&message.payload) else {
                continue;
            };
            if info["deleted"].as_bool() == Some(true) {
                continue;
            }
            if let Some(name) = info["name"].as_str() {
                seen.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((at, name.to_owned()));
            }
        }
    });
    let (mut child, yml) = spawn_contender(kind, dir, &db, url)?;
    let pid = child.id();
    // Our replicator's stdout, line by line: READY, then STATS when it is stopped.
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    if let Some(stdout) = child.stdout.take() {
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let ready = tokio::task::block_in_place(|| {
            loop {
                match lines_rx.recv_timeout(Duration::from_secs(30)) {
                    Ok(line) if line.contains("READY") => break true,
                    Ok(_) => {}
                    Err(_) => break false,
                }
            }
        });
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
    // Workload 1: 1,000 small transactions per second; each commit's time and WAL point.
    let shm = std::fs::File::open(dir.join("bench.db-shm"))?;
    let commits = tokio::task::spawn_blocking(
        move || -> anyhow::Result<(rusqlite::Connection, Vec<(Instant, WalPoint)>)> {
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
                let at = Instant::now();
                commits.push((at, wal_point(&shm)?));
            }
            Ok((conn, commits))
        },
    )
    .await??;
    let (conn, commits) = commits;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut lags: Vec<Duration> = {
        let arrived: HashMap<String, Instant> = arrivals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            // The first store of a name is when it became readable.
            .rev()
            .map(|(at, name)| (name.clone(), *at))
            .collect();
        let stored = match kind {
            Kind::Ours => containing_ours(&wal_store, commits.len(), &arrived).await?,
            _ => {
                let points: Vec<WalPoint> = commits.iter().map(|(_, p)| *p).collect();
                containing_litestream(&wal_store, &points, page_size, &arrived).await?
            }
        };
        commits
            .iter()
            .zip(stored)
            .filter_map(|((committed, _), stored)| {
                stored.map(|s| s.saturating_duration_since(*committed))
            })
            .collect()
    };
    lags.sort();
    let matched = (lags.len(), commits.len());
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
            .map(|(at, _)| *at)
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
    let compression = lines_rx.try_iter().find_map(|line| {
        let mut words = line.strip_prefix("STATS ")?.split_whitespace();
        Some((words.next()?.parse().ok()?, words.next()?.parse().ok()?))
    });
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
    match &yml {
        None => {
            let s = stores(url, kind.bucket()).await?;
            let report = Restore::new(s.wal, s.snapshots)
                .run(RestoreTarget::Latest, &dest)
                .await
                .with_context(|| format!("{}: restore failed", kind.label()))?;
            println!(
                "  {}: restore of {} segments: {:?}",
                kind.label(),
                report.segments,
                report.timings
            );
        }
        Some(yml) => {
            let (yml, db, dest) = (yml.clone(), db.clone(), dest.clone());
            tokio::task::spawn_blocking(move || litestream_restore(&yml, &db, &dest))
                .await?
                .with_context(|| format!("{}: restore failed", kind.label()))?;
        }
    }
    let restore = started.elapsed();
    let rows: i64 =
        rusqlite::Connection::open(&dest)?.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?;
    anyhow::ensure!(
        rows == expected,
        "{}: restored {rows} rows of {expected}",
        kind.label()
    );
    drop(wal_store);
    Ok(Outcome {
        kind,
        lag_p50: percentile(&lags, 0.5),
        lag_p99: percentile(&lags, 0.99),
        matched,
        cpu,
        bytes,
        compression,
        restore,
        db_bytes,
    })
}

/// Runs every contender on both workloads and prints the table; fails if any contender did.
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
    let mut failures = Vec::new();
    // `WAL_BENCH_ONLY=bench_ours` (a bucket name) runs one contender, for quick experiments.
    let only = std::env::var("WAL_BENCH_ONLY").ok();
    for kind in [Kind::Ours, Kind::LitestreamDefault, Kind::LitestreamFast] {
        if only.as_deref().is_some_and(|o| o != kind.bucket()) {
            continue;
        }
        println!("running {}", kind.label());
        match run(kind, &nats.url(), seconds, bulk_mib).await {
            Ok(outcome) => {
                println!(
                    "  lag p50 {} p99 {} ({} of {} commits matched), cpu {:.1} s, stored {:.1} MiB, restore {}",
                    ms(outcome.lag_p50),
                    ms(outcome.lag_p99),
                    outcome.matched.0,
                    outcome.matched.1,
                    outcome.cpu,
                    mib(outcome.bytes),
                    secs(outcome.restore)
                );
                outcomes.push(outcome);
            }
            Err(e) => {
                println!("  FAILED: {e:#}");
                failures.push((kind, e));
            }
        }
    }
    println!();
    println!(
        "| replicator | commit-to-object lag p50 | p99 | replicator CPU s (both workloads) | bytes stored | restore of the {:.0} MiB result |",
        outcomes.first().map_or(0.0, |o| mib(o.db_bytes))
    );
    println!("|---|---|---|---|---|---|");
    for o in &outcomes {
        println!(
            "| {} | {} | {} | {:.1} | {:.1} MiB | {} |",
            o.kind.label(),
            ms(o.lag_p50),
            ms(o.lag_p99),
            o.cpu,
            mib(o.bytes),
            secs(o.restore)
        );
    }
    for (kind, _) in &failures {
        println!(
            "| {} | failed | failed | failed | failed | failed |",
            kind.label()
        );
    }
    if let Some(ours) = outcomes.iter().find(|o| o.kind == Kind::Ours) {
        if let Some((plain, stored)) = ours.compression {
            println!(
                "\nours: segments and snapshots {:.1} MiB plain, {:.1} MiB compressed (ratio {:.2})",
                mib(plain),
                mib(stored),
                plain as f64 / stored.max(1) as f64
            );
        }
        for o in outcomes.iter().filter(|o| o.kind != Kind::Ours) {
            println!(
                "vs {}: bytes stored {:.2}x, restore {:.2}x faster",
                o.kind.label(),
                ours.bytes as f64 / o.bytes.max(1) as f64,
                o.restore.as_secs_f64() / ours.restore.as_secs_f64().max(1e-9)
            );
        }
    }
    for o in &outcomes {
        anyhow::ensure!(
            o.matched.0 * 100 >= o.matched.1 * 99,
            "{}: only {} of {} commits were found in a stored object",
            o.kind.label(),
            o.matched.0,
            o.matched.1
        );
    }
    if !failures.is_empty() {
        let all: Vec<String> = failures
            .iter()
            .map(|(kind, e)| format!("{}: {e:#}", kind.label()))
            .collect();
        anyhow::bail!(
            "{} contender(s) failed:\n{}",
            failures.len(),
            all.join("\n")
        );
    }
    Ok(())
}
