//! In-process Coordinator adapter.
//!
//! A real adapter, not a mock: it implements the same port and passes the same contract suite as
//! the etcd, Consul and NATS adapters. Used by `cluster agent --dev` and by fast tests.
//!
//! Semantics follow etcd's: one store-wide revision counter, create and modify revisions per key,
//! leases whose expiry deletes their keys (each deletion a revision of its own), full-history
//! watches with explicit compaction, and the queue election of
//! [`cluster_core::coordination::queue_election`]. Time is tokio's, so tests can pause it.
//!
//! [`MemCoordinator::connect`] gives another handle to the same store with its own [`Link`], the
//! way another process would have its own connection; switching a link's [`LinkMode`] simulates
//! that client being partitioned, and [`MemCoordinator::set_store_down`] an outage of the store.
//!
//! ```
//! # tokio_test_block_on(async {
//! use std::time::Duration;
//! use cluster_core::coordination::{Expect, Key, KvStore, LeaseStore};
//! use cluster_core::ids::PlatformName;
//! use cluster_core::naming::{namespace, NamespaceKind};
//!
//! let coord = coord_mem::MemCoordinator::new();
//! let ns = namespace(&PlatformName::new("dev").unwrap(), None, NamespaceKind::Kv);
//! let key = Key::new(ns, "greeting").unwrap();
//! let rev = coord.put(&key, b"hello".to_vec(), Expect::Absent, None).await.unwrap();
//! assert_eq!(coord.get(&key).await.unwrap().unwrap().revision, rev);
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
//! # }
//! ```
#![warn(missing_docs)]
#![warn(clippy::unwrap_used)]

mod link;
mod store;

use std::sync::{Arc, Once};
use std::time::Duration;

use async_trait::async_trait;
use cluster_core::coordination::{
    Capabilities, ClaimStore, CoordError, CoordResult, Coordinator, ElectionStore, Expect, Fence,
    Key, KeyPrefix, KvEntry, KvStore, LeaderInfo, LeaderStream, Leadership, LeaseGrant, LeaseId,
    LeaseStore, LockStore, MembershipStore, Operation, WatchHistory, WatchStart, WatchStore,
    WatchStream, WatchTarget, queue_election,
};
use cluster_core::ids::{FencingToken, Revision};
use futures::StreamExt;
use tokio::sync::mpsc;

pub use link::{Link, LinkMode};
use store::MemStore;

/// The default deadline of a call over a blackholed link.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// A handle to an in-memory coordination store.
#[derive(Clone)]
pub struct MemCoordinator {
    store: Arc<MemStore>,
    link: Arc<Link>,
    call_timeout: Duration,
    reaper: Arc<Once>,
}

impl std::fmt::Debug for MemCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemCoordinator")
            .field("link", &self.link.mode())
            .finish_non_exhaustive()
    }
}

impl Default for MemCoordinator {
    fn default() -> Self {
        Self::new()
    }
}

impl MemCoordinator {
    /// A new, empty store and a handle to it.
    pub fn new() -> Self {
        MemCoordinator {
            store: Arc::new(MemStore::new()),
            link: Arc::new(Link::default()),
            call_timeout: DEFAULT_CALL_TIMEOUT,
            reaper: Arc::new(Once::new()),
        }
    }

    /// Another handle to the same store, with a link of its own.
    pub fn connect(&self) -> Self {
        MemCoordinator {
            store: self.store.clone(),
            link: Arc::new(Link::default()),
            call_timeout: self.call_timeout,
            reaper: self.reaper.clone(),
        }
    }

    /// This handle with another call deadline for blackholed links.
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// This handle's link, to inject faults.
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// Takes the whole store down (every call fails `Unavailable`) or brings it back.
    pub fn set_store_down(&self, down: bool) {
        self.store.lock().down = down;
    }

    /// Drops watch history up to `revision`, as etcd's compaction does.
    pub fn compact(&self, revision: Revision) {
        self.store.lock().compact(revision);
    }

    /// The store's current revision.
    pub fn revision(&self) -> Revision {
        self.store.lock().revision()
    }

    /// Waits for the link and checks the store is up, as a network call would.
    async fn gate(&self, op: Operation) -> CoordResult<()> {
        if !self.link.wait_pass(Some(self.call_timeout)).await {
            return Err(CoordError::timed_out(op, self.call_timeout));
        }
        if self.store.lock().down {
            return Err(CoordError::unavailable(op, StoreDown));
        }
        Ok(())
    }

    /// Fails a write whose request the link loses before it reaches the store.
    fn send(&self, op: Operation, key: &Key) -> CoordResult<()> {
        if self.link.request_lost(&key.path()) {
            return Err(CoordError::unavailable(op, RequestLost));
        }
        Ok(())
    }

    /// Answers a write that was applied: its reply is lost when the link says so.
    fn reply<T>(&self, op: Operation, key: Option<&Key>, result: CoordResult<T>) -> CoordResult<T> {
        if self.link.reply_lost(key.map(Key::path).as_deref()) {
            return Err(CoordError::unavailable(op, ReplyLost));
        }
        result
    }

    fn start_reaper(&self) {
        let store = Arc::downgrade(&self.store);
        self.reaper.call_once(|| {
            tokio::spawn(store::reap(store));
        });
    }
}

/// A write was lost on the simulated link before it reached the store.
#[derive(Debug, thiserror::Error)]
#[error("the request was lost before it reached the store")]
struct RequestLost;

