//! The per-node history file: one JSON record per line, stamped with CLOCK_MONOTONIC, which is
//! the same clock in every process of the machine, so records of different nodes compare.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// One thing a node did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The node.
    pub node: String,
    /// The app, if any.
    #[serde(default)]
    pub app: Option<String>,
    /// What: `joined`, `alive_until`, `active`, `cancelled` (of a term, or of a partition's
    /// ownership when `partition` is set), `passive`, `write_refused`, `write_accepted`,
    /// `write_unsupported` (a store that cannot fence writes), `own`, `release`, `work_run`,
    /// `leader_seen`.
    pub event: String,
    /// The fencing token involved.
    #[serde(default)]
    pub token: u64,
    /// The partition involved.
    #[serde(default)]
    pub partition: Option<u32>,
    /// CLOCK_MONOTONIC nanoseconds when it happened (for `alive_until`: the deadline).
    pub mono_ns: u64,
    /// Extra detail.
    #[serde(default)]
    pub detail: Option<String>,
}

/// CLOCK_MONOTONIC now, in nanoseconds.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// The CLOCK_MONOTONIC time of a deadline from the runtime's clock.
pub fn mono_ns_of(t: cluster_core::time::MonoTime) -> u64 {
    let now = coord_client::mono_now();
    let base = mono_ns();
    if t >= now {
        base + t.saturating_duration_since(now).as_nanos() as u64
    } else {
        base.saturating_sub(now.saturating_duration_since(t).as_nanos() as u64)
    }
}

/// Appends records to a file, one line each, flushed at once.
#[derive(Debug)]
pub struct HistoryWriter {
    node: String,
    file: Mutex<std::fs::File>,
}

impl HistoryWriter {
    /// Opens (appending) the history of `node` at `path`.
    pub fn open(node: &str, path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(HistoryWriter {
            node: node.to_owned(),
            file: Mutex::new(file),
        })
    }

    /// Records an event now.
    pub fn record(
        &self,
        app: Option<&str>,
        event: &str,
        token: u64,
        partition: Option<u32>,
        detail: Option<String>,
    ) {
        self.record_at(app, event, token, partition, detail, mono_ns());
    }

    /// Records an event at a given CLOCK_MONOTONIC time.
    pub fn record_at(
        &self,
        app: Option<&str>,
        event: &str,
        token: u64,
        partition: Option<u32>,
        detail: Option<String>,
        at: u64,
    ) {
        let record = Record {
            node: self.node.clone(),
            app: app.map(str::to_owned),
            event: event.to_owned(),
            token,
            partition,
            mono_ns: at,
            detail,
        };
        if let Ok(line) = serde_json::to_string(&record) {
            let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
            let _ = writeln!(file, "{line}");
        }
    }
}

/// Reads every record of a history file (missing file: none; a torn last line is skipped).
pub fn read(path: &Path) -> Vec<Record> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
