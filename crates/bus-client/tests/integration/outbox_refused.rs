//! An outbox entry the bus refuses for good holds its key: later entries of that key stay
//! queued (they would otherwise reach consumers without it, and nobody could tell), other keys
//! drain, and the gap is visible to the app (`Publisher::held_keys`, `status().held_keys`) and
//! in `event_bus_outbox_held_keys`, until the app releases the key.

use crate::fixtures;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bus_client::{Delivered, Publisher};
use cluster_core::event::BusError;
use cluster_core::ids::PartitionId;
use fixtures::faulty_bus::{Fault, FaultyBus, unavailable};
use fixtures::*;
use serde_json::json;
use testkit::{NatsOptions, NatsServer};

/// Payloads above this are refused for good by the wrapper, once NATS is back.
const LIMIT: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_outbox_entry_holds_its_key_and_the_gap_is_visible() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let nats = NatsServer::start_with(NatsOptions::durable())
        .await
        .unwrap();
    let files = Files::new();
    let subjects = subjects();
    let real = bus(&nats.url()).await;
    topology(&subjects).provision(real.as_ref()).await.unwrap();
    let down = Arc::new(AtomicBool::new(true));
    let faulty = {
        let down = down.clone();
        Arc::new(FaultyBus::new(real.clone(), move |m| {
            if down.load(Ordering::SeqCst) {
                Fault::Fail(unavailable())
            } else if m.payload.len() > LIMIT {
                Fault::Fail(BusError::PayloadTooLarge {
                    size: m.payload.len(),
                    max: LIMIT,
                })
            } else {
                Fault::Pass
            }
        }))
    };
    let metrics = TestMetrics::new();
    let publisher = Publisher::start(
        faulty.clone(),
        publisher_config("node-a", &subjects, &files.path("outbox.db")),
        registry(),
        metrics.publisher(),
    )
    .unwrap();
    let published = |tag: &str| {
        faulty
            .acked_payloads()
            .iter()
            .filter(|p| p.contains(tag))
            .count()
    };
    {
        tracing::info!("NATS unreachable: A1 (too large for the server), A2, A3 and B1 queue");
        let mut a1 = event(2, "A", 1, 0);
        a1.payload = json!({"task": format!("A1-{}", "x".repeat(LIMIT)), "n": 0});
        for e in [
            a1,
            tagged(event(2, "A", 1, 1), "A2"),
            tagged(event(2, "A", 1, 2), "A3"),
            tagged(event(4, "B", 1, 0), "B1"),
        ] {
            let r = publisher.publish(e).await.unwrap();
            assert_eq!(r.delivered, Delivered::Outboxed);
        }
        assert_eq!(publisher.status().outbox_depth, 4);
    }
    {
        tracing::info!("NATS back: A1 is refused for good; B1 drains, A2 and A3 stay queued");
        down.store(false, Ordering::SeqCst);
        // B1 leaves the outbox in the same drain pass that refuses A1.
        publisher
            .drain_shard(PartitionId(4), Duration::from_secs(20))
            .await
            .unwrap();
        assert_eq!(published("B1"), 1);
        assert_eq!(
            (published("A2"), published("A3")),
            (0, 0),
            "later entries of key A were published although A1 was refused"
        );
        assert_eq!(publisher.status().outbox_depth, 2);
        let held = publisher.held_keys();
        assert_eq!(held.len(), 1, "{held:?}");
        assert_eq!(held[0].key, "A");
        assert_eq!(held[0].shard, PartitionId(2));
        assert!(held[0].error.contains("exceeds"), "{}", held[0].error);
        assert_eq!(publisher.status().held_keys, 1);
        assert_eq!(metrics.gauge("event_bus_outbox_held_keys", &[]), 1.0);
        eventually(
            "degraded mode left: only held entries wait",
            Duration::from_secs(10),
            || !publisher.status().degraded,
        )
        .await;
    }
    {
        tracing::info!("a new event of key A queues behind the gap; other keys publish at once");
        let r = publisher
            .publish(tagged(event(2, "A", 1, 3), "A4"))
            .await
            .unwrap();
        assert_eq!(r.delivered, Delivered::Outboxed);
        let r = publisher
            .publish(tagged(event(4, "B", 1, 1), "B2"))
            .await
            .unwrap();
        assert!(matches!(r.delivered, Delivered::Acked { .. }), "{r:?}");
        assert_eq!(published("A4"), 0);
    }
    {
        tracing::info!("the app accepts the gap: key A drains in order");
        assert!(publisher.release_key("A").unwrap());
        publisher
            .drain_shard(PartitionId(2), Duration::from_secs(20))
            .await
            .unwrap();
        let order: Vec<String> = faulty
            .acked_payloads()
            .into_iter()
            .filter_map(|p| {
                ["A2", "A3", "A4"]
                    .into_iter()
                    .find(|t| p.contains(t))
                    .map(str::to_owned)
            })
            .collect();
        assert_eq!(order, ["A2", "A3", "A4"]);
        assert!(publisher.held_keys().is_empty());
        assert_eq!(metrics.gauge("event_bus_outbox_held_keys", &[]), 0.0);
    }
}

/// `e` with `tag` in its payload, to find it among the published messages.
fn tagged(
    mut e: cluster_core::event::OutgoingEvent,
    tag: &str,
) -> cluster_core::event::OutgoingEvent {
    e.payload = json!({"task": tag, "n": 1});
    e
}
