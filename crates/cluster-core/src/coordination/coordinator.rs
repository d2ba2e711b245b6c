//! The whole coordination port: every capability trait, plus what the backend can do.

use crate::coordination::claim_store::ClaimStore;
use crate::coordination::election_store::ElectionStore;
use crate::coordination::kv_store::KvStore;
use crate::coordination::lease_store::LeaseStore;
use crate::coordination::lock_store::LockStore;
use crate::coordination::membership_store::MembershipStore;
use crate::coordination::watch_store::{WatchHistory, WatchStore};

/// What a backend can do, so callers and the contract suite can adapt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// The backend's name (`etcd`, `consul`, `nats`, `mem`).
    pub backend: &'static str,
    /// Whether watches deliver every revision.
    pub watch_history: WatchHistory,
    /// Whether [`KvStore::put_if_held`] is atomic with its check (otherwise `Unsupported`).
    pub put_if_held: bool,
}

/// A coordination store: leases, keys, watches, elections, membership, claims and locks.
///
/// Implemented by `coord-etcd`, `coord-consul`, `coord-nats` and `coord-mem`; each passes the
/// contract suite in `testkit::coordination`. Use it as `Arc<dyn Coordinator>`.
pub trait Coordinator:
    LeaseStore
    + KvStore
    + WatchStore
    + ElectionStore
    + MembershipStore
    + ClaimStore
    + LockStore
    + std::fmt::Debug
{
    /// What this backend can do.
    fn capabilities(&self) -> Capabilities;
}
