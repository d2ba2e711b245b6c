//! The agent's configuration: a TOML file, overridden by `CLUSTER_*` variables, overridden by
//! `--set` flags, validated as a whole.
//!
//! [`load`] reports every problem at once, each as a [`ConfigError`] naming the field's path
//! (`app[1].mode`) and, where there is a list, the accepted values. What it returns is the
//! checked [`AgentConfig`]: the composition root builds adapters and apps from it without
//! further checks. See `docs/agent.md` for the sections and an example.

mod overrides;
mod raw;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use cluster_core::config::ConfigError;
pub use overrides::ENV_PREFIX;
pub(crate) use validate::{runtime_app, with_settings};

/// The component named in the agent's config errors.
pub(crate) const COMPONENT: &str = "agent";

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// `[platform]`.
    pub platform: PlatformSection,
    /// `[node]`.
    pub node: NodeSection,
    /// `[timing]`: only the fields the file sets; the runtime's defaults hold for the others.
    pub timing: TimingSection,
    /// `[coordination]`.
    pub coordination: Coordination,
    /// `[bus]`, if the node has an event bus.
    pub bus: Option<Bus>,
    /// `[admin]`.
    pub admin: AdminSection,
    /// `[[app]]`, in file order.
    pub apps: Vec<AppConfig>,
}

/// `[admin]`: the admin API's token.
#[derive(Debug, Clone, Default)]
pub struct AdminSection {
    /// The file holding the token mutating admin calls must carry; none: they are refused.
    pub token_file: Option<PathBuf>,
    /// Write a random token there if the file does not exist (`--dev`).
    pub generate: bool,
}

/// `[platform]`.
#[derive(Debug, Clone)]
pub struct PlatformSection {
    /// The platform's name: nodes with the same name and store form one cluster.
    pub name: String,
    /// The prefix of every event subject, if not the platform's default.
    pub subject_prefix: Option<String>,
    /// How many ring partitions may move at once.
    pub max_concurrent_moves: Option<usize>,
}

/// `[node]`.
#[derive(Debug, Clone)]
pub struct NodeSection {
    /// This node's id, unique in the platform.
    pub id: String,
    /// Labels that placement rules match.
    pub labels: BTreeMap<String, String>,
    /// The address other nodes and the CLI use to reach this agent (its member record).
    pub advertise: String,
    /// Where the node keeps its files.
    pub data_dir: PathBuf,
    /// Where the agent serves `/health`, `/ready`, `/status` and `/metrics`.
    pub http_addr: SocketAddr,
}

/// `[timing]`.
#[derive(Debug, Clone, Default)]
pub struct TimingSection {
    /// The lease TTL asked of the store.
    pub lease_ttl: Option<Duration>,
    /// How long before the earliest possible expiry a node stops acting.
    pub lease_margin: Option<Duration>,
    /// The renewal interval (sets the margin to `ttl - 3 x heartbeat`).
    pub heartbeat: Option<Duration>,
    /// The default time a hook may take.
    pub hook_timeout: Option<Duration>,
    /// How long a graceful shutdown may take.
    pub shutdown_timeout: Option<Duration>,
    /// How long a moving partition may take to drain.
    pub drain_timeout: Option<Duration>,
}

/// The coordination store and its adapter's settings.
#[derive(Debug, Clone)]
pub enum Coordination {
    /// etcd v3.
    Etcd(coord_etcd::EtcdConfig),
    /// Consul's KV and sessions.
    Consul(coord_consul::ConsulConfig),
    /// NATS JetStream KV.
    Nats(coord_nats::NatsConfig),
    /// In this process only: a single node (development, tests).
    Mem,
}

impl Coordination {
    /// The backend's name as the file writes it.
    pub fn backend(&self) -> &'static str {
        match self {
            Coordination::Etcd(_) => "etcd",
            Coordination::Consul(_) => "consul",
            Coordination::Nats(_) => "nats",
            Coordination::Mem => "mem",
        }
    }
}

/// The event bus.
#[derive(Debug, Clone)]
pub enum Bus {
    /// NATS JetStream; also the object stores of replicated databases.
    Nats {
        /// The connection.
        config: bus_nats::NatsBusConfig,
        /// Copies of each object-store bucket.
        object_replicas: usize,
    },
    /// In this process only.
    Mem,
}

/// One `[[app]]`.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// The app's name.
    pub name: String,
    /// How its instances share the work.
    pub mode: AppModeConfig,
    /// The time its hooks may take, if not the platform's.
    pub hook_timeout: Option<Duration>,
    /// Hard placement: the app runs only on nodes having every one of these labels.
    pub on_label: BTreeMap<String, String>,
    /// Its replicated database.
    pub sqlite: Option<SqliteConfig>,
    /// Its health checks (with a backend: the service's, run while it runs).
    pub health: Vec<HealthCheck>,
    /// The service it runs under its role.
    pub backend: Option<BackendConfig>,
}

