//! coord-nats against the coordination contract suite, on a real single nats-server.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cluster_core::coordination::Coordinator;
use cluster_core::ids::Revision;
use coord_nats::NatsCoordinator;
use testkit::coordination::{ClientFault, CoordHarness, TimingProfile};
use testkit::{FaultProxy, NatsServer};

struct NatsHarness {
    server: NatsServer,
}

#[async_trait]
impl CoordHarness for NatsHarness {
    async fn client(&self) -> Arc<dyn Coordinator> {
        Arc::new(
            NatsCoordinator::connect(common::config(self.server.url()))
                .await
                .unwrap(),
        )
    }

    async fn faultable_client(&self) -> (Arc<dyn Coordinator>, Box<dyn ClientFault>) {
        let proxy = FaultProxy::start(self.server.client_addr()).unwrap();
        let coord = NatsCoordinator::connect(common::config(proxy.url("nats")))
            .await
            .unwrap();
        (Arc::new(coord), Box::new(proxy))
    }

    async fn stop_store(&mut self) {
        self.server.stop();
    }

    async fn start_store(&mut self) {
        self.server.restart().await.unwrap();
    }

    async fn compact(&self, _revision: Revision) -> bool {
        // JetStream KV keeps the latest value only: there is no history to compact.
        false
    }

    fn timing(&self) -> TimingProfile {
        TimingProfile {
            ttl: Duration::from_secs(2),
            margin: Duration::from_millis(700),
            expiry_factor: 1,
            call_timeout: Duration::from_secs(1),
        }
    }
}

async fn harness() -> NatsHarness {
    NatsHarness {
        server: NatsServer::start().await.unwrap(),
    }
}

testkit::coordination_contract_suite!(harness());
