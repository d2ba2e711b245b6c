//! Publisher to consumer on a real durable nats-server: round trip, dedup, order, dead letters,
//! dual publish, handler errors, shadow mode, and what the publisher refuses.

use crate::fixtures;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bus_client::{Consumer, Delivered, PublishError, Publisher, WhenFull};
use cluster_core::event::{
    BusMessage, DeadLetterReason, Envelope, SchemaVersion, SubscriptionSpec,
};
use coord_client::mono_now;
use fixtures::*;
use serde_json::json;
use testkit::{NatsOptions, NatsServer};

async fn server() -> NatsServer {
    NatsServer::start_with(NatsOptions::durable())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_publisher_to_consumer() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let nats = server().await;
    let files = Files::new();
    let bus = bus(&nats.url()).await;
    let subjects = subjects();
    topology(&subjects).provision(bus.as_ref()).await.unwrap();
    let metrics = TestMetrics::new();
    let publisher = Publisher::start(
        bus.clone(),
        publisher_config("node-a", &subjects, &files.path("outbox.db")),
        registry(),
        metrics.publisher(),
    )
    .unwrap();

    let receipt = {
        tracing::info!("publish resolves once JetStream acknowledged it");
        let receipt = publisher.publish(event(3, "task-1", 7, 1)).await.unwrap();
        assert!(matches!(
            receipt.delivered,
            Delivered::Acked {
                duplicate: false,
                ..
            }
        ));
        assert_eq!(receipt.sequence, 1);
        assert_eq!(receipt.event_id.version(), 7);
        assert_eq!(
            metrics.counter("event_bus_publish_total", &[("status", "acked")]),
            1
        );
        receipt
    };
    {
        tracing::info!("the consumer applies it with the envelope the publisher stamped");
        let db = files.path("consumer.db");
        let _consumer = Consumer::start(
            bus.clone(),
            consumer_config("c1", &subjects, &db),
            registry(),
            RecordingHandler::new(),
            metrics.consumer("c1"),
        )
        .await
        .unwrap();
        eventually("applied", Duration::from_secs(10), || {
            effects(&db).len() == 1
        })
        .await;
        let e = &effects(&db)[0];
        assert_eq!(e.event_id, receipt.event_id.to_string());
        assert_eq!(
            (e.key.as_deref(), e.epoch, e.sequence, e.major),
            (Some("task-1"), 7, 1, 1)
        );
        assert_eq!(
            metrics.counter(
                "event_bus_consumed_total",
                &[("consumer", "c1"), ("outcome", "applied")]
            ),
            1
        );
    }
    {
        tracing::info!("the subject follows the taxonomy");
        let spec = SubscriptionSpec::new(topology(&subjects).events_stream(), "peek", vec![]);
        let mut deliveries = bus.subscribe(&spec).await.unwrap();
        let d =
            testkit::event_bus::recv(&mut deliveries, "the event", Duration::from_secs(5)).await;
        assert_eq!(
            d.subject,
            format!("{}.v1.lifecycle.task.p3.started", subjects.prefix())
        );
        let envelope = Envelope::decode(&d.payload).unwrap();
        assert_eq!(envelope.node_id.as_str(), "node-a");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resent_event_id_is_stored_and_applied_once() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let nats = server().await;
    let files = Files::new();
    let bus = bus(&nats.url()).await;
    let subjects = subjects();
    let topo = topology(&subjects);
    topo.provision(bus.as_ref()).await.unwrap();
    let publisher = Publisher::start(
        bus.clone(),
        publisher_config("node-a", &subjects, &files.path("outbox.db")),
        registry(),
        TestMetrics::new().publisher(),
    )
    .unwrap();
    let receipt = publisher.publish(event(1, "k", 1, 1)).await.unwrap();
    let Delivered::Acked {
        stream_sequence, ..
    } = receipt.delivered
    else {
        panic!("not acked: {receipt:?}");
    };
    {
        tracing::info!("re-sending the same event id is a duplicate at the server");
        let spec = SubscriptionSpec::new(topo.events_stream(), "peek", vec![]);
        let mut deliveries = bus.subscribe(&spec).await.unwrap();
        let original =
            testkit::event_bus::recv(&mut deliveries, "original", Duration::from_secs(5)).await;
        let again = bus
            .publish(BusMessage {
                subject: cluster_core::event::Subject::parse(&original.subject).unwrap(),
                message_id: receipt.event_id.to_string(),
                payload: original.payload.clone(),
            })
            .await
            .unwrap();
        assert!(again.duplicate);
        assert_eq!(again.sequence, stream_sequence);
    }
    {
        tracing::info!("re-sent after the server forgot the id: stored twice, applied once");
        let spec = SubscriptionSpec::new(topo.events_stream(), "peek2", vec![]);
        let mut deliveries = bus.subscribe(&spec).await.unwrap();
        let original =
            testkit::event_bus::recv(&mut deliveries, "original", Duration::from_secs(5)).await;
        let late = bus
            .publish(BusMessage {
                subject: cluster_core::event::Subject::parse(&original.subject).unwrap(),
                message_id: format!("{}-late", receipt.event_id),
                payload: original.payload.clone(),
            })
            .await
            .unwrap();
        assert!(!late.duplicate);
        let db = files.path("consumer.db");
        let metrics = TestMetrics::new();
        let _consumer = Consumer::start(
            bus.clone(),
            consumer_config("c", &subjects, &db),
            registry(),
            RecordingHandler::new(),
            metrics.consumer("c"),
        )
        .await
        .unwrap();
        eventually("both deliveries decided", Duration::from_secs(10), || {
            metrics.counter(
                "event_bus_consumed_total",
                &[("consumer", "c"), ("outcome", "duplicate")],
            ) >= 1
        })
        .await;
        // Settle: late deliveries are duplicates, nothing else is applied.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(effects(&db).len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_order_holds_with_concurrent_publishers() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let nats = server().await;
    let files = Files::new();
    let bus = bus(&nats.url()).await;
    let subjects = subjects();
    topology(&subjects).provision(bus.as_ref()).await.unwrap();
    let publisher = Publisher::start(
        bus.clone(),
        publisher_config("node-a", &subjects, &files.path("outbox.db")),
        registry(),
        TestMetrics::new().publisher(),
    )
    .unwrap();
    let resolved = {
        tracing::info!("8 tasks publish to the same 4 keys at once");
        let tasks: Vec<_> = (0..8)
            .map(|t| {
                let publisher = publisher.clone();
                tokio::spawn(async move {
                    let mut ids = Vec::new();
                    for i in 0..40 {
                        let key = format!("key-{}", (t + i) % 4);
                        let r = publisher
                            .publish(event(2, &key, 1, i as u64))
                            .await
                            .unwrap();
                        ids.push(r.event_id.to_string());
                    }
                    ids
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    };
    {
        tracing::info!("every resolved event is applied once, each key in sequence order");
        let db = files.path("consumer.db");
        let _consumer = Consumer::start(
            bus.clone(),
            consumer_config("c", &subjects, &db),
            registry(),
            RecordingHandler::new(),
            TestMetrics::new().consumer("c"),
        )
        .await
        .unwrap();
        eventually("all applied", Duration::from_secs(20), || {
            effects(&db).len() >= resolved.len()
        })
        .await;
        let applied = effects(&db);
        assert_ordered_once(&applied);
        let mut got: Vec<_> = applied.iter().map(|e| e.event_id.clone()).collect();
        let mut want = resolved;
        got.sort();
        want.sort();
        assert_eq!(got, want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_envelopes_and_unknown_majors_are_dead_lettered_with_the_reason() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let nats = server().await;
    let files = Files::new();
    let bus = bus(&nats.url()).await;
    let subjects = subjects();
    let topo = topology(&subjects);
    topo.provision(bus.as_ref()).await.unwrap();
    let good = {
        let publisher = Publisher::start(
            bus.clone(),
            publisher_config("node-a", &subjects, &files.path("outbox.db")),
            registry(),
            TestMetrics::new().publisher(),
        )
        .unwrap();
        publisher.publish(event(1, "k", 1, 1)).await.unwrap();
        let spec = SubscriptionSpec::new(topo.events_stream(), "peek", vec![]);
        let mut deliveries = bus.subscribe(&spec).await.unwrap();
        let d = testkit::event_bus::recv(&mut deliveries, "good", Duration::from_secs(5)).await;
        Envelope::decode(&d.payload).unwrap()
    };
    {
        tracing::info!("publish bad events straight on the bus");
        let raw = |subject: String, id: &str, payload: Vec<u8>| BusMessage {
            subject: cluster_core::event::Subject::parse(&subject).unwrap(),
            message_id: id.to_owned(),
            payload,
        };
        let p = subjects.prefix().as_str().to_owned();
        bus.publish(raw(
            format!("{p}.v1.lifecycle.task.p1.started"),
            "garbage",
            b"{not json".to_vec(),
        ))
        .await
        .unwrap();
        let mut v9 = good.clone();
        v9.event_id = cluster_core::event::EventId::v7(1, [9; 10]);
        v9.schema_version = SchemaVersion::new(9, 0);
        v9.ordering_key = Some("other".into());
        bus.publish(raw(
            format!("{p}.v9.lifecycle.task.p1.started"),
            "v9",
            v9.encode().unwrap(),
        ))
        .await
        .unwrap();
        let mut invalid = good.clone();
        invalid.event_id = cluster_core::event::EventId::v7(2, [2; 10]);
        invalid.payload = json!({"task": 5});
        invalid.ordering_key = Some("third".into());
        bus.publish(raw(
            format!("{p}.v1.lifecycle.task.p1.started"),
            "invalid",
            invalid.encode().unwrap(),
        ))
        .await
        .unwrap();
        let mismatch = good.clone();
        bus.publish(raw(
            format!("{p}.v2.lifecycle.task.p1.started"),
            "mismatch",
            mismatch.encode().unwrap(),
        ))
        .await
        .unwrap();
    }
    let metrics = TestMetrics::new();
    {
        tracing::info!("the consumer applies the good event and dead-letters the rest");
        let db = files.path("consumer.db");
        let _consumer = Consumer::start(
            bus.clone(),
            consumer_config("c", &subjects, &db),
            registry(),
            RecordingHandler::new(),
            metrics.consumer("c"),
        )
        .await
        .unwrap();
        eventually("four dead letters", Duration::from_secs(10), || {
            metrics.counter(
                "event_bus_consumed_total",
                &[("consumer", "c"), ("outcome", "dead_lettered")],
            ) == 4
        })
        .await;
        assert_eq!(effects(&db).len(), 1);
    }
    {
        tracing::info!("each dead letter names its reason and keeps the event");
        let letters = dead_letters(bus.as_ref(), &topo).await;
        let mut reasons: Vec<_> = letters.iter().map(|l| l.reason).collect();
        reasons.sort();
        assert_eq!(
            reasons,
            [
                DeadLetterReason::Malformed,
                DeadLetterReason::Malformed,
                DeadLetterReason::UnknownMajor,
                DeadLetterReason::SchemaInvalid
            ]
        );
        let garbage = letters
            .iter()
            .find(|l| l.raw.as_deref() == Some("{not json"))
            .unwrap();
        assert!(garbage.detail.contains("malformed"), "{}", garbage.detail);
        assert_eq!(garbage.delivered, 1);
        let unknown = letters
            .iter()
            .find(|l| l.reason == DeadLetterReason::UnknownMajor)
            .unwrap();
        assert_eq!(unknown.envelope.as_ref().unwrap().schema_version.major, 9);
        assert!(
            unknown.detail.contains("known: [1, 2]"),
            "{}",
            unknown.detail
        );
        for reason in ["malformed", "unknown_major", "schema_invalid"] {
            assert!(
                metrics.counter(
                    "event_bus_dead_letters_total",
                    &[("consumer", "c"), ("reason", reason)]
                ) >= 1
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_publish_sends_both_majors_and_consumers_apply_once() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let nats = server().await;
    let files = Files::new();
    let bus = bus(&nats.url()).await;
    let subjects = subjects();
    let topo = topology(&subjects);
    topo.provision(bus.as_ref()).await.unwrap();
    let publisher = Publisher::start(
        bus.clone(),
        publisher_config("node-a", &subjects, &files.path("outbox.db")),
        registry(),
        TestMetrics::new().publisher(),
    )
    .unwrap();
    let receipt = {
        tracing::info!("one event, published as v1 and v2");
        let mut e = event(1, "k", 1, 1);
        e.also_as = Some((SchemaVersion::new(2, 0), json!({"task_id": "k", "n": 1})));
        publisher.publish(e).await.unwrap()
    };
    {
        tracing::info!("the stream has both, with per-major message ids");
        let spec = SubscriptionSpec::new(topo.events_stream(), "peek", vec![]);
        let mut deliveries = bus.subscribe(&spec).await.unwrap();
        let a = testkit::event_bus::recv(&mut deliveries, "v1", Duration::from_secs(5)).await;
        let b = testkit::event_bus::recv(&mut deliveries, "v2", Duration::from_secs(5)).await;
        let (a, b) = (
            Envelope::decode(&a.payload).unwrap(),
            Envelope::decode(&b.payload).unwrap(),
        );
        assert_eq!((a.schema_version.major, b.schema_version.major), (1, 2));
        assert_eq!(a.event_id, b.event_id);
        assert_eq!(a.event_id, receipt.event_id);
    }
    {
        tracing::info!("a consumer of both majors applies it once");
        let db = files.path("consumer.db");
        let metrics = TestMetrics::new();
        let _consumer = Consumer::start(
            bus.clone(),
            consumer_config("c", &subjects, &db),
            registry(),
            RecordingHandler::new(),
            metrics.consumer("c"),
        )
        .await
        .unwrap();
        eventually("both decided", Duration::from_secs(10), || {
            metrics.counter(
                "event_bus_consumed_total",
                &[("consumer", "c"), ("outcome", "duplicate")],
            ) >= 1
        })
        .await;
        // Settle: late deliveries are duplicates, nothing else is applied.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(effects(&db).len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_error_holds_back_only_later_events_of_its_key() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let nats = server().await;
    let files = Files::new();
    let bus = bus(&nats.url()).await;
    let subjects = subjects();
    let topo = topology(&subjects);
    topo.provision(bus.as_ref()).await.unwrap();
    let publisher = Publisher::start(
        bus.clone(),
        publisher_config("node-a", &subjects, &files.path("outbox.db")),
        registry(),
        TestMetrics::new().publisher(),
    )
    .unwrap();
    {
        tracing::info!("flaky: n=1 fails twice; poison: n=1 always fails; calm: never fails");
        for n in 0..4 {
            for key in ["flaky", "poison", "calm"] {
                publisher.publish(event(1, key, 1, n)).await.unwrap();
            }
        }
    }
    let db = files.path("consumer.db");
    let metrics = TestMetrics::new();
    let flaky_failures = Arc::new(AtomicU32::new(0));
    let _consumer = {
        let failures = flaky_failures.clone();
        let handler = Arc::new(RecordingHandler {
            fail: Box::new(move |e: &Envelope| {
                let n = e.payload["n"].as_u64();
                match e.ordering_key.as_deref() {
                    Some("flaky") if n == Some(1) => failures.fetch_add(1, Ordering::SeqCst) < 2,
                    Some("poison") => n == Some(1),
                    _ => false,
                }
            }),
            delay: Duration::ZERO,
        });
        let mut config = consumer_config("c", &subjects, &db);
        config.retry.handler_attempts = 4;
        Consumer::start(
            bus.clone(),
            config,
            registry(),
            handler,
            metrics.consumer("c"),
        )
        .await
        .unwrap()
    };
    {
        tracing::info!("every key ends with all its events but the poison one, in order");
        eventually("11 applied", Duration::from_secs(30), || {
            effects(&db).len() == 11
        })
        .await;
        let applied = effects(&db);
        assert_ordered_once(&applied);
        let seqs = |key: &str| -> Vec<u64> {
            applied
                .iter()
                .filter(|e| e.key.as_deref() == Some(key))
                .map(|e| e.sequence)
                .collect()
        };
        assert_eq!(seqs("flaky"), [1, 2, 3, 4]);
        assert_eq!(seqs("calm"), [1, 2, 3, 4]);
        assert_eq!(seqs("poison"), [1, 3, 4]);
        tracing::info!("calm was not held back by the failing keys");
        let pos = |key: &str, seq: u64| {
            applied
                .iter()
                .position(|e| e.key.as_deref() == Some(key) && e.sequence == seq)
                .unwrap()
        };
        assert!(pos("calm", 4) < pos("flaky", 2), "calm waited for flaky");
    }
    {
        tracing::info!("the poison event was dead-lettered before max_deliver, with its count");
        let letters = dead_letters(bus.as_ref(), &topo).await;
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].reason, DeadLetterReason::HandlerFailed);
        assert_eq!(letters[0].delivered, 4);
        assert!(
            letters[0].detail.contains("handler refused"),
            "{}",
            letters[0].detail
        );
        assert_eq!(
            metrics.counter(
                "event_bus_dead_letters_total",
                &[("consumer", "c"), ("reason", "handler_failed")]
            ),
            1
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_consumer_reads_but_commits_nothing() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let nats = server().await;
    let files = Files::new();
    let bus = bus(&nats.url()).await;
    let subjects = subjects();
    topology(&subjects).provision(bus.as_ref()).await.unwrap();
    let publisher = Publisher::start(
        bus.clone(),
        publisher_config("node-a", &subjects, &files.path("outbox.db")),
        registry(),
        TestMetrics::new().publisher(),
    )
    .unwrap();
    for n in 0..5 {
        publisher.publish(event(1, "k", 1, n)).await.unwrap();
    }
    let db = files.path("consumer.db");
    {
        tracing::info!("shadow: every event read and acked, nothing committed");
        let metrics = TestMetrics::new();
        let mut config = consumer_config("orders", &subjects, &db);
        config.shadow = true;
        let consumer = Consumer::start(
            bus.clone(),
            config,
            registry(),
            RecordingHandler::new(),
            metrics.consumer("orders"),
        )
        .await
        .unwrap();
        eventually("5 shadow reads", Duration::from_secs(10), || {
            metrics.counter(
                "event_bus_consumed_total",
                &[("consumer", "orders"), ("outcome", "shadow")],
            ) == 5
        })
        .await;
        consumer.stop().await;
        assert!(effects(&db).is_empty());
    }
    {
        tracing::info!("the real consumer of the same name, shadow off, applies all of them");
        let _consumer = Consumer::start(
            bus.clone(),
            consumer_config("orders", &subjects, &db),
            registry(),
            RecordingHandler::new(),
            TestMetrics::new().consumer("orders"),
        )
        .await
        .unwrap();
        eventually("5 applied", Duration::from_secs(10), || {
            effects(&db).len() == 5
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_refuses_what_it_cannot_keep() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let mut nats = server().await;
    let files = Files::new();
    let bus = bus(&nats.url()).await;
    let subjects = subjects();
    topology(&subjects).provision(bus.as_ref()).await.unwrap();
    let metrics = TestMetrics::new();
    let mut config = publisher_config("node-a", &subjects, &files.path("outbox.db"));
    config.outbox_capacity = 2;
    config.when_full = WhenFull::Reject;
    let publisher = Publisher::start(bus.clone(), config, registry(), metrics.publisher()).unwrap();
    {
        tracing::info!("a payload that fails its schema");
        let mut e = event(1, "k", 1, 1);
        e.payload = json!({"task": "k"});
        assert!(matches!(
            publisher.publish(e).await,
            Err(PublishError::Invalid(_))
        ));
    }
    {
        tracing::info!("an unknown major");
        let mut e = event(1, "k", 1, 1);
        e.schema_version = SchemaVersion::new(5, 0);
        assert!(matches!(
            publisher.publish(e).await,
            Err(PublishError::Invalid(_))
        ));
    }
    {
        tracing::info!("a claim past its renew deadline");
        let mut e = event(1, "k", 1, 1);
        e.valid_until = mono_now();
        assert!(matches!(
            publisher.publish(e).await,
            Err(PublishError::ClaimExpired { .. })
        ));
    }
    {
        tracing::info!("a payload larger than the server accepts");
        let mut e = event(1, "k", 1, 1);
        e.payload = json!({"task": "x".repeat(bus.max_payload()), "n": 1});
        assert!(matches!(
            publisher.publish(e).await,
            Err(PublishError::TooLarge { .. })
        ));
        assert_eq!(
            metrics.counter("event_bus_publish_total", &[("status", "rejected")]),
            4
        );
    }
    {
        tracing::info!("server down: two events fit the outbox, the third is refused");
        nats.stop();
        for n in 0..2 {
            let r = publisher.publish(event(1, "k", 1, n)).await.unwrap();
            assert_eq!(r.delivered, Delivered::Outboxed);
        }
        let err = publisher.publish(event(1, "k", 1, 2)).await.unwrap_err();
        assert!(
            matches!(err, PublishError::OutboxFull { capacity: 2 }),
            "{err:?}"
        );
        assert_eq!(publisher.status().outbox_depth, 2);
        assert!(publisher.status().degraded);
    }
    {
        tracing::info!("server back: the outbox drains and degraded mode ends");
        nats.restart().await.unwrap();
        publisher
            .drain_shard(cluster_core::ids::PartitionId(1), Duration::from_secs(30))
            .await
            .unwrap();
        eventually("recovered", Duration::from_secs(10), || {
            !publisher.status().degraded
        })
        .await;
        assert_eq!(metrics.counter("event_bus_recoveries_total", &[]), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_outbox_never_takes_an_event_past_its_claim() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let mut nats = server().await;
    let files = Files::new();
    let bus = bus(&nats.url()).await;
    let subjects = subjects();
    topology(&subjects).provision(bus.as_ref()).await.unwrap();
    let metrics = TestMetrics::new();
    let mut config = publisher_config("node-a", &subjects, &files.path("outbox.db"));
    config.outbox_capacity = 1;
    config.when_full = WhenFull::Block(Duration::from_secs(30));
    let publisher = Publisher::start(bus.clone(), config, registry(), metrics.publisher()).unwrap();
    nats.stop();
    {
        tracing::info!("server down: the first event fills the outbox");
        let r = publisher.publish(event(1, "k", 1, 0)).await.unwrap();
        assert_eq!(r.delivered, Delivered::Outboxed);
        assert_eq!(
            metrics.gauge("event_bus_outbox_depth", &[]),
            1.0,
            "the outbox depth gauge follows the outbox"
        );
    }
    {
        tracing::info!("the next event waits for room, but its claim ends first: refused");
        let mut e = event(1, "k", 1, 1);
        e.valid_until = mono_now() + Duration::from_millis(300);
        let err = publisher.publish(e).await.unwrap_err();
        assert!(matches!(err, PublishError::ClaimExpired { .. }), "{err:?}");
        assert_eq!(
            publisher.status().outbox_depth,
            1,
            "nothing past its claim was committed"
        );
    }
    nats.restart().await.unwrap();
    publisher
        .drain_shard(cluster_core::ids::PartitionId(1), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(metrics.gauge("event_bus_outbox_depth", &[]), 0.0);
}
