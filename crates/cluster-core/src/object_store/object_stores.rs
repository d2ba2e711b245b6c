//! The `ObjectStores` trait: opening buckets by name.

use std::sync::Arc;

use async_trait::async_trait;

use crate::object_store::object_error::ObjectStoreError;
use crate::object_store::object_store::ObjectStore;

/// Opens buckets by name, for components that need several (the runtime opens an app's `wal`
/// and `snapshots` buckets, named by [`Namespace::bucket`](crate::naming::Namespace::bucket)).
///
/// Every call with the same name must give a store over the same bucket, on every node that
/// shares the backend: that is how a standby reads what the primary wrote.
#[async_trait]
pub trait ObjectStores: Send + Sync {
    /// The bucket `name`, created if it does not exist.
    async fn bucket(&self, name: &str) -> Result<Arc<dyn ObjectStore>, ObjectStoreError>;
}
