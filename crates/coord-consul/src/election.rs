//! Elections and locks in the layout of Consul's own lock (`api.Lock`, `consul lock PREFIX`):
//! one key, `{name}/.lock`, acquired with `?acquire=<session>&flags=3304740253564472344` and
//! holding the holder's name as its value. Whoever holds the key leads; a `consul lock` on
//! the same prefix contends with our nodes.
//!
//! The term's token is the key's `ModifyIndex`, read back after an acquire that shows our
//! session: every later acquire (and every release, and the deletion when a session ends)
//! writes the key at a larger index, so tokens grow across terms. `LockIndex` is not used: it
//! restarts at 1 when the key is deleted (our sessions delete their keys when they end).
//!
//! Waiters wait with blocking queries on the key. An acquire refused while the key is free
//! means a lock-delay is running (the previous holder's session was invalidated); waiters
//! retry every `lock_delay_retry` until it passes, as `api.Lock` does.

use async_trait::async_trait;
use cluster_core::coordination::{
    CoordError, CoordResult, ElectionStore, Key, LeaderInfo, LeaderStream, Leadership, LeaseId,
    Operation, WatchEvent, WatchStart, WatchStore, WatchTarget,
};
use cluster_core::ids::FencingToken;
use futures::StreamExt;
use reqwest::{Method, StatusCode};

use crate::api::{Call, KvPair, LOCK_FLAG, SharedApi, TxnKv, TxnOutcome};
use crate::{ConsulCoordinator, consul_key};

/// The lock key of an election or lock: `{name}/.lock`.
pub(crate) fn lock_key(election: &Key) -> CoordResult<Key> {
    election.child(".lock")
}

/// Releases the lock if the campaign that may have taken it is dropped before it returns.
struct Withdraw {
    api: SharedApi,
    path: String,
    lease: LeaseId,
    armed: bool,
}

impl Drop for Withdraw {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (api, path, lease) = (self.api.clone(), self.path.clone(), self.lease.clone());
        runtime.spawn(async move {
            let params = [
                ("release", lease.to_string()),
                ("flags", LOCK_FLAG.to_string()),
            ];
            let _ = api
                .send(Call {
                    op: Operation::Election,
                    method: Method::PUT,
                    path: &format!("kv/{path}"),
                    params: &params,
                    body: Some(Vec::new()),
                    lease: Some(&lease),
                    deadline: None,
                })
                .await;
        });
    }
}

impl ConsulCoordinator {
    /// The lock key's entry, blocking until its index passes `wait_index` if given; the
    /// answer's index too.
    async fn lock_entry(
        &self,
        path: &str,
        wait_index: Option<u64>,
    ) -> CoordResult<(u64, Option<KvPair>)> {
        let wait = self.config.watch_wait;
        let (params, deadline) = match wait_index {
            Some(index) => (
                vec![
                    ("index", index.max(1).to_string()),
                    ("wait", format!("{}ms", wait.as_millis())),
                ],
                Some(wait + wait / 16 + self.api.call_timeout),
            ),
            None => (vec![("consistent", String::new())], None),
        };
        let answer = self
            .api
            .send(Call {
                op: Operation::Election,
                method: Method::GET,
                path: &format!("kv/{path}"),
                params: &params,
                body: None,
                lease: None,
                deadline,
            })
            .await?;
        let index = answer.index.unwrap_or(0);
        if answer.status == StatusCode::NOT_FOUND {
            return Ok((index, None));
        }
        let pairs: Vec<KvPair> = answer.json(Operation::Election)?;
        Ok((index, pairs.into_iter().find(|p| p.key == path)))
    }

    /// One acquire attempt: `PUT ?acquire=&flags=`, answered `true` or `false`.
    async fn acquire(&self, path: &str, holder: &str, lease: &LeaseId) -> CoordResult<bool> {
        let params = [
            ("acquire", lease.to_string()),
            ("flags", LOCK_FLAG.to_string()),
        ];
        let answer = self
            .api
            .send(Call {
                op: Operation::Election,
                method: Method::PUT,
                path: &format!("kv/{path}"),
                params: &params,
                body: Some(holder.as_bytes().to_vec()),
                lease: Some(lease),
                deadline: None,
            })
            .await?;
        Ok(answer.body.as_ref() == b"true")
    }
}

fn not_a_lock(path: &str, flags: u64) -> CoordError {
    CoordError::bad_request(format!(
        "{path} exists with flags {flags}, not Consul's lock flags: it is not a lock key"
    ))
}

