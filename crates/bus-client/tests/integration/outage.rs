//! A 20-second NATS outage while publishing 500 events/s: the server stopped, and separately
//! blackholed behind a FaultProxy. Every resolved event arrives, none is applied twice, per-key
//! order holds, and degraded mode is entered and left exactly once.

use crate::fixtures;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus_client::{Consumer, Delivered, Publisher};
use fixtures::*;
use testkit::{FaultProxy, Mode, NatsOptions, NatsServer};

const KEYS: usize = 20;
/// 20 keys x 25 events/s = 500 events/s.
const PER_KEY_INTERVAL: Duration = Duration::from_millis(40);
const BEFORE: Duration = Duration::from_secs(3);
const OUTAGE: Duration = Duration::from_secs(20);
const AFTER: Duration = Duration::from_secs(4);

#[derive(Debug, Clone, Copy)]
enum Outage {
    ServerStopped,
    Blackholed,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_server_stopped_for_20s_at_500_per_second() {
    run(Outage::ServerStopped).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_server_blackholed_for_20s_at_500_per_second() {
    run(Outage::Blackholed).await;
}

async fn run(outage: Outage) {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let mut nats = NatsServer::start_with(NatsOptions::durable())
        .await
        .unwrap();
    let proxy = FaultProxy::start(nats.client_addr()).unwrap();
    let files = Files::new();
    let subjects = subjects();
    let metrics = TestMetrics::new();
    // The publisher reaches NATS through the proxy; the consumer directly.
    let publisher_bus = bus(&proxy.url("nats")).await;
    let consumer_bus = bus(&nats.url()).await;
    topology(&subjects)
        .provision(consumer_bus.as_ref())
        .await
        .unwrap();
    let publisher = Publisher::start(
        publisher_bus,
        publisher_config("node-a", &subjects, &files.path("outbox.db")),
        registry(),
        metrics.publisher(),
    )
    .unwrap();
    let db = files.path("consumer.db");
    let consumer = Consumer::start(
        consumer_bus,
        consumer_config("c", &subjects, &db),
        registry(),
        RecordingHandler::new(),
        metrics.consumer("c"),
    )
    .await
    .unwrap();

    let resolved: Arc<Mutex<Vec<(String, Delivered)>>> = Arc::default();
    let stop = tokio_util::sync::CancellationToken::new();
    let producers: Vec<_> = (0..KEYS)
        .map(|k| {
            let publisher = publisher.clone();
            let resolved = resolved.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let key = format!("key-{k}");
                let mut tick = tokio::time::interval(PER_KEY_INTERVAL);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                let mut n = 0;
                while !stop.is_cancelled() {
                    tick.tick().await;
                    let r = publisher
                        .publish(event(k as u32 % 4, &key, 1, n))
                        .await
                        .unwrap();
                    resolved
                        .lock()
                        .unwrap()
                        .push((r.event_id.to_string(), r.delivered));
                    n += 1;
                }
            })
        })
        .collect();

    {
        tracing::info!("publishing at 500/s with NATS up");
        tokio::time::sleep(BEFORE).await;
        assert_eq!(metrics.gauge("event_bus_degraded", &[]), 0.0);
    }
    {
        tracing::info!(?outage, "outage begins");
        match outage {
            Outage::ServerStopped => nats.stop(),
            Outage::Blackholed => proxy.set_mode(Mode::Blackhole),
        }
        eventually("degraded", Duration::from_secs(15), || {
            metrics.gauge("event_bus_degraded", &[]) == 1.0
        })
        .await;
        let depth_early = publisher.status().outbox_depth;
        tokio::time::sleep(OUTAGE.saturating_sub(Duration::from_secs(1))).await;
        assert!(publisher.status().degraded);
        assert!(
            metrics.counter("event_bus_publish_retries_total", &[]) >= 1,
            "the first failed publishes were retried before degraded mode"
        );
        assert!(metrics.gauge("event_bus_outbox_depth", &[]) > 0.0);
        assert!(
            publisher.status().outbox_depth > depth_early,
            "local work went on during the outage"
        );
    }
    {
        tracing::info!("outage ends");
        match outage {
            Outage::ServerStopped => nats.restart().await.unwrap(),
            Outage::Blackholed => proxy.heal(),
        }
        tokio::time::sleep(AFTER).await;
        stop.cancel();
        for p in producers {
            p.await.unwrap();
        }
    }
    let resolved = resolved.lock().unwrap().clone();
    {
        tracing::info!(
            events = resolved.len(),
            "the outbox drains and degraded mode ends"
        );
        eventually("outbox drained", Duration::from_secs(60), || {
            let s = publisher.status();
            s.outbox_depth == 0 && !s.degraded
        })
        .await;
        assert_eq!(metrics.gauge("event_bus_degraded", &[]), 0.0);
        assert_eq!(metrics.gauge("event_bus_outbox_depth", &[]), 0.0);
        assert_eq!(metrics.counter("event_bus_outages_total", &[]), 1);
        assert_eq!(metrics.counter("event_bus_recoveries_total", &[]), 1);
        let outboxed = resolved
            .iter()
            .filter(|(_, d)| *d == Delivered::Outboxed)
            .count();
        assert!(outboxed > 1000, "only {outboxed} events went to the outbox");
        assert_eq!(
            metrics.counter("event_bus_publish_total", &[("status", "outboxed")]) as usize,
            outboxed
        );
    }
    {
        tracing::info!("every resolved event is applied once, in per-key order");
        eventually("all applied", Duration::from_secs(90), || {
            effects(&db).len() >= resolved.len()
        })
        .await;
        consumer.stop().await;
        let applied = effects(&db);
        assert_ordered_once(&applied);
        let mut got: Vec<&str> = applied.iter().map(|e| e.event_id.as_str()).collect();
        let mut want: Vec<&str> = resolved.iter().map(|(id, _)| id.as_str()).collect();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got.len(), want.len());
        assert!(got == want, "applied events differ from resolved ones");
    }
}
