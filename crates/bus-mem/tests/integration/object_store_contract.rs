//! `MemObjectStore` against the ObjectStore contract suite.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bus_mem::MemObjectStore;
use cluster_core::object_store::ObjectStore;
use testkit::object_store::ObjectStoreHarness;

struct MemHarness {
    store: MemObjectStore,
}

impl MemHarness {
    async fn start() -> MemHarness {
        MemHarness {
            store: MemObjectStore::new(),
        }
    }
}

#[async_trait]
impl ObjectStoreHarness for MemHarness {
    async fn store(&self) -> Arc<dyn ObjectStore> {
        Arc::new(self.store.clone())
    }

    async fn stop_store(&mut self) -> bool {
        self.store.set_down(true);
        true
    }

    async fn start_store(&mut self) {
        self.store.set_down(false);
    }

    fn call_timeout(&self) -> Duration {
        Duration::from_millis(100)
    }
}

testkit::object_store_contract_suite!(MemHarness::start());
