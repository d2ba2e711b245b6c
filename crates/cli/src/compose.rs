//! The composition root: a checked [`AgentConfig`] becomes adapters, a [`Platform`] and its
//! apps. The only place in the workspace that names every adapter crate.

use std::sync::Arc;

use cluster_core::coordination::Coordinator;
use cluster_core::event::EventBus;
use cluster_core::object_store::ObjectStores;
use cluster_runtime::{CheckSpec, Platform};
use tokio_util::sync::CancellationToken;

use crate::config::{AgentConfig, AppConfig, BackendConfig, Bus, Coordination, HealthCheck};
use crate::exit::Failure;

/// A platform built from a config, with its apps registered and health checks running.
pub struct Composed {
    /// The platform (not yet running: call [`Platform::run`]).
    pub platform: Platform,
    /// Apps registered on this node (placement rules left the others out).
    pub apps: Vec<String>,
    /// Apps whose placement rules this node does not meet.
    pub not_placed: Vec<String>,
    /// Stops the health checks.
    pub checks: CancellationToken,
}

/// Connects the adapters the config names and builds the platform. An unreachable store is
/// [`Failure::Unreachable`]; everything the config could get wrong was checked before.
pub async fn compose(config: &AgentConfig) -> Result<Composed, Failure> {
    std::fs::create_dir_all(&config.node.data_dir).map_err(|e| {
        Failure::Config(format!(
            "node.data_dir: cannot create {}: {e}",
            config.node.data_dir.display()
        ))
    })?;
    for db in config.apps.iter().filter_map(|a| a.sqlite.as_ref()) {
        for path in [&db.path, &db.replica_path] {
            if let Some(parent) = config.node.data_dir.join(path).parent() {
                std::fs::create_dir_all(parent).map_err(|e| {
                    Failure::Config(format!("cannot create {}: {e}", parent.display()))
                })?;
            }
        }
    }
    let coordinator = coordinator(&config.coordination).await?;
    let (bus, nats_stores) = bus(config.bus.as_ref()).await?;
    let needs_stores = config.apps.iter().any(|a| a.sqlite.is_some());
    let stores: Option<Arc<dyn ObjectStores>> = match nats_stores {
        Some(s) if needs_stores => Some(s),
        _ if needs_stores => Some(Arc::new(store_dir::DirObjectStores::new(
            config.node.data_dir.join("objects"),
        ))),
        _ => None,
    };

    let mut b = Platform::builder(&config.platform.name, &config.node.id)
        .coordinator(coordinator)
        .address(config.node.advertise.clone())
        .http_addr(config.node.http_addr);
    for (k, v) in &config.node.labels {
        b = b.label(k.clone(), v.clone());
    }
    if let Some(token) = admin_token(&config.admin)? {
        b = b.admin_token(token);
    }
    if let Some(bus) = bus {
        b = b.event_bus(bus);
    }
    if let Some(stores) = stores {
        b = b.object_stores(stores);
    }
    let platform = crate::config::with_settings(b, &config.platform, &config.timing)
        .build()
        .map_err(|e| Failure::Config(e.to_string()))?;

    let checks = CancellationToken::new();
    let mut apps = Vec::new();
    let mut not_placed = Vec::new();
    for app in &config.apps {
        if !app.placed_on(&config.node.labels) {
            tracing::info!(app = %app.name, rules = ?app.on_label, "placement rules leave this app off this node");
            not_placed.push(app.name.clone());
            continue;
        }
        let mut builder = crate::config::runtime_app(app, &config.node.data_dir);
        match &app.backend {
            // The service's checks run while the service runs (the runtime registers them).
            Some(backend) => {
                builder = builder.backend(
                    process_backend(config, app, backend)?,
                    service_options(config, app, backend),
                )
            }
            None => {
                for check in &app.health {
                    register_check(&platform, &app.name, check, checks.clone());
                }
            }
        }
        let built = builder
            .build()
            .map_err(|e| Failure::Config(format!("app {}: {e}", app.name)))?;
        platform
            .register(built)
            .map_err(|e| Failure::Config(format!("app {}: {e}", app.name)))?;
        apps.push(app.name.clone());
    }
    Ok(Composed {
        platform,
        apps,
        not_placed,
        checks,
    })
}

async fn coordinator(c: &Coordination) -> Result<Arc<dyn Coordinator>, Failure> {
    Ok(match c {
        Coordination::Etcd(config) => Arc::new(
            coord_etcd::EtcdCoordinator::connect(config.clone())
                .await
                .map_err(|e| Failure::Unreachable(format!("etcd: {e}")))?,
        ),
        Coordination::Consul(config) => Arc::new(
            coord_consul::ConsulCoordinator::new(config.clone())
                .map_err(|e| Failure::Config(e.to_string()))?,
        ),
        Coordination::Nats(config) => Arc::new(
            coord_nats::NatsCoordinator::connect(config.clone())
                .await
                .map_err(|e| Failure::Unreachable(format!("nats coordination: {e}")))?,
        ),
        Coordination::Mem => Arc::new(coord_mem::MemCoordinator::new()),
    })
}

