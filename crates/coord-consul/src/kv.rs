//! Keys: reads, conditional writes, writes bound to a session, and fenced writes, each one
//! `/v1/txn` so the condition and the write are one store operation.
// The lock-delay retry budget is a call deadline on tokio's clock; no ownership decision is taken on it.
#![allow(clippy::disallowed_methods)]

use async_trait::async_trait;
use cluster_core::coordination::{
    ConflictDetail, CoordError, CoordResult, Expect, Fence, Key, KeyPrefix, KvEntry, KvStore,
    LeaseId, Operation,
};
use cluster_core::ids::{FencingToken, Revision};
use reqwest::{Method, StatusCode};
use tokio::time::Instant;

use crate::api::{Call, KvPair, Malformed, TxnKv, TxnOutcome};
use crate::{ConsulCoordinator, consul_key, consul_prefix, entry_of};

/// How often a conditional write with `Expect::Any` is retried when the key moves under it.
const ANY_ATTEMPTS: u32 = 5;

/// An acquire kept failing while the key was free: a lock-delay outlived our wait.
#[derive(Debug, thiserror::Error)]
#[error("{key} is held back by a lock-delay")]
pub(crate) struct LockDelayed {
    key: String,
}

impl ConsulCoordinator {
    fn committed_revision(results: &[KvPair], path: &str, op: Operation) -> CoordResult<Revision> {
        TxnOutcome::last_for(results, path)
            .map(|p| Revision(p.modify_index))
            .ok_or_else(|| {
                CoordError::unavailable(op, Malformed(format!("no transaction result for {path}")))
            })
    }

    /// The conflict a failed condition on `key` means, from its current state.
    async fn conflict(&self, key: &Key, expect: Expect) -> CoordResult<CoordError> {
        let found = self
            .raw_get(&consul_key(key), Operation::Write)
            .await?
            .map(|p| Revision(p.modify_index));
        let detail = match (expect, found) {
            (Expect::Revision(expected), found) => {
                ConflictDetail::RevisionMoved { expected, found }
            }
            (_, Some(revision)) => ConflictDetail::Exists { revision },
            (_, None) => ConflictDetail::RevisionMoved {
                expected: Revision(0),
                found: None,
            },
        };
        Ok(CoordError::Conflict {
            key: key.path(),
            detail,
        })
    }

    async fn put_plain(&self, key: &Key, value: &[u8], expect: Expect) -> CoordResult<Revision> {
        let path = consul_key(key);
        let op = match expect {
            Expect::Any => TxnKv::set(&path, value),
            Expect::Absent => TxnKv::cas(&path, value, 0),
            Expect::Revision(r) => TxnKv::cas(&path, value, r.0),
        };
        match self.api.txn(Operation::Write, vec![op], None).await? {
            TxnOutcome::Committed(results) => {
                Self::committed_revision(&results, &path, Operation::Write)
            }
            TxnOutcome::RolledBack(_) => Err(self.conflict(key, expect).await?),
        }
    }

    /// A write bound to `lease`: the key is locked by the session, so it goes when the session
    /// does. The condition is `check-not-exists` or `check-index`; a key locked by another
    /// session is unlocked from it in the same transaction (a guarded hand-over). An acquire
    /// refused while the key is free means a lock-delay: retried until it passes.
    async fn put_leased(
        &self,
        key: &Key,
        value: &[u8],
        expect: Expect,
        lease: &LeaseId,
    ) -> CoordResult<Revision> {
        let path = consul_key(key);
        let session = lease.as_str();
        let give_up = Instant::now() + self.config.lock_delay + self.api.call_timeout;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let current = match expect {
                Expect::Absent => None,
                Expect::Any | Expect::Revision(_) => self.raw_get(&path, Operation::Write).await?,
            };
            if let Expect::Revision(expected) = expect
                && current.as_ref().map(|p| p.modify_index) != Some(expected.0)
            {
                return Err(CoordError::Conflict {
                    key: key.path(),
                    detail: ConflictDetail::RevisionMoved {
                        expected,
                        found: current.map(|p| Revision(p.modify_index)),
                    },
                });
            }
            let mut ops = Vec::with_capacity(3);
            match &current {
                None => ops.push(TxnKv::check_not_exists(&path)),
                Some(pair) => {
                    ops.push(TxnKv::check_index(&path, pair.modify_index));
                    if let Some(holder) = pair.holder().filter(|h| *h != session) {
                        ops.push(TxnKv::unlock(&path, value, 0, holder));
                    }
                }
            }
            ops.push(TxnKv::lock(&path, value, 0, session));
            let failures = match self.api.txn(Operation::Write, ops, Some(lease)).await? {
                TxnOutcome::Committed(results) => {
                    return Self::committed_revision(&results, &path, Operation::Write);
                }
                TxnOutcome::RolledBack(failures) => failures,
            };
            if failures.iter().any(|f| f.invalid_session()) {
                return Err(CoordError::LeaseLost {
                    lease: lease.clone(),
                });
            }
            if failures.iter().any(|f| f.op_index == 0) {
                // The key moved between our read and the transaction.
                if expect == Expect::Any && attempts < ANY_ATTEMPTS {
                    continue;
                }
                return Err(self.conflict(key, expect).await?);
            }
            // The guard held and the key was ours to take, yet the lock failed: a lock-delay.
            let now = Instant::now();
            if now >= give_up {
                return Err(CoordError::unavailable(
                    Operation::Write,
                    LockDelayed { key: key.path() },
                ));
            }
            tracing::debug!(key = %key, "Consul: acquire held back by a lock-delay; retrying");
            tokio::time::sleep(self.config.lock_delay_retry.min(give_up - now)).await;
        }
    }
}

