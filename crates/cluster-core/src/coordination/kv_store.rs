//! The key-value part of the port: reads, conditional writes, and fenced writes.

use async_trait::async_trait;

use crate::coordination::error::CoordResult;
use crate::coordination::fence::Fence;
use crate::coordination::key::{Key, KeyPrefix};
use crate::coordination::lease_store::LeaseId;
use crate::ids::{FencingToken, Revision};

/// A key with its value and revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    /// The key.
    pub key: Key,
    /// The value.
    pub value: Vec<u8>,
    /// The revision of the last write to this key (etcd `mod_revision`, Consul `ModifyIndex`,
    /// NATS KV sequence).
    pub revision: Revision,
    /// The revision of the write that created the key, where the store keeps it.
    pub created: Option<Revision>,
    /// The lease the key is bound to, if any.
    pub lease: Option<LeaseId>,
}

/// The condition a write is made under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// No condition.
    Any,
    /// The key must not exist (create).
    Absent,
    /// The key must exist at exactly this revision (compare-and-set).
    Revision(Revision),
}

/// Reads and writes.
///
/// Contract:
/// - Revisions of one key only grow; every successful write returns the key's new revision,
///   larger than any revision of that key before it.
/// - A failed condition gives [`CoordError::Conflict`](crate::coordination::CoordError::Conflict)
///   and changes nothing.
/// - A key written with a lease is deleted when the lease expires or is revoked.
/// - `put_if_held` commits only while `fence.key` still exists at revision `fence.token`, in one
///   store operation; otherwise it gives `StaleToken` and changes nothing. Backends that cannot
///   do that atomically return `Unsupported`.
/// - Reads are linearizable: a read after a successful write sees it.
#[async_trait]
pub trait KvStore: Send + Sync {
    /// The key's current entry.
    async fn get(&self, key: &Key) -> CoordResult<Option<KvEntry>>;

    /// Every entry under `prefix`, sorted by key name.
    async fn list(&self, prefix: &KeyPrefix) -> CoordResult<Vec<KvEntry>>;

    /// Writes `value` if `expect` holds, bound to `lease` if given; returns the new revision.
    async fn put(
        &self,
        key: &Key,
        value: Vec<u8>,
        expect: Expect,
        lease: Option<&LeaseId>,
    ) -> CoordResult<Revision>;

    /// Deletes the key if `expect` holds; returns whether a key was deleted.
    async fn delete(&self, key: &Key, expect: Expect) -> CoordResult<bool>;

    /// Writes `value` only while `fence` is still held, atomically with that check.
    async fn put_if_held(&self, key: &Key, value: Vec<u8>, fence: &Fence) -> CoordResult<Revision>;

    /// Whether `fence` is still held now: its key exists in the term that gave `fence.token`.
    /// A read, not a guard: a caller that needs the check and a write in one step uses
    /// [`put_if_held`](KvStore::put_if_held). The default compares the key's revision with the
    /// token; backends whose revisions move without a new term (renewals rewrite the key)
    /// override it.
    async fn fence_holds(&self, fence: &Fence) -> CoordResult<bool> {
        Ok(self
            .get(&fence.key)
            .await?
            .is_some_and(|e| FencingToken::from(e.revision) == fence.token))
    }
}