type BusAndStores = (Option<Arc<dyn EventBus>>, Option<Arc<dyn ObjectStores>>);

async fn bus(b: Option<&Bus>) -> Result<BusAndStores, Failure> {
    Ok(match b {
        None => (None, None),
        Some(Bus::Mem) => (Some(Arc::new(bus_mem::MemEventBus::new())), None),
        Some(Bus::Nats {
            config,
            object_replicas,
        }) => {
            let bus = bus_nats::NatsEventBus::connect(config.clone())
                .await
                .map_err(|e| Failure::Unreachable(format!("nats bus: {e}")))?;
            let stores = bus_nats::NatsObjectStores::connect(config.clone(), *object_replicas)
                .await
                .map_err(|e| Failure::Unreachable(format!("nats object stores: {e}")))?;
            (Some(Arc::new(bus)), Some(Arc::new(stores)))
        }
    })
}

/// The admin token from its file; with `generate` (`--dev`), a random one written there first.
fn admin_token(admin: &crate::config::AdminSection) -> Result<Option<String>, Failure> {
    let Some(path) = &admin.token_file else {
        return Ok(None);
    };
    if admin.generate && !path.exists() {
        let mut bytes = [0u8; 24];
        std::io::Read::read_exact(
            &mut std::fs::File::open("/dev/urandom")
                .map_err(|e| Failure::Other(format!("/dev/urandom: {e}")))?,
            &mut bytes,
        )
        .map_err(|e| Failure::Other(format!("/dev/urandom: {e}")))?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| Failure::Config(format!("admin.token_file: {}: {e}", path.display())))?;
        std::io::Write::write_all(&mut file, token.as_bytes())
            .map_err(|e| Failure::Other(format!("{}: {e}", path.display())))?;
        tracing::info!(file = %path.display(), "wrote a random admin token");
    }
    let token = std::fs::read_to_string(path)
        .map_err(|e| Failure::Config(format!("admin.token_file: {}: {e}", path.display())))?;
    let token = token.trim();
    if token.is_empty() {
        return Err(Failure::Config(format!(
            "admin.token_file: {} is empty",
            path.display()
        )));
    }
    Ok(Some(token.to_owned()))
}

/// The app's process backend, run under this very binary's `cluster supervise`.
fn process_backend(
    config: &AgentConfig,
    app: &AppConfig,
    backend: &BackendConfig,
) -> Result<Arc<dyn cluster_core::backend::Backend>, Failure> {
    let program = std::env::current_exe()
        .map_err(|e| Failure::Other(format!("cannot find the agent's own binary: {e}")))?;
    let mut spec = backend.process.clone();
    if let Some(log) = &mut spec.log_file {
        log.path = config.node.data_dir.join(&log.path);
    }
    Ok(Arc::new(backends::ProcessBackend::new(
        &app.name,
        spec,
        backends::SupervisorCommand {
            program,
            leading_args: vec!["supervise".into()],
        },
    )))
}

fn service_options(
    config: &AgentConfig,
    app: &AppConfig,
    backend: &BackendConfig,
) -> cluster_runtime::ServiceOptions {
    let mut env = vec![(
        "CLUSTER_AGENT_URL".to_owned(),
        format!("http://{}", config.node.advertise),
    )];
    // The service calls its agent (db/sync) with the admin token from this file.
    if let Some(file) = &config.admin.token_file {
        env.push(("CLUSTER_TOKEN_FILE".to_owned(), file.display().to_string()));
    }
    if let Some(db) = &app.sqlite {
        env.push((
            "CLUSTER_DB".to_owned(),
            config.node.data_dir.join(&db.path).display().to_string(),
        ));
    }
    let checks = app
        .health
        .iter()
        .map(|check| {
            let probe = Arc::new(check.probe.clone());
            let timeout = check.timeout;
            cluster_runtime::ServiceCheck {
                spec: check_spec(&app.name, check),
                probe: Arc::new(move || {
                    let probe = probe.clone();
                    Box::pin(
                        async move { crate::probe::run(&probe, timeout).await.map_err(Into::into) },
                    )
                }),
            }
        })
        .collect();
    cluster_runtime::ServiceOptions {
        start_timeout: backend.start_timeout,
        checks,
        env,
    }
}

/// The check's name in the platform's registry: `{app}.{check}`.
pub fn check_name(app: &str, check: &str) -> String {
    format!("{app}.{check}")
}

fn check_spec(app: &str, check: &HealthCheck) -> CheckSpec {
    let mut spec =
        CheckSpec::new(check_name(app, &check.name), check.interval).timeout(check.timeout);
    for dep in &check.depends_on {
        spec = spec.depends_on(check_name(app, dep));
    }
    if !check.critical {
        spec = spec.non_critical();
    }
    spec
}

fn register_check(platform: &Platform, app: &str, check: &HealthCheck, stop: CancellationToken) {
    let spec = check_spec(app, check);
    let probe = Arc::new(check.probe.clone());
    let timeout = check.timeout;
    platform.health().register(
        spec,
        move || {
            let probe = probe.clone();
            async move { crate::probe::run(&probe, timeout).await.map_err(Into::into) }
        },
        stop,
    );
}
