//! From the file as written to a checked [`AgentConfig`], collecting every problem.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use cluster_core::config::ConfigError;
use cluster_core::ids::{AppName, NodeId, PlatformName};
use cluster_runtime::{App, Platform, PlatformBuilder, RuntimeError};
use serde::de::DeserializeOwned;

use super::overrides::{Override, Step, path_text};
use super::raw::{RawApp, RawConfig, RawHealth, RawSqlite};
use super::{
    AdminSection, AgentConfig, AppConfig, AppModeConfig, Bus, COMPONENT, Coordination, DevDefaults,
    HealthCheck, NodeSection, PlatformSection, Probe, SqliteConfig, TimingSection,
};

/// The port the agent serves on unless `node.http_addr` says otherwise.
pub(crate) const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:7600";
const COORDINATION_BACKENDS: &str = "etcd, consul, nats, mem";
const BUS_BACKENDS: &str = "nats, mem";
const MODES: &str = "active_passive, pool, replicas, ring";
const PROBES: &str = "http, tcp, command";

fn error(errors: &mut Vec<ConfigError>, field: impl Into<String>, reason: impl Into<String>) {
    errors.push(ConfigError::new(COMPONENT, field.into(), reason.into()));
}

/// `--dev`: the in-memory store and bus, a node id and a data directory where the file gives
/// none, and sample apps when it declares none. Applied before the overrides.
pub(super) fn dev_defaults(root: &mut toml::Value, dev: &DevDefaults) {
    let toml::Value::Table(top) = root else {
        return;
    };
    for section in ["coordination", "bus"] {
        if let toml::Value::Table(t) = top
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        {
            t.entry("backend").or_insert_with(|| "mem".into());
        }
    }
    if let toml::Value::Table(node) = top
        .entry("node")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
    {
        node.entry("id").or_insert_with(|| "dev".into());
        node.entry("data_dir")
            .or_insert_with(|| dev.data_dir.display().to_string().into());
    }
    if let toml::Value::Table(admin) = top
        .entry("admin")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
    {
        admin
            .entry("token_file")
            .or_insert_with(|| "admin-token".into());
    }
    if !top.contains_key("app") {
        let sample: toml::Table = toml::from_str(
            "[[app]]\nname = \"web\"\nmode = \"active_passive\"\n\n\
             [[app]]\nname = \"jobs\"\nmode = \"ring\"\npartitions = 16\n",
        )
        .expect("the sample apps are valid TOML");
        top.extend(sample);
    }
}

/// `--dev` with a file or override naming another store or bus: refused, not ignored.
pub(super) fn dev_conflicts(root: &toml::Value, errors: &mut Vec<ConfigError>) {
    for (section, what) in [("coordination", "store"), ("bus", "bus")] {
        if let Some(other) = root
            .get(section)
            .and_then(|t| t.get("backend"))
            .and_then(|b| b.as_str())
            .filter(|b| *b != "mem")
        {
            error(
                errors,
                format!("{section}.backend"),
                format!("--dev runs on the in-memory {what}, not {other:?}; drop --dev to use it"),
            );
        }
    }
}

/// The raw file, with every unknown field reported by its path (naming the variable or flag
/// when an override wrote it).
pub(super) fn deserialize(
    root: toml::Value,
    overrides: &[Override],
    errors: &mut Vec<ConfigError>,
) -> Option<RawConfig> {
    let mut unknown: Vec<Vec<Step>> = Vec::new();
    let mut note = |path: serde_ignored::Path<'_>| unknown.push(steps(&path));
    let result: Result<RawConfig, _> =
        serde_path_to_error::deserialize(serde_ignored::Deserializer::new(root, &mut note));
    for path in unknown {
        let text = path_text(&path);
        match overrides.iter().find(|o| o.path.starts_with(&path)) {
            Some(o) => error(
                errors,
                o.origin.to_string(),
                format!("names no config field ({})", path_text(&o.path)),
            ),
            None => error(errors, text, "unknown field"),
        }
    }
    match result {
        Ok(raw) => Some(raw),
        Err(e) => {
            let field = e.path().to_string();
            error(errors, field, e.into_inner().to_string().trim_end());
            None
        }
    }
}