#[async_trait]
impl KvStore for ConsulCoordinator {
    async fn get(&self, key: &Key) -> CoordResult<Option<KvEntry>> {
        Ok(self
            .raw_get(&consul_key(key), Operation::Read)
            .await?
            .and_then(|p| entry_of(key.namespace(), &p)))
    }

    async fn list(&self, prefix: &KeyPrefix) -> CoordResult<Vec<KvEntry>> {
        let answer = self
            .api
            .send(Call {
                op: Operation::Read,
                method: Method::GET,
                path: &format!("kv/{}", consul_prefix(prefix)),
                params: &[("recurse", String::new()), ("consistent", String::new())],
                body: None,
                lease: None,
                deadline: None,
            })
            .await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        let pairs: Vec<KvPair> = answer.json(Operation::Read)?;
        let mut entries: Vec<KvEntry> = pairs
            .iter()
            .filter_map(|p| entry_of(prefix.namespace(), p))
            .filter(|e| prefix.contains(&e.key))
            .collect();
        entries.sort_by(|a, b| a.key.name().cmp(b.key.name()));
        Ok(entries)
    }

    async fn put(
        &self,
        key: &Key,
        value: Vec<u8>,
        expect: Expect,
        lease: Option<&LeaseId>,
    ) -> CoordResult<Revision> {
        match lease {
            None => self.put_plain(key, &value, expect).await,
            Some(lease) => self.put_leased(key, &value, expect, lease).await,
        }
    }

    async fn delete(&self, key: &Key, expect: Expect) -> CoordResult<bool> {
        let path = consul_key(key);
        let guard = match expect {
            // Nothing to delete when the key must be absent.
            Expect::Absent => return Ok(false),
            // `get` fails the transaction when the key is missing: that is our "not deleted".
            Expect::Any => TxnKv::get(&path),
            Expect::Revision(r) => TxnKv::check_index(&path, r.0),
        };
        let ops = vec![guard, TxnKv::delete(&path)];
        match self.api.txn(Operation::Write, ops, None).await? {
            TxnOutcome::Committed(_) => Ok(true),
            TxnOutcome::RolledBack(_) if expect == Expect::Any => Ok(false),
            TxnOutcome::RolledBack(_) => Err(self.conflict(key, expect).await?),
        }
    }

    async fn put_if_held(&self, key: &Key, value: Vec<u8>, fence: &Fence) -> CoordResult<Revision> {
        let path = consul_key(key);
        let fence_path = consul_key(&fence.key);
        let ops = vec![
            TxnKv::check_index(&fence_path, fence.token.get()),
            TxnKv::set(&path, &value),
        ];
        match self.api.txn(Operation::Write, ops, None).await? {
            TxnOutcome::Committed(results) => {
                Self::committed_revision(&results, &path, Operation::Write)
            }
            TxnOutcome::RolledBack(_) => {
                let current = self
                    .raw_get(&fence_path, Operation::Write)
                    .await?
                    .map(|p| FencingToken::new(p.modify_index));
                Err(CoordError::StaleToken {
                    resource: fence.key.path(),
                    presented: fence.token,
                    current,
                })
            }
        }
    }
}
