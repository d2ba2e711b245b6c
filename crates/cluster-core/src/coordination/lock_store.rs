//! Named locks with a fencing token: an election whose leader is the lock holder.

use async_trait::async_trait;

use crate::coordination::election_store::{ElectionStore, Leadership};
use crate::coordination::error::CoordResult;
use crate::coordination::fence::Fence;
use crate::coordination::key::Key;
use crate::coordination::lease_store::LeaseId;

/// A held lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHold {
    term: Leadership,
}

impl LockHold {
    /// The lock's name.
    pub fn name(&self) -> &Key {
        &self.term.election
    }

    /// The token of this hold: larger than every earlier hold's.
    pub fn token(&self) -> crate::ids::FencingToken {
        self.term.token
    }

    /// The lease the hold is bound to.
    pub fn lease(&self) -> &LeaseId {
        &self.term.lease
    }

    /// The fence that proves the lock is still held.
    pub fn fence(&self) -> Fence {
        self.term.fence()
    }
}

/// Named locks. Each backend lays locks out as its own lock recipe does (etcd's
/// `concurrency.Mutex`, Consul's `api.Lock`), which is the same layout as its election, so the
/// default methods take a lock by winning an election named after it.
#[async_trait]
pub trait LockStore: ElectionStore {
    /// Waits until the lock is held by `holder` under `lease`.
    async fn lock(&self, name: &Key, holder: &str, lease: &LeaseId) -> CoordResult<LockHold> {
        let term = self.campaign(name, holder, lease).await?;
        Ok(LockHold { term })
    }

    /// Releases the lock (no-op if it was already lost).
    async fn unlock(&self, hold: &LockHold) -> CoordResult<()> {
        self.resign(&hold.term).await
    }
}