fn steps(path: &serde_ignored::Path<'_>) -> Vec<Step> {
    use serde_ignored::Path;
    match path {
        Path::Root => Vec::new(),
        Path::Seq { parent, index } => {
            let mut v = steps(parent);
            v.push(Step::Index(*index));
            v
        }
        Path::Map { parent, key } => {
            let mut v = steps(parent);
            v.push(Step::Key(key.clone()));
            v
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => steps(parent),
    }
}

/// Checks every section; `None` when something is wrong (and then `errors` says what).
pub(super) fn check(
    raw: RawConfig,
    dev: bool,
    errors: &mut Vec<ConfigError>,
) -> Option<AgentConfig> {
    let before = errors.len();
    let platform = PlatformSection {
        name: raw.platform.name.unwrap_or_else(|| "cluster".into()),
        subject_prefix: raw.platform.subject_prefix,
        max_concurrent_moves: raw.platform.max_concurrent_moves,
    };
    if let Err(e) = PlatformName::new(platform.name.clone()) {
        error(errors, "platform.name", e.to_string());
    }
    let node = check_node(raw.node, errors);
    let timing = TimingSection {
        lease_ttl: raw.timing.lease_ttl,
        lease_margin: raw.timing.lease_margin,
        heartbeat: raw.timing.heartbeat,
        hook_timeout: raw.timing.hook_timeout,
        shutdown_timeout: raw.timing.shutdown_timeout,
        drain_timeout: raw.timing.drain_timeout,
    };
    if timing.heartbeat.is_some() && timing.lease_margin.is_some() {
        error(
            errors,
            "timing.heartbeat",
            "give heartbeat or lease_margin, not both: the heartbeat sets the margin",
        );
    } else {
        check_with_runtime(&platform, &timing, errors);
    }
    let coordination = check_coordination(raw.coordination, errors);
    let bus = raw.bus.and_then(|bus| {
        let backend = bus.backend.as_deref();
        match backend {
            Some("nats") => {
                let config: bus_nats::NatsBusConfig =
                    adapter(bus.nats.as_ref(), "bus.nats", errors)?;
                if config.url.trim().is_empty() {
                    error(errors, "bus.nats.url", "must name a NATS server");
                }
                let object_replicas = bus.object_replicas.unwrap_or(1);
                if !(1..=5).contains(&object_replicas) {
                    error(
                        errors,
                        "bus.object_replicas",
                        format!("{object_replicas} is not between 1 and 5"),
                    );
                }
                Some(Bus::Nats {
                    config,
                    object_replicas,
                })
            }
            Some("mem") => Some(Bus::Mem),
            Some(other) => {
                error(
                    errors,
                    "bus.backend",
                    format!("{other:?} is not one of {BUS_BACKENDS}"),
                );
                None
            }
            None => {
                error(
                    errors,
                    "bus.backend",
                    format!("missing: one of {BUS_BACKENDS}"),
                );
                None
            }
        }
    });
    if let (Some(Bus::Mem), Some(c)) = (&bus, &coordination)
        && !matches!(c, Coordination::Mem)
    {
        error(
            errors,
            "bus.backend",
            format!(
                "the mem bus lives in one process, so nodes on the shared {} store would not \
                 share it; use nats",
                c.backend()
            ),
        );
    }
    let mut apps = Vec::new();
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for (i, app) in raw.app.into_iter().enumerate() {
        if let Some(name) = &app.name
            && let Some(first) = names.insert(name.clone(), i)
        {
            error(
                errors,
                format!("app[{i}].name"),
                format!("{name:?} is already app[{first}]"),
            );
        }
        if let Some(app) = check_app(i, app, errors) {
            if app.sqlite.is_some() {
                let has_store = matches!(bus, Some(Bus::Nats { .. }))
                    || matches!(coordination, Some(Coordination::Mem));
                if !has_store {
                    error(
                        errors,
                        format!("app[{i}].sqlite"),
                        "a replicated database needs object stores: bus.backend = \"nats\" \
                         (or the mem store, for one node)",
                    );
                }
            }
            apps.push(app);
        }
    }
    let coordination = coordination?;
    let node = node?;
    let admin = AdminSection {
        token_file: raw.admin.token_file.map(|f| {
            if f.is_relative() {
                node.data_dir.join(f)
            } else {
                f
            }
        }),
        generate: dev,
    };
    (errors.len() == before).then_some(AgentConfig {
        platform,
        node,
        timing,
        coordination,
        bus,
        admin,
        apps,
    })
}

fn check_node(raw: super::raw::RawNode, errors: &mut Vec<ConfigError>) -> Option<NodeSection> {
    let id = match raw.id {
        Some(id) => match NodeId::new(id.clone()) {
            Ok(_) => Some(id),
            Err(e) => {
                error(errors, "node.id", e.to_string());
                None
            }
        },
        None => {
            error(
                errors,
                "node.id",
                "missing: every node needs an id unique in its platform",
            );
            None
        }
    };
    let data_dir = raw.data_dir.or_else(|| {
        error(
            errors,
            "node.data_dir",
            "missing: where the node keeps its files",
        );
        None
    });
    let http_text = raw.http_addr.unwrap_or_else(|| DEFAULT_HTTP_ADDR.into());
    let http_addr = match http_text.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            error(
                errors,
                "node.http_addr",
                format!("{http_text:?} is not an IP:port address such as {DEFAULT_HTTP_ADDR}"),
            );
            None
        }
    };
    for (k, v) in &raw.labels {
        if k.is_empty() || v.is_empty() {
            error(
                errors,
                format!("node.labels.{k}"),
                "label keys and values must not be empty",
            );
        }
    }
    let advertise = raw
        .advertise
        .or_else(|| http_addr.map(|a| a.to_string()))
        .unwrap_or_default();
    Some(NodeSection {
        id: id?,
        labels: raw.labels,
        advertise,
        data_dir: data_dir?,
        http_addr: http_addr?,
    })
}

