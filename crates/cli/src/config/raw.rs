//! The configuration file as written: every field optional and every choice a string, so that
//! validation sees the whole file and can report every problem in it at once.
//!
//! Unknown fields are not refused here: the loader collects them while deserializing and
//! reports each with its path. An adapter's sub-table stays a `toml::Value` until validation
//! reads it into that adapter's own config struct.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawConfig {
    pub(crate) platform: RawPlatform,
    pub(crate) node: RawNode,
    pub(crate) timing: RawTiming,
    pub(crate) coordination: RawCoordination,
    pub(crate) bus: Option<RawBus>,
    pub(crate) admin: RawAdmin,
    pub(crate) app: Vec<RawApp>,
}

/// `[admin]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawAdmin {
    pub(crate) token_file: Option<PathBuf>,
}

/// `[platform]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawPlatform {
    #[serde(deserialize_with = "text")]
    pub(crate) name: Option<String>,
    pub(crate) subject_prefix: Option<String>,
    pub(crate) max_concurrent_moves: Option<usize>,
}

/// `[node]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawNode {
    #[serde(deserialize_with = "text")]
    pub(crate) id: Option<String>,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) advertise: Option<String>,
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) http_addr: Option<String>,
}

/// `[timing]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawTiming {
    #[serde(with = "humantime_serde")]
    pub(crate) lease_ttl: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub(crate) lease_margin: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub(crate) heartbeat: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub(crate) hook_timeout: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub(crate) shutdown_timeout: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub(crate) drain_timeout: Option<Duration>,
}

/// `[coordination]`: the backend's name and one sub-table per adapter.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawCoordination {
    pub(crate) backend: Option<String>,
    pub(crate) etcd: Option<toml::Value>,
    pub(crate) consul: Option<toml::Value>,
    pub(crate) nats: Option<toml::Value>,
}

/// `[bus]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawBus {
    pub(crate) backend: Option<String>,
    pub(crate) nats: Option<toml::Value>,
    /// Copies of each object-store bucket (replicated databases) on a NATS cluster.
    pub(crate) object_replicas: Option<usize>,
}

/// One `[[app]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawApp {
    #[serde(deserialize_with = "text")]
    pub(crate) name: Option<String>,
    pub(crate) mode: Option<String>,
    pub(crate) replicas: Option<u32>,
    pub(crate) partitions: Option<u32>,
    pub(crate) weight: Option<u32>,
    #[serde(with = "humantime_serde")]
    pub(crate) hook_timeout: Option<Duration>,
    pub(crate) placement: RawPlacement,
    pub(crate) sqlite: Option<RawSqlite>,
    pub(crate) health: Vec<RawHealth>,
    pub(crate) backend: Option<RawBackend>,
}

/// `[app.backend]`: the service the app runs under its role.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawBackend {
    #[serde(with = "humantime_serde")]
    pub(crate) start_timeout: Option<Duration>,
    pub(crate) process: Option<RawProcess>,
}

/// `[app.backend.process]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawProcess {
    pub(crate) command: Option<String>,
    pub(crate) args: Vec<String>,
    pub(crate) env: BTreeMap<String, String>,
    pub(crate) working_dir: Option<PathBuf>,
    pub(crate) user: Option<String>,
    #[serde(with = "humantime_serde")]
    pub(crate) grace: Option<Duration>,
    pub(crate) restart: Option<String>,
    pub(crate) max_restarts: Option<u32>,
    #[serde(with = "humantime_serde")]
    pub(crate) restart_window: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub(crate) backoff_initial: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub(crate) backoff_max: Option<Duration>,
    pub(crate) log_file: Option<PathBuf>,
    pub(crate) log_max_bytes: Option<u64>,
    pub(crate) log_keep: Option<usize>,
}

/// `[app.placement]`: hard rules on this node's labels.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawPlacement {
    pub(crate) on_label: BTreeMap<String, String>,
}

/// `[app.sqlite]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawSqlite {
    pub(crate) path: Option<PathBuf>,
    pub(crate) replica_path: Option<PathBuf>,
    #[serde(with = "humantime_serde")]
    pub(crate) snapshot_interval: Option<Duration>,
    pub(crate) keep_snapshots: Option<usize>,
    #[serde(with = "humantime_serde")]
    pub(crate) max_snapshot_age: Option<Duration>,
    pub(crate) accept_data_loss_on_promotion: bool,
}

/// One `[[app.health]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawHealth {
    pub(crate) name: Option<String>,
    pub(crate) kind: Option<String>,
    pub(crate) url: Option<String>,
    pub(crate) address: Option<String>,
    pub(crate) command: Option<Vec<String>>,
    #[serde(with = "humantime_serde")]
    pub(crate) interval: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub(crate) timeout: Option<Duration>,
    pub(crate) depends_on: Vec<String>,
    pub(crate) critical: Option<bool>,
}

/// A name or id, also when an override wrote it as a number (`CLUSTER_NODE__ID=3`).
fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        S(String),
        I(i64),
    }
    Ok(Option::<Text>::deserialize(d)?.map(|t| match t {
        Text::S(s) => s,
        Text::I(i) => i.to_string(),
    }))
}
