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
mod error;
mod watch;

use cluster_core::error::Retryable;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use cluster_core::coordination::{
    Capabilities, ClaimStore, ConflictDetail, CoordError, CoordResult, Coordinator, ElectionStore,
    Expect, Fence, Key, KeyPrefix, KvEntry, KvStore, LeaderInfo, LeaderStream, Leadership,
    LeaseGrant, LeaseId, LeaseStore, LockStore, MembershipStore, Operation, WatchHistory,
    WatchStart, WatchStore, WatchStream, WatchTarget, queue_election,
};
use cluster_core::ids::{FencingToken, Revision};
use cluster_core::naming::Namespace;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, KeyValue,
    LeaseKeepAliveStream, LeaseKeeper, PutOptions, SortOrder, SortTarget, Txn, TxnOp,
    TxnOpResponse,
};
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

/// etcd's lease id from ours (lowercase hex, as etcd's recipes write it into keys).
fn lease_number(lease: &LeaseId) -> CoordResult<i64> {
    u64::from_str_radix(lease.as_str(), 16)
        .map(|n| n as i64)
        .map_err(|_| CoordError::bad_request(format!("{lease} is not an etcd lease id")))
}

fn lease_id(n: i64) -> LeaseId {
    LeaseId::new(format!("{:x}", n as u64))
}

fn revision(r: i64) -> Revision {
    Revision(r.max(0) as u64)
}

/// Our entry from an etcd key-value, given the namespace it was read from.
pub(crate) fn entry(ns: &Namespace, kv: &KeyValue) -> Option<KvEntry> {
    let path = std::str::from_utf8(kv.key()).ok()?;
    let name = path.strip_prefix(&ns.key_prefix())?;
    let key = Key::new(ns.clone(), name).ok()?;
    Some(KvEntry {
        key,
        value: kv.value().to_vec(),
        revision: revision(kv.mod_revision()),
        created: Some(revision(kv.create_revision())),
        lease: (kv.lease() != 0).then(|| lease_id(kv.lease())),
    })
}

fn compare(key: &Key, expect: Expect) -> Option<Compare> {
    match expect {
        Expect::Any => None,
        Expect::Absent => Some(Compare::create_revision(key.path(), CompareOp::Equal, 0)),
        Expect::Revision(r) => Some(Compare::mod_revision(
            key.path(),
            CompareOp::Equal,
            r.0 as i64,
        )),
    }
}