/// `b` with the platform and timing settings the file gives (the runtime's defaults for the
/// rest): the same for the check and for the agent, so the check refuses what the agent would.
pub(crate) fn with_settings(
    mut b: PlatformBuilder,
    platform: &PlatformSection,
    timing: &TimingSection,
) -> PlatformBuilder {
    if let Some(p) = &platform.subject_prefix {
        b = b.subject_prefix(p.clone());
    }
    if let Some(n) = platform.max_concurrent_moves {
        b = b.max_concurrent_moves(n);
    }
    type Setter = fn(PlatformBuilder, Duration) -> PlatformBuilder;
    let durations: [(Option<Duration>, Setter); 6] = [
        (timing.lease_ttl, PlatformBuilder::lease_ttl),
        (timing.lease_margin, PlatformBuilder::lease_margin),
        (timing.heartbeat, PlatformBuilder::heartbeat),
        (timing.hook_timeout, PlatformBuilder::hook_timeout),
        (timing.shutdown_timeout, PlatformBuilder::shutdown_timeout),
        (timing.drain_timeout, PlatformBuilder::drain_timeout),
    ];
    for (value, set) in durations {
        if let Some(d) = value {
            b = set(b, d);
        }
    }
    b
}

/// What `Platform::build` would refuse in the platform and timing sections, with its reason.
fn check_with_runtime(
    platform: &PlatformSection,
    timing: &TimingSection,
    errors: &mut Vec<ConfigError>,
) {
    let b = Platform::builder("check", "check")
        .coordinator(std::sync::Arc::new(coord_mem::MemCoordinator::new()));
    if let Err(e) = with_settings(b, platform, timing).build() {
        let (field, reason) = match e {
            RuntimeError::Config(c) => (c.field.into_owned(), c.reason),
            other => (String::new(), other.to_string()),
        };
        let section = match field.as_str() {
            "max_concurrent_moves" | "subject_prefix" => "platform",
            _ => "timing",
        };
        error(errors, format!("{section}.{field}"), reason);
    }
}

fn check_coordination(
    raw: super::raw::RawCoordination,
    errors: &mut Vec<ConfigError>,
) -> Option<Coordination> {
    match raw.backend.as_deref() {
        Some("etcd") => {
            let c: coord_etcd::EtcdConfig =
                adapter(raw.etcd.as_ref(), "coordination.etcd", errors)?;
            adapter_valid(c.validate(), "coordination.etcd", errors)?;
            Some(Coordination::Etcd(c))
        }
        Some("consul") => {
            let c: coord_consul::ConsulConfig =
                adapter(raw.consul.as_ref(), "coordination.consul", errors)?;
            adapter_valid(c.validate(), "coordination.consul", errors)?;
            Some(Coordination::Consul(c))
        }
        Some("nats") => {
            let c: coord_nats::NatsConfig =
                adapter(raw.nats.as_ref(), "coordination.nats", errors)?;
            adapter_valid(c.validate(), "coordination.nats", errors)?;
            Some(Coordination::Nats(c))
        }
        Some("mem") => Some(Coordination::Mem),
        Some(other) => {
            error(
                errors,
                "coordination.backend",
                format!("{other:?} is not one of {COORDINATION_BACKENDS}"),
            );
            None
        }
        None => {
            error(
                errors,
                "coordination.backend",
                format!("missing: one of {COORDINATION_BACKENDS}"),
            );
            None
        }
    }
}

