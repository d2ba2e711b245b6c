//! bus-nats against the EventBus contract suite, on a real durable nats-server.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bus_nats::{NatsBusConfig, NatsEventBus};
use cluster_core::event::EventBus;
use testkit::event_bus::BusHarness;
use testkit::{NatsOptions, NatsServer};

const CALL_TIMEOUT: Duration = Duration::from_secs(1);

struct NatsHarness {
    server: NatsServer,
}

impl NatsHarness {
    async fn start() -> NatsHarness {
        NatsHarness {
            server: NatsServer::start_with(NatsOptions::durable())
                .await
                .unwrap(),
        }
    }
}

#[async_trait]
impl BusHarness for NatsHarness {
    async fn bus(&self) -> Arc<dyn EventBus> {
        let config = NatsBusConfig {
            call_timeout: CALL_TIMEOUT,
            ping_interval: Duration::from_millis(500),
            ..NatsBusConfig::new(self.server.url())
        };
        Arc::new(NatsEventBus::connect(config).await.unwrap())
    }

    async fn stop_bus(&mut self) {
        self.server.stop();
    }

    async fn start_bus(&mut self) {
        self.server.restart().await.unwrap();
    }

    fn call_timeout(&self) -> Duration {
        CALL_TIMEOUT
    }
}

testkit::event_bus_contract_suite!(NatsHarness::start());
