//! SIGKILL mid-stream, in separate processes: a killed publisher loses nothing it resolved and
//! never reuses a sequence; a killed consumer applies nothing twice and misses nothing.
//!
//! The children are this test binary re-executed with `CHILD_ROLE` set: `child_publisher` and
//! `child_consumer` do nothing in a normal run.

use crate::fixtures;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bus_client::{Consumer, ConsumerMetrics, Delivered, Publisher, PublisherMetrics};
use cluster_core::event::Subjects;
use fixtures::*;
use testkit::{FaultProxy, Mode, NatsOptions, NatsServer};

const ROLE: &str = "CHILD_ROLE";
const KEYS: usize = 5;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} not set"))
}

/// Child: publishes on KEYS keys as fast as acks come, printing each resolved event, until
/// killed (`run`), or publishes 10 more per key, drains its outbox and prints DONE (`finish`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_publisher() {
    if std::env::var(ROLE).as_deref() != Ok("publisher") {
        return;
    }
    let subjects = Subjects::new(env("PREFIX")).unwrap();
    let bus = bus(&env("NATS_URL")).await;
    let config = publisher_config("node-a", &subjects, std::path::Path::new(&env("OUTBOX")));
    let publisher =
        Publisher::start(bus, config, registry(), PublisherMetrics::register()).unwrap();
    let finish = env("MODE") == "finish";
    let tasks: Vec<_> = (0..KEYS)
        .map(|k| {
            let publisher = publisher.clone();
            tokio::spawn(async move {
                let key = format!("key-{k}");
                let mut n = 0;
                while !finish || n < 10 {
                    let r = publisher.publish(event(1, &key, 1, n)).await.unwrap();
                    let how = match r.delivered {
                        Delivered::Outboxed => "outboxed",
                        Delivered::Acked { .. } => "acked",
                    };
                    println!("RESOLVED {} {key} {} {how}", r.event_id, r.sequence);
                    n += 1;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    while publisher.status().outbox_depth > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("DONE");
}

/// Child: runs a consumer with a slow handler until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_consumer() {
    if std::env::var(ROLE).as_deref() != Ok("consumer") {
        return;
    }
    let subjects = Subjects::new(env("PREFIX")).unwrap();
    let bus = bus(&env("NATS_URL")).await;
    let db = std::path::PathBuf::from(env("DB"));
    let handler = Arc::new(RecordingHandler {
        fail: Box::new(|_| false),
        delay: Duration::from_millis(3),
    });
    let _consumer = Consumer::start(
        bus,
        consumer_config("crashy", &subjects, &db),
        registry(),
        handler,
        ConsumerMetrics::register("crashy"),
    )
    .await
    .unwrap();
    println!("CONSUMING");
    tokio::time::sleep(Duration::from_secs(600)).await;
}

fn spawn_child(test: &str, vars: &[(&str, String)]) -> Child {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    let test = testkit::process::test_name(module_path!(), test);
    cmd.args(["--exact", &test, "--nocapture", "--test-threads=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// Reads the child's stdout on a thread; resolved events go to the returned channel.
fn resolved_lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            // libtest may print "test NAME ... " before the child's first line.
            if let Some((_, rest)) = line.split_once("RESOLVED ") {
                let _ = tx.send(rest.to_owned());
            } else if line.contains("DONE") {
                let _ = tx.send("DONE".to_owned());
            }
        }
    });
    rx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_sigkilled_mid_stream_loses_nothing_it_resolved() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let nats = NatsServer::start_with(NatsOptions::durable())
        .await
        .unwrap();
    // The children reach NATS through a proxy, so the test can cut them off.
    let proxy = FaultProxy::start(nats.client_addr()).unwrap();
    let files = Files::new();
    let subjects = subjects();
    let direct = bus(&nats.url()).await;
    topology(&subjects)
        .provision(direct.as_ref())
        .await
        .unwrap();
    let vars = |mode: &str| {
        vec![
            (ROLE, "publisher".to_owned()),
            ("NATS_URL", proxy.url("nats")),
            ("OUTBOX", files.path("outbox.db").display().to_string()),
            ("PREFIX", subjects.prefix().to_string()),
            ("MODE", mode.to_owned()),
        ]
    };
    let mut resolved: Vec<String> = Vec::new();
    {
        tracing::info!(
            "a publisher process runs; cut off from NATS after 200 resolved events, SIGKILLed once 200 more went to its outbox"
        );
        let mut child = spawn_child("child_publisher", &vars("run"));
        let lines = resolved_lines(&mut child);
        let mut outboxed = 0;
        while outboxed < 200 {
            if resolved.len() == 200 {
                proxy.set_mode(Mode::Blackhole);
            }
            let line = lines
                .recv_timeout(Duration::from_secs(30))
                .expect("publisher child stalled");
            if line.ends_with(" outboxed") {
                outboxed += 1;
            }
            resolved.push(line);
        }
        child.kill().unwrap();
        child.wait().unwrap();
        // Lines written before the kill were resolved too.
        resolved.extend(lines.try_iter().filter(|l| l != "DONE"));
    }
    let first_run = resolved.len();
    {
        tracing::info!(
            first_run,
            "a new publisher process on the same outbox publishes more"
        );
        proxy.heal();
        let mut child = spawn_child("child_publisher", &vars("finish"));
        let lines = resolved_lines(&mut child);
        loop {
            let line = lines
                .recv_timeout(Duration::from_secs(30))
                .expect("second publisher stalled");
            if line == "DONE" {
                break;
            }
            resolved.push(line);
        }
        child.wait().unwrap();
        assert_eq!(resolved.len(), first_run + KEYS * 10);
    }
    {
        tracing::info!("every resolved event is applied once, keys in order across both runs");
        let db = files.path("consumer.db");
        let _consumer = Consumer::start(
            direct.clone(),
            consumer_config("c", &subjects, &db),
            registry(),
            RecordingHandler::new(),
            TestMetrics::new().consumer("c"),
        )
        .await
        .unwrap();
        let ids: std::collections::HashSet<String> = resolved
            .iter()
            .map(|l| l.split(' ').next().unwrap().to_owned())
            .collect();
        assert_eq!(ids.len(), resolved.len(), "an event id resolved twice");
        eventually("all resolved applied", Duration::from_secs(30), || {
            let applied: std::collections::HashSet<String> =
                effects(&db).into_iter().map(|e| e.event_id).collect();
            ids.is_subset(&applied)
        })
        .await;
        assert_ordered_once(&effects(&db));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_sigkilled_mid_stream_applies_everything_once() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let nats = NatsServer::start_with(NatsOptions::durable())
        .await
        .unwrap();
    let files = Files::new();
    let subjects = subjects();
    let direct = bus(&nats.url()).await;
    topology(&subjects)
        .provision(direct.as_ref())
        .await
        .unwrap();
    const EVENTS: usize = 600;
    let ids: std::collections::HashSet<String> = {
        tracing::info!("publish {EVENTS} events on 10 keys");
        let publisher = Publisher::start(
            direct.clone(),
            publisher_config("node-a", &subjects, &files.path("outbox.db")),
            registry(),
            TestMetrics::new().publisher(),
        )
        .unwrap();
        let mut ids = std::collections::HashSet::new();
        for n in 0..EVENTS {
            let key = format!("key-{}", n % 10);
            ids.insert(
                publisher
                    .publish(event(1, &key, 1, n as u64))
                    .await
                    .unwrap()
                    .event_id
                    .to_string(),
            );
        }
        ids
    };
    let db = files.path("consumer.db");
    {
        tracing::info!("a consumer process applies; SIGKILL after 200");
        let mut child = spawn_child(
            "child_consumer",
            &[
                (ROLE, "consumer".to_owned()),
                ("NATS_URL", nats.url()),
                ("DB", db.display().to_string()),
                ("PREFIX", subjects.prefix().to_string()),
            ],
        );
        eventually("200 applied by the child", Duration::from_secs(30), || {
            effects(&db).len() >= 200
        })
        .await;
        child.kill().unwrap();
        child.wait().unwrap();
        let applied = effects(&db).len();
        assert!(
            applied < EVENTS,
            "killed too late to be mid-stream: {applied}"
        );
    }
    {
        tracing::info!("a new consumer with the same name and database finishes the job");
        let _consumer = Consumer::start(
            direct.clone(),
            consumer_config("crashy", &subjects, &db),
            registry(),
            RecordingHandler::new(),
            TestMetrics::new().consumer("crashy"),
        )
        .await
        .unwrap();
        eventually("all applied", Duration::from_secs(30), || {
            effects(&db).len() >= EVENTS
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let applied = effects(&db);
        assert_ordered_once(&applied);
        let got: std::collections::HashSet<String> =
            applied.into_iter().map(|e| e.event_id).collect();
        assert_eq!(got, ids);
    }
}
