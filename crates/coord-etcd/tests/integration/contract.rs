//! coord-etcd against the coordination contract suite, on a real single-member etcd.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cluster_core::coordination::Coordinator;
use cluster_core::ids::Revision;
use coord_etcd::{EtcdConfig, EtcdCoordinator};
use testkit::coordination::{ClientFault, CoordHarness, TimingProfile};
use testkit::{EtcdServer, FaultProxy};

struct EtcdHarness {
    server: EtcdServer,
}

fn config(endpoint: String) -> EtcdConfig {
    EtcdConfig {
        call_timeout: Duration::from_secs(1),
        keep_alive_interval: Duration::from_millis(500),
        keep_alive_timeout: Duration::from_secs(1),
        ..EtcdConfig::new([endpoint])
    }
}

#[async_trait]
impl CoordHarness for EtcdHarness {
    async fn client(&self) -> Arc<dyn Coordinator> {
        Arc::new(
            EtcdCoordinator::connect(config(self.server.url()))
                .await
                .unwrap(),
        )
    }

    async fn faultable_client(&self) -> (Arc<dyn Coordinator>, Box<dyn ClientFault>) {
        let proxy = FaultProxy::start(self.server.client_addr()).unwrap();
        let coord = EtcdCoordinator::connect(config(proxy.url("http")))
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

    async fn compact(&self, revision: Revision) -> bool {
        let coord = EtcdCoordinator::connect(config(self.server.url()))
            .await
            .unwrap();
        let mut kv = coord.client().kv_client();
        kv.compact(revision.0 as i64, None).await.unwrap();
        true
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

async fn harness() -> EtcdHarness {
    EtcdHarness {
        server: EtcdServer::start().await.unwrap(),
    }
}

testkit::coordination_contract_suite!(harness());
