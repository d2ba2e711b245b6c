//! `cargo xtask bench TARGET`: benchmarks that need real servers, measured against a peer in the
//! same run.
//!
//! - `bus`: our `Publisher` (and `Consumer`) against raw async-nats JetStream publishes to the
//!   same durable server (`sync_interval: always`, one replica, file storage) in the same run:
//!   throughput with acks, p50/p99 publish-to-ack and publish-to-handler latency.
//! - `wal`: `wal-sqlite` side by side with Litestream on the same nats-server (see
//!   `bench_wal.rs`).

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use async_nats::jetstream;
use bus_client::{
    Consumer, ConsumerConfig, ConsumerMetrics, Durability, EventHandler, HandlerError, Publisher,
    PublisherConfig, PublisherMetrics, Topology,
};
use bus_nats::{NatsBusConfig, NatsEventBus};
use cluster_core::event::{
    Envelope, EventBus, Level, OutgoingEvent, Schema, SchemaRegistry, SchemaVersion, Subjects,
};
use cluster_core::ids::{FencingToken, NodeId, PartitionId};
use futures::StreamExt;

// The `wal` target lives in its own file, next to this one.
#[path = "bench_wal.rs"]
mod bench_wal;

/// Events per measured run.
const EVENTS: usize = 4000;
/// Publishes in flight: ours pipelines across this many ordering keys, raw runs this many tasks.
const IN_FLIGHT: usize = 64;
/// Measured rounds of each side, alternating, to even out machine noise.
const ROUNDS: usize = 5;

/// Set in the optimised child that runs the measurements.
const OPTIMISED: &str = "CLUSTER_XTASK_BENCH_OPTIMISED";

/// Runs one benchmark target, in an optimised build of xtask.
pub(crate) fn run(target: &str) -> anyhow::Result<()> {
    // `cargo xtask` builds in the dev profile, where our crates are not optimised but
    // async-nats is: measure both sides in a release build instead.
    if cfg!(debug_assertions) && std::env::var_os(OPTIMISED).is_none() {
        println!("building xtask with --release for the measurements");
        let status =
            std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args([
                    "run",
                    "--release",
                    "--quiet",
                    "--package",
                    "xtask",
                    "--",
                    "bench",
                    target,
                ])
                .env(OPTIMISED, "1")
                .status()
                .context("running the release build of xtask")?;
        anyhow::ensure!(status.success(), "benchmark failed: {status}");
        return Ok(());
    }
    match target {
        "bus" => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?
            .block_on(bus()),
        "failover" => crate::demo::bench_failover(),
        "wal" => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?
            .block_on(bench_wal::wal()),
        // The replicator process of `wal`, started by it.
        "wal-replicator" => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?
            .block_on(bench_wal::replicator_child()),
        other => anyhow::bail!("unknown bench target {other:?} (known: bus, failover, wal)"),
    }
}

