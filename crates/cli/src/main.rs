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
#[command(name = "cluster", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run this node's agent until SIGTERM or SIGINT.
    Agent(AgentArgs),
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

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
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
