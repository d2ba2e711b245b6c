//! Runs demo nodes as separate OS processes and reads what they did.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::history::{self, Record, mono_ns};

/// Settings shared by every node of a demo cluster.
#[derive(Debug, Clone)]
pub struct DemoSettings {
    /// The platform name.
    pub platform: String,
    /// etcd client URLs.
    pub etcd: Vec<String>,
    /// NATS URL for audit events, if any.
    pub nats: Option<String>,
    /// NATS URL to use as the coordination store (JetStream KV) instead of etcd.
    pub nats_kv: Option<String>,
    /// Lease TTL.
    pub ttl: Duration,
    /// Lease margin.
    pub margin: Duration,
    /// Ring partitions of the `jobs` app.
    pub partitions: u32,
    /// Whether ring nodes queue and run work items.
    pub work: bool,
    /// How long each ring `on_release` takes (a slow hook).
    pub release_delay: Duration,
}

/// One node process.
#[derive(Debug)]
pub struct NodeProcess {
    child: Option<Child>,
    /// Its history file.
    pub history: PathBuf,
    /// CLOCK_MONOTONIC when it was SIGKILLed, if it was.
    pub killed_at: Option<u64>,
    /// Its HTTP address file (written by the node once it serves).
    pub http_file: PathBuf,
}

/// Lines a process printed, each stamped (CLOCK_MONOTONIC) when this process read it.
pub type StampedLines = Arc<Mutex<Vec<(u64, String)>>>;

/// Reads `from` line by line on a thread of its own, stamping each line on arrival into
/// `lines` and copying it to `copy`, if given, until the writer closes it. This is how the
/// failover bench sees every new holder act, ours and the peer's alike: one observer reading a
/// line its new holder printed.
pub fn stamp_lines(
    from: impl std::io::Read + Send + 'static,
    lines: StampedLines,
    mut copy: Option<std::fs::File>,
) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(from);
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            let at = mono_ns();
            if let Some(file) = copy.as_mut() {
                let _ = file.write_all(line.as_bytes());
            }
            lines
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((at, line.trim_end().to_owned()));
            line.clear();
        }
    });
}

/// When the first line starting with `prefix` arrived after `after`, if one did.
pub fn first_line(lines: &StampedLines, after: u64, prefix: &str) -> Option<u64> {
    lines
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .find(|(at, line)| *at > after && line.starts_with(prefix))
        .map(|(at, _)| *at)
}

/// A set of demo nodes on one etcd.
#[derive(Debug)]
pub struct DemoCluster {
    bin: PathBuf,
    dir: PathBuf,
    settings: DemoSettings,
    nodes: BTreeMap<String, NodeProcess>,
    /// Every SIGKILL sent, per node name, across restarts.
    kills: BTreeMap<String, Vec<u64>>,
    /// Every SIGSTOP sent, per node name, across restarts.
    pauses: BTreeMap<String, Vec<u64>>,
    /// What each node printed on stdout, stamped on arrival, across restarts.
    stdout: BTreeMap<String, StampedLines>,
}