fn leader_of(key: &Key, pair: Option<&KvPair>) -> Option<LeaderInfo> {
    let pair = pair?;
    pair.holder()?;
    Some(LeaderInfo {
        holder: String::from_utf8_lossy(&pair.bytes()).into_owned(),
        token: FencingToken::new(pair.modify_index),
        key: key.clone(),
    })
}

#[async_trait]
impl ElectionStore for ConsulCoordinator {
    async fn campaign(
        &self,
        election: &Key,
        holder: &str,
        lease: &LeaseId,
    ) -> CoordResult<Leadership> {
        let key = lock_key(election)?;
        let path = consul_key(&key);
        let mut withdraw = Withdraw {
            api: self.api.clone(),
            path: path.clone(),
            lease: lease.clone(),
            armed: false,
        };
        let mut wait_index: Option<u64> = None;
        loop {
            let (index, current) = self.lock_entry(&path, wait_index.take()).await?;
            if let Some(pair) = &current {
                if pair.flags != LOCK_FLAG {
                    return Err(not_a_lock(&path, pair.flags));
                }
                if pair.holder().is_some_and(|h| h != lease.as_str()) {
                    // Held by someone else: wait for the key to change.
                    wait_index = Some(index);
                    continue;
                }
            }
            withdraw.armed = true;
            let acquired = self.acquire(&path, holder, lease).await?;
            let (index, after) = self.lock_entry(&path, None).await?;
            if acquired
                && let Some(pair) = after
                    .as_ref()
                    .filter(|p| p.holder() == Some(lease.as_str()))
            {
                withdraw.armed = false;
                return Ok(Leadership {
                    election: election.clone(),
                    holder: holder.to_owned(),
                    candidate_key: key,
                    token: FencingToken::new(pair.modify_index),
                    lease: lease.clone(),
                });
            }
            withdraw.armed = false;
            match after.as_ref().and_then(KvPair::holder) {
                Some(_) => wait_index = Some(index),
                None => {
                    // Free but refused: a lock-delay is running.
                    tracing::debug!(%key, "Consul lock held back by a lock-delay");
                    tokio::time::sleep(self.config.lock_delay_retry).await;
                }
            }
        }
    }

    async fn resign(&self, leadership: &Leadership) -> CoordResult<()> {
        let path = consul_key(&leadership.candidate_key);
        let ops = vec![
            TxnKv::check_index(&path, leadership.token.get()),
            TxnKv::unlock(
                &path,
                leadership.holder.as_bytes(),
                LOCK_FLAG,
                leadership.lease.as_str(),
            ),
        ];
        // Rolled back: the key moved since the term began, so the term already ended.
        match self
            .api
            .txn(Operation::Election, ops, Some(&leadership.lease))
            .await?
        {
            TxnOutcome::Committed(_) | TxnOutcome::RolledBack(_) => Ok(()),
        }
    }

    async fn leader(&self, election: &Key) -> CoordResult<Option<LeaderInfo>> {
        let key = lock_key(election)?;
        let (_, pair) = self.lock_entry(&consul_key(&key), None).await?;
        Ok(leader_of(&key, pair.as_ref()))
    }

    async fn observe_leader(&self, election: &Key) -> CoordResult<LeaderStream> {
        let key = lock_key(election)?;
        let watch = self
            .watch(WatchTarget::Key(key.clone()), WatchStart::Now)
            .await?;
        let mut last: Option<Option<LeaderInfo>> = None;
        Ok(watch
            .filter_map(move |event| {
                let out = match event {
                    Err(e) => Some(Err(e)),
                    Ok(event) => {
                        let now = match event {
                            WatchEvent::Snapshot { entries, .. } => {
                                entries.into_iter().find(|e| e.key == key)
                            }
                            WatchEvent::Put(entry) => Some(entry),
                            WatchEvent::Delete { .. } => None,
                        }
                        .filter(|e| e.lease.is_some())
                        .map(|e| LeaderInfo {
                            holder: String::from_utf8_lossy(&e.value).into_owned(),
                            token: FencingToken::from(e.revision),
                            key: key.clone(),
                        });
                        if last.as_ref() == Some(&now) {
                            None
                        } else {
                            last = Some(now.clone());
                            Some(Ok(now))
                        }
                    }
                };
                futures::future::ready(out)
            })
            .boxed())
    }
}