/// Latencies of one run and its throughput.
struct Run {
    per_second: f64,
    to_ack: Vec<Duration>,
    to_handler: Vec<Duration>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn bus() -> anyhow::Result<()> {
    let nats = testkit::NatsServer::start_with(testkit::NatsOptions::durable())
        .await
        .context("starting nats-server")?;
    println!(
        "nats-server {} (sync_interval: always), {EVENTS} events per run, {IN_FLIGHT} in flight",
        nats.version()
    );
    let dir = tempfile_dir()?;
    let mut ours = Vec::new();
    let mut raw = Vec::new();
    // Throughput: publishing alone, both sides alternating.
    for round in 0..ROUNDS {
        raw.push(raw_run(&nats.url(), round, false).await?);
        ours.push(our_run(&nats.url(), &dir, round, false).await?);
        println!(
            "round {round}: raw {:.0}/s, ours {:.0}/s",
            raw[round].per_second, ours[round].per_second
        );
    }
    // Latency: the same load with a consumer applying every event.
    let mut raw_latency = Vec::new();
    let mut our_latency = Vec::new();
    for round in ROUNDS..ROUNDS * 2 {
        raw_latency.push(raw_run(&nats.url(), round, true).await?);
        our_latency.push(our_run(&nats.url(), &dir, round, true).await?);
    }
    let summarize = |runs: &[Run]| {
        let mut per_second: Vec<f64> = runs.iter().map(|r| r.per_second).collect();
        per_second.sort_by(f64::total_cmp);
        let mut to_ack: Vec<Duration> = runs.iter().flat_map(|r| r.to_ack.clone()).collect();
        let mut to_handler: Vec<Duration> =
            runs.iter().flat_map(|r| r.to_handler.clone()).collect();
        to_ack.sort();
        to_handler.sort();
        (per_second[per_second.len() / 2], to_ack, to_handler)
    };
    let (raw_rate, raw_ack, _) = summarize(&raw);
    let (our_rate, our_ack, _) = summarize(&ours);
    let (_, _, raw_handler) = summarize(&raw_latency);
    let (_, _, our_handler) = summarize(&our_latency);
    println!();
    println!(
        "| publisher | events/s with acks (median of {ROUNDS}) | publish-to-ack p50 | p99 | publish-to-handler p50 (with consumer) | p99 |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| raw async-nats JetStream publish + pull consumer | {raw_rate:.0} | {} | {} | {} | {} |",
        ms(percentile(&raw_ack, 0.5)),
        ms(percentile(&raw_ack, 0.99)),
        ms(percentile(&raw_handler, 0.5)),
        ms(percentile(&raw_handler, 0.99)),
    );
    println!(
        "| bus-client `Publisher` + `Consumer` (SQLite record per event) | {our_rate:.0} | {} | {} | {} | {} |",
        ms(percentile(&our_ack, 0.5)),
        ms(percentile(&our_ack, 0.99)),
        ms(percentile(&our_handler, 0.5)),
        ms(percentile(&our_handler, 0.99)),
    );
    println!();
    println!(
        "ratio ours/raw throughput: {:.2} (target >= 0.8)",
        our_rate / raw_rate
    );
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("xtask-bench-bus-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Raw JetStream: IN_FLIGHT tasks, each publishing with a message id and awaiting its ack; a
/// durable pull consumer acks every message and timestamps it.
async fn raw_run(url: &str, round: usize, with_consumer: bool) -> anyhow::Result<Run> {
    let client = async_nats::connect(url).await?;
    let js = jetstream::new(client);
    let stream_name = format!("RAW{round}");
    let subject_root = format!("raw{round}");
    js.create_or_update_stream(jetstream::stream::Config {
        name: stream_name.clone(),
        subjects: vec![format!("{subject_root}.>")],
        storage: jetstream::stream::StorageType::File,
        num_replicas: 1,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await?;
    let consumer = js
        .get_stream(&stream_name)
        .await?
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("raw".into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            max_ack_pending: 256,
            ..Default::default()
        })
        .await?;
    let origin = Instant::now();
    let received: Arc<Mutex<Vec<(u64, Duration)>>> = Arc::default();
    let reader = with_consumer.then(|| {
        let received = received.clone();
        tokio::spawn(async move {
            let mut messages = consumer.messages().await?;
            let mut n = 0;
            while n < EVENTS + IN_FLIGHT {
                let Some(message) = messages.next().await else {
                    break;
                };
                let message = message.map_err(|e| anyhow::anyhow!("{e}"))?;
                let sent: u64 = std::str::from_utf8(&message.payload)?.parse()?;
                received
                    .lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?
                    .push((sent, origin.elapsed()));
                message.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
                n += 1;
            }
            anyhow::Ok(())
        })
    });
    // Warm-up, not measured: one message per subject.
    let warm_up = (0..IN_FLIGHT).map(|t| {
        let js = js.clone();
        let subject = format!("{subject_root}.k{t}");
        async move {
            let publish = jetstream::message::PublishMessage::build()
                .payload(origin.elapsed().as_nanos().to_string().into())
                .message_id(format!("r{round}-warm-{t}"));
            js.send_publish(subject, publish).await?.await?;
            anyhow::Ok(())
        }
    });
    for r in futures::future::join_all(warm_up).await {
        r?;
    }
    let started = Instant::now();
    let tasks: Vec<_> = (0..IN_FLIGHT)
        .map(|t| {
            let js = js.clone();
            let subject = format!("{subject_root}.k{t}");
            tokio::spawn(async move {
                let mut to_ack = Vec::new();
                for i in (t..EVENTS).step_by(IN_FLIGHT) {
                    let sent = origin.elapsed();
                    let publish = jetstream::message::PublishMessage::build()
                        .payload(sent.as_nanos().to_string().into())
                        .message_id(format!("r{round}-{i}"));
                    js.send_publish(subject.clone(), publish).await?.await?;
                    to_ack.push(origin.elapsed() - sent);
                }
                anyhow::Ok(to_ack)
            })
        })
        .collect();
    let mut to_ack = Vec::new();
    for t in tasks {
        to_ack.extend(t.await??);
    }
    let per_second = EVENTS as f64 / started.elapsed().as_secs_f64();
    if let Some(reader) = reader {
        tokio::time::timeout(Duration::from_secs(60), reader).await???;
    }
    let to_handler = received
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .iter()
        .map(|(sent, at)| at.saturating_sub(Duration::from_nanos(*sent)))
        .collect();
    js.delete_stream(&stream_name).await?;
    Ok(Run {
        per_second,
        to_ack,
        to_handler,
    })
}

/// Stamps the handler time of every event, keyed by its payload's send time.
struct Stamp {
    origin: Instant,
    received: Arc<Mutex<Vec<(u64, Duration)>>>,
}

/// The payload lacks the send time.
#[derive(Debug, thiserror::Error)]
#[error("payload without a send time")]
struct NoSendTime;

impl EventHandler for Stamp {
    fn handle(
        &self,
        _tx: &rusqlite::Transaction<'_>,
        event: &Envelope,
    ) -> Result<(), HandlerError> {
        let sent = event.payload["sent"]
            .as_u64()
            .ok_or_else(|| HandlerError::new(NoSendTime))?;
        if let Ok(mut r) = self.received.lock() {
            r.push((sent, self.origin.elapsed()));
        }
        Ok(())
    }
}

/// Event `t`'s next event, carrying its send time.
fn bench_event(t: usize, sent: Duration) -> anyhow::Result<OutgoingEvent> {
    Ok(OutgoingEvent {
        event_type: "task.progressed".parse()?,
        schema_version: SchemaVersion::new(1, 0),
        shard: PartitionId((t % 16) as u32),
        ordering_key: Some(format!("k{t}")),
        epoch: FencingToken::new(1),
        valid_until: coord_client::mono_now() + Duration::from_secs(3600),
        causation_id: None,
        correlation_id: None,
        payload: serde_json::json!({ "sent": sent.as_nanos() as u64 }),
        also_as: None,
    })
}

/// Ours: IN_FLIGHT tasks, one ordering key each, through `Publisher`; a `Consumer` applies
/// every event in a SQLite transaction and timestamps it.
async fn our_run(
    url: &str,
    dir: &std::path::Path,
    round: usize,
    with_consumer: bool,
) -> anyhow::Result<Run> {
    let config = NatsBusConfig::new(url);
    let bus: Arc<dyn EventBus> = Arc::new(NatsEventBus::connect(config).await?);
    let subjects = Subjects::new(format!("bench{round}"))?;
    let topology = Topology::new(subjects.clone(), Durability::SingleServer);
    topology.provision(bus.as_ref()).await?;
    let event_type = "task.progressed".parse()?;
    let registry = Arc::new(SchemaRegistry::new().with(
        event_type,
        SchemaVersion::new(1, 0),
        Schema::from_json(&serde_json::json!({"type": "object", "required": ["sent"]}))?,
    ));
    let publisher = Publisher::start(
        bus.clone(),
        PublisherConfig::new(
            NodeId::new("bench")?,
            subjects.clone(),
            dir.join(format!("outbox{round}.db")),
        ),
        registry.clone(),
        PublisherMetrics::register(),
    )?;
    let origin = Instant::now();
    let received: Arc<Mutex<Vec<(u64, Duration)>>> = Arc::default();
    let consumer = if with_consumer {
        Some(
            Consumer::start(
                bus.clone(),
                ConsumerConfig::new(
                    "bench",
                    topology.events_stream(),
                    vec![subjects.lifecycle_filter(Level::Any, Level::Any, Level::Any, Level::Any)],
                    subjects.clone(),
                    dir.join(format!("consumer{round}.db")),
                ),
                registry,
                Arc::new(Stamp {
                    origin,
                    received: received.clone(),
                }),
                ConsumerMetrics::register("bench"),
            )
            .await?,
        )
    } else {
        None
    };
    // Warm-up, not measured: one event per key (reserves its first sequence block).
    let warm_up = (0..IN_FLIGHT).map(|t| {
        let publisher = publisher.clone();
        async move {
            publisher.publish(bench_event(t, origin.elapsed())?).await?;
            anyhow::Ok(())
        }
    });
    for r in futures::future::join_all(warm_up).await {
        r?;
    }
    let started = Instant::now();
    let tasks: Vec<_> = (0..IN_FLIGHT)
        .map(|t| {
            let publisher = publisher.clone();
            tokio::spawn(async move {
                let mut to_ack = Vec::new();
                for _ in (t..EVENTS).step_by(IN_FLIGHT) {
                    let sent = origin.elapsed();
                    publisher.publish(bench_event(t, sent)?).await?;
                    to_ack.push(origin.elapsed() - sent);
                }
                anyhow::Ok(to_ack)
            })
        })
        .collect();
    let mut to_ack = Vec::new();
    for t in tasks {
        to_ack.extend(t.await??);
    }
    let per_second = EVENTS as f64 / started.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(120);
    while with_consumer
        && received
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .len()
            < EVENTS
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "consumer did not apply every event"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some(consumer) = consumer {
        consumer.stop().await;
    }
    publisher.close();
    let to_handler = received
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .iter()
        .map(|(sent, at)| at.saturating_sub(Duration::from_nanos(*sent)))
        .collect();
    Ok(Run {
        per_second,
        to_ack,
        to_handler,
    })
}