/// The conflict for a failed compare, from the `Get` in the transaction's else branch.
fn conflict(key: &Key, expect: Expect, responses: &[TxnOpResponse]) -> CoordError {
    let found = responses.iter().find_map(|r| match r {
        TxnOpResponse::Get(get) => get.kvs().first().map(|kv| revision(kv.mod_revision())),
        _ => None,
    });
    let detail = match (expect, found) {
        (Expect::Absent, Some(revision)) => ConflictDetail::Exists { revision },
        (Expect::Revision(expected), found) => ConflictDetail::RevisionMoved { expected, found },
        (_, found) => ConflictDetail::RevisionMoved {
            expected: Revision(0),
            found,
        },
    };
    CoordError::Conflict {
        key: key.path(),
        detail,
    }
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Revision {
    revision(header.map_or(0, |h| h.revision()))
}

#[async_trait]
impl LeaseStore for EtcdCoordinator {
    async fn grant_lease(&self, ttl: Duration) -> CoordResult<LeaseGrant> {
        let secs = ttl.as_secs_f64().ceil().max(1.0) as i64;
        let resp = self
            .call(Operation::GrantLease, None, |client| async move {
                client.lease_client().grant(secs, None).await
            })
            .await?;
        if !resp.error().is_empty() {
            return Err(CoordError::bad_request(format!(
                "lease grant: {}",
                resp.error()
            )));
        }
        Ok(LeaseGrant {
            id: lease_id(resp.id()),
            ttl: Duration::from_secs(resp.ttl().max(0) as u64),
        })
    }

    async fn renew_lease(&self, lease: &LeaseId) -> CoordResult<Duration> {
        let id = lease_number(lease)?;
        let slot = {
            let mut map = self.keep_alives.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(id).or_default().clone()
        };
        let mut stream = slot.lock().await;
        let index = self.current.load(Ordering::Relaxed) % self.clients.len();
        let outcome = tokio::time::timeout(self.config.call_timeout, async {
            if stream.is_none() {
                let mut client = self.clients[index].lease_client();
                *stream = Some(client.keep_alive(id).await?);
            }
            let Some((keeper, responses)) = stream.as_mut() else {
                return Err(etcd_client::Error::LeaseKeepAliveError("no stream".into()));
            };
            keeper.keep_alive().await?;
            match responses.message().await? {
                Some(resp) => Ok(resp.ttl()),
                None => Err(etcd_client::Error::LeaseKeepAliveError(
                    "keep-alive stream closed".into(),
                )),
            }
        })
        .await;
        match outcome {
            Ok(Ok(ttl)) if ttl > 0 => Ok(Duration::from_secs(ttl as u64)),
            Ok(Ok(_)) => {
                // TTL 0: etcd no longer knows the lease.
                *stream = None;
                self.forget(id);
                Err(CoordError::LeaseLost {
                    lease: lease.clone(),
                })
            }
            Ok(Err(e)) => {
                *stream = None;
                let e = error::map(Operation::RenewLease, Some(lease.as_str()), e);
                if e.is_retryable() {
                    self.rotate(index);
                }
                Err(e)
            }
            Err(_) => {
                // The stream may hold a late answer; start a fresh one, elsewhere, next time.
                *stream = None;
                self.rotate(index);
                Err(CoordError::timed_out(
                    Operation::RenewLease,
                    self.config.call_timeout,
                ))
            }
        }
    }

    async fn revoke_lease(&self, lease: &LeaseId) -> CoordResult<()> {
        let id = lease_number(lease)?;
        self.forget(id);
        match self
            .call(
                Operation::RevokeLease,
                Some(lease.as_str()),
                |client| async move { client.lease_client().revoke(id).await },
            )
            .await
        {
            Ok(_) | Err(CoordError::LeaseLost { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl EtcdCoordinator {
    fn forget(&self, id: i64) {
        self.keep_alives
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }
}

#[async_trait]
impl KvStore for EtcdCoordinator {
    async fn get(&self, key: &Key) -> CoordResult<Option<KvEntry>> {
        let path = key.path();
        let resp = self
            .call(Operation::Read, None, |client| {
                let path = path.clone();
                async move { client.kv_client().get(path, None).await }
            })
            .await?;
        Ok(resp.kvs().first().and_then(|kv| entry(key.namespace(), kv)))
    }

    async fn list(&self, prefix: &KeyPrefix) -> CoordResult<Vec<KvEntry>> {
        let path = prefix.path();
        let resp = self
            .call(Operation::Read, None, |client| {
                let path = path.clone();
                let options = GetOptions::new()
                    .with_prefix()
                    .with_sort(SortTarget::Key, SortOrder::Ascend);
                async move { client.kv_client().get(path, Some(options)).await }
            })
            .await?;
        Ok(resp
            .kvs()
            .iter()
            .filter_map(|kv| entry(prefix.namespace(), kv))
            .collect())
    }

    async fn put(
        &self,
        key: &Key,
        value: Vec<u8>,
        expect: Expect,
        lease: Option<&LeaseId>,
    ) -> CoordResult<Revision> {
        let lease_n = lease.map(lease_number).transpose()?.unwrap_or(0);
        let lease_s = lease.map(LeaseId::as_str);
        let put = TxnOp::put(
            key.path(),
            value,
            Some(PutOptions::new().with_lease(lease_n)),
        );
        let txn = match compare(key, expect) {
            None => Txn::new().and_then([put]),
            Some(c) => Txn::new()
                .when([c])
                .and_then([put])
                .or_else([TxnOp::get(key.path(), None)]),
        };
        let resp = self.txn(Operation::Write, lease_s, txn).await?;
        if !resp.succeeded() {
            return Err(conflict(key, expect, &resp.op_responses()));
        }
        Ok(header_revision(resp.header()))
    }

    async fn delete(&self, key: &Key, expect: Expect) -> CoordResult<bool> {
        let delete = TxnOp::delete(key.path(), Some(DeleteOptions::new()));
        let txn = match compare(key, expect) {
            None => Txn::new().and_then([delete]),
            Some(c) => Txn::new()
                .when([c])
                .and_then([delete])
                .or_else([TxnOp::get(key.path(), None)]),
        };
        let resp = self.txn(Operation::Write, None, txn).await?;
        if !resp.succeeded() {
            return Err(conflict(key, expect, &resp.op_responses()));
        }
        Ok(resp.op_responses().iter().any(|r| match r {
            TxnOpResponse::Delete(d) => d.deleted() > 0,
            _ => false,
        }))
    }

    async fn put_if_held(&self, key: &Key, value: Vec<u8>, fence: &Fence) -> CoordResult<Revision> {
        let txn = Txn::new()
            .when([Compare::mod_revision(
                fence.key.path(),
                CompareOp::Equal,
                fence.token.get() as i64,
            )])
            .and_then([TxnOp::put(key.path(), value, None)])
            .or_else([TxnOp::get(fence.key.path(), None)]);
        let resp = self.txn(Operation::Write, None, txn).await?;
        if resp.succeeded() {
            return Ok(header_revision(resp.header()));
        }
        let current = resp.op_responses().iter().find_map(|r| match r {
            TxnOpResponse::Get(get) => get
                .kvs()
                .first()
                .map(|kv| FencingToken::new(kv.mod_revision().max(0) as u64)),
            _ => None,
        });
        Err(CoordError::StaleToken {
            resource: fence.key.path(),
            presented: fence.token,
            current,
        })
    }
}

#[async_trait]
impl WatchStore for EtcdCoordinator {
    async fn watch(&self, target: WatchTarget, start: WatchStart) -> CoordResult<WatchStream> {
        watch::open(self.clone(), target, start).await
    }
}

/// Withdraws a candidacy whose campaign was dropped before it won.
struct Withdraw {
    coord: EtcdCoordinator,
    candidacy: Option<(Key, Revision)>,
}

impl Drop for Withdraw {
    fn drop(&mut self) {
        if let Some((key, created)) = self.candidacy.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            let coord = self.coord.clone();
            handle.spawn(async move {
                let txn = Txn::new()
                    .when([Compare::create_revision(
                        key.path(),
                        CompareOp::Equal,
                        created.0 as i64,
                    )])
                    .and_then([TxnOp::delete(key.path(), None)]);
                let _ = coord.txn(Operation::Election, None, txn).await;
            });
        }
    }
}

#[async_trait]
impl ElectionStore for EtcdCoordinator {
    async fn campaign(
        &self,
        election: &Key,
        holder: &str,
        lease: &LeaseId,
    ) -> CoordResult<Leadership> {
        let (key, created) = queue_election::enter(self, election, holder, lease).await?;
        let mut withdraw = Withdraw {
            coord: self.clone(),
            candidacy: Some((key.clone(), created)),
        };
        let term = queue_election::wait_turn(self, election, holder, lease, key, created).await;
        if term.is_ok() {
            withdraw.candidacy = None;
        }
        term
    }

    async fn resign(&self, leadership: &Leadership) -> CoordResult<()> {
        queue_election::resign(self, leadership).await
    }

    async fn leader(&self, election: &Key) -> CoordResult<Option<LeaderInfo>> {
        queue_election::leader(self, election).await
    }

    async fn observe_leader(&self, election: &Key) -> CoordResult<LeaderStream> {
        queue_election::observe(self, election).await
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
