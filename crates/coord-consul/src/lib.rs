//! Coordinator adapter over Consul's HTTP API.
//!
//! Implements `cluster_core`'s coordination port with Consul's own primitives:
//!
//! | port | Consul |
//! | --- | --- |
//! | lease | a session: TTL only (`Checks: []`, so a gossip flap cannot drop it), `Behavior: delete` (its keys vanish with it), our lock-delay; renewed with `PUT /v1/session/renew`, revoked with `PUT /v1/session/destroy` |
//! | revision | the key's `ModifyIndex` (`CreateIndex` as its create revision) |
//! | conditional writes | `/v1/txn` with `cas` (index 0 = create only) or, for keys bound to a lease, `check-not-exists`/`check-index` then `lock` with the session |
//! | `put_if_held` | `/v1/txn`: `check-index` of the fence key at the token, then `set` |
//! | watch | blocking queries (`?index=&wait=`); latest values, a new snapshot after any gap or index reset |
//! | election, lock | Consul's own lock layout (`api.Lock`, `consul lock`): `{name}/.lock` acquired with `?acquire=<session>&flags=3304740253564472344`; the token is the key's `ModifyIndex` read back after an acquire showing our session |
//! | claims | the claim key's `ModifyIndex`, written only when the owner changes |
//!
//! Consul's lease arithmetic, honestly: a session may live up to twice its TTL after its last
//! renewal, a new Consul leader restarts every session's TTL, and when a session is
//! invalidated its keys cannot be acquired for its lock-delay. The local lost signal
//! (`coord_client::Session`) fires at `ttl - margin` after the last acknowledged renewal, so it
//! always comes before Consul's earliest expiry; the next holder waits up to `2 x ttl +
//! lock_delay` in the worst case. Writes bound to a lease that hit a lock-delay are retried
//! until it passes (at most `lock_delay + call_timeout`).
//!
//! Every request has a deadline ([`ConsulConfig::call_timeout`]; blocking queries their wait
//! plus Consul's jitter plus the call timeout): a store that does not answer gives
//! `Unavailable`, never a hang.
#![warn(missing_docs)]
#![warn(clippy::unwrap_used)]

mod api;
mod config;
mod election;
mod kv;
mod tls;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cluster_core::coordination::{
    Capabilities, ClaimStore, CoordError, CoordResult, Coordinator, Key, KeyPrefix, KvEntry,
    LeaseGrant, LeaseId, LeaseStore, LockStore, MembershipStore, Operation, WatchHistory,
    WatchStart, WatchStore, WatchStream, WatchTarget,
};
use cluster_core::ids::Revision;
use cluster_core::naming::Namespace;
use reqwest::{Method, StatusCode};

use api::{Api, Call, KvPair, SessionCreated, SessionEntry, SharedApi};
pub use config::{ConfigError, ConsulConfig};

/// The Consul adapter. Cheap to clone; clones share the HTTP connections.
#[derive(Clone)]
pub struct ConsulCoordinator {
    api: SharedApi,
    config: Arc<ConsulConfig>,
}

impl std::fmt::Debug for ConsulCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsulCoordinator")
            .field("address", &self.config.address)
            .field("datacenter", &self.config.datacenter)
            .finish_non_exhaustive()
    }
}