impl DemoCluster {
    /// A cluster of `bin` (the demo-node binary) nodes writing into `dir`.
    pub fn new(bin: &Path, dir: &Path, settings: DemoSettings) -> Self {
        DemoCluster {
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
            settings,
            nodes: BTreeMap::new(),
            kills: BTreeMap::new(),
            pauses: BTreeMap::new(),
            stdout: BTreeMap::new(),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &DemoSettings {
        &self.settings
    }

    fn command(&self, name: &str, history: &Path, http_file: &Path) -> Command {
        self.command_with(name, history, http_file, &self.settings.etcd)
    }

    fn command_with(
        &self,
        name: &str,
        history: &Path,
        http_file: &Path,
        etcd: &[String],
    ) -> Command {
        let s = &self.settings;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("node")
            .arg("--platform")
            .arg(&s.platform)
            .arg("--node")
            .arg(name)
            .arg("--etcd")
            .arg(etcd.join(","))
            .arg("--ttl-ms")
            .arg(s.ttl.as_millis().to_string())
            .arg("--margin-ms")
            .arg(s.margin.as_millis().to_string())
            .arg("--partitions")
            .arg(s.partitions.to_string())
            .arg("--history")
            .arg(history)
            .arg("--http-file")
            .arg(http_file)
            .env(
                "RUST_LOG",
                std::env::var("DEMO_NODE_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null());
        if s.work {
            cmd.arg("--work");
        }
        if !s.release_delay.is_zero() {
            cmd.arg("--release-delay-ms")
                .arg(s.release_delay.as_millis().to_string());
        }
        if let Some(nats) = &s.nats {
            cmd.arg("--nats").arg(nats);
        }
        if let Some(url) = &s.nats_kv {
            cmd.arg("--coord-nats").arg(url);
        }
        cmd
    }

    /// Starts node `name` (again, if it ran before: same history file).
    pub fn start(&mut self, name: &str) -> std::io::Result<()> {
        let etcd = self.settings.etcd.clone();
        self.start_via(name, &etcd)
    }

    /// Starts node `name` reaching etcd at `etcd` (e.g. through a fault proxy).
    pub fn start_via(&mut self, name: &str, etcd: &[String]) -> std::io::Result<()> {
        let history = self.dir.join(format!("{name}.history.jsonl"));
        let http_file = self.dir.join(format!("{name}.http"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{name}.log")))?;
        let mut cmd = self.command_with(name, &history, &http_file, etcd);
        cmd.stdout(Stdio::piped()).stderr(log.try_clone()?);
        let mut child = testkit::process::spawn_supervised(cmd)?;
        if let Some(out) = child.stdout.take() {
            let lines = self.stdout.entry(name.to_owned()).or_default().clone();
            stamp_lines(out, lines, Some(log));
        }
        self.nodes.insert(
            name.to_owned(),
            NodeProcess {
                child: Some(child),
                history,
                killed_at: None,
                http_file,
            },
        );
        Ok(())
    }

    /// Starts node `name` and waits for it to exit; returns its exit code and log.
    pub fn run_to_exit(
        &self,
        name: &str,
        limit: Duration,
    ) -> std::io::Result<(Option<i32>, String)> {
        let history = self.dir.join(format!("{name}-dup.history.jsonl"));
        let http_file = self.dir.join(format!("{name}-dup.http"));
        let mut cmd = self.command(name, &history, &http_file);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = testkit::process::spawn_supervised(cmd)?;
        let id = child.id();
        let waiter = std::thread::spawn(move || child.wait_with_output());
        let deadline = std::time::Instant::now() + limit;
        while !waiter.is_finished() {
            if std::time::Instant::now() > deadline {
                // SAFETY: plain syscall on our own child.
                unsafe {
                    libc::kill(id as libc::pid_t, libc::SIGKILL);
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = waiter
            .join()
            .map_err(|_| std::io::Error::other("waiter panicked"))??;
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        Ok((output.status.code(), text))
    }

    /// Sends `signal` to node `name`.
    pub fn signal(&mut self, name: &str, signal: libc::c_int) {
        if let Some(child) = self.nodes.get(name).and_then(|n| n.child.as_ref()) {
            // SAFETY: plain syscall on our own child.
            unsafe {
                libc::kill(child.id() as libc::pid_t, signal);
            }
        }
        if signal == libc::SIGSTOP {
            self.pauses
                .entry(name.to_owned())
                .or_default()
                .push(mono_ns());
        }
        if signal == libc::SIGKILL
            && let Some(node) = self.nodes.get_mut(name)
        {
            let now = mono_ns();
            node.killed_at = Some(now);
            self.kills.entry(name.to_owned()).or_default().push(now);
            if let Some(mut child) = node.child.take() {
                let _ = child.wait();
            }
        }
    }

    /// SIGKILLs node `name`.
    pub fn kill(&mut self, name: &str) {
        self.signal(name, libc::SIGKILL);
    }

    /// Asks node `name` to shut down gracefully and waits up to `limit` for it to exit.
    pub fn stop(&mut self, name: &str, limit: Duration) -> Option<i32> {
        self.signal(name, libc::SIGTERM);
        let node = self.nodes.get_mut(name)?;
        let mut child = node.child.take()?;
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Restarts the killed node `name` and waits until it is a standby again (a `passive`
    /// record after `after`); returns how many starts it took. The store may still hold the
    /// previous incarnation's registration for a moment (each NATS KV key expires on its own
    /// timer), which the new process is refused with `NodeIdInUse` and exits: it is started
    /// again then, as a supervisor would.
    pub fn rejoin(&mut self, name: &str, after: u64, limit: Duration) -> std::io::Result<usize> {
        let deadline = std::time::Instant::now() + limit;
        let mut starts = 0;
        loop {
            starts += 1;
            self.start(name)?;
            let outcome = self.wait_for(limit, |c| {
                if c.history(name)
                    .iter()
                    .any(|r| r.event == "passive" && r.mono_ns > after)
                {
                    Some(true)
                } else if !c.is_running(name) {
                    Some(false)
                } else {
                    None
                }
            });
            match outcome {
                Some(true) => return Ok(starts),
                Some(false) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(250));
                }
                _ => {
                    return Err(std::io::Error::other(format!(
                        "restarted node {name} did not rejoin after {starts} starts"
                    )));
                }
            }
        }
    }

    /// Whether node `name` runs (it may be paused).
    pub fn is_running(&mut self, name: &str) -> bool {
        self.nodes
            .get_mut(name)
            .and_then(|n| n.child.as_mut())
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The node processes.
    pub fn nodes(&self) -> &BTreeMap<String, NodeProcess> {
        &self.nodes
    }

    /// When node `name` (any incarnation) first printed a line starting with `prefix` after
    /// `after`, stamped when this process read it.
    pub fn printed(&self, name: &str, after: u64, prefix: &str) -> Option<u64> {
        first_line(self.stdout.get(name)?, after, prefix)
    }

    /// Node `name`'s history.
    pub fn history(&self, name: &str) -> Vec<Record> {
        self.nodes
            .get(name)
            .map(|n| history::read(&n.history))
            .unwrap_or_default()
    }

    /// Every node's history, merged and sorted by time.
    pub fn all_history(&self) -> Vec<Record> {
        let mut all: Vec<Record> = self
            .nodes
            .values()
            .flat_map(|n| history::read(&n.history))
            .collect();
        all.sort_by_key(|r| r.mono_ns);
        all
    }

    /// The node that currently leads `app`, from the histories: its last role record is
    /// `active`, and it is running.
    pub fn leader(&mut self, app: &str) -> Option<(String, u64)> {
        let names: Vec<String> = self.nodes.keys().cloned().collect();
        let mut leaders = Vec::new();
        for name in names {
            if !self.is_running(&name) {
                continue;
            }
            let last = self.history(&name).into_iter().rfind(|r| {
                r.app.as_deref() == Some(app) && (r.event == "active" || r.event == "passive")
            });
            if let Some(r) = last
                && r.event == "active"
            {
                leaders.push((name, r.token));
            }
        }
        leaders.into_iter().max_by_key(|(_, t)| *t)
    }

    /// Polls `check` (every 50 ms) until it returns `Some`, or `limit` passes.
    pub fn wait_for<T>(
        &mut self,
        limit: Duration,
        mut check: impl FnMut(&mut Self) -> Option<T>,
    ) -> Option<T> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(v) = check(self) {
                return Some(v);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The current owners of the ring, by partition, from the histories of running nodes:
    /// a partition is owned by a node whose last record for it is `own`.
    pub fn ring_owners(&mut self) -> BTreeMap<u32, Vec<(String, u64)>> {
        let names: Vec<String> = self.nodes.keys().cloned().collect();
        let mut owners: BTreeMap<u32, Vec<(String, u64)>> = BTreeMap::new();
        for name in names {
            if !self.is_running(&name) {
                continue;
            }
            let mut last: BTreeMap<u32, &str> = BTreeMap::new();
            let mut tokens: BTreeMap<u32, u64> = BTreeMap::new();
            let records = self.history(&name);
            for r in &records {
                if let Some(p) = r.partition
                    && (r.event == "own" || r.event == "release")
                {
                    last.insert(p, if r.event == "own" { "own" } else { "release" });
                    tokens.insert(p, r.token);
                }
            }
            for (p, event) in last {
                if event == "own" {
                    owners
                        .entry(p)
                        .or_default()
                        .push((name.clone(), tokens[&p]));
                }
            }
        }
        owners
    }

    /// Checks from the histories that no partition ever had two owners at work at once (see
    /// [`crate::ownership`]): each new owner's `own` comes after the previous owner's work was
    /// cancelled (its `cancelled` record), or it was SIGKILLed or SIGSTOPped, and no owner acts
    /// after its successor took over. Returns the violations.
    pub fn ownership_violations(&self) -> Vec<String> {
        let histories: Vec<(String, Vec<Record>)> = self
            .nodes
            .iter()
            .map(|(name, node)| (name.clone(), history::read(&node.history)))
            .collect();
        let mut lives = Vec::new();
        for (name, records) in &histories {
            let kills = self.kills.get(name).cloned().unwrap_or_default();
            let pauses = self.pauses.get(name).cloned().unwrap_or_default();
            lives.extend(crate::ownership::lives(name, records, &kills, &pauses));
        }
        crate::ownership::violations(&lives)
    }
}

impl Drop for DemoCluster {
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
