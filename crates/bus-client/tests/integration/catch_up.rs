//! Catch-up after a crash spans the whole outstanding range, however many stream sequences it
//! covers: a consumer of one shard of 64 interleaved shards is SIGKILLed with 200 deliveries
//! outstanding over about 12,800 stream sequences; restarted, it applies every event exactly
//! once, each key in order, although newer events of the same keys are delivered at once and
//! the outstanding ones only after their ack wait.
//!
//! The crashed consumer is a child process (this test binary re-executed with `CHILD_ROLE`
//! set); `child_consumer` does nothing in a normal run.

use crate::fixtures;

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bus_client::{Consumer, ConsumerConfig, ConsumerMetrics, Delivered, Publisher};
use cluster_core::event::{BusMessage, Level, Subjects};
use cluster_core::ids::PartitionId;
use fixtures::*;
use testkit::NatsServer;

const ROLE: &str = "CHILD_ROLE";
const SHARDS: u32 = 64;
const OUR_SHARD: u32 = 1;
/// Events of our shard published before the consumer dies: all outstanding then, below
/// `max_ack_pending`, so that newer deliveries are not held back.
const OUTSTANDING: u64 = 200;
/// All events of our shard.
const EVENTS: u64 = 300;
const KEYS: u64 = 8;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} not set"))
}

/// A consumer of our shard only, with a short ack wait.
fn shard_consumer(subjects: &Subjects, db: &std::path::Path) -> ConsumerConfig {
    let mut config = consumer_config("shard-1", subjects, db);
    config.filters = vec![subjects.lifecycle_filter(
        Level::Any,
        Level::Any,
        Level::Is(PartitionId(OUR_SHARD)),
        Level::Any,
    )];
    config.ack_wait = Duration::from_secs(3);
    config.max_ack_pending = 256;
    config
}

/// Child: a consumer whose handler never returns from its first event, so every delivery it
/// pulls stays outstanding until it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_consumer() {
    if std::env::var(ROLE).as_deref() != Ok("consumer") {
        return;
    }
    let subjects = Subjects::new(env("PREFIX")).unwrap();
    let db = std::path::PathBuf::from(env("DB"));
    let handler = Arc::new(RecordingHandler {
        fail: Box::new(|_| false),
        delay: Duration::from_secs(600),
    });
    let _consumer = Consumer::start(
        bus(&env("NATS_URL")).await,
        shard_consumer(&subjects, &db),
        registry(),
        handler,
        ConsumerMetrics::register("shard-1"),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(600)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_applies_every_outstanding_event_once_in_key_order_however_far_apart() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    // Not the durable server: the consumer dies here, not the server.
    let nats = NatsServer::start().await.unwrap();
    let files = Files::new();
    let subjects = subjects();
    let direct = bus(&nats.url()).await;
    let topo = topology(&subjects);
    topo.provision(direct.as_ref()).await.unwrap();
    let publisher = Publisher::start(
        direct.clone(),
        publisher_config("node-a", &subjects, &files.path("outbox.db")),
        registry(),
        TestMetrics::new().publisher(),
    )
    .unwrap();
    let mut ids = Vec::new();
    // Each event of our shard is followed by one of each other shard.
    let publish_rounds = |rounds: std::ops::Range<u64>| {
        let (publisher, direct, subjects) = (publisher.clone(), direct.clone(), subjects.clone());
        async move {
            let mut ids = Vec::new();
            let mut last_sequence = 0;
            for n in rounds {
                let receipt = publisher
                    .publish(event(OUR_SHARD, &format!("key-{}", n % KEYS), 1, n))
                    .await
                    .unwrap();
                ids.push(receipt.event_id.to_string());
                if let Delivered::Acked {
                    stream_sequence, ..
                } = receipt.delivered
                {
                    last_sequence = stream_sequence;
                }
                let others = (1..SHARDS).map(|s| {
                    let subject = task_started().subject(&subjects, 1, PartitionId(OUR_SHARD + s));
                    direct.publish(BusMessage {
                        subject,
                        message_id: format!("other-{n}-{s}"),
                        payload: b"another shard".to_vec(),
                    })
                });
                for r in futures::future::join_all(others).await {
                    r.unwrap();
                }
            }
            (ids, last_sequence)
        }
    };
    let db = files.path("consumer.db");
    let stream = topo.events_stream();
    {
        tracing::info!(
            "{OUTSTANDING} events of shard 1 over about {} stream sequences",
            OUTSTANDING * u64::from(SHARDS)
        );
        let (first_ids, last_sequence) = publish_rounds(0..OUTSTANDING).await;
        ids.extend(first_ids);
        tracing::info!("a consumer process pulls them all, applies none, and is SIGKILLed");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                &testkit::process::test_name(module_path!(), "child_consumer"),
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ROLE, "consumer")
            .env("NATS_URL", nats.url())
            .env("DB", db.display().to_string())
            .env("PREFIX", subjects.prefix().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut position = direct.consumer_position(&stream, "shard-1").await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !matches!(&position, Ok(p) if p.delivered >= last_sequence) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the child did not pull its deliveries: {position:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            position = direct.consumer_position(&stream, "shard-1").await;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        tracing::info!(?position, "killed with deliveries outstanding");
        let position = position.unwrap();
        assert!(
            position.delivered - position.ack_floor > 10_000,
            "{position:?}"
        );
        assert!(effects(&db).is_empty());
    }
    let last_sequence = {
        tracing::info!("newer events of the same keys, deliverable at once");
        let (later_ids, last_sequence) = publish_rounds(OUTSTANDING..EVENTS).await;
        ids.extend(later_ids);
        last_sequence
    };
    let ids: HashSet<String> = ids.into_iter().collect();
    {
        tracing::info!("restarted, it applies every event once, each key in order");
        let _consumer = Consumer::start(
            direct.clone(),
            shard_consumer(&subjects, &db),
            registry(),
            RecordingHandler::new(),
            TestMetrics::new().consumer("shard-1"),
        )
        .await
        .unwrap();
        let mut acked_all = false;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        // Until every delivery, the late redeliveries included, was acknowledged.
        while !acked_all {
            assert!(
                tokio::time::Instant::now() < deadline,
                "not all acknowledged; {} of {EVENTS} applied",
                effects(&db).len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            acked_all = matches!(
                direct.consumer_position(&stream, "shard-1").await,
                Ok(p) if p.ack_floor >= last_sequence
            );
        }
        let applied = effects(&db);
        assert_ordered_once(&applied);
        let got: HashSet<String> = applied.into_iter().map(|e| e.event_id).collect();
        let missing = ids.difference(&got).count();
        assert_eq!(missing, 0, "{missing} of {EVENTS} events never applied");
        assert_eq!(got, ids);
    }
}
