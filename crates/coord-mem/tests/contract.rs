//! coord-mem against the coordination contract suite.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cluster_core::coordination::Coordinator;
use cluster_core::ids::Revision;
use coord_mem::{LinkMode, MemCoordinator};
use testkit::coordination::{ClientFault, CoordHarness, TimingProfile};

const CALL_TIMEOUT: Duration = Duration::from_millis(500);

struct MemHarness {
    store: MemCoordinator,
}

struct MemFault(MemCoordinator);

impl ClientFault for MemFault {
    fn blackhole(&self) {
        self.0.link().set_mode(LinkMode::Blackhole);
    }

    fn heal(&self) {
        self.0.link().set_mode(LinkMode::Pass);
    }
}

#[async_trait]
impl CoordHarness for MemHarness {
    async fn client(&self) -> Arc<dyn Coordinator> {
        Arc::new(self.store.connect())
    }

    async fn faultable_client(&self) -> (Arc<dyn Coordinator>, Box<dyn ClientFault>) {
        let handle = self.store.connect();
        (Arc::new(handle.clone()), Box::new(MemFault(handle)))
    }

    async fn stop_store(&mut self) {
        self.store.set_store_down(true);
    }

    async fn start_store(&mut self) {
        self.store.set_store_down(false);
    }

    async fn compact(&self, revision: Revision) -> bool {
        self.store.compact(revision);
        true
    }

    fn timing(&self) -> TimingProfile {
        TimingProfile {
            ttl: Duration::from_millis(1500),
            margin: Duration::from_millis(500),
            expiry_factor: 1,
            call_timeout: CALL_TIMEOUT,
        }
    }
}

async fn harness() -> MemHarness {
    MemHarness {
        store: MemCoordinator::new().with_call_timeout(CALL_TIMEOUT),
    }
}

testkit::coordination_contract_suite!(harness());
