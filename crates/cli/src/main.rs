//! The `cluster` binary: `cluster agent` runs a node; `cluster config check` and `cluster init`
//! handle its configuration.
#![warn(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use cluster_cli::config::{self, DevDefaults, Sources};
use cluster_cli::exit::Failure;

/// Run and operate a cluster: leader election, leases and fencing, sharding, replication.
#[derive(Debug, Parser)]
#[command(name = "cluster", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run this node's agent until SIGTERM or SIGINT.
    Agent(AgentArgs),
    /// Show an agent's node, its members and its apps.
    Status(Target),
    /// Show an agent's health checks.
    Health(Target),
    /// Make the leader of APP step down; the next candidate takes the term with a larger token.
    Stepdown {
        /// The app.
        app: String,
        #[command(flatten)]
        target: Target,
    },
    /// Live nodes.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Apps, as an agent sees them.
    #[command(subcommand)]
    App(AppCommand),
    /// An app's key space; writes are fenced by the writer's term token.
    #[command(subcommand)]
    Kv(KvCommand),
    /// An app's replicated database.
    #[command(subcommand)]
    Db(DbCommand),
    /// Snapshots of an app's replicated database.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Work with configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Run one service under a term's deadline, fed by its agent (started by the agent).
    #[command(hide = true)]
    Supervise {
        /// --app A --grace-ms N [--fenced] [--user U] [--dir D] -- PROGRAM [ARGS...]
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Write a commented configuration that passes `cluster config check`.
    Init {
        /// Where to write it.
        #[arg(default_value = "cluster.toml")]
        path: PathBuf,
        /// A single node on the in-memory store and bus.
        #[arg(long)]
        dev: bool,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
}

/// Which agent an admin command talks to, and how.
#[derive(Debug, Clone, Args)]
struct Target {
    /// The agent's address.
    #[arg(long, env = "CLUSTER_ADDR", default_value = cluster_cli::admin::DEFAULT_ADDR)]
    addr: String,
    /// A file holding the admin token (changes need it).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// The admin token itself (instead of --token-file).
    #[arg(long, env = "CLUSTER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the agent's JSON answer instead of tables.
    #[arg(long)]
    json: bool,
    /// How long to wait for the answer.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    timeout: std::time::Duration,
}

#[derive(Debug, Subcommand)]
enum NodeCommand {
    /// Every live node.
    List(Target),
    /// One node.
    Status {
        /// The node's id.
        id: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, Subcommand)]
enum AppCommand {
    /// Every app on the agent.
    List(Target),
    /// One app: role, leader, token, partitions, service.
    Status {
        /// The app.
        app: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, Subcommand)]
enum KvCommand {
    /// Print a value.
    Get {
        /// The app.
        app: String,
        /// The key.
        key: String,
        #[command(flatten)]
        target: Target,
    },
    /// Write a value under the current term: refused (exit 4) unless TOKEN is that term's.
    Put {
        /// The app.
        app: String,
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// The writer's term token (a service gets it as CLUSTER_TOKEN).
        #[arg(long = "term-token", value_name = "TOKEN")]
        term_token: u64,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, Subcommand)]
enum DbCommand {
    /// Return once every commit so far is acknowledged by the object store.
    Sync {
        /// The app.
        app: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, Subcommand)]
enum SnapshotCommand {
    /// The app's snapshots.
    List {
        /// The app.
        #[arg(long)]
        app: String,
        #[command(flatten)]
        target: Target,
    },
    /// Take a snapshot now (on the leader).
    Create {
        /// The app.
        #[arg(long)]
        app: String,
        #[command(flatten)]
        target: Target,
    },
    /// Restore a snapshot to a local file, verified (`--to`); nothing else is touched.
    Restore {
        /// The snapshot's id.
        id: String,
        /// The app.
        #[arg(long)]
        app: String,
        /// The file to write (refused if it exists).
        #[arg(long, value_name = "PATH")]
        to: PathBuf,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a snapshot.
    Delete {
        /// The snapshot's id.
        id: String,
        /// The app.
        #[arg(long)]
        app: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check a configuration (with the CLUSTER_* variables and --set flags applied) and list
    /// every problem in it; exit 2 if there is one.
    Check {
        /// The file.
        file: PathBuf,
        /// Override a field: PATH=VALUE (`node.id=n2`, `app[0].mode=pool`); beats the
        /// environment.
        #[arg(long = "set", value_name = "PATH=VALUE")]
        sets: Vec<String>,
        /// Check as `cluster agent --dev` would run it.
        #[arg(long)]
        dev: bool,
    },
}

#[derive(Debug, Args)]
struct AgentArgs {
    /// The configuration file.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// One node on the in-memory store and bus, no server needed; the apps of --config, or a
    /// sample.
    #[arg(long)]
    dev: bool,
    /// Override a field: PATH=VALUE (`node.id=n2`, `app[0].mode=pool`); beats the environment
    /// (CLUSTER_NODE__ID=n2), which beats the file.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    sets: Vec<String>,
    /// Shorthand for --set node.id=ID.
    #[arg(long, value_name = "ID")]
    node_id: Option<String>,
    /// Shorthand for --set node.data_dir=DIR.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Shorthand for --set node.http_addr=ADDR.
    #[arg(long, value_name = "IP:PORT")]
    http_addr: Option<String>,
}

fn env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

fn dev_defaults(dev: bool) -> Option<DevDefaults> {
    dev.then(|| DevDefaults {
        data_dir: std::env::temp_dir().join(format!("cluster-dev-{}", std::process::id())),
    })
}

fn load(sources: &Sources) -> Result<config::AgentConfig, Failure> {
    config::load(sources).map_err(|errors| {
        let name = sources
            .file
            .as_ref()
            .map_or_else(|| "configuration".to_owned(), |f| f.display().to_string());
        Failure::Config(format!("{name}: {} problem(s)\n{errors}", errors.0.len()))
    })
}

fn agent(args: AgentArgs) -> Result<(), Failure> {
    let mut sets = args.sets;
    if let Some(id) = args.node_id {
        sets.push(format!("node.id={id}"));
    }
    if let Some(dir) = args.data_dir {
        sets.push(format!("node.data_dir={}", dir.display()));
    }
    if let Some(addr) = args.http_addr {
        sets.push(format!("node.http_addr={addr}"));
    }
    let config = load(&Sources {
        file: args.config,
        env: env(),
        sets,
        dev: dev_defaults(args.dev),
    })?;
    init_logging();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Other(format!("cannot start the async runtime: {e}")))?
        .block_on(cluster_cli::agent::run(config))
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

fn client(t: &Target) -> Result<cluster_cli::admin::Client, Failure> {
    let token = match (&t.token_file, &t.token) {
        (Some(f), _) => Some(
            std::fs::read_to_string(f)
                .map_err(|e| Failure::Config(format!("--token-file {}: {e}", f.display())))?
                .trim()
                .to_owned(),
        ),
        (None, t) => t.clone(),
    };
    Ok(cluster_cli::admin::Client::new(&t.addr, token, t.timeout))
}

/// Runs one admin call and prints its answer: JSON with --json, else `human(answer)`.
fn admin(
    t: &Target,
    call: impl AsyncFnOnce(cluster_cli::admin::Client) -> Result<serde_json::Value, Failure>,
    human: impl FnOnce(&serde_json::Value) -> String,
) -> Result<(), Failure> {
    let client = client(t)?;
    let answer = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Other(format!("cannot start the async runtime: {e}")))?
        .block_on(call(client))?;
    if t.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&answer).unwrap_or_default()
        );
    } else {
        println!("{}", human(&answer));
    }
    Ok(())
}