/// The reply of an applied write was lost on the simulated link.
#[derive(Debug, thiserror::Error)]
#[error("the reply was lost after the store applied the call")]
struct ReplyLost;

/// The simulated store is down.
#[derive(Debug, thiserror::Error)]
#[error("the in-memory store is down")]
struct StoreDown;

#[async_trait]
impl LeaseStore for MemCoordinator {
    async fn grant_lease(&self, ttl: Duration) -> CoordResult<LeaseGrant> {
        self.gate(Operation::GrantLease).await?;
        if ttl.is_zero() {
            return Err(CoordError::bad_request(
                "lease ttl must be greater than zero",
            ));
        }
        self.start_reaper();
        let id = self.store.lock().grant(ttl);
        self.store.lease_changed.notify_one();
        self.reply(Operation::GrantLease, None, Ok(LeaseGrant { id, ttl }))
    }

    async fn renew_lease(&self, lease: &LeaseId) -> CoordResult<Duration> {
        self.gate(Operation::RenewLease).await?;
        let ttl = self.store.lock().renew(lease)?;
        self.store.lease_changed.notify_one();
        self.reply(Operation::RenewLease, None, Ok(ttl))
    }

    async fn revoke_lease(&self, lease: &LeaseId) -> CoordResult<()> {
        self.gate(Operation::RevokeLease).await?;
        self.store.lock().revoke(lease);
        self.reply(Operation::RevokeLease, None, Ok(()))
    }
}

#[async_trait]
impl KvStore for MemCoordinator {
    async fn get(&self, key: &Key) -> CoordResult<Option<KvEntry>> {
        self.gate(Operation::Read).await?;
        Ok(self.store.lock().get(key))
    }

    async fn list(&self, prefix: &KeyPrefix) -> CoordResult<Vec<KvEntry>> {
        self.gate(Operation::Read).await?;
        Ok(self.store.lock().list(prefix))
    }

    async fn put(
        &self,
        key: &Key,
        value: Vec<u8>,
        expect: Expect,
        lease: Option<&LeaseId>,
    ) -> CoordResult<Revision> {
        self.gate(Operation::Write).await?;
        self.send(Operation::Write, key)?;
        let result = self.store.lock().put(key, value, expect, lease);
        self.reply(Operation::Write, Some(key), result)
    }

    async fn delete(&self, key: &Key, expect: Expect) -> CoordResult<bool> {
        self.gate(Operation::Write).await?;
        self.send(Operation::Write, key)?;
        let result = self.store.lock().delete(key, expect);
        self.reply(Operation::Write, Some(key), result)
    }

    async fn put_if_held(&self, key: &Key, value: Vec<u8>, fence: &Fence) -> CoordResult<Revision> {
        self.gate(Operation::Write).await?;
        self.send(Operation::Write, key)?;
        let result = {
            let mut state = self.store.lock();
            let current = state
                .get(&fence.key)
                .map(|e| FencingToken::from(e.revision));
            if current != Some(fence.token) {
                return Err(CoordError::StaleToken {
                    resource: fence.key.path(),
                    presented: fence.token,
                    current,
                });
            }
            state.put(key, value, Expect::Any, None)
        };
        self.reply(Operation::Write, Some(key), result)
    }
}

#[async_trait]
impl WatchStore for MemCoordinator {
    async fn watch(&self, target: WatchTarget, start: WatchStart) -> CoordResult<WatchStream> {
        self.gate(Operation::Watch).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let after = match start {
            WatchStart::Now => None,
            WatchStart::After(r) => Some(r),
        };
        self.store.lock().watch(target, after, tx)?;
        let link = self.link.clone();
        // Events wait while the link is cut, as they would in a socket buffer, and flow on heal.
        Ok(
            futures::stream::unfold((rx, link), |(mut rx, link)| async move {
                let event = rx.recv().await?;
                link.wait_pass(None).await;
                Some((Ok(event), (rx, link)))
            })
            .boxed(),
        )
    }
}

/// Withdraws a candidacy whose campaign was dropped before it won.
struct Withdraw {
    store: Arc<MemStore>,
    key: Option<Key>,
}

impl Drop for Withdraw {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let _ = self.store.lock().delete(&key, Expect::Any);
        }
    }
}

#[async_trait]
impl ElectionStore for MemCoordinator {
    async fn campaign(
        &self,
        election: &Key,
        holder: &str,
        lease: &LeaseId,
    ) -> CoordResult<Leadership> {
        self.gate(Operation::Election).await?;
        let (key, created) = queue_election::enter(self, election, holder, lease).await?;
        let mut withdraw = Withdraw {
            store: self.store.clone(),
            key: Some(key.clone()),
        };
        let term = queue_election::wait_turn(self, election, holder, lease, key, created).await;
        if term.is_ok() {
            withdraw.key = None;
        }
        term
    }

    async fn resign(&self, leadership: &Leadership) -> CoordResult<()> {
        self.gate(Operation::Election).await?;
        queue_election::resign(self, leadership).await
    }

    async fn leader(&self, election: &Key) -> CoordResult<Option<LeaderInfo>> {
        queue_election::leader(self, election).await
    }

    async fn observe_leader(&self, election: &Key) -> CoordResult<LeaderStream> {
        queue_election::observe(self, election).await
    }
}

impl MembershipStore for MemCoordinator {}
impl ClaimStore for MemCoordinator {}
impl LockStore for MemCoordinator {}

impl Coordinator for MemCoordinator {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            backend: "mem",
            watch_history: WatchHistory::FullHistory,
            put_if_held: true,
        }
    }
}
