//! `cargo xtask demo`: the main job, end to end on real servers.
//!
//! Starts a real etcd and a real NATS (JetStream) on free ports, builds the demo node, and runs
//! three demo nodes as separate processes: it prints who leads and who owns what, SIGKILLs the
//! leader, prints the failover timeline with measured times, restarts the killed node as a
//! standby, checks from the nodes' histories that no partition ever had two valid owners, and
//! cleans up.

use std::process::Command;

use anyhow::{Context, bail};

/// Builds the demo node (release with `release`) and returns its path.
fn build_demo_node(release: bool) -> anyhow::Result<std::path::PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    println!("demo: building the demo node");
    let mut cmd = Command::new(&cargo);
    cmd.args([
        "build",
        "--quiet",
        "-p",
        "cluster-tests",
        "--bin",
        "demo-node",
    ]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().context("running cargo build")?;
    if !status.success() {
        bail!("building the demo node failed ({status})");
    }
    let profile = if release { "release" } else { "debug" };
    Ok(crate::test::target_dir().join(profile).join("demo-node"))
}

/// `cargo xtask bench failover`: the demo node's failover benchmark on a fresh etcd.
pub(crate) fn bench_failover() -> anyhow::Result<()> {
    crate::deps::run()?;
    let bin = build_demo_node(true)?;
    let trials = std::env::var("CLUSTER_BENCH_TRIALS").unwrap_or_else(|_| "20".into());
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    runtime.block_on(async {
        let etcd = testkit::EtcdServer::start()
            .await
            .context("starting etcd")?;
        let nats = testkit::NatsServer::start()
            .await
            .context("starting nats-server")?;
        println!(
            "bench failover: etcd {} at {}, nats-server {} at {}, lease ttl 2 s, margin 600 ms, {trials} trials",
            etcd.version(),
            etcd.url(),
            nats.version(),
            nats.url()
        );
        let dir = tempfile_dir()?;
        let status = tokio::process::Command::new(&bin)
            .args(["bench", "--etcd", &etcd.url(), "--nats-kv", &nats.url(), "--trials", &trials, "--dir"])
            .arg(&dir)
            .status()
            .await
            .context("running the failover benchmark")?;
        if !status.success() {
            bail!(
                "the failover benchmark failed ({status}); logs in {}",
                dir.display()
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    })
}

/// Runs the demo; with `hold`, keeps the servers up until Ctrl-C afterwards.
pub(crate) fn run(hold: bool) -> anyhow::Result<()> {
    crate::deps::run()?;
    let bin = build_demo_node(false)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    runtime.block_on(async {
        let nats = testkit::NatsServer::start_with(testkit::NatsOptions::durable())
            .await
            .context("starting nats-server")?;
        let etcd = testkit::EtcdServer::start()
            .await
            .context("starting etcd")?;
        println!(
            "demo: nats-server {} (JetStream, sync_interval always) at {}",
            nats.version(),
            nats.url()
        );
        println!("demo: etcd {} at {}", etcd.version(), etcd.url());
        let dir = tempfile_dir()?;
        let status = tokio::process::Command::new(&bin)
            .arg("demo")
            .arg("--etcd")
            .arg(etcd.url())
            .arg("--nats")
            .arg(nats.url())
            .arg("--dir")
            .arg(&dir)
            .status()
            .await
            .context("running the demo node")?;
        if !status.success() {
            bail!(
                "the demo failed ({status}); node histories and logs are kept in {}",
                dir.display()
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
        if hold {
            println!("demo: holding the servers; Ctrl-C to stop");
            tokio::signal::ctrl_c()
                .await
                .context("waiting for Ctrl-C")?;
        }
        println!("demo: stopping the servers");
        Ok(())
    })
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("cluster-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).context("creating the demo directory")?;
    Ok(dir)
}
