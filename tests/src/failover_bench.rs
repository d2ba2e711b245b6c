//! The failover benchmark: our nodes against etcd's own lock on the same etcd, in the same run.
//!
//! Trials of each kind alternate with the peer's so machine noise hits both alike. The two
//! SIGKILL series are measured alike (M19):
//!
//! - **the kill phase**: each holder is killed at a moment drawn uniformly over
//!   [`KILL_WINDOW`] after it settled, independent of either side's renewal schedule, so the age
//!   of its last acknowledged keep-alive at the kill is uniform over its own renewal interval,
//!   as for a crash at a random moment. The bench measures that age for every trial and reports
//!   it: ours from the session deadlines the node records (a renewal's send time is its deadline
//!   minus TTL minus margin), the peer's from a FaultProxy in front of the holder, whose only
//!   traffic once it holds the lock is its lease's keep-alives.
//! - **the end event**: the first line the new holder prints once it holds (our standby prints
//!   `active ledger <token>` as its `on_active` begins; `etcdctl lock` prints the lock key),
//!   stamped by the same line reader of this process ([`crate::orchestrator::stamp_lines`]).
//!
//! The other series:
//!
//! - **`step_down()` -> new leader's `on_active`**: SIGUSR1 to the leader.
//! - **loss of leadership -> cancellation fired**: the leader's connection to etcd is blackholed
//!   (a FaultProxy); measured from its session deadline to its leader work's cancellation.
//! - **node join -> ring settled**: a node joins two others; measured until the ring's last
//!   partition moved to it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::history::{Record, mono_ns};
use crate::orchestrator::{DemoCluster, DemoSettings, StampedLines, first_line, stamp_lines};

/// Each SIGKILL falls at a uniformly random moment this long after its holder settled: longer
/// than both sides' renewal intervals (ours about 467 ms, clientv3's about 1 s at TTL 2 s).
pub const KILL_WINDOW: Duration = Duration::from_millis(2_000);

/// A uniformly random moment within [`KILL_WINDOW`].
fn random_kill_delay() -> Duration {
    Duration::from_nanos(fastrand::u64(0..KILL_WINDOW.as_nanos() as u64))
}

/// Milliseconds at the `q` quantile (nearest rank) of `values`.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// Figures of one measured series, in milliseconds.
#[derive(Debug, Clone)]
pub struct Series {
    /// What was measured.
    pub name: String,
    /// Each trial.
    pub samples: Vec<f64>,
    /// For SIGKILL series: the age of the holder's last acknowledged keep-alive at each kill.
    pub kill_offsets: Vec<f64>,
}

impl Series {
    fn new(name: &str) -> Self {
        Series {
            name: name.to_owned(),
            samples: Vec::new(),
            kill_offsets: Vec::new(),
        }
    }

    /// `name | n | p50 | p99 | max | kill offsets` as a table row.
    pub fn row(&self) -> String {
        let offsets = if self.kill_offsets.is_empty() {
            String::new()
        } else {
            format!(
                "{:.0} / {:.0} / {:.0}",
                self.kill_offsets
                    .iter()
                    .copied()
                    .fold(f64::INFINITY, f64::min),
                quantile(&self.kill_offsets, 0.5),
                self.kill_offsets.iter().copied().fold(0.0, f64::max)
            )
        };
        format!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {offsets} |",
            self.name,
            self.samples.len(),
            quantile(&self.samples, 0.5),
            quantile(&self.samples, 0.99),
            self.samples.iter().copied().fold(0.0, f64::max)
        )
    }

    /// This series' p50 and p99 over `peer`'s.
    pub fn ratio_to(&self, peer: &Series) -> (f64, f64) {
        (
            quantile(&self.samples, 0.5) / quantile(&peer.samples, 0.5),
            quantile(&self.samples, 0.99) / quantile(&peer.samples, 0.99),
        )
    }
}

/// A child process killed when dropped, so an error path never leaves a peer running.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn first_record(records: &[Record], after: u64, event: &str) -> Option<u64> {
    records
        .iter()
        .filter(|r| r.event == event && r.mono_ns > after)
        .map(|r| r.mono_ns)
        .min()
}

