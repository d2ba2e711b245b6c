//! `cargo xtask demo`: the main job, end to end on real servers.
//!
//! Starts a real etcd and a durable NATS (JetStream) on free ports, builds the `cluster` agent and
//! the demo's ledger service, and runs three agents as separate processes: it prints
//! `cluster status`, writes entries to the leader's service, SIGKILLs the leader's agent, prints
//! the failover timeline with measured times, checks that every acknowledged entry is on the new
//! leader, restarts the killed agent as a standby, and cleans up. (`cargo xtask bench failover`
//! still runs the `demo-node` binary.)

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

/// Builds the demo node (release with `release`) and returns its path.
fn build_demo_node(release: bool) -> anyhow::Result<PathBuf> {
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

/// Builds `cluster` and the demo's ledger service; returns their paths.
fn build_agent_binaries() -> anyhow::Result<(PathBuf, PathBuf)> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    println!("demo: building the cluster agent and the ledger service");
    let status = Command::new(&cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "cli",
            "--bin",
            "cluster",
            "-p",
            "cluster-tests",
            "--bin",
            "ledger-service",
        ])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("building the agent failed ({status})");
    }
    let debug = crate::test::target_dir().join("debug");
    Ok((debug.join("cluster"), debug.join("ledger-service")))
}

/// One `cluster agent` of the demo.
struct DemoAgent {
    id: String,
    http: u16,
    ledger: u16,
    config: PathBuf,
    log: PathBuf,
    process: Option<testkit::process::ServerProcess>,
}

impl DemoAgent {
    fn start(&mut self, cluster: &Path) -> anyhow::Result<()> {
        self.process = Some(
            testkit::process::ServerProcess::start(
                &format!("cluster agent {}", self.id),
                cluster,
                &[
                    "agent".into(),
                    "--config".into(),
                    self.config.display().to_string(),
                ],
                &self.log,
            )
            .with_context(|| format!("starting agent {}", self.id))?,
        );
        Ok(())
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.http)
    }

    async fn ledger_view(&self, http: &reqwest::Client) -> Option<serde_json::Value> {
        let r = http
            .get(format!("http://{}/v1/apps/ledger", self.addr()))
            .send()
            .await
            .ok()?;
        r.json().await.ok()
    }
}

/// Milliseconds since `t0`.
fn ms(t0: std::time::Instant) -> u128 {
    t0.elapsed().as_millis()
}

