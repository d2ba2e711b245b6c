//! The `cluster` binary: `cluster agent` runs a node; the other commands administer a cluster.
#![warn(clippy::unwrap_used)]

use clap::Parser;

/// Run and operate a cluster.
#[derive(Debug, Parser)]
#[command(name = "cluster", version, about, long_about = None)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    Ok(())
}