/// One SIGKILL trial on nodes `a` and `b`: kills the leader of `ledger` at a random moment,
/// returns the milliseconds until the standby printed that its `on_active` began and the age of
/// the leader's last acknowledged renewal at the kill, and restarts the killed node as a standby.
fn sigkill_trial(cluster: &mut DemoCluster, limit: Duration) -> anyhow::Result<(f64, f64)> {
    use anyhow::Context;
    let (leader, _) = cluster
        .wait_for(limit, |c| c.leader("ledger"))
        .context("no leader")?;
    let standby = if leader == "a" { "b" } else { "a" };
    // Let the standby be settled in the queue before the kill.
    std::thread::sleep(Duration::from_millis(300) + random_kill_delay());
    let killed = mono_ns();
    cluster.kill(&leader);
    let took = cluster
        .wait_for(limit, |c| c.printed(standby, killed, "active ledger"))
        .context("no failover")?;
    let settings = cluster.settings();
    let usable = (settings.ttl - settings.margin).as_nanos() as u64;
    let last_renewal = cluster
        .history(&leader)
        .iter()
        .filter(|r| r.event == "alive_until")
        .map(|r| r.mono_ns.saturating_sub(usable))
        .filter(|sent| *sent <= killed)
        .max()
        .context("the leader recorded no renewal before the kill")?;
    cluster.rejoin(&leader, killed, limit)?;
    Ok((ms(took - killed), ms(killed - last_renewal)))
}

/// One SIGKILL trial of the peer: an `etcdctl lock --ttl=2` holder, reaching etcd through a
/// FaultProxy so its keep-alives can be seen, and a waiter; the holder is killed at a random
/// moment. Returns the milliseconds until the waiter printed that it holds the lock and the
/// age of the holder's last acknowledged keep-alive at the kill.
fn peer_trial(
    etcdctl: &Path,
    etcd: &str,
    name: &str,
    limit: Duration,
) -> anyhow::Result<(f64, f64)> {
    use anyhow::Context;
    let etcd_addr: std::net::SocketAddr = etcd
        .trim_start_matches("http://")
        .parse()
        .context("etcd URL is not host:port")?;
    let proxy = testkit::FaultProxy::start(etcd_addr)?;
    let spawn = |endpoint: &str| {
        Command::new(etcdctl)
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoint}"))
            .args(["lock", "--ttl=2", name])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
    };
    let holder_lines = StampedLines::default();
    let mut holder = KillOnDrop(spawn(&proxy.url("http"))?);
    stamp_lines(
        holder.0.stdout.take().context("holder stdout")?,
        holder_lines.clone(),
        None,
    );
    let started = mono_ns();
    wait_until(limit, || first_line(&holder_lines, started, "")).context("holder never held")?;
    let waiter_lines = StampedLines::default();
    let mut waiter = KillOnDrop(spawn(etcd)?);
    stamp_lines(
        waiter.0.stdout.take().context("waiter stdout")?,
        waiter_lines.clone(),
        None,
    );
    std::thread::sleep(Duration::from_millis(300) + random_kill_delay());
    let offset = proxy
        .last_reply_age()
        .context("the holder got no reply through its proxy")?;
    let killed = mono_ns();
    holder.0.kill()?;
    let _ = holder.0.wait();
    let got = wait_until(limit, || first_line(&waiter_lines, killed, ""))
        .context("etcdctl waiter never got the lock")?;
    drop(waiter);
    Ok((ms(got - killed), offset.as_secs_f64() * 1e3))
}