/// An adapter's sub-table read into its own config struct (its defaults where absent).
fn adapter<T: DeserializeOwned + Default>(
    value: Option<&toml::Value>,
    path: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    let Some(value) = value else {
        return Some(T::default());
    };
    match serde_path_to_error::deserialize::<_, T>(value.clone()) {
        Ok(c) => Some(c),
        Err(e) => {
            let inner = e.path().to_string();
            let field = if inner == "." {
                path.to_owned()
            } else {
                format!("{path}.{inner}")
            };
            error(errors, field, e.into_inner().to_string().trim_end());
            None
        }
    }
}

fn adapter_valid(
    result: Result<(), ConfigError>,
    path: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<()> {
    match result {
        Ok(()) => Some(()),
        Err(e) => {
            error(errors, format!("{path}.{}", e.field), e.reason);
            None
        }
    }
}

fn check_app(i: usize, raw: RawApp, errors: &mut Vec<ConfigError>) -> Option<AppConfig> {
    let before = errors.len();
    let at = |field: &str| format!("app[{i}].{field}");
    let name = match raw.name {
        Some(n) => {
            if let Err(e) = AppName::new(n.clone()) {
                error(errors, at("name"), e.to_string());
            }
            n
        }
        None => {
            error(errors, at("name"), "missing");
            String::new()
        }
    };
    let mode = match raw.mode.as_deref() {
        Some("active_passive") => Some(AppModeConfig::ActivePassive),
        Some("pool") => Some(AppModeConfig::Pool),
        Some("replicas") => match raw.replicas {
            Some(n) => Some(AppModeConfig::Replicas(n)),
            None => {
                error(
                    errors,
                    at("replicas"),
                    "missing: mode = \"replicas\" needs replicas = N",
                );
                None
            }
        },
        Some("ring") => match raw.partitions {
            Some(partitions) => Some(AppModeConfig::Ring {
                partitions,
                weight: raw.weight.unwrap_or(1),
            }),
            None => {
                error(
                    errors,
                    at("partitions"),
                    "missing: mode = \"ring\" needs partitions = N",
                );
                None
            }
        },
        Some(other) => {
            error(
                errors,
                at("mode"),
                format!("{other:?} is not one of {MODES}"),
            );
            None
        }
        None => {
            error(errors, at("mode"), format!("missing: one of {MODES}"));
            None
        }
    };
    let ring = matches!(mode, Some(AppModeConfig::Ring { .. }));
    let replicas = matches!(mode, Some(AppModeConfig::Replicas(_)));
    if raw.partitions.is_some() && !ring && mode.is_some() {
        error(errors, at("partitions"), "only a ring app has partitions");
    }
    if raw.replicas.is_some() && !replicas && mode.is_some() {
        error(
            errors,
            at("replicas"),
            "only mode = \"replicas\" takes a replica count",
        );
    }
    if raw.weight.is_some() && !ring && mode.is_some() {
        error(errors, at("weight"), "only a ring app has a weight");
    }
    let sqlite = raw.sqlite.map(|s| check_sqlite(i, s, errors));
    let sqlite = match sqlite {
        Some(Some(s)) => Some(s),
        Some(None) => None,
        None => None,
    };
    let health = check_health(i, raw.health, errors);
    let backend = raw.backend.and_then(|b| check_backend(i, b, errors));
    if backend.is_some() && ring {
        error(
            errors,
            at("backend"),
            "a ring app's partitions have no single service to run; backends run for \
             active_passive, pool and replicas apps",
        );
    }
    for (k, v) in &raw.placement.on_label {
        if k.is_empty() || v.is_empty() {
            error(
                errors,
                at(&format!("placement.on_label.{k}")),
                "label keys and values must not be empty",
            );
        }
    }
    let app = AppConfig {
        name,
        mode: mode?,
        hook_timeout: raw.hook_timeout,
        on_label: raw.placement.on_label,
        sqlite,
        health,
        backend,
    };
    // What the runtime itself refuses (partition counts, sqlite outside active-passive...).
    if errors.len() == before
        && let Err(e) = runtime_app(&app, std::path::Path::new("/check")).build()
    {
        let (field, reason) = match e {
            RuntimeError::Config(c) => (c.field.into_owned(), c.reason),
            other => ("name".to_owned(), other.to_string()),
        };
        let field = match field.as_str() {
            "ring.partitions" => "partitions".to_owned(),
            other => other.to_owned(),
        };
        error(errors, at(&field), reason);
    }
    (errors.len() == before).then_some(app)
}

/// The runtime's builder for `app`, without hooks (the composition root adds its own).
pub(crate) fn runtime_app(
    app: &AppConfig,
    data_dir: &std::path::Path,
) -> cluster_runtime::AppBuilder {
    let mut b = App::builder(&app.name);
    b = match app.mode {
        AppModeConfig::ActivePassive => b.active_passive(),
        AppModeConfig::Pool => b.pool(),
        AppModeConfig::Replicas(n) => b.replicas(n),
        AppModeConfig::Ring { partitions, weight } => b.ring(partitions).weight(weight),
    };
    if let Some(t) = app.hook_timeout {
        b = b.hook_timeout(t);
    }
    if let Some(s) = &app.sqlite {
        b = b
            .with_sqlite(
                data_dir.join(&s.path),
                data_dir.join(&s.replica_path),
                s.snapshot_interval,
                s.retention,
            )
            .accept_data_loss_on_promotion(s.accept_data_loss_on_promotion);
    }
    b
}

const RESTARTS: &str = "never, on-failure, always";

fn check_backend(
    i: usize,
    raw: super::raw::RawBackend,
    errors: &mut Vec<ConfigError>,
) -> Option<super::BackendConfig> {
    let at = |field: &str| format!("app[{i}].backend.{field}");
    let Some(p) = raw.process else {
        error(
            errors,
            format!("app[{i}].backend"),
            "names no backend: add [app.backend.process] (the only backend today)",
        );
        return None;
    };
    let before = errors.len();
    let command = p.command.filter(|c| !c.is_empty()).or_else(|| {
        error(errors, at("process.command"), "missing: the program to run");
        None
    });
    let mut spec = backends::ProcessSpec::new(command.clone().unwrap_or_default());
    spec.args = p.args;
    spec.env = p.env;
    spec.working_dir = p.working_dir;
    spec.user = p.user;
    if let Some(g) = p.grace {
        spec.grace = g;
    }
    spec.restart = match p.restart.as_deref() {
        None => spec.restart,
        Some("never") => backends::RestartPolicy::Never,
        Some("on-failure") => backends::RestartPolicy::OnFailure,
        Some("always") => backends::RestartPolicy::Always,
        Some(other) => {
            error(
                errors,
                at("process.restart"),
                format!("{other:?} is not one of {RESTARTS}"),
            );
            spec.restart
        }
    };
    if let Some(n) = p.max_restarts {
        spec.max_restarts = n;
    }
    if let Some(w) = p.restart_window {
        if w.is_zero() {
            error(
                errors,
                at("process.restart_window"),
                "must be greater than zero",
            );
        }
        spec.restart_window = w;
    }
    let initial = p.backoff_initial.unwrap_or(spec.backoff.initial);
    let max = p.backoff_max.unwrap_or(spec.backoff.max);
    if initial.is_zero() || initial > max {
        error(
            errors,
            at("process.backoff_initial"),
            format!("{initial:?} must be above zero and at most backoff_max ({max:?})"),
        );
    }
    spec.backoff = cluster_core::backoff::Backoff::new(initial, max);
    if let Some(path) = p.log_file {
        let max_bytes = p.log_max_bytes.unwrap_or(10 << 20);
        if max_bytes == 0 {
            error(
                errors,
                at("process.log_max_bytes"),
                "must be greater than zero",
            );
        }
        spec.log_file = Some(backends::LogFileSpec {
            path,
            max_bytes,
            keep: p.log_keep.unwrap_or(3),
        });
    }
    let start_timeout = raw.start_timeout.unwrap_or(Duration::from_secs(30));
    if start_timeout.is_zero() {
        error(errors, at("start_timeout"), "must be greater than zero");
    }
    (errors.len() == before).then_some(super::BackendConfig {
        start_timeout,
        process: spec,
    })
}

fn check_sqlite(i: usize, raw: RawSqlite, errors: &mut Vec<ConfigError>) -> Option<SqliteConfig> {
    let at = |field: &str| format!("app[{i}].sqlite.{field}");
    let Some(path) = raw.path else {
        error(
            errors,
            at("path"),
            "missing: the database file the leader writes",
        );
        return None;
    };
    let replica_path = raw.replica_path.unwrap_or_else(|| {
        let mut p = path.clone().into_os_string();
        p.push(".replica");
        p.into()
    });
    let mut retention = wal_sqlite::Retention::default();
    if let Some(keep) = raw.keep_snapshots {
        if keep == 0 {
            error(errors, at("keep_snapshots"), "must be at least 1");
        }
        retention.keep = keep;
    }
    if raw.max_snapshot_age.is_some() {
        retention.max_age = raw.max_snapshot_age;
    }
    if raw.snapshot_interval.is_some_and(|d| d.is_zero()) {
        error(errors, at("snapshot_interval"), "must be greater than zero");
    }
    Some(SqliteConfig {
        path,
        replica_path,
        snapshot_interval: raw.snapshot_interval,
        retention,
        accept_data_loss_on_promotion: raw.accept_data_loss_on_promotion,
    })
}

fn check_health(i: usize, raw: Vec<RawHealth>, errors: &mut Vec<ConfigError>) -> Vec<HealthCheck> {
    let names: BTreeSet<String> = raw.iter().filter_map(|h| h.name.clone()).collect();
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (j, h) in raw.into_iter().enumerate() {
        let at = |field: &str| format!("app[{i}].health[{j}].{field}");
        let before = errors.len();
        let name = h.name.unwrap_or_default();
        if name.is_empty() {
            error(errors, at("name"), "missing");
        } else if !seen.insert(name.clone()) {
            error(
                errors,
                at("name"),
                format!("{name:?} is used twice in this app"),
            );
        }
        let probe = match h.kind.as_deref() {
            Some("http") => match h.url {
                Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                    Some(Probe::Http { url })
                }
                Some(url) => {
                    error(
                        errors,
                        at("url"),
                        format!("{url:?} is not an http:// or https:// URL"),
                    );
                    None
                }
                None => {
                    error(errors, at("url"), "missing: kind = \"http\" needs a url");
                    None
                }
            },
            Some("tcp") => match h.address {
                Some(address)
                    if address
                        .rsplit_once(':')
                        .is_some_and(|(_, p)| p.parse::<u16>().is_ok()) =>
                {
                    Some(Probe::Tcp { address })
                }
                Some(address) => {
                    error(
                        errors,
                        at("address"),
                        format!("{address:?} is not host:port"),
                    );
                    None
                }
                None => {
                    error(
                        errors,
                        at("address"),
                        "missing: kind = \"tcp\" needs an address",
                    );
                    None
                }
            },
            Some("command") => match h.command {
                Some(argv) if !argv.is_empty() && !argv[0].is_empty() => {
                    Some(Probe::Command { argv })
                }
                _ => {
                    error(
                        errors,
                        at("command"),
                        "missing: kind = \"command\" needs command = [\"program\", \"arg\"...]",
                    );
                    None
                }
            },
            Some(other) => {
                error(
                    errors,
                    at("kind"),
                    format!("{other:?} is not one of {PROBES}"),
                );
                None
            }
            None => {
                error(errors, at("kind"), format!("missing: one of {PROBES}"));
                None
            }
        };
        let interval = h.interval.unwrap_or(Duration::from_secs(10));
        let timeout = h
            .timeout
            .unwrap_or_else(|| (interval / 2).min(Duration::from_secs(5)));
        if interval.is_zero() {
            error(errors, at("interval"), "must be greater than zero");
        }
        if timeout.is_zero() || timeout > interval {
            error(
                errors,
                at("timeout"),
                format!("{timeout:?} must be above zero and at most the interval ({interval:?})"),
            );
        }
        for dep in &h.depends_on {
            if !names.contains(dep) || *dep == name {
                error(
                    errors,
                    at("depends_on"),
                    format!("{dep:?} is not another check of this app"),
                );
            }
        }
        if errors.len() == before
            && let Some(probe) = probe
        {
            out.push(HealthCheck {
                name,
                probe,
                interval,
                timeout,
                depends_on: h.depends_on,
                critical: h.critical.unwrap_or(true),
            });
        }
    }
    out
}