/// `[app.backend]`.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// From start to the critical checks passing, at most this long.
    pub start_timeout: Duration,
    /// The process to run (`log_file` relative to `node.data_dir` until composed).
    pub process: backends::ProcessSpec,
}

impl AppConfig {
    /// Whether this node's `labels` satisfy the app's placement rules.
    pub fn placed_on(&self, labels: &BTreeMap<String, String>) -> bool {
        self.on_label.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}

/// An app's mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppModeConfig {
    /// One leader, the others standing by.
    ActivePassive,
    /// Every instance active.
    Pool,
    /// At most `n` active instances.
    Replicas(u32),
    /// Partitions spread over the instances.
    Ring {
        /// How many partitions.
        partitions: u32,
        /// This node's relative share.
        weight: u32,
    },
}

/// `[app.sqlite]`.
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    /// The database the leader writes.
    pub path: PathBuf,
    /// Where a standby keeps its replica.
    pub replica_path: PathBuf,
    /// How often the leader takes a snapshot.
    pub snapshot_interval: Option<Duration>,
    /// Which snapshots to keep.
    pub retention: wal_sqlite::Retention,
    /// Promote even when commits would be lost (after a disaster, knowingly).
    pub accept_data_loss_on_promotion: bool,
}

/// One `[[app.health]]`.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    /// The check's name, unique in its app.
    pub name: String,
    /// What it probes.
    pub probe: Probe,
    /// How often it runs.
    pub interval: Duration,
    /// How long one run may take.
    pub timeout: Duration,
    /// Checks of the same app that must pass first.
    pub depends_on: Vec<String>,
    /// Whether a failure makes the node unhealthy (otherwise degraded).
    pub critical: bool,
}

/// What a health check probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A GET answered with a 2xx status.
    Http {
        /// The URL.
        url: String,
    },
    /// A TCP connection accepted.
    Tcp {
        /// `host:port`.
        address: String,
    },
    /// A command exiting with status 0.
    Command {
        /// The program and its arguments.
        argv: Vec<String>,
    },
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {}", e.field, e.reason)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Where a configuration comes from.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The file, if any.
    pub file: Option<PathBuf>,
    /// The process environment (only `CLUSTER_*__*` variables are read).
    pub env: Vec<(String, String)>,
    /// `--set PATH=VALUE` flags, applied last.
    pub sets: Vec<String>,
    /// `--dev`: the in-memory store and bus, with defaults for what the file leaves out.
    pub dev: Option<DevDefaults>,
}

/// What `--dev` fills in.
#[derive(Debug, Clone)]
pub struct DevDefaults {
    /// The data directory, unless the file names one.
    pub data_dir: PathBuf,
}

/// Reads, overrides and checks a configuration.
pub fn load(sources: &Sources) -> Result<AgentConfig, ConfigErrors> {
    let mut root = match &sources.file {
        Some(path) => read_file(path).map_err(|e| ConfigErrors(vec![e]))?,
        None => toml::Value::Table(toml::Table::new()),
    };
    if sources.file.is_none() && sources.dev.is_none() {
        return Err(ConfigErrors(vec![ConfigError::new(
            COMPONENT,
            "--config",
            "no configuration file given (or --dev for a single in-memory node)",
        )]));
    }
    let mut errors = Vec::new();
    if let Some(dev) = &sources.dev {
        validate::dev_defaults(&mut root, dev);
    }
    let mut all = overrides::from_env(sources.env.iter().cloned());
    match overrides::from_flags(&sources.sets) {
        Ok(flags) => all.extend(flags),
        Err(e) => errors.extend(e),
    }
    for o in &all {
        if let Err(e) = overrides::apply(&mut root, o) {
            errors.push(e);
        }
    }
    if sources.dev.is_some() {
        validate::dev_conflicts(&root, &mut errors);
    }
    let raw = validate::deserialize(root, &all, &mut errors);
    let config = raw.and_then(|raw| validate::check(raw, sources.dev.is_some(), &mut errors));
    match config {
        Some(config) if errors.is_empty() => Ok(config),
        _ => Err(ConfigErrors(errors)),
    }
}

fn read_file(path: &Path) -> Result<toml::Value, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            COMPONENT,
            path.display().to_string(),
            format!("cannot read: {e}"),
        )
    })?;
    toml::from_str::<toml::Table>(&text)
        .map(toml::Value::Table)
        .map_err(|e| {
            ConfigError::new(
                COMPONENT,
                path.display().to_string(),
                e.to_string().trim_end().to_owned(),
            )
        })
}

#[cfg(test)]
#[path = "config_test.rs"]
mod tests;