/// Polls `check` every millisecond until it returns `Some`, or `limit` passes.
fn wait_until<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Runs every series with `trials` trials each against etcd at `etcd`; returns the series.
pub fn run(bin: &Path, dir: &Path, etcd: &str, trials: usize) -> anyhow::Result<Vec<Series>> {
    use anyhow::Context;
    let etcdctl = testkit::tools::Tool::Etcdctl.locate()?.path;
    let settings = DemoSettings {
        platform: format!("bench-{}", std::process::id()),
        etcd: vec![etcd.to_owned()],
        nats: None,
        nats_kv: None,
        ttl: Duration::from_secs(2),
        margin: Duration::from_millis(600),
        partitions: 64,
        work: false,
        release_delay: Duration::ZERO,
    };
    let limit = Duration::from_secs(60);
    let mut ours = Series::new("ours: SIGKILL leader -> new leader's on_active begins");
    let mut peer = Series::new("etcdctl lock --ttl=2: SIGKILL holder -> waiter holds");
    let mut step_down = Series::new("ours: step_down() -> new leader's on_active");
    let mut cancel = Series::new("ours: session deadline -> leader work cancelled");
    let mut join = Series::new("ours: node joins -> ring settled (64 partitions)");

    let mut cluster = DemoCluster::new(bin, dir, settings.clone());
    cluster.start("a")?;
    cluster.start("b")?;
    for trial in 0..trials {
        // Ours: SIGKILL.
        let (took, offset) = sigkill_trial(&mut cluster, limit)?;
        ours.samples.push(took);
        ours.kill_offsets.push(offset);

        // Peer: etcdctl lock with the same TTL, on the same etcd.
        let name = format!("/bench-{}/lock-{trial}", std::process::id());
        let (took, offset) = peer_trial(&etcdctl, etcd, &name, limit)?;
        peer.samples.push(took);
        peer.kill_offsets.push(offset);

        // Ours: step-down. If leadership changed under us (a store stall on a loaded machine),
        // ask the node that leads now.
        let mut handed = None;
        for _ in 0..5 {
            let (leader, _) = cluster
                .wait_for(limit, |c| c.leader("ledger"))
                .context("no leader")?;
            let other = if leader == "a" { "b" } else { "a" };
            std::thread::sleep(Duration::from_millis(300));
            let asked = mono_ns();
            cluster.signal(&leader, libc::SIGUSR1);
            let took = cluster.wait_for(Duration::from_secs(5), |c| {
                first_record(&c.history(other), asked, "active")
            });
            if let Some(took) = took {
                handed = Some(took - asked);
                break;
            }
        }
        step_down.samples.push(ms(handed.context("no handover")?));
    }

    // Loss of leadership: a third node reaches etcd through a proxy that is then blackholed.
    let runtime = tokio::runtime::Runtime::new()?;
    let etcd_addr: std::net::SocketAddr = etcd
        .trim_start_matches("http://")
        .parse()
        .context("etcd URL is not host:port")?;
    for _ in 0..trials {
        let proxy = {
            let _guard = runtime.enter();
            testkit::FaultProxy::start(etcd_addr)?
        };
        cluster.stop("a", limit);
        cluster.stop("b", limit);
        cluster.start_via("p", &[proxy.url("http")])?;
        let started = mono_ns();
        cluster
            .wait_for(limit, |c| first_record(&c.history("p"), started, "active"))
            .context("proxied node did not lead")?;
        cluster.start("a")?;
        std::thread::sleep(Duration::from_millis(500));
        let cut = mono_ns();
        proxy.set_mode(testkit::Mode::Blackhole);
        let cancelled = cluster
            .wait_for(limit, |c| first_record(&c.history("p"), cut, "cancelled"))
            .context("leader work never cancelled")?;
        let deadline = cluster
            .history("p")
            .iter()
            .filter(|r| r.event == "alive_until" && r.mono_ns <= cancelled + 1_000_000_000)
            .map(|r| r.mono_ns)
            .max()
            .unwrap_or(cut);
        cancel.samples.push(ms(cancelled.saturating_sub(deadline)));
        cluster.kill("p");
        proxy.heal();
        cluster.stop("a", limit);
        cluster.start("a")?;
        cluster.start("b")?;
    }

    // Node join -> ring settled.
    let joins = trials.min(10);
    for _ in 0..joins {
        cluster
            .wait_for(limit, |c| {
                let owners = c.ring_owners();
                (owners.len() == 64 && owners.values().all(|o| o.len() == 1)).then_some(())
            })
            .context("ring not settled before the join")?;
        let joined = mono_ns();
        cluster.start("c")?;
        let settled = cluster
            .wait_for(limit, |c| {
                let owned = c.ring_owners().values().filter(|o| o[0].0 == "c").count();
                (owned >= 21).then(|| {
                    c.history("c")
                        .iter()
                        .filter(|r| r.event == "own" && r.mono_ns > joined)
                        .map(|r| r.mono_ns)
                        .max()
                })
            })
            .flatten()
            .context("ring did not settle after the join")?;
        join.samples.push(ms(settled - joined));
        cluster.stop("c", limit);
    }
    cluster.stop("a", limit);
    cluster.stop("b", limit);
    Ok(vec![ours, peer, step_down, cancel, join])
}

/// SIGKILL -> new leader's `on_active` with NATS JetStream KV as the store.
pub fn run_nats_kv(bin: &Path, dir: &Path, nats: &str, trials: usize) -> anyhow::Result<Series> {
    let settings = DemoSettings {
        platform: format!("benchkv-{}", std::process::id()),
        etcd: vec!["http://127.0.0.1:9".to_owned()],
        nats: None,
        nats_kv: Some(nats.to_owned()),
        ttl: Duration::from_secs(2),
        margin: Duration::from_millis(600),
        partitions: 8,
        work: false,
        release_delay: Duration::ZERO,
    };
    let limit = Duration::from_secs(60);
    let mut series =
        Series::new("ours on NATS KV: SIGKILL leader -> new leader's on_active begins");
    let dir = dir.join("nats-kv");
    std::fs::create_dir_all(&dir)?;
    let mut cluster = DemoCluster::new(bin, &dir, settings);
    cluster.start("a")?;
    cluster.start("b")?;
    for _ in 0..trials {
        let (took, offset) = sigkill_trial(&mut cluster, limit)?;
        series.samples.push(took);
        series.kill_offsets.push(offset);
    }
    cluster.stop("a", limit);
    cluster.stop("b", limit);
    Ok(series)
}
