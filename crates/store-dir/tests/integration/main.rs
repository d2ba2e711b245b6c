//! `DirObjectStore` against the ObjectStore contract suite.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cluster_core::object_store::ObjectStore;
use store_dir::DirObjectStore;
use testkit::object_store::ObjectStoreHarness;

struct DirHarness {
    dir: tempfile::TempDir,
}

impl DirHarness {
    async fn start() -> DirHarness {
        DirHarness {
            dir: tempfile::tempdir().unwrap(),
        }
    }
}

#[async_trait]
impl ObjectStoreHarness for DirHarness {
    async fn store(&self) -> Arc<dyn ObjectStore> {
        Arc::new(DirObjectStore::open(self.dir.path().join("bucket")).unwrap())
    }

    async fn stop_store(&mut self) -> bool {
        false
    }

    async fn start_store(&mut self) {}

    fn call_timeout(&self) -> Duration {
        Duration::from_secs(1)
    }
}

testkit::object_store_contract_suite!(DirHarness::start());
