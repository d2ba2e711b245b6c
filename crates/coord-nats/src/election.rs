//! Leader election and locks on NATS KV: the election key itself is the leadership.
//!
//! A candidate creates the election key (create-if-absent, bound to its lease, the holder as the
//! value). The create that succeeds begins a term; its revision is the term's token, and every
//! renewal carries it in `Coord-Term`, so the token stays put while the key's revision moves.
//! A later term starts with a later create, hence a larger token. Candidates that lose watch
//! the key and try again when it is deleted (resign) or expires (its lease ended: the server's
//! delete marker). There is no queue: whoever creates first after a vacancy leads.
//!
//! A lock is an election named after the lock.

use async_trait::async_trait;
use bytes::Bytes;
use cluster_core::coordination::{
    CoordError, CoordResult, ElectionStore, Expect, Key, KvEntry, LeaderInfo, LeaderStream,
    Leadership, LeaseId, LockStore, Operation, WatchEvent, WatchStart, WatchStore, WatchTarget,
};
use cluster_core::ids::FencingToken;
use futures::StreamExt;

use crate::NatsCoordinator;
use crate::kv::entry;

fn leader_of(e: &KvEntry) -> LeaderInfo {
    LeaderInfo {
        holder: String::from_utf8_lossy(&e.value).into_owned(),
        token: FencingToken::from(e.created.unwrap_or(e.revision)),
        key: e.key.clone(),
    }
}

/// A watch stream ended without an error.
#[derive(Debug, thiserror::Error)]
#[error("watch ended unexpectedly")]
struct WatchEnded;

/// Deletes a candidacy whose create may have landed after its campaign was dropped.
struct Withdraw {
    coord: NatsCoordinator,
    election: Key,
    lease: LeaseId,
    armed: bool,
}

impl Drop for Withdraw {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (coord, election, lease) = (
            self.coord.clone(),
            self.election.clone(),
            self.lease.clone(),
        );
        handle.spawn(async move {
            let op = Operation::Election;
            let coord = &coord;
            let _ = coord
                .within(op, |deadline| async move {
                    if let Some(term) = coord
                        .read(&election, op, deadline)
                        .await?
                        .and_then(|s| s.live().map(|l| (l.term, l.lease.clone())))
                        .filter(|(_, l)| l.as_ref() == Some(&lease))
                        .map(|(term, _)| term)
                    {
                        coord
                            .delete_term(&election, term, Some(&lease), op, deadline)
                            .await?;
                    }
                    Ok(())
                })
                .await;
        });
    }
}

impl NatsCoordinator {
    /// The current term of `election`, from the stream leader.
    async fn current_leader(
        &self,
        election: &Key,
    ) -> CoordResult<Option<(LeaderInfo, Option<LeaseId>)>> {
        let op = Operation::Election;
        self.within(op, |deadline| async move {
            let stored = self.read(election, op, deadline).await?;
            Ok(stored.and_then(|s| {
                let lease = s.live().and_then(|l| l.lease.clone());
                entry(election, &s).map(|e| (leader_of(&e), lease))
            }))
        })
        .await
    }

    /// Resolves once `election` has no value.
    async fn wait_vacant(&self, election: &Key) -> CoordResult<()> {
        let mut watch = self
            .watch(WatchTarget::Key(election.clone()), WatchStart::Now)
            .await?;
        while let Some(event) = watch.next().await {
            match event? {
                WatchEvent::Snapshot { entries, .. } if entries.is_empty() => return Ok(()),
                WatchEvent::Delete { .. } => return Ok(()),
                _ => {}
            }
        }
        Err(CoordError::unavailable(Operation::Election, WatchEnded))
    }
}

#[async_trait]
impl ElectionStore for NatsCoordinator {
    async fn campaign(
        &self,
        election: &Key,
        holder: &str,
        lease: &LeaseId,
    ) -> CoordResult<Leadership> {
        let op = Operation::Election;
        let value = Bytes::copy_from_slice(holder.as_bytes());
        let term = |token: u64| Leadership {
            election: election.clone(),
            holder: holder.to_owned(),
            candidate_key: election.clone(),
            token: FencingToken::new(token),
            lease: lease.clone(),
        };
        loop {
            let mut withdraw = Withdraw {
                coord: self.clone(),
                election: election.clone(),
                lease: lease.clone(),
                armed: true,
            };
            let created = self
                .within(op, |deadline| {
                    self.put_bound(election, value.clone(), Expect::Absent, lease, op, deadline)
                })
                .await;
            // From here the outcome is known (or the error is returned): nothing to withdraw.
            withdraw.armed = false;
            match created {
                Ok(seq) => return Ok(term(seq)),
                Err(CoordError::Conflict { .. }) => {
                    // Our own lease may hold it already (a campaign retried after a timeout).
                    if let Some((leader, Some(held_by))) = self.current_leader(election).await?
                        && held_by == *lease
                    {
                        return Ok(term(leader.token.get()));
                    }
                }
                Err(e) => return Err(e),
            }
            self.wait_vacant(election).await?;
        }
    }

    async fn resign(&self, leadership: &Leadership) -> CoordResult<()> {
        let op = Operation::Election;
        self.within(op, |deadline| async move {
            // Deleted, or the term already ended: either way it is over.
            self.delete_term(
                &leadership.candidate_key,
                leadership.token.get(),
                Some(&leadership.lease),
                op,
                deadline,
            )
            .await
            .map(|_| ())
        })
        .await
    }

    async fn leader(&self, election: &Key) -> CoordResult<Option<LeaderInfo>> {
        Ok(self
            .current_leader(election)
            .await?
            .map(|(leader, _)| leader))
    }

    async fn observe_leader(&self, election: &Key) -> CoordResult<LeaderStream> {
        let watch = self
            .watch(WatchTarget::Key(election.clone()), WatchStart::Now)
            .await?;
        let mut last: Option<Option<LeaderInfo>> = None;
        Ok(watch
            .filter_map(move |event| {
                let out = match event {
                    Err(e) => Some(Err(e)),
                    Ok(event) => {
                        let now = match event {
                            WatchEvent::Snapshot { entries, .. } => entries.first().map(leader_of),
                            WatchEvent::Put(e) => Some(leader_of(&e)),
                            WatchEvent::Delete { .. } => None,
                        };
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

impl LockStore for NatsCoordinator {}
