//! The `ObjectStore` trait and its contract.

use async_trait::async_trait;

use crate::object_store::object_error::ObjectStoreError;
use crate::object_store::object_info::{Object, ObjectInfo};
use crate::object_store::object_name::ObjectName;

/// A bucket of named objects.
///
/// # Contract
///
/// Implementations must keep these, and pass `testkit::object_store`'s suite:
///
/// - **Atomic put.** [`put`](ObjectStore::put) replaces the whole object or nothing: a reader
///   sees the previous version or the new one in full, never a part, even if the writer dies
///   mid-put. A put that fails may or may not have stored the object; re-putting the same bytes
///   under the same name is always safe.
/// - **Durable, read-after-write.** Once `put` returns `Ok`, the object survives a restart of
///   the store (under its durability settings: for NATS, `sync_interval: always` or 3 replicas)
///   and every later `get`, `head` and `list` from any client sees it.
/// - **Integrity.** `get` returns exactly the bytes put, or an error: a store that detects a
///   damaged object reports [`ObjectStoreError::Corrupt`], never wrong bytes.
/// - **Listing.** [`list`](ObjectStore::list) returns every object whose name starts with
///   `prefix`, sorted by name, each once; deleted objects are not listed.
/// - **Delete.** [`delete`](ObjectStore::delete) is idempotent: it returns whether the object
///   existed, and a deleted object is absent for `get`, `head` and `list`.
/// - **Errors.** An unreachable store gives [`ObjectStoreError::Unavailable`] within the
///   adapter's call timeout, never a hang; everything else is non-retryable.
#[async_trait]
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// Stores `data` under `name`, replacing any object of that name; returns what was stored.
    async fn put(&self, name: &ObjectName, data: Vec<u8>) -> Result<ObjectInfo, ObjectStoreError>;

    /// The object with its bytes, or `None` if there is none of that name.
    async fn get(&self, name: &ObjectName) -> Result<Option<Object>, ObjectStoreError>;

    /// The object's description without its bytes, or `None`.
    async fn head(&self, name: &ObjectName) -> Result<Option<ObjectInfo>, ObjectStoreError>;

    /// Every object whose name starts with `prefix` (empty: all), sorted by name.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ObjectStoreError>;

    /// Deletes the object; returns whether it existed.
    async fn delete(&self, name: &ObjectName) -> Result<bool, ObjectStoreError>;

    /// The largest object `put` accepts, if the store has a limit.
    fn max_object_size(&self) -> Option<u64> {
        None
    }
}
