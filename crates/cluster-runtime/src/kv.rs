//! An app's own key-value space, and fenced writes for leaders and owners.
//!
//! Keys live in the app's `kv` namespace from the naming function, so one app cannot address
//! another app's keys through this API: a name is a validated key name inside the namespace.
//! Writes made from `on_active` or `on_own` should go through [`FencedKv`], which commits only
//! while the term or claim that authorised them still stands (`put_if_held`).

use std::sync::Arc;

use cluster_core::coordination::{
    CoordResult, Coordinator, Expect, Fence, Key, KeyPrefix, KvEntry, WatchStart, WatchStream,
    WatchTarget,
};
use cluster_core::ids::Revision;
use cluster_core::naming::Namespace;

/// An app's key-value space.
#[derive(Clone)]
pub struct AppKv {
    coord: Arc<dyn Coordinator>,
    ns: Namespace,
}

impl std::fmt::Debug for AppKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppKv")
            .field("namespace", &self.ns)
            .finish()
    }
}

impl AppKv {
    pub(crate) fn new(coord: Arc<dyn Coordinator>, ns: Namespace) -> Self {
        AppKv { coord, ns }
    }

    fn key(&self, name: &str) -> CoordResult<Key> {
        Key::new(self.ns.clone(), name)
    }

    /// The value of `name`.
    pub async fn get(&self, name: &str) -> CoordResult<Option<Vec<u8>>> {
        Ok(self.get_entry(name).await?.map(|e| e.value))
    }

    /// The value of `name` with its revisions.
    pub async fn get_entry(&self, name: &str) -> CoordResult<Option<KvEntry>> {
        self.coord.get(&self.key(name)?).await
    }

    /// Writes `name` unconditionally; returns the new revision.
    pub async fn put(&self, name: &str, value: impl Into<Vec<u8>>) -> CoordResult<Revision> {
        self.coord
            .put(&self.key(name)?, value.into(), Expect::Any, None)
            .await
    }

    /// Creates `name`; fails with `Conflict` if it exists.
    pub async fn create(&self, name: &str, value: impl Into<Vec<u8>>) -> CoordResult<Revision> {
        self.coord
            .put(&self.key(name)?, value.into(), Expect::Absent, None)
            .await
    }

    /// Writes `name` only if it is still at `revision` (compare-and-set).
    pub async fn update(
        &self,
        name: &str,
        value: impl Into<Vec<u8>>,
        revision: Revision,
    ) -> CoordResult<Revision> {
        self.coord
            .put(
                &self.key(name)?,
                value.into(),
                Expect::Revision(revision),
                None,
            )
            .await
    }

    /// Deletes `name`; returns whether it existed.
    pub async fn delete(&self, name: &str) -> CoordResult<bool> {
        self.coord.delete(&self.key(name)?, Expect::Any).await
    }

    /// The names under `prefix` (empty: every name), sorted.
    pub async fn keys(&self, prefix: &str) -> CoordResult<Vec<String>> {
        let prefix = KeyPrefix::new(self.ns.clone(), prefix)?;
        Ok(self
            .coord
            .list(&prefix)
            .await?
            .into_iter()
            .map(|e| e.key.name().to_owned())
            .collect())
    }

    /// Watches the names under `prefix`: a snapshot, then every change.
    pub async fn watch(&self, prefix: &str) -> CoordResult<WatchStream> {
        let prefix = KeyPrefix::new(self.ns.clone(), prefix)?;
        self.coord
            .watch(WatchTarget::Prefix(prefix), WatchStart::Now)
            .await
    }

    /// This space, with writes fenced by `fence`.
    pub fn fenced(&self, fence: Fence) -> FencedKv {
        FencedKv {
            kv: self.clone(),
            fence,
        }
    }
}

/// Writes that commit only while a term or claim still stands.
#[derive(Debug, Clone)]
pub struct FencedKv {
    kv: AppKv,
    fence: Fence,
}

impl FencedKv {
    /// The fence the writes carry.
    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    /// Reads `name` (reads need no fence).
    pub async fn get(&self, name: &str) -> CoordResult<Option<Vec<u8>>> {
        self.kv.get(name).await
    }

    /// Writes `name` if the fence still stands; otherwise `StaleToken` and nothing changes.
    pub async fn put(&self, name: &str, value: impl Into<Vec<u8>>) -> CoordResult<Revision> {
        let key = self.kv.key(name)?;
        self.kv
            .coord
            .put_if_held(&key, value.into(), &self.fence)
            .await
    }
}
