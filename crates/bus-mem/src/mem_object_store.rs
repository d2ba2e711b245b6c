//! `MemObjectStore`: the ObjectStore port in memory, for dev mode and fast tests.
// An object's stored-at stamp is the wall clock, as a real store's is.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use async_trait::async_trait;
use cluster_core::object_store::{
    Object, ObjectInfo, ObjectName, ObjectOperation, ObjectStore, ObjectStoreError,
};

/// The store was set down with [`MemObjectStore::set_down`].
#[derive(Debug, thiserror::Error)]
#[error("in-memory object store is down")]
struct StoreDown;

/// Each object's bytes and when they were written.
type Objects = BTreeMap<ObjectName, (Arc<Vec<u8>>, SystemTime)>;

#[derive(Debug, Default)]
struct Bucket {
    objects: Mutex<Objects>,
    down: AtomicBool,
}

/// An in-memory bucket. Clones share the bucket, as clients of one server do.
#[derive(Debug, Clone, Default)]
pub struct MemObjectStore {
    bucket: Arc<Bucket>,
}

impl MemObjectStore {
    /// An empty bucket.
    pub fn new() -> MemObjectStore {
        MemObjectStore::default()
    }

    /// Makes every call fail `Unavailable` (down) or work again, keeping the objects.
    pub fn set_down(&self, down: bool) {
        self.bucket.down.store(down, Ordering::SeqCst);
    }

    fn check(&self, operation: ObjectOperation) -> Result<(), ObjectStoreError> {
        if self.bucket.down.load(Ordering::SeqCst) {
            Err(ObjectStoreError::unavailable(operation, StoreDown))
        } else {
            Ok(())
        }
    }

    fn objects(&self) -> std::sync::MutexGuard<'_, Objects> {
        self.bucket
            .objects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

fn info(name: &ObjectName, data: &[u8], modified: SystemTime) -> ObjectInfo {
    ObjectInfo {
        name: name.clone(),
        size: data.len() as u64,
        digest: None,
        modified: Some(modified),
    }
}

#[async_trait]
impl ObjectStore for MemObjectStore {
    async fn put(&self, name: &ObjectName, data: Vec<u8>) -> Result<ObjectInfo, ObjectStoreError> {
        self.check(ObjectOperation::Put)?;
        let now = SystemTime::now();
        let stored = info(name, &data, now);
        self.objects().insert(name.clone(), (Arc::new(data), now));
        Ok(stored)
    }

    async fn get(&self, name: &ObjectName) -> Result<Option<Object>, ObjectStoreError> {
        self.check(ObjectOperation::Get)?;
        Ok(self.objects().get(name).map(|(data, at)| Object {
            info: info(name, data, *at),
            data: data.as_ref().clone(),
        }))
    }

    async fn head(&self, name: &ObjectName) -> Result<Option<ObjectInfo>, ObjectStoreError> {
        self.check(ObjectOperation::Get)?;
        Ok(self
            .objects()
            .get(name)
            .map(|(data, at)| info(name, data, *at)))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ObjectStoreError> {
        self.check(ObjectOperation::List)?;
        Ok(self
            .objects()
            .iter()
            .filter(|(n, _)| n.as_str().starts_with(prefix))
            .map(|(n, (data, at))| info(n, data, *at))
            .collect())
    }

    async fn delete(&self, name: &ObjectName) -> Result<bool, ObjectStoreError> {
        self.check(ObjectOperation::Delete)?;
        Ok(self.objects().remove(name).is_some())
    }
}
