//! Coordinator adapter over etcd v3.
//!
//! Implements `cluster_core`'s coordination port with etcd's own primitives:
//!
//! | port | etcd |
//! | --- | --- |
//! | lease | `LeaseGrant` (etcd may raise a TTL below its minimum; the granted TTL is returned), one `LeaseKeepAlive` round trip per renewal on a reused stream, `LeaseRevoke` |
//! | conditional writes | a `Txn` comparing `create_revision == 0` (absent) or `mod_revision == r` |
//! | `put_if_held` | a `Txn` comparing `mod_revision(fence key) == token`, then the put |
//! | watch | a `Range` for the snapshot, then `Watch` from the next revision; resumed from the last delivered revision after any break, so no revision is missed (full history); a compacted start is `Compacted` |
//! | election, lock | etcd's concurrency recipe: candidates at `{name}/{lease hex}`, lowest create revision leads, each waiter watches its predecessor; the token is the candidacy's create revision (`Election.Rev()`), so `etcdctl elect` and `etcdctl lock` contend with our nodes |
//! | claims | the claim key's `mod_revision`, written only when the owner changes |
//!
//! Every unary call has a deadline ([`EtcdConfig::call_timeout`]); a store that does not answer
//! gives `Unavailable`, never a hang.
#![warn(missing_docs)]
#![warn(clippy::unwrap_used)]

mod config;
mod election;
mod error;
mod kv;
mod lease;
mod watch;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use cluster_core::coordination::{
    Capabilities, ClaimStore, CoordError, CoordResult, Coordinator, LockStore, MembershipStore,
    Operation, WatchHistory, WatchStart, WatchStore, WatchStream, WatchTarget,
};
use cluster_core::error::Retryable;
use etcd_client::{Client, ConnectOptions, LeaseKeepAliveStream, LeaseKeeper, Txn};
use tokio::sync::Mutex;

pub use config::{ConfigError, EtcdConfig};

/// A keep-alive stream kept open between renewals of one lease.
type KeepAlive = Arc<Mutex<Option<(LeaseKeeper, LeaseKeepAliveStream)>>>;

/// The etcd adapter. Cheap to clone; clones share the connections.
///
/// One connection per endpoint; calls go to a sticky current endpoint and move to the next one
/// when it fails. A call is retried on another endpoint only when it provably never reached a
/// server (connection refused, member without a leader), so no write is ever applied twice.
#[derive(Clone)]
pub struct EtcdCoordinator {
    clients: Arc<[Client]>,
    current: Arc<AtomicUsize>,
    config: Arc<EtcdConfig>,
    keep_alives: Arc<std::sync::Mutex<HashMap<i64, KeepAlive>>>,
}

impl std::fmt::Debug for EtcdCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdCoordinator")
            .field("endpoints", &self.config.endpoints)
            .finish_non_exhaustive()
    }
}

/// Why the adapter could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The client could not be set up (bad URL, TLS).
    #[error("etcd client: {0}")]
    Client(#[from] etcd_client::Error),
}

impl Retryable for ConnectError {
    /// A server that is not up yet may be later; a bad configuration stays bad.
    fn is_retryable(&self) -> bool {
        match self {
            ConnectError::Config(_) => false,
            ConnectError::Client(_) => true,
        }
    }

    fn as_metrics_label(&self) -> &'static str {
        match self {
            ConnectError::Config(_) => "config",
            ConnectError::Client(_) => "connect",
        }
    }
}

impl EtcdCoordinator {
    /// Builds the adapter. No request is sent: a store that is down shows on the first call.
    pub async fn connect(config: EtcdConfig) -> Result<Self, ConnectError> {
        config.validate()?;
        let mut options = ConnectOptions::new()
            .with_connect_timeout(config.connect_timeout)
            .with_keep_alive(config.keep_alive_interval, config.keep_alive_timeout)
            .with_keep_alive_while_idle(true)
            // A member cut off from the leader must fail calls and watches, not serve stale data.
            .with_require_leader(true);
        if let (Some(user), Some(password)) = (&config.username, &config.password) {
            options = options.with_user(user.clone(), password.clone());
        }
        let mut clients = Vec::with_capacity(config.endpoints.len());
        for endpoint in &config.endpoints {
            clients.push(Client::connect([endpoint], Some(options.clone())).await?);
        }
        Ok(EtcdCoordinator {
            clients: clients.into(),
            current: Arc::default(),
            config: Arc::new(config),
            keep_alives: Arc::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &EtcdConfig {
        &self.config
    }

    /// The client of the current endpoint, for operations the port does not cover
    /// (compaction, status).
    pub fn client(&self) -> Client {
        let i = self.current.load(Ordering::Relaxed) % self.clients.len();
        self.clients[i].clone()
    }

    /// Moves to the next endpoint after `failed` failed (unless another call already moved).
    pub(crate) fn rotate(&self, failed: usize) {
        let next = (failed + 1) % self.clients.len();
        let _ = self
            .current
            .compare_exchange(failed, next, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Runs one unary call under the call deadline, failing over between endpoints.
    // The call deadline runs on tokio's clock, which `timeout_at` sleeps on.
    #[allow(clippy::disallowed_methods)]
    async fn call<T, F, Fut>(
        &self,
        op: Operation,
        lease: Option<&str>,
        mut request: F,
    ) -> CoordResult<T>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = tokio::time::Instant::now() + self.config.call_timeout;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let index = self.current.load(Ordering::Relaxed) % self.clients.len();
            let client = self.clients[index].clone();
            match tokio::time::timeout_at(deadline, request(client)).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => {
                    if error::is_connection_failure(&e) {
                        self.rotate(index);
                        if error::never_reached_server(&e) && attempts < self.clients.len() * 2 {
                            continue;
                        }
                    }
                    return Err(error::map(op, lease, e));
                }
                Err(_) => {
                    // The request may have been applied: do not retry it, but try another
                    // endpoint next time.
                    self.rotate(index);
                    return Err(CoordError::timed_out(op, self.config.call_timeout));
                }
            }
        }
    }

    async fn txn(
        &self,
        op: Operation,
        lease: Option<&str>,
        txn: Txn,
    ) -> CoordResult<etcd_client::TxnResponse> {
        self.call(op, lease, |client| {
            let txn = txn.clone();
            async move { client.kv_client().txn(txn).await }
        })
        .await
    }
}

#[async_trait]
impl WatchStore for EtcdCoordinator {
    async fn watch(&self, target: WatchTarget, start: WatchStart) -> CoordResult<WatchStream> {
        watch::open(self.clone(), target, start).await
    }
}

impl MembershipStore for EtcdCoordinator {}
impl ClaimStore for EtcdCoordinator {}
impl LockStore for EtcdCoordinator {}

impl Coordinator for EtcdCoordinator {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            backend: "etcd",
            watch_history: WatchHistory::FullHistory,
            put_if_held: true,
        }
    }
}
