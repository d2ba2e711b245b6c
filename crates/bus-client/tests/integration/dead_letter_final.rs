//! A dead-letter decision is final: if the terminate of a dead-lettered event is lost (a crash
//! right after the dead letter was published), its redelivery is dead-lettered again (the same
//! dead letter, deduplicated) and never applied, even though the handler would now succeed.

use crate::fixtures;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bus_client::{Consumer, Publisher};
use cluster_core::event::{
    BusAck, BusError, BusMessage, ConsumerPosition, DeadLetterReason, Delivery, DeliveryAck,
    DeliveryStream, Envelope, EventBus, StoredMessage, StreamSpec, SubscriptionSpec,
};
use fixtures::*;
use testkit::{NatsOptions, NatsServer};

/// A bus whose deliveries lose their terminate: the message comes back after the ack wait.
#[derive(Debug)]
struct LostTerm(Arc<dyn EventBus>);

struct LostTermAck(Box<dyn DeliveryAck>);

#[async_trait]
impl DeliveryAck for LostTermAck {
    async fn ack(&self) -> Result<(), BusError> {
        self.0.ack().await
    }
    async fn nak(&self, delay: Duration) -> Result<(), BusError> {
        self.0.nak(delay).await
    }
    async fn term(&self) -> Result<(), BusError> {
        Ok(())
    }
    async fn in_progress(&self) -> Result<(), BusError> {
        self.0.in_progress().await
    }
}

struct LostTermStream(Box<dyn DeliveryStream>);

#[async_trait]
impl DeliveryStream for LostTermStream {
    async fn next(&mut self) -> Option<Result<Delivery, BusError>> {
        let next = self.0.next().await?;
        Some(next.map(|mut d| {
            d.ack = Box::new(LostTermAck(d.ack));
            d
        }))
    }
}

#[async_trait]
impl EventBus for LostTerm {
    async fn ensure_stream(&self, spec: &StreamSpec) -> Result<(), BusError> {
        self.0.ensure_stream(spec).await
    }
    async fn publish(&self, message: BusMessage) -> Result<BusAck, BusError> {
        self.0.publish(message).await
    }
    async fn subscribe(
        &self,
        spec: &SubscriptionSpec,
    ) -> Result<Box<dyn DeliveryStream>, BusError> {
        Ok(Box::new(LostTermStream(self.0.subscribe(spec).await?)))
    }
    async fn consumer_position(
        &self,
        stream: &str,
        durable: &str,
    ) -> Result<ConsumerPosition, BusError> {
        self.0.consumer_position(stream, durable).await
    }
    async fn read(&self, stream: &str, sequence: u64) -> Result<Option<StoredMessage>, BusError> {
        self.0.read(stream, sequence).await
    }
    fn max_payload(&self) -> usize {
        self.0.max_payload()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_dead_letter_is_not_applied() {
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
    publisher.publish(event(1, "poison", 1, 0)).await.unwrap();

    let db = files.path("consumer.db");
    let failing = Arc::new(AtomicBool::new(true));
    let metrics = TestMetrics::new();
    let _consumer = {
        let failing = failing.clone();
        let handler = Arc::new(RecordingHandler {
            // Fails until it has been dead-lettered, then would succeed.
            fail: Box::new(move |_: &Envelope| failing.load(Ordering::SeqCst)),
            delay: Duration::ZERO,
        });
        let mut config = consumer_config("c", &subjects, &db);
        config.retry.handler_attempts = 3;
        config.ack_wait = Duration::from_secs(1);
        let bus: Arc<dyn EventBus> = Arc::new(LostTerm(real.clone()));
        Consumer::start(bus, config, registry(), handler, metrics.consumer("c"))
            .await
            .unwrap()
    };
    {
        tracing::info!(
            "dead-lettered after three failed attempts; from now on the handler would succeed"
        );
        let dead_lettered = || {
            metrics.counter(
                "event_bus_dead_letters_total",
                &[("consumer", "c"), ("reason", "handler_failed")],
            ) >= 1
        };
        eventually("a dead letter", Duration::from_secs(30), dead_lettered).await;
        failing.store(false, Ordering::SeqCst);
    }
    {
        tracing::info!("the lost terminate brings it back; it is dead-lettered again, not applied");
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(
            effects(&db).is_empty(),
            "a dead-lettered event was applied: {:?}",
            effects(&db)
        );
        let letters = dead_letters(real.as_ref(), &topo).await;
        assert_eq!(letters.len(), 1, "the same dead letter, deduplicated");
        assert_eq!(letters[0].reason, DeadLetterReason::HandlerFailed);
    }
}