/// Runs the demo; with `hold`, keeps the servers up until Ctrl-C afterwards.
///
/// Three `cluster agent` processes on a real etcd (coordination) and a durable nats-server (the
/// bus and the database's object store): an active-passive `ledger` app whose service is the
/// `ledger-service` binary on a replicated SQLite database, and a ring app of 64 partitions. A
/// client writes entries (each acknowledged after `db/sync`); the leader's agent is SIGKILLed;
/// the timeline is measured from outside; every acknowledged entry must be on the new leader.
pub(crate) fn run(hold: bool) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    crate::deps::run()?;
    let (cluster, ledger) = build_agent_binaries()?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    runtime.block_on(async {
        let nats = testkit::NatsServer::start_with(testkit::NatsOptions::durable())
            .await
            .context("starting nats-server")?;
        let etcd = testkit::EtcdServer::start().await.context("starting etcd")?;
        println!("demo: etcd {} at {}", etcd.version(), etcd.url());
        println!(
            "demo: nats-server {} (JetStream, sync_interval always) at {}",
            nats.version(),
            nats.url()
        );
        let dir = tempfile_dir()?;
        let token_file = dir.join("admin-token");
        std::fs::write(&token_file, format!("demo-{:016x}\n", fastrand_u64()))?;
        let mut agents = Vec::new();
        for id in ["n1", "n2", "n3"] {
            let http = testkit::probe::free_port()?;
            let ledger_port = testkit::probe::free_port()?;
            let data = dir.join(id);
            std::fs::create_dir_all(&data)?;
            let config = data.join("cluster.toml");
            std::fs::write(
                &config,
                format!(
                    r#"[platform]
name = "demo"

[node]
id = "{id}"
data_dir = "{data}"
http_addr = "127.0.0.1:{http}"

[timing]
lease_ttl = "3s"
lease_margin = "1s"

[coordination]
backend = "etcd"
[coordination.etcd]
endpoints = ["{etcd}"]

[bus]
backend = "nats"
[bus.nats]
url = "{nats}"

[admin]
token_file = "{token}"

[[app]]
name = "ledger"
mode = "active_passive"
[app.sqlite]
path = "ledger/ledger.db"
[app.backend]
start_timeout = "20s"
[app.backend.process]
command = "{ledger}"
env = {{ LEDGER_ADDR = "127.0.0.1:{ledger_port}" }}
grace = "2s"
[[app.health]]
name = "port"
kind = "tcp"
address = "127.0.0.1:{ledger_port}"
interval = "200ms"
timeout = "150ms"

[[app]]
name = "jobs"
mode = "ring"
partitions = 64
"#,
                    data = data.display(),
                    etcd = etcd.url(),
                    nats = nats.url(),
                    token = token_file.display(),
                    ledger = ledger.display(),
                ),
            )?;
            agents.push(DemoAgent {
                id: id.to_owned(),
                http,
                ledger: ledger_port,
                log: data.join("agent.log"),
                config,
                process: None,
            });
        }
        for a in &mut agents {
            a.start(&cluster)?;
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let leader = wait_for_leader(&agents, &http, None, Duration::from_secs(60)).await?;
        wait_for_service(&agents[leader], &http, Duration::from_secs(60)).await?;
        wait_for_ring(&agents, &http, Duration::from_secs(60)).await?;
        println!("\ndemo: `cluster status` on {}:", agents[leader].id);
        print_status(&cluster, &agents[leader]);

        let entries = 20;
        let mut acknowledged = 0i64;
        let mut total = 0i64;
        for i in 1..=entries {
            let r = http
                .post(format!("http://127.0.0.1:{}/entries", agents[leader].ledger))
                .json(&serde_json::json!({ "amount": i }))
                .send()
                .await?;
            if r.status().is_success() {
                acknowledged += 1;
                total += i;
            }
        }
        println!(
            "demo: {acknowledged} of {entries} entries acknowledged by {} (each after db/sync), sum {total}",
            agents[leader].id
        );
        if acknowledged != entries {
            bail!("the leader did not acknowledge every entry");
        }

        let killed = agents[leader].id.clone();
        println!("\ndemo: SIGKILL of {killed}'s agent (its supervisor stops the service when the pipe closes)");
        let t0 = std::time::Instant::now();
        let pid = agents[leader]
            .process
            .as_ref()
            .and_then(|p| p.pid())
            .context("the leader's agent is not running")?;
        // SAFETY: plain syscall on a child we started; its own process only.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
        }
        let new = wait_for_leader(&agents, &http, Some(leader), Duration::from_secs(60)).await?;
        let elected = ms(t0);
        let limit = std::time::Instant::now() + Duration::from_secs(60);
        let backend_running = loop {
            let view = agents[new].ledger_view(&http).await;
            if view.is_some_and(|v| v["backend"]["state"]["state"] == "running") {
                break ms(t0);
            }
            if std::time::Instant::now() > limit {
                bail!("the new leader's service never ran");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let (served, sum) = loop {
            if let Ok(r) = http
                .get(format!("http://127.0.0.1:{}/sum", agents[new].ledger))
                .send()
                .await
                && r.status().is_success()
            {
                let v: serde_json::Value = r.json().await?;
                break (ms(t0), v);
            }
            if std::time::Instant::now() > limit {
                bail!("the new leader's service never answered");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let token = agents[new]
            .ledger_view(&http)
            .await
            .map(|v| v["leader"]["token"].clone())
            .unwrap_or_default();
        println!("demo: timeline from the kill (lease ttl 3 s, margin 1 s):");
        println!("  +{elected:>5} ms  {} elected leader of ledger (token {token}); {killed}'s lease expired", agents[new].id);
        println!("  +{backend_running:>5} ms  {} promoted its replica and started the ledger service", agents[new].id);
        println!("  +{served:>5} ms  first request served by {}: {sum}", agents[new].id);
        if sum["count"] != acknowledged || sum["sum"] != total {
            bail!("the new leader holds {sum}, not the {acknowledged} acknowledged entries summing to {total}");
        }
        println!("demo: every acknowledged entry is on the new leader ({acknowledged} entries, sum {total})");

        println!("\ndemo: restarting {killed} as a standby");
        agents[leader].process = None;
        agents[leader].start(&cluster)?;
        let limit = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let view = agents[leader].ledger_view(&http).await;
            if view.is_some_and(|v| v["role"]["role"] == "passive") {
                break;
            }
            if std::time::Instant::now() > limit {
                bail!("{killed} never rejoined as a standby");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        wait_for_ring(&agents, &http, Duration::from_secs(60)).await?;
        println!("demo: `cluster status` on {}:", agents[new].id);
        print_status(&cluster, &agents[new]);
        println!("demo: stopping the agents");
        for a in &mut agents {
            if let Some(mut p) = a.process.take()
                && !p.terminate(Duration::from_secs(30)).is_some_and(|s| s.success())
            {
                bail!("agent {} did not stop cleanly; its log is {}", a.id, a.log.display());
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        println!("demo: done in {:.1} s", started.elapsed().as_secs_f64());
        if hold {
            println!("demo: holding the servers; Ctrl-C to stop");
            tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
        }
        println!("demo: stopping the servers");
        Ok(())
    })
}

/// The index of the agent that leads `ledger` with its service running, other than `not`.
async fn wait_for_leader(
    agents: &[DemoAgent],
    http: &reqwest::Client,
    not: Option<usize>,
    limit: Duration,
) -> anyhow::Result<usize> {
    let until = std::time::Instant::now() + limit;
    loop {
        for (i, a) in agents.iter().enumerate() {
            if Some(i) == not {
                continue;
            }
            if a.ledger_view(http)
                .await
                .is_some_and(|v| v["role"]["role"] == "active")
            {
                return Ok(i);
            }
        }
        if std::time::Instant::now() > until {
            bail!(
                "no agent leads ledger; logs under {}",
                agents[0].log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `agent`'s ledger service answers and its health check passes (the term's
/// service is ready).
async fn wait_for_service(
    agent: &DemoAgent,
    http: &reqwest::Client,
    limit: Duration,
) -> anyhow::Result<()> {
    let until = std::time::Instant::now() + limit;
    loop {
        let answers = http
            .get(format!("http://127.0.0.1:{}/sum", agent.ledger))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        let healthy = match http
            .get(format!("http://{}/v1/health", agent.addr()))
            .send()
            .await
        {
            Ok(r) => r
                .json::<serde_json::Value>()
                .await
                .is_ok_and(|v| v["status"] == "healthy"),
            Err(_) => false,
        };
        if answers && healthy {
            return Ok(());
        }
        if std::time::Instant::now() > until {
            bail!(
                "{}'s ledger service never answered; log {}",
                agent.id,
                agent.log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the live agents own all 64 partitions of `jobs` between them, each once.
async fn wait_for_ring(
    agents: &[DemoAgent],
    http: &reqwest::Client,
    limit: Duration,
) -> anyhow::Result<()> {
    let until = std::time::Instant::now() + limit;
    loop {
        let mut owned = 0;
        for a in agents.iter().filter(|a| a.process.is_some()) {
            if let Ok(r) = http
                .get(format!("http://{}/v1/apps/jobs", a.addr()))
                .send()
                .await
                && let Ok(v) = r.json::<serde_json::Value>().await
            {
                owned += v["partitions"].as_object().map_or(0, |p| p.len());
            }
        }
        if owned == 64 {
            return Ok(());
        }
        if std::time::Instant::now() > until {
            bail!("the ring never settled ({owned} of 64 partitions owned)");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn print_status(cluster: &Path, agent: &DemoAgent) {
    let out = Command::new(cluster)
        .args(["status", "--addr", &agent.addr()])
        .output();
    match out {
        Ok(o) => print!("{}", String::from_utf8_lossy(&o.stdout)),
        Err(e) => println!("(cluster status failed: {e})"),
    }
}

fn fastrand_u64() -> u64 {
    let mut bytes = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut bytes);
    }
    u64::from_le_bytes(bytes)
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("cluster-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).context("creating the demo directory")?;
    Ok(dir)
}