fn run(cli: Cli) -> Result<(), Failure> {
    use cluster_cli::admin as a;
    match cli.command {
        Command::Status(t) => admin(&t, async |c| c.get("/v1/status").await, a::status_text),
        Command::Health(t) => admin(&t, async |c| c.get("/v1/health").await, a::health_text),
        Command::Stepdown { app, target } => admin(
            &target,
            async |c| c.post(&format!("/v1/apps/{app}/stepdown")).await,
            |v| {
                format!(
                    "{} stepped down from {} (token {})",
                    a::text(&v["node"]),
                    a::text(&v["app"]),
                    a::text(&v["token"])
                )
            },
        ),
        Command::Node(NodeCommand::List(t)) => admin(
            &t,
            async |c| c.get("/v1/nodes").await,
            |v| a::nodes_table(&v["nodes"]),
        ),
        Command::Node(NodeCommand::Status { id, target }) => admin(
            &target,
            async |c| c.get(&format!("/v1/nodes/{id}")).await,
            |v| a::nodes_table(&serde_json::Value::Array(vec![v.clone()])),
        ),
        Command::App(AppCommand::List(t)) => admin(
            &t,
            async |c| c.get("/v1/apps").await,
            |v| a::apps_table(&v["apps"]),
        ),
        Command::App(AppCommand::Status { app, target }) => admin(
            &target,
            async |c| c.get(&format!("/v1/apps/{app}")).await,
            |v| a::apps_table(&serde_json::Value::Array(vec![v.clone()])),
        ),
        Command::Kv(KvCommand::Get { app, key, target }) => admin(
            &target,
            async |c| {
                let bytes = c
                    .call_raw(
                        reqwest::Method::GET,
                        &format!("/v1/apps/{app}/kv/{key}"),
                        None,
                        &[],
                    )
                    .await?;
                Ok(serde_json::json!({ "key": key, "value": String::from_utf8_lossy(&bytes) }))
            },
            |v| a::text(&v["value"]),
        ),
        Command::Kv(KvCommand::Put {
            app,
            key,
            value,
            term_token,
            target,
        }) => admin(
            &target,
            async |c| {
                c.call(
                    reqwest::Method::PUT,
                    &format!("/v1/apps/{app}/kv/{key}"),
                    Some(value.into_bytes()),
                    &[("x-cluster-token", term_token.to_string())],
                )
                .await
            },
            |v| {
                format!(
                    "written by {} at revision {}",
                    a::text(&v["node"]),
                    a::text(&v["revision"])
                )
            },
        ),
        Command::Db(DbCommand::Sync { app, target }) => admin(
            &target,
            async |c| c.post(&format!("/v1/apps/{app}/db/sync")).await,
            |v| {
                format!(
                    "{}: every commit acknowledged up to {}",
                    a::text(&v["node"]),
                    v["position"]
                )
            },
        ),
        Command::Snapshot(SnapshotCommand::List { app, target }) => admin(
            &target,
            async |c| c.get(&format!("/v1/apps/{app}/snapshots")).await,
            a::snapshots_table,
        ),
        Command::Snapshot(SnapshotCommand::Create { app, target }) => admin(
            &target,
            async |c| c.post(&format!("/v1/apps/{app}/snapshots")).await,
            |v| {
                format!(
                    "{} took snapshot {}",
                    a::text(&v["node"]),
                    a::text(&v["snapshot"]["id"])
                )
            },
        ),
        Command::Snapshot(SnapshotCommand::Restore {
            id,
            app,
            to,
            target,
        }) => {
            if to.exists() {
                return Err(Failure::Config(format!(
                    "--to {}: exists; not replaced",
                    to.display()
                )));
            }
            admin(
                &target,
                async |c| {
                    let bytes = c
                        .call_raw(
                            reqwest::Method::GET,
                            &format!("/v1/apps/{app}/snapshots/{id}/database"),
                            None,
                            &[],
                        )
                        .await?;
                    let partial = to.with_extension("partial");
                    std::fs::write(&partial, &bytes)
                        .and_then(|_| std::fs::rename(&partial, &to))
                        .map_err(|e| Failure::Other(format!("{}: {e}", to.display())))?;
                    Ok(serde_json::json!({ "snapshot": id, "file": to, "bytes": bytes.len() }))
                },
                |v| {
                    format!(
                        "restored snapshot {} to {} ({} bytes)",
                        a::text(&v["snapshot"]),
                        a::text(&v["file"]),
                        v["bytes"]
                    )
                },
            )
        }
        Command::Snapshot(SnapshotCommand::Delete { id, app, target }) => admin(
            &target,
            async |c| {
                c.call(
                    reqwest::Method::DELETE,
                    &format!("/v1/apps/{app}/snapshots/{id}"),
                    None,
                    &[],
                )
                .await
            },
            |v| {
                format!(
                    "{} deleted snapshot {}",
                    a::text(&v["node"]),
                    a::text(&v["deleted"])
                )
            },
        ),
        Command::Agent(args) => agent(args),
        Command::Supervise { args } => {
            let args = backends::SupervisorArgs::parse(args).map_err(Failure::Config)?;
            std::process::exit(backends::supervisor::run(args));
        }
        Command::Config(ConfigCommand::Check { file, sets, dev }) => {
            let config = load(&Sources {
                file: Some(file.clone()),
                env: env(),
                sets,
                dev: dev_defaults(dev),
            })?;
            println!(
                "{}: ok: node {} of platform {}, {} store, {} app(s)",
                file.display(),
                config.node.id,
                config.platform.name,
                config.coordination.backend(),
                config.apps.len()
            );
            Ok(())
        }
        Command::Init { path, dev, force } => {
            cluster_cli::init::write(&path, dev, force)?;
            println!(
                "wrote {}; check it with `cluster config check {}`",
                path.display(),
                path.display()
            );
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("cluster: {failure}");
            failure.exit_code()
        }
    }
}