impl ConsulCoordinator {
    /// Builds the adapter. Reads the TLS files but sends no request: a store that is down shows
    /// on the first call.
    pub fn new(config: ConsulConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let api = Api::new(&config)?;
        Ok(ConsulCoordinator {
            api: Arc::new(api),
            config: Arc::new(config),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ConsulConfig {
        &self.config
    }

    /// The TTL asked of Consul: at least its minimum, in whole seconds (rounded up).
    fn session_ttl(&self, asked: Duration) -> Duration {
        let ttl = asked.max(self.config.session_ttl_min);
        let whole = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        Duration::from_secs(whole.max(1))
    }

    /// The raw entry at a Consul key (a linearizable read).
    async fn raw_get(&self, path: &str, op: Operation) -> CoordResult<Option<KvPair>> {
        let answer = self
            .api
            .send(Call {
                op,
                method: Method::GET,
                path: &format!("kv/{path}"),
                params: &[("consistent", String::new())],
                body: None,
                lease: None,
                deadline: None,
            })
            .await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let pairs: Vec<KvPair> = answer.json(op)?;
        Ok(pairs.into_iter().find(|p| p.key == path))
    }
}

/// The Consul key of `key`: its path without the leading `/` (as Consul's own clients write).
pub(crate) fn consul_key(key: &Key) -> String {
    key.path().trim_start_matches('/').to_owned()
}

/// The Consul key prefix of `prefix`.
pub(crate) fn consul_prefix(prefix: &KeyPrefix) -> String {
    prefix.path().trim_start_matches('/').to_owned()
}

/// Our entry from a Consul entry read from `ns`; `None` for keys outside it or with names the
/// port does not allow (written by someone else).
pub(crate) fn entry_of(ns: &Namespace, pair: &KvPair) -> Option<KvEntry> {
    let ns_prefix = ns.key_prefix();
    let name = pair.key.strip_prefix(ns_prefix.trim_start_matches('/'))?;
    let key = Key::new(ns.clone(), name).ok()?;
    Some(KvEntry {
        key,
        value: pair.bytes(),
        revision: Revision(pair.modify_index),
        created: Some(Revision(pair.create_index)),
        lease: pair.holder().map(LeaseId::new),
    })
}

/// A session id as a URL path segment.
fn session_path(verb: &str, lease: &LeaseId) -> CoordResult<String> {
    let id = lease.as_str();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(CoordError::bad_request(format!(
            "{id:?} is not a Consul session id"
        )));
    }
    Ok(format!("session/{verb}/{id}"))
}

#[async_trait]
impl LeaseStore for ConsulCoordinator {
    async fn grant_lease(&self, ttl: Duration) -> CoordResult<LeaseGrant> {
        let ttl = self.session_ttl(ttl);
        let body = serde_json::json!({
            "Name": "cluster-coordination",
            "TTL": format!("{}s", ttl.as_secs()),
            "Behavior": "delete",
            "LockDelay": format!("{}ms", self.config.lock_delay.as_millis()),
            // TTL only: no serfHealth, so a gossip flap cannot invalidate the session.
            "Checks": [],
            "NodeChecks": [],
        });
        let answer = self
            .api
            .send(Call {
                op: Operation::GrantLease,
                method: Method::PUT,
                path: "session/create",
                params: &[],
                body: Some(body.to_string().into_bytes()),
                lease: None,
                deadline: None,
            })
            .await?;
        if answer.status != StatusCode::OK {
            return Err(CoordError::bad_request(format!(
                "session create answered {}",
                answer.status
            )));
        }
        let created: SessionCreated = answer.json(Operation::GrantLease)?;
        Ok(LeaseGrant {
            id: LeaseId::new(created.id),
            ttl,
        })
    }

    async fn renew_lease(&self, lease: &LeaseId) -> CoordResult<Duration> {
        let answer = self
            .api
            .send(Call {
                op: Operation::RenewLease,
                method: Method::PUT,
                path: &session_path("renew", lease)?,
                params: &[],
                body: None,
                lease: Some(lease),
                deadline: None,
            })
            .await?;
        let lost = || CoordError::LeaseLost {
            lease: lease.clone(),
        };
        if answer.status == StatusCode::NOT_FOUND {
            return Err(lost());
        }
        let sessions: Vec<SessionEntry> = answer.json(Operation::RenewLease)?;
        let session = sessions.first().ok_or_else(lost)?;
        api::parse_go_duration(&session.ttl).ok_or_else(|| {
            CoordError::unavailable(
                Operation::RenewLease,
                api::Malformed(format!("session TTL {:?}", session.ttl)),
            )
        })
    }

    async fn revoke_lease(&self, lease: &LeaseId) -> CoordResult<()> {
        self.api
            .send(Call {
                op: Operation::RevokeLease,
                method: Method::PUT,
                path: &session_path("destroy", lease)?,
                params: &[],
                body: None,
                lease: Some(lease),
                deadline: None,
            })
            .await?;
        Ok(())
    }
}

#[async_trait]
impl WatchStore for ConsulCoordinator {
    async fn watch(&self, target: WatchTarget, start: WatchStart) -> CoordResult<WatchStream> {
        if let WatchStart::After(_) = start {
            return Err(CoordError::Unsupported {
                operation: "watch from a revision",
                backend: "consul",
                reason: "Consul keeps no history: blocking queries return the latest values",
            });
        }
        watch::open(
            self.api.clone(),
            self.config.watch_wait,
            watch::Scope::new(target),
        )
        .await
    }
}

/// Membership over the KV port: records are written with `lock` under the node's session, so
/// they vanish when it ends (`Behavior: delete`).
impl MembershipStore for ConsulCoordinator {}

/// Claims over the KV port: the claim key is written (locked by the owner's session) only when
/// the owner changes, so its `ModifyIndex` is the token. A transfer unlocks the old owner's
/// session and locks the new one's in one transaction guarded by `check-index`.
impl ClaimStore for ConsulCoordinator {}

/// Locks are elections named after the lock: Consul's `{name}/.lock` layout.
impl LockStore for ConsulCoordinator {}

impl Coordinator for ConsulCoordinator {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            backend: "consul",
            watch_history: WatchHistory::LatestValue,
            put_if_held: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ttls_are_raised_to_the_minimum_in_whole_seconds() {
        let c = ConsulCoordinator::new(ConsulConfig::default()).unwrap();
        assert_eq!(
            c.session_ttl(Duration::from_secs(2)),
            Duration::from_secs(10)
        );
        assert_eq!(
            c.session_ttl(Duration::from_millis(10_100)),
            Duration::from_secs(11)
        );
        assert!(session_path("renew", &LeaseId::new("../x")).is_err());
    }
}
