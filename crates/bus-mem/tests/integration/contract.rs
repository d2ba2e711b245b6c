//! bus-mem against the EventBus contract suite.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bus_mem::MemEventBus;
use cluster_core::event::EventBus;
use testkit::event_bus::BusHarness;

struct MemHarness {
    bus: MemEventBus,
}

impl MemHarness {
    async fn start() -> MemHarness {
        MemHarness {
            bus: MemEventBus::new(),
        }
    }
}

#[async_trait]
impl BusHarness for MemHarness {
    async fn bus(&self) -> Arc<dyn EventBus> {
        Arc::new(self.bus.clone())
    }

    async fn stop_bus(&mut self) {
        self.bus.set_down(true);
    }

    async fn start_bus(&mut self) {
        self.bus.set_down(false);
    }

    fn call_timeout(&self) -> Duration {
        Duration::from_millis(100)
    }
}

testkit::event_bus_contract_suite!(MemHarness::start());
