//! The demo node: one cluster node hosting an active-passive app (`ledger`) and a ring app
//! (`jobs`), writing what it does to a history file; and the three-node failover demo.
//!
//! `demo-node node ...` runs one node until SIGTERM (graceful) or SIGKILL; SIGUSR1 makes it step
//! down from `ledger`. `demo-node demo ...` runs three nodes as child processes, SIGKILLs the
//! leader, prints the failover timeline, restarts the killed node as a standby, and cleans up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use cluster_core::coordination::{CoordError, Coordinator, Fence};
use cluster_runtime::{App, OwnContext, Platform, ReleaseReason};
use cluster_tests::history::{HistoryWriter, mono_ns, mono_ns_of};
use coord_etcd::{EtcdConfig, EtcdCoordinator};

/// A cluster node for demos and end-to-end tests.
#[derive(Debug, Parser)]
#[command(name = "demo-node", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run one node until SIGTERM.
    Node(NodeArgs),
    /// Run the three-node failover demo against an etcd.
    Demo(DemoArgs),
    /// Measure failover side by side with `etcdctl lock` on the same etcd.
    Bench(BenchArgs),
}

#[derive(Debug, clap::Args)]
struct BenchArgs {
    /// etcd client URL.
    #[arg(long)]
    etcd: String,
    /// Directory for histories and logs.
    #[arg(long)]
    dir: PathBuf,
    /// Trials per series.
    #[arg(long, default_value_t = 20)]
    trials: usize,
    /// A NATS URL: also measure SIGKILL failover with NATS JetStream KV as the store.
    #[arg(long)]
    nats_kv: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
struct NodeArgs {
    /// The platform name.
    #[arg(long, default_value = "demo")]
    platform: String,
    /// This node's id.
    #[arg(long)]
    node: String,
    /// etcd client URLs, comma-separated.
    #[arg(long, value_delimiter = ',')]
    etcd: Vec<String>,
    /// Lease TTL in milliseconds.
    #[arg(long, default_value_t = 2000)]
    ttl_ms: u64,
    /// Lease safety margin in milliseconds.
    #[arg(long, default_value_t = 600)]
    margin_ms: u64,
    /// Partitions of the ring app.
    #[arg(long, default_value_t = 64)]
    partitions: u32,
    /// Where to append the history (JSON lines).
    #[arg(long)]
    history: PathBuf,
    /// Where to write the HTTP endpoint's address once serving.
    #[arg(long)]
    http_file: Option<PathBuf>,
    /// Queue and run work items on owned partitions.
    #[arg(long)]
    work: bool,
    /// NATS URL: audit events are published on JetStream there.
    #[arg(long)]
    nats: Option<String>,
    /// Use NATS JetStream KV at this URL as the coordination store instead of etcd.
    #[arg(long)]
    coord_nats: Option<String>,
    /// How long each ring `on_release` takes, in milliseconds (a slow hook).
    #[arg(long, default_value_t = 0)]
    release_delay_ms: u64,
}

#[derive(Debug, clap::Args)]
struct DemoArgs {
    /// etcd client URLs, comma-separated.
    #[arg(long, value_delimiter = ',')]
    etcd: Vec<String>,
    /// Directory for histories and logs.
    #[arg(long)]
    dir: PathBuf,
    /// NATS URL for the nodes' audit events.
    #[arg(long)]
    nats: Option<String>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().context("starting tokio")?;
    match cli.command {
        Cmd::Node(args) => runtime.block_on(run_node(args)),
        Cmd::Demo(args) => demo(args),
        Cmd::Bench(args) => {
            std::fs::create_dir_all(&args.dir)?;
            let bin = std::env::current_exe()?;
            let mut series =
                cluster_tests::failover_bench::run(&bin, &args.dir, &args.etcd, args.trials)?;
            if let Some(url) = &args.nats_kv {
                series.push(cluster_tests::failover_bench::run_nats_kv(
                    &bin,
                    &args.dir,
                    url,
                    args.trials,
                )?);
            }
            println!(
                "| series | trials | p50 ms | p99 ms | max ms | last keep-alive's age at the kill, min / p50 / max ms |"
            );
            println!("| --- | --- | --- | --- | --- | --- |");
            for s in &series {
                println!("{}", s.row());
            }
            let (p50, p99) = series[0].ratio_to(&series[1]);
            println!(
                "ours on etcd over etcdctl lock, SIGKILL: p50 {p50:.2}x, p99 {p99:.2}x (goal: p99 within 1.1x)"
            );
            Ok(())
        }
    }
}

async fn run_node(args: NodeArgs) -> anyhow::Result<()> {
    let history = Arc::new(
        HistoryWriter::open(&args.node, &args.history).context("opening the history file")?,
    );
    let config = EtcdConfig {
        call_timeout: Duration::from_millis((args.ttl_ms / 4).max(200)),
        keep_alive_interval: Duration::from_millis(500),
        keep_alive_timeout: Duration::from_secs(1),
        ..EtcdConfig::new(args.etcd.clone())
    };
    let coord: Arc<dyn Coordinator> = match &args.coord_nats {
        Some(url) => Arc::new(
            coord_nats::NatsCoordinator::connect(coord_nats::NatsConfig {
                call_timeout: Duration::from_millis((args.ttl_ms / 4).max(200)),
                ..coord_nats::NatsConfig::new([url.clone()])
            })
            .await?,
        ),
        None => Arc::new(EtcdCoordinator::connect(config).await?),
    };
    let mut builder = Platform::builder(&args.platform, &args.node).coordinator(coord);
    if let Some(url) = &args.nats {
        let bus =
            bus_nats::NatsEventBus::connect(bus_nats::NatsBusConfig::new(url.clone())).await?;
        // Subjects (and so the platform's stream names) under the platform's own prefix.
        builder = builder
            .event_bus(Arc::new(bus))
            .subject_prefix(&args.platform);
    }
    let platform = builder
        .address(format!("pid-{}", std::process::id()))
        .lease_ttl(Duration::from_millis(args.ttl_ms))
        .lease_margin(Duration::from_millis(args.margin_ms))
        .hook_timeout(Duration::from_secs(2))
        .shutdown_timeout(Duration::from_secs(10))
        .drain_timeout(Duration::from_secs(2))
        .http_addr(SocketAddr::from(([127, 0, 0, 1], 0)))
        .build()?;
    let ledger = platform.register(ledger_app(history.clone())?)?;
    platform.register(jobs_app(
        history.clone(),
        args.partitions,
        args.work,
        Duration::from_millis(args.release_delay_ms),
    )?)?;

    // Session deadlines, so a reader can bound how long this node could act.
    {
        let (platform, history) = (platform.clone(), history.clone());
        tokio::spawn(async move {
            let mut last = 0;
            loop {
                if let Some(deadline) = platform.session_deadline() {
                    let at = mono_ns_of(deadline);
                    if at != last {
                        history.record_at(None, "alive_until", 0, None, None, at);
                        last = at;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }
    // SIGUSR1: step down from the ledger.
    {
        let election = ledger.election().clone();
        tokio::spawn(async move {
            let Ok(mut usr1) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
            else {
                return;
            };
            while usr1.recv().await.is_some() {
                let _ = election.step_down().await;
            }
        });
    }
    // The HTTP address, once bound, for tests and the demo.
    if let Some(file) = args.http_file.clone() {
        let platform = platform.clone();
        tokio::spawn(async move {
            loop {
                if let Some(addr) = platform.http_addr() {
                    let _ = std::fs::write(&file, addr.to_string());
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }
    {
        let (platform, history) = (platform.clone(), history.clone());
        tokio::spawn(async move {
            let mut states = platform.states();
            while states.changed().await.is_ok() {
                let state = *states.borrow();
                history.record(None, &format!("{state:?}").to_lowercase(), 0, None, None);
            }
        });
    }
    let shutdown = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    platform.run(shutdown).await?;
    history.record(None, "stopped", 0, None, None);
    Ok(())
}

/// A write to the app's key space fenced by `fence` (the term's election key): the store refuses
/// it once the term is over, on every backend.
async fn fenced_write(
    ctx: &cluster_runtime::AppContext,
    fence: &Fence,
    name: &str,
    value: &str,
) -> Result<(), CoordError> {
    ctx.kv()
        .fenced(fence.clone())
        .put(name, value)
        .await
        .map(|_| ())
}

/// The outcome of a fenced write, as a history event.
fn write_event(outcome: &Result<(), CoordError>) -> &'static str {
    match outcome {
        Ok(()) => "write_accepted",
        Err(CoordError::Unsupported { .. }) => "write_unsupported",
        Err(_) => "write_refused",
    }
}

/// The active-passive app: the leader writes a heartbeat under its term, recording each
/// attempt's outcome; a node that stops leading tries one write with its old term's fence and
/// records that the store refused it.
fn ledger_app(history: Arc<HistoryWriter>) -> anyhow::Result<App> {
    let last_fence: Arc<Mutex<Option<(Fence, tokio_util::sync::CancellationToken)>>> =
        Arc::default();
    let (h1, h2) = (history.clone(), history);
    let (f1, f2) = (last_fence.clone(), last_fence);
    Ok(App::builder("ledger")
        .active_passive()
        .on_active(move |ctx| {
            let (history, fence) = (h1.clone(), f1.clone());
            async move {
                history.record(Some("ledger"), "active", ctx.token.get(), None, None);
                {
                    // Records the moment the term's work is cancelled, nothing else. Armed
                    // before the first await, so a term whose first write never returns (the
                    // store went away as it began) still records its end.
                    let (cancel, history, token) =
                        (ctx.cancel.clone(), history.clone(), ctx.token.get());
                    tokio::spawn(async move {
                        cancel.cancelled().await;
                        history.record(Some("ledger"), "cancelled", token, None, None);
                    });
                }
                // What an observer of this process sees first of the new term (the failover
                // bench reads it as it reads `etcdctl lock`'s line).
                println!("active ledger {}", ctx.token.get());
                *fence.lock().unwrap_or_else(|p| p.into_inner()) =
                    ctx.fence.clone().map(|f| (f, ctx.cancel.clone()));
                let term_fence = ctx.fence.clone().ok_or("active-passive terms are fenced")?;
                fenced_write(&ctx.app, &term_fence, "leader", ctx.app.node().as_str()).await?;
                let (cancel, token) = (ctx.cancel.clone(), ctx.token.get());
                let app = ctx.app.clone();
                tokio::spawn(async move {
                    let mut beats = 0u64;
                    while !cancel.is_cancelled() {
                        beats += 1;
                        let outcome =
                            fenced_write(&app, &term_fence, "heartbeat", &beats.to_string()).await;
                        history.record(
                            Some("ledger"),
                            write_event(&outcome),
                            token,
                            None,
                            Some("heartbeat".into()),
                        );
                        tokio::select! {
                            _ = cancel.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        }
                    }
                });
                Ok(())
            }
        })
        .on_passive(move |ctx| {
            let (history, fence) = (h2.clone(), f2.clone());
            async move {
                let old = fence.lock().unwrap_or_else(|p| p.into_inner()).take();
                // Whether the ended term's work had been cancelled when on_passive began.
                let detail = old.as_ref().map(|(_, cancel)| {
                    if cancel.is_cancelled() {
                        "after_cancel"
                    } else {
                        "before_cancel"
                    }
                    .to_owned()
                });
                history.record(Some("ledger"), "passive", 0, None, detail);
                if let Some((old, _)) = old {
                    // A straggler write under the term that just ended: the store must refuse it
                    // once another term exists.
                    let token = old.token.get();
                    let outcome = fenced_write(&ctx, &old, "straggler", ctx.node().as_str()).await;
                    history.record(
                        Some("ledger"),
                        write_event(&outcome),
                        token,
                        None,
                        Some(match outcome {
                            Ok(()) => "straggler".to_owned(),
                            Err(e) => format!("straggler: {e}"),
                        }),
                    );
                }
                Ok(())
            }
        })
        .on_leader_change(|_| async { Ok(()) })
        .build()?)
}

/// The ring app: records ownership; with `work`, runs the unfinished items of each partition it
/// takes over and keeps one slow item in flight per partition.
fn jobs_app(
    history: Arc<HistoryWriter>,
    partitions: u32,
    work: bool,
    release_delay: Duration,
) -> anyhow::Result<App> {
    let (h1, h2) = (history.clone(), history);
    Ok(App::builder("jobs")
        .ring(partitions)
        .on_own(move |ctx: OwnContext| {
            let history = h1.clone();
            async move {
                let p = ctx.partition.0;
                history.record(Some("jobs"), "own", ctx.token.get(), Some(p), None);
                {
                    // When this ownership's work really stops, for the ownership checker.
                    let (cancel, history, token) =
                        (ctx.cancel.clone(), history.clone(), ctx.token.get());
                    tokio::spawn(async move {
                        cancel.cancelled().await;
                        history.record(Some("jobs"), "cancelled", token, Some(p), None);
                    });
                }
                if work {
                    for item in ctx.work.unfinished().await? {
                        ctx.work.start(&item.id).await?;
                        history.record(
                            Some("jobs"),
                            "work_run",
                            ctx.token.get(),
                            Some(p),
                            Some(item.id.clone()),
                        );
                        ctx.work.complete(&item.id).await?;
                    }
                    let (w, cancel, history, token) = (
                        ctx.work.clone(),
                        ctx.cancel.clone(),
                        history.clone(),
                        ctx.token.get(),
                    );
                    tokio::spawn(async move {
                        let mut n = 0u32;
                        while !cancel.is_cancelled() {
                            n += 1;
                            let id = format!("{}-{token}-{n}", w.partition().0);
                            if w.enqueue(&id, "job").await.is_err() {
                                return;
                            }
                            if w.start(&id).await.is_err() {
                                return;
                            }
                            history.record(
                                Some("jobs"),
                                "work_run",
                                token,
                                Some(p),
                                Some(id.clone()),
                            );
                            tokio::select! {
                                _ = cancel.cancelled() => {}
                                _ = tokio::time::sleep(Duration::from_millis(300)) => {}
                            }
                            let _ = w.complete(&id).await;
                        }
                    });
                }
                Ok(())
            }
        })
        .on_release(move |ctx| {
            let history = h2.clone();
            async move {
                tokio::time::sleep(release_delay).await;
                let reason = match ctx.reason {
                    ReleaseReason::Handoff => "handoff",
                    ReleaseReason::Lost => "lost",
                    ReleaseReason::Shutdown => "shutdown",
                };
                history.record(
                    Some("jobs"),
                    "release",
                    ctx.token.get(),
                    Some(ctx.partition.0),
                    Some(reason.into()),
                );
                Ok(())
            }
        })
        .build()?)
}

/// The partition count per node once every partition has one owner among `nodes` nodes with
/// a fair split (within one partition).
fn balanced(
    c: &mut cluster_tests::orchestrator::DemoCluster,
    nodes: usize,
) -> Option<std::collections::BTreeMap<String, usize>> {
    let owners = c.ring_owners();
    if owners.len() != 64 || owners.values().any(|o| o.len() != 1) {
        return None;
    }
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for o in owners.values() {
        *counts.entry(o[0].0.clone()).or_default() += 1;
    }
    let (min, max) = (counts.values().min()?, counts.values().max()?);
    (counts.len() == nodes && max - min <= 1).then_some(counts)
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// The three-node failover demo, printed as a timeline.
fn demo(args: DemoArgs) -> anyhow::Result<()> {
    use cluster_tests::orchestrator::{DemoCluster, DemoSettings};
    std::fs::create_dir_all(&args.dir)?;
    let bin = std::env::current_exe()?;
    let settings = DemoSettings {
        platform: format!("demo-{}", std::process::id()),
        etcd: args.etcd.clone(),
        nats: args.nats.clone(),
        nats_kv: None,
        ttl: Duration::from_secs(2),
        margin: Duration::from_millis(600),
        partitions: 64,
        work: false,
        release_delay: Duration::ZERO,
    };
    let mut cluster = DemoCluster::new(&bin, &args.dir, settings);
    let names = ["node-a", "node-b", "node-c"];
    for name in names {
        cluster.start(name)?;
    }
    println!(
        "demo: three nodes started (lease ttl 2 s, margin 600 ms): {}",
        names.join(", ")
    );
    let (leader, token) = cluster
        .wait_for(Duration::from_secs(30), |c| c.leader("ledger"))
        .context("no leader elected")?;
    println!("demo: {leader} leads app 'ledger' (fencing token {token})");
    let counts = cluster
        .wait_for(Duration::from_secs(30), |c| balanced(c, 3))
        .context("ring did not settle")?;
    println!("demo: app 'jobs' partitions owned: {counts:?}");

    let killed_at = mono_ns();
    cluster.kill(&leader);
    println!("demo: SIGKILL {leader} at t=0");
    let (new_leader, new_token) = cluster
        .wait_for(Duration::from_secs(30), |c| {
            c.leader("ledger").filter(|(n, _)| *n != leader)
        })
        .context("no failover")?;
    let counts = cluster
        .wait_for(Duration::from_secs(30), |c| balanced(c, 2))
        .context("ring did not recover")?;
    let all = cluster.all_history();
    let last_deadline = all
        .iter()
        .filter(|r| {
            r.node == leader && r.event == "alive_until" && r.mono_ns <= killed_at + 10_000_000_000
        })
        .map(|r| r.mono_ns)
        .max()
        .unwrap_or(killed_at);
    let active_at = all
        .iter()
        .find(|r| r.node == new_leader && r.event == "active" && r.token == new_token)
        .map_or(0, |r| r.mono_ns);
    let reowned_at = all
        .iter()
        .filter(|r| r.event == "own" && r.mono_ns > killed_at)
        .map(|r| r.mono_ns)
        .max()
        .unwrap_or(0);
    println!("demo: failover timeline (ms after the kill):");
    println!(
        "demo:   {:>8.1}  {leader}'s lease deadline passes (it can no longer act)",
        ms(last_deadline.saturating_sub(killed_at))
    );
    println!(
        "demo:   {:>8.1}  {new_leader} elected and on_active ran (token {new_token} > {token})",
        ms(active_at.saturating_sub(killed_at))
    );
    println!(
        "demo:   {:>8.1}  all 64 partitions re-owned by the survivors: {counts:?}",
        ms(reowned_at.saturating_sub(killed_at))
    );
    cluster.start(&leader)?;
    cluster
        .wait_for(Duration::from_secs(30), |c| {
            c.history(&leader)
                .iter()
                .any(|r| r.event == "passive" && r.mono_ns > killed_at)
                .then_some(())
        })
        .context("restarted node did not rejoin")?;
    println!("demo: {leader} restarted and rejoined as a standby; {new_leader} still leads");
    let violations = cluster.ownership_violations();
    if violations.is_empty() {
        println!("demo: checked the histories: no partition ever had two valid owners");
    } else {
        anyhow::bail!("ownership violations: {violations:?}");
    }
    for name in names {
        cluster.stop(name, Duration::from_secs(15));
    }
    println!("demo: all nodes stopped gracefully");
    if let Some(url) = &args.nats {
        let subjects = cluster_core::event::Subjects::new(cluster.settings().platform.clone())?;
        let stream = cluster_core::event::Topology::new(
            subjects,
            cluster_core::event::Durability::SingleServer,
        )
        .audit_stream();
        let runtime = tokio::runtime::Runtime::new()?;
        let messages = runtime.block_on(async {
            let client = async_nats::connect(url.as_str()).await?;
            let mut stream = async_nats::jetstream::new(client)
                .get_stream(&stream)
                .await?;
            anyhow::Ok(stream.info().await?.state.messages)
        })?;
        println!(
            "demo: {messages} audit events (leader_acquired, partition_owned, member_left, ...) on NATS JetStream stream {stream}"
        );
    }
    Ok(())
}
