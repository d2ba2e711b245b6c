//! `NatsObjectStore` against the ObjectStore contract suite, on a real durable nats-server.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bus_nats::{NatsBusConfig, NatsObjectStore, ObjectBucketSpec};
use cluster_core::object_store::ObjectStore;
use testkit::object_store::ObjectStoreHarness;
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
impl ObjectStoreHarness for NatsHarness {
    async fn store(&self) -> Arc<dyn ObjectStore> {
        let config = NatsBusConfig {
            call_timeout: CALL_TIMEOUT,
            ping_interval: Duration::from_millis(500),
            ..NatsBusConfig::new(self.server.url())
        };
        Arc::new(
            NatsObjectStore::connect(config, &ObjectBucketSpec::new("contract"))
                .await
                .unwrap(),
        )
    }

    async fn stop_store(&mut self) -> bool {
        self.server.stop();
        true
    }

    async fn start_store(&mut self) {
        self.server.restart().await.unwrap();
    }

    fn call_timeout(&self) -> Duration {
        CALL_TIMEOUT
    }
}

testkit::object_store_contract_suite!(NatsHarness::start());
