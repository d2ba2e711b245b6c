//! Election and locks as etcd's concurrency recipe does them, over the KV and watch ports.
//!
//! Each candidate writes `{election}/{lease}` bound to its lease (create-if-absent; an existing
//! candidacy of the same lease is reused, as etcd's `Election.Campaign` does). Candidates lead in
//! order of their key's create revision; each waits only for its predecessor (the candidate with
//! the largest create revision below its own) to be deleted, so a leader change wakes one
//! waiter, not the herd. The term's token is the candidacy's create revision, which grows with
//! every new candidacy, so a later term always has a larger token (etcd's `Election.Rev()`).
//!
//! Because the layout is etcd's own, `etcdctl elect NAME` and `etcdctl lock NAME` contend with
//! these candidacies correctly when the election key's path is `NAME`. The recipe needs a
//! backend that records create revisions (etcd, coord-mem).

use futures::StreamExt;

use crate::coordination::election_store::{LeaderInfo, Leadership};
use crate::coordination::error::{CoordError, CoordResult};
use crate::coordination::key::Key;
use crate::coordination::kv_store::{Expect, KvEntry, KvStore};
use crate::coordination::lease_store::LeaseId;
use crate::coordination::watch_store::{WatchEvent, WatchStart, WatchStore, WatchTarget};
use crate::ids::{FencingToken, Revision};

/// The candidacy key of `lease` in `election`.
pub fn candidate_key(election: &Key, lease: &LeaseId) -> CoordResult<Key> {
    election.child(lease.as_str())
}

fn created(entry: &KvEntry) -> CoordResult<Revision> {
    entry.created.ok_or_else(|| {
        CoordError::bad_request(format!(
            "{} has no create revision; the queue election needs a backend that records them",
            entry.key
        ))
    })
}

/// The leader among `candidates`: the lowest create revision.
pub fn leader_of(candidates: &[KvEntry]) -> Option<LeaderInfo> {
    candidates
        .iter()
        .filter_map(|e| e.created.map(|c| (c, e)))
        .min_by_key(|(c, _)| *c)
        .map(|(c, e)| LeaderInfo {
            holder: String::from_utf8_lossy(&e.value).into_owned(),
            token: FencingToken::from(c),
            key: e.key.clone(),
        })
}

/// Writes (or reuses) this lease's candidacy; returns its key and create revision.
pub async fn enter<S>(
    store: &S,
    election: &Key,
    holder: &str,
    lease: &LeaseId,
) -> CoordResult<(Key, Revision)>
where
    S: KvStore + ?Sized,
{
    let key = candidate_key(election, lease)?;
    match store
        .put(
            &key,
            holder.as_bytes().to_vec(),
            Expect::Absent,
            Some(lease),
        )
        .await
    {
        Ok(revision) => Ok((key, revision)),
        Err(CoordError::Conflict { .. }) => {
            let entry = store
                .get(&key)
                .await?
                .ok_or_else(|| CoordError::LeaseLost {
                    lease: lease.clone(),
                })?;
            Ok((key, created(&entry)?))
        }
        Err(e) => Err(e),
    }
}

/// Waits until the candidacy at `key` (create revision `mine`) leads; returns the term.
pub async fn wait_turn<S>(
    store: &S,
    election: &Key,
    holder: &str,
    lease: &LeaseId,
    key: Key,
    mine: Revision,
) -> CoordResult<Leadership>
where
    S: KvStore + WatchStore + ?Sized,
{
    loop {
        let candidates = store.list(&election.children()).await?;
        if !candidates.iter().any(|e| e.key == key) {
            // Our candidacy vanished: the lease ended while we waited.
            return Err(CoordError::LeaseLost {
                lease: lease.clone(),
            });
        }
        let predecessor = candidates
            .iter()
            .filter_map(|e| e.created.map(|c| (c, e)))
            .filter(|(c, _)| *c < mine)
            .max_by_key(|(c, _)| *c)
            .map(|(_, e)| e.key.clone());
        let Some(predecessor) = predecessor else {
            return Ok(Leadership {
                election: election.clone(),
                holder: holder.to_owned(),
                candidate_key: key,
                token: FencingToken::from(mine),
                lease: lease.clone(),
            });
        };
        wait_deleted(store, &predecessor).await?;
    }
}

/// Resolves once `key` does not exist.
async fn wait_deleted<S>(store: &S, key: &Key) -> CoordResult<()>
where
    S: WatchStore + ?Sized,
{
    let mut watch = store
        .watch(WatchTarget::Key(key.clone()), WatchStart::Now)
        .await?;
    while let Some(event) = watch.next().await {
        match event? {
            WatchEvent::Snapshot { entries, .. } if entries.is_empty() => return Ok(()),
            WatchEvent::Delete { .. } => return Ok(()),
            _ => {}
        }
    }
    Err(CoordError::unavailable(
        crate::coordination::Operation::Watch,
        WatchEnded,
    ))
}

/// A watch stream ended without an error.
#[derive(Debug, thiserror::Error)]
#[error("watch ended unexpectedly")]
pub struct WatchEnded;

/// Ends a term: deletes the candidacy if it is still this term's.
pub async fn resign<S>(store: &S, leadership: &Leadership) -> CoordResult<()>
where
    S: KvStore + ?Sized,
{
    if let Some(entry) = store.get(&leadership.candidate_key).await?
        && entry.created == Some(Revision(leadership.token.get()))
    {
        match store
            .delete(&leadership.candidate_key, Expect::Revision(entry.revision))
            .await
        {
            Ok(_) | Err(CoordError::Conflict { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The current leader of `election`.
pub async fn leader<S>(store: &S, election: &Key) -> CoordResult<Option<LeaderInfo>>
where
    S: KvStore + ?Sized,
{
    Ok(leader_of(&store.list(&election.children()).await?))
}

/// The current leader, then each change, from a watch of the candidacies.
pub async fn observe<S>(store: &S, election: &Key) -> CoordResult<crate::coordination::LeaderStream>
where
    S: WatchStore + ?Sized,
{
    let watch = store
        .watch(WatchTarget::Prefix(election.children()), WatchStart::Now)
        .await?;
    let mut candidates: Vec<KvEntry> = Vec::new();
    let mut last: Option<Option<LeaderInfo>> = None;
    Ok(watch
        .filter_map(move |event| {
            let out = match event {
                Err(e) => Some(Err(e)),
                Ok(event) => {
                    match event {
                        WatchEvent::Snapshot { entries, .. } => candidates = entries,
                        WatchEvent::Put(entry) => {
                            candidates.retain(|e| e.key != entry.key);
                            candidates.push(entry);
                        }
                        WatchEvent::Delete { key, .. } => candidates.retain(|e| e.key != key),
                    }
                    let now = leader_of(&candidates);
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
