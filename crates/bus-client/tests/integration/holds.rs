//! A key's hold (later events of a key wait behind its failing event) ends when that event is
//! dead-lettered, on every path: when the first dead-letter publish fails and a redelivery
//! publishes it, and when the process dies right after terminating the dead-lettered event.
//!
//! The crash is a child process (this test binary re-executed with `CHILD_ROLE` set) that
//! SIGKILLs itself right after the terminate; `child_consumer` does nothing in a normal run.

use crate::fixtures;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bus_client::{Consumer, ConsumerMetrics, Publisher};
use cluster_core::event::{DeadLetterReason, Envelope, EventBus, Subjects};
use fixtures::faulty_bus::{Fault, FaultyBus, unavailable};
use fixtures::*;
use testkit::{NatsOptions, NatsServer};

const ROLE: &str = "CHILD_ROLE";

/// The handler fails every event whose payload has `n == 0` (the poison one).
fn poison_handler() -> Arc<RecordingHandler> {
    Arc::new(RecordingHandler {
        fail: Box::new(|e: &Envelope| e.payload["n"] == 0),
        delay: Duration::ZERO,
    })
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} not set"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_ends_when_the_first_dead_letter_publish_failed() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let nats = NatsServer::start_with(NatsOptions::durable())
        .await
        .unwrap();
    let files = Files::new();
    let real = bus(&nats.url()).await;
    let subjects = subjects();
    let topo = topology(&subjects);
    topo.provision(real.as_ref()).await.unwrap();
    let publisher = Publisher::start(
        real.clone(),
        publisher_config("node-a", &subjects, &files.path("outbox.db")),
        registry(),
        TestMetrics::new().publisher(),
    )
    .unwrap();
    let db = files.path("consumer.db");
    let metrics = TestMetrics::new();
    let _consumer = {
        let failed_once = AtomicBool::new(false);
        let bus: Arc<dyn EventBus> = Arc::new(FaultyBus::new(real.clone(), move |m| {
            if m.subject.as_str().contains(".deadletter.")
                && !failed_once.swap(true, Ordering::SeqCst)
            {
                Fault::Fail(unavailable())
            } else {
                Fault::Pass
            }
        }));
        let mut config = consumer_config("c", &subjects, &db);
        config.retry.handler_attempts = 3;
        Consumer::start(
            bus,
            config,
            registry(),
            poison_handler(),
            metrics.consumer("c"),
        )
        .await
        .unwrap()
    };
    {
        tracing::info!("the poison event fails 3 times; its first dead letter is refused");
        publisher.publish(event(1, "k", 1, 0)).await.unwrap();
        eventually("the poison dead-lettered", Duration::from_secs(30), || {
            metrics.counter(
                "event_bus_dead_letters_total",
                &[("consumer", "c"), ("reason", "handler_failed")],
            ) == 1
        })
        .await;
    }
    {
        tracing::info!("a later event of the same key is applied");
        let next = publisher.publish(event(1, "k", 1, 1)).await.unwrap();
        eventually("the next event applied", Duration::from_secs(15), || {
            effects(&db)
                .iter()
                .any(|e| e.event_id == next.event_id.to_string())
        })
        .await;
        assert_eq!(effects(&db).len(), 1);
        let letters = dead_letters(real.as_ref(), &topo).await;
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].reason, DeadLetterReason::HandlerFailed);
    }
}

/// Child: a consumer with the poison handler that SIGKILLs its process right after the first
/// terminate (of the dead-lettered poison event) was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_consumer() {
    if std::env::var(ROLE).as_deref() != Ok("consumer") {
        return;
    }
    let subjects = Subjects::new(env("PREFIX")).unwrap();
    let real = bus(&env("NATS_URL")).await;
    let db = std::path::PathBuf::from(env("DB"));
    let bus: Arc<dyn EventBus> = Arc::new(FaultyBus::new(real, |_| Fault::Pass).after_term(|| {
        // Let the terminate leave the socket, then die before anything else runs.
        std::thread::sleep(Duration::from_millis(200));
        // SAFETY: kill(2) on our own pid; no memory is touched.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }));
    let mut config = consumer_config("c", &subjects, &db);
    config.retry.handler_attempts = 2;
    let _consumer = Consumer::start(
        bus,
        config,
        registry(),
        poison_handler(),
        ConsumerMetrics::register("c"),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(600)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_ends_when_the_process_died_right_after_the_terminate() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let nats = NatsServer::start_with(NatsOptions::durable())
        .await
        .unwrap();
    let files = Files::new();
    let real = bus(&nats.url()).await;
    let subjects = subjects();
    let topo = topology(&subjects);
    topo.provision(real.as_ref()).await.unwrap();
    let publisher = Publisher::start(
        real.clone(),
        publisher_config("node-a", &subjects, &files.path("outbox.db")),
        registry(),
        TestMetrics::new().publisher(),
    )
    .unwrap();
    let db = files.path("consumer.db");
    {
        tracing::info!(
            "a consumer process dead-letters the poison event and dies at the terminate"
        );
        publisher.publish(event(1, "k", 1, 0)).await.unwrap();
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
        let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
            .await
            .unwrap();
        assert!(!status.success(), "the child must have been killed");
        let letters = dead_letters(real.as_ref(), &topo).await;
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].reason, DeadLetterReason::HandlerFailed);
    }
    {
        tracing::info!("restarted, the consumer applies a later event of the same key");
        let _consumer = Consumer::start(
            real.clone(),
            consumer_config("c", &subjects, &db),
            registry(),
            poison_handler(),
            TestMetrics::new().consumer("c"),
        )
        .await
        .unwrap();
        let next = publisher.publish(event(1, "k", 1, 1)).await.unwrap();
        eventually("the next event applied", Duration::from_secs(15), || {
            effects(&db)
                .iter()
                .any(|e| e.event_id == next.event_id.to_string())
        })
        .await;
        assert_eq!(effects(&db).len(), 1);
    }
}
