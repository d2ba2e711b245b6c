//! Leases on JetStream KV: a record with a TTL, and keys that carry the same TTL.
//!
//! A lease `L` is the key `L` in the lease bucket; its value ([`LeaseRecord`]) lists the keys
//! bound to it. Binding a key first rewrites the record with the key added (conditional on the
//! record's last sequence: this both proves the lease is still alive and tells any process that
//! renews `L` about the key), then writes the key with `Nats-TTL` and a `Coord-Lease: L` header.
//!
//! A renewal rewrites the record and then every bound key with the same value, `Nats-TTL`, and
//! `Nats-Expected-Last-Subject-Sequence` equal to the key's last known sequence. A key whose
//! last message is no longer ours (taken over, deleted, expired) fails that condition; it is
//! read back, kept if the message still carries `Coord-Lease: L` (an ambiguous earlier write
//! that did land), dropped otherwise. Nothing is ever rewritten that someone else wrote, and an
//! expired key cannot come back: its delete marker has moved the last sequence.
//!
//! A bound key that is no longer ours is dropped quietly only when this process let it go
//! (deleted, released, resigned or transferred it). Any other way of losing it (the server
//! expired it early, on a clock that runs ahead; an operator deleted it) ends the lease: the
//! renewal answers `LeaseLost`, so every term and claim made under the lease ends with it
//! rather than outliving the key that proved it.
//!
//! Revoking marks the lease dead here first (later calls with it fail with `LeaseLost` at
//! once), tombstones the record, then deletes every key that still carries `Coord-Lease: L`.
// An adapter's own timers: a lease's renewal send times and call deadlines run on tokio's clock, which tokio sleeps on and paused-time tests drive; the session's ownership deadline is the runtime's, on its injected clock.
#![allow(clippy::disallowed_methods)]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cluster_core::coordination::{
    CoordError, CoordResult, LeaseGrant, LeaseId, LeaseStore, Operation,
};
use serde::{Deserialize, Serialize};
use tokio::time::{Instant, timeout_at};

use crate::error::JsFailure;
use crate::jetstream_kv::{Condition, StoredState, Write, round_ttl};
use crate::{NatsCoordinator, contention};

/// How often a conditional write is retried when the key moved under it.
const ATTEMPTS: usize = 5;

/// A key bound to a lease: bucket and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(crate) struct BoundKey {
    pub(crate) bucket: String,
    pub(crate) name: String,
}

/// The value of a lease record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct LeaseRecord {
    ttl_ms: u64,
    keys: Vec<BoundKey>,
}

/// What a renewal found of one bound key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyRenewal {
    /// Still ours, renewed.
    Kept,
    /// Never known to be ours here (a bind whose write failed): dropped quietly.
    NotOurs,
    /// Written by us, and no longer ours; our last write of it was at this sequence.
    Lost {
        /// The sequence of our last write of the key.
        last_seq: u64,
    },
}

/// What this process last wrote to a bound key.
#[derive(Debug, Clone)]
struct Bound {
    seq: u64,
    term: u64,
    value: Bytes,
    /// When the write that set `seq` was sent: the key lives at least `ttl` past this.
    sent_at: Instant,
}

#[derive(Debug)]
struct LeaseState {
    ttl: Duration,
    record_seq: u64,
    /// When the record's last write was sent (or, for a lease loaded from the store, read).
    record_sent_at: Instant,
    /// Bound keys; `None` when the key's last sequence is not known here (read it first).
    keys: BTreeMap<BoundKey, Option<Bound>>,
}

impl LeaseState {
    /// Whether the store may already have expired the record or a bound key: one of them went
    /// a whole TTL without a write this process knows of. Such a lease is lost, even if its
    /// record is still there (each stream expires messages on its own timer).
    fn may_have_expired(&self, now: Instant) -> bool {
        let oldest = self
            .keys
            .values()
            .flatten()
            .map(|b| b.sent_at)
            .fold(self.record_sent_at, Instant::min);
        now >= oldest + self.ttl
    }
}

/// One lease as this process knows it.
#[derive(Debug)]
pub(crate) struct LeaseHandle {
    id: LeaseId,
    dead: AtomicBool,
    /// Whether this process grants or renews the lease. What it knows of another process's
    /// lease goes stale at that process's next renewal, so it is read again at every use.
    renewed_here: AtomicBool,
    /// `None` until loaded from the store (a lease granted by another process).
    state: tokio::sync::Mutex<Option<LeaseState>>,
}

/// The leases this process granted, renews or bound keys to.
#[derive(Debug, Default)]
pub(crate) struct LeaseTable {
    map: Mutex<HashMap<LeaseId, Arc<LeaseHandle>>>,
    /// Bound values this process deleted or handed over since a renewal last looked at them,
    /// by key and the sequence of the value let go. The sequence names the one lease whose
    /// write it was, so the renewals of several leases that bound one key in turn each find
    /// their own record.
    let_go: Mutex<std::collections::HashSet<(BoundKey, u64)>>,
}

impl LeaseTable {
    /// Records that this process deleted or handed over the value written at `seq` of `key`:
    /// the renewal of the lease that wrote it, finding it gone, drops it quietly instead of
    /// ending the lease.
    pub(crate) fn let_go(&self, key: BoundKey, seq: u64) {
        self.let_go
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((key, seq));
    }

    /// Whether the value of `key` written at `seq` was let go here; consumes the record.
    fn was_let_go(&self, key: &BoundKey, seq: u64) -> bool {
        self.let_go
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(key.clone(), seq))
    }

    fn handle(&self, id: &LeaseId) -> Arc<LeaseHandle> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.clone())
            .or_insert_with(|| {
                Arc::new(LeaseHandle {
                    id: id.clone(),
                    dead: AtomicBool::new(false),
                    renewed_here: AtomicBool::new(false),
                    state: tokio::sync::Mutex::new(None),
                })
            })
            .clone()
    }

    fn insert(&self, handle: LeaseHandle) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(handle.id.clone(), Arc::new(handle));
    }
}

fn lost(id: &LeaseId) -> CoordError {
    CoordError::LeaseLost { lease: id.clone() }
}

fn encode(record: &LeaseRecord) -> CoordResult<Bytes> {
    serde_json::to_vec(record)
        .map(Bytes::from)
        .map_err(|e| CoordError::bad_request(format!("encoding lease record: {e}")))
}

/// Whether a lease id can be a key name (ours are 32 hex digits).
fn check_id(id: &LeaseId) -> CoordResult<()> {
    let ok = !id.as_str().is_empty()
        && id
            .as_str()
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(CoordError::bad_request(format!(
            "{id} is not a NATS KV lease id"
        )))
    }
}

impl NatsCoordinator {
    fn lease_bucket(&self) -> &str {
        &self.kv().config.lease_bucket
    }

    /// Reads lease `id`'s record; `LeaseLost` if it is gone.
    async fn load(
        &self,
        id: &LeaseId,
        op: Operation,
        deadline: Instant,
    ) -> CoordResult<LeaseState> {
        let stored = self
            .kv()
            .last(self.lease_bucket(), id.as_str(), deadline)
            .await
            .map_err(|e| e.into_coord(op))?;
        let Some(stored) = stored else {
            return Err(lost(id));
        };
        let StoredState::Live(live) = &stored.state else {
            return Err(lost(id));
        };
        let record: LeaseRecord = serde_json::from_slice(&live.value)
            .map_err(|e| CoordError::bad_request(format!("lease record {id}: {e}")))?;
        Ok(LeaseState {
            ttl: Duration::from_millis(record.ttl_ms),
            record_seq: stored.seq,
            record_sent_at: Instant::now(),
            keys: record.keys.into_iter().map(|k| (k, None)).collect(),
        })
    }

    /// Locks the handle's state, loading it from the store if this process has not yet.
    async fn lock_state<'a>(
        &self,
        handle: &'a LeaseHandle,
        op: Operation,
        deadline: Instant,
    ) -> CoordResult<tokio::sync::MutexGuard<'a, Option<LeaseState>>> {
        if handle.dead.load(Ordering::Acquire) {
            return Err(lost(&handle.id));
        }
        let mut guard = timeout_at(deadline, handle.state.lock())
            .await
            .map_err(|_| CoordError::timed_out(op, self.kv().config.call_timeout))?;
        if handle.dead.load(Ordering::Acquire) {
            return Err(lost(&handle.id));
        }
        if guard.is_none() {
            match self.load(&handle.id, op, deadline).await {
                Ok(state) => *guard = Some(state),
                Err(e @ CoordError::LeaseLost { .. }) => {
                    handle.dead.store(true, Ordering::Release);
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
        }
        if guard
            .as_ref()
            .is_some_and(|s| s.may_have_expired(Instant::now()))
        {
            // Lost, but say so only with the store in reach: an outage is `Unavailable`.
            self.load(&handle.id, op, deadline).await?;
            handle.dead.store(true, Ordering::Release);
            return Err(lost(&handle.id));
        }
        Ok(guard)
    }

    /// Rewrites the record (with `extra` added to its keys), conditional on its last sequence:
    /// a successful rewrite proves the lease was alive at that moment.
    async fn rewrite_record(
        &self,
        handle: &LeaseHandle,
        state: &mut LeaseState,
        extra: Option<BoundKey>,
        op: Operation,
        deadline: Instant,
    ) -> CoordResult<()> {
        if let Some(key) = extra {
            state.keys.entry(key).or_insert(None);
        }
        for _ in 0..ATTEMPTS {
            let record = LeaseRecord {
                ttl_ms: state.ttl.as_millis() as u64,
                keys: state.keys.keys().cloned().collect(),
            };
            let write = Write {
                ttl: Some(state.ttl),
                ..Write::value(self.lease_bucket(), handle.id.as_str(), encode(&record)?)
                    .when(Condition::LastSeq(state.record_seq))
            };
            let sent_at = Instant::now();
            match self.kv().publish(&write, deadline).await {
                Ok(seq) => {
                    state.record_seq = seq;
                    state.record_sent_at = sent_at;
                    return Ok(());
                }
                Err(JsFailure::WrongLastSequence) => {
                    // Someone else bound a key (or our own earlier write landed unacknowledged):
                    // take the stored record's sequence and keys, and try again. A record that
                    // is gone means the lease expired or was revoked.
                    match self.load(&handle.id, op, deadline).await {
                        Ok(stored) => {
                            state.record_seq = stored.record_seq;
                            for key in stored.keys.into_keys() {
                                state.keys.entry(key).or_insert(None);
                            }
                        }
                        Err(e @ CoordError::LeaseLost { .. }) => {
                            handle.dead.store(true, Ordering::Release);
                            return Err(e);
                        }
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e.into_coord(op)),
            }
        }
        Err(contention(op, format!("lease {}", handle.id)))
    }

    /// Renews one bound key, and says whether it is still ours, never was, or was lost.
    async fn renew_key(
        &self,
        id: &LeaseId,
        ttl: Duration,
        key: &BoundKey,
        slot: &mut Option<Bound>,
        deadline: Instant,
    ) -> CoordResult<KeyRenewal> {
        let op = Operation::RenewLease;
        // A key with no known write of ours (a bind whose write failed, a key listed by another
        // process) that is not ours is simply not ours; one we wrote and no longer hold is lost.
        let was_bound = slot.is_some();
        let mut last_seq = slot.as_ref().map_or(0, |b| b.seq);
        for _ in 0..ATTEMPTS {
            let bound = match slot.take() {
                Some(bound) => bound,
                None => {
                    let stored = self
                        .kv()
                        .last(&key.bucket, &key.name, deadline)
                        .await
                        .map_err(|e| e.into_coord(op))?;
                    match stored.as_ref().and_then(|s| s.live().map(|v| (s.seq, v))) {
                        Some((seq, live)) if live.lease.as_ref() == Some(id) => Bound {
                            seq,
                            term: live.term,
                            value: live.value.clone(),
                            // Unknown: the renewal below sets it.
                            sent_at: Instant::now(),
                        },
                        _ if was_bound => return Ok(KeyRenewal::Lost { last_seq }),
                        _ => return Ok(KeyRenewal::NotOurs),
                    }
                }
            };
            last_seq = bound.seq;
            let write = Write {
                ttl: Some(ttl),
                lease: Some(id),
                term: Some(bound.term),
                ..Write::value(&key.bucket, &key.name, bound.value.clone())
                    .when(Condition::LastSeq(bound.seq))
            };
            let sent_at = Instant::now();
            match self.kv().publish(&write, deadline).await {
                Ok(seq) => {
                    *slot = Some(Bound {
                        seq,
                        sent_at,
                        ..bound
                    });
                    return Ok(KeyRenewal::Kept);
                }
                // Read it back: still ours (an earlier write landed unacknowledged) or not.
                Err(JsFailure::WrongLastSequence) => {}
                Err(e) => {
                    *slot = Some(bound);
                    return Err(e.into_coord(op));
                }
            }
        }
        Err(contention(op, format!("{}/{}", key.bucket, key.name)))
    }

    /// Binds `key` to `lease` and runs `write` (which writes the key with the lease's TTL),
    /// holding the lease so no renewal interleaves. Returns the write's sequence.
    pub(crate) async fn bind<F, Fut>(
        &self,
        lease: &LeaseId,
        key: BoundKey,
        value: Bytes,
        deadline: Instant,
        write: F,
    ) -> CoordResult<u64>
    where
        F: FnOnce(Duration) -> Fut,
        Fut: Future<Output = CoordResult<u64>>,
    {
        check_id(lease)?;
        let op = Operation::Write;
        let handle = self.leases().handle(lease);
        let mut guard = self.lock_state(&handle, op, deadline).await?;
        let Some(state) = guard.as_mut() else {
            return Err(lost(lease));
        };
        self.rewrite_record(&handle, state, Some(key.clone()), op, deadline)
            .await?;
        let sent_at = Instant::now();
        let written = write(state.ttl).await;
        if !handle.renewed_here.load(Ordering::Acquire) {
            *guard = None;
            return written;
        }
        let seq = written?;
        state.keys.insert(
            key,
            Some(Bound {
                seq,
                term: seq,
                value,
                sent_at,
            }),
        );
        Ok(seq)
    }

    async fn renew(&self, id: &LeaseId, deadline: Instant) -> CoordResult<Duration> {
        let op = Operation::RenewLease;
        let handle = self.leases().handle(id);
        handle.renewed_here.store(true, Ordering::Release);
        let mut guard = self.lock_state(&handle, op, deadline).await?;
        let Some(state) = guard.as_mut() else {
            return Err(lost(id));
        };
        self.rewrite_record(&handle, state, None, op, deadline)
            .await?;
        let ttl = state.ttl;
        let outcomes =
            futures::future::join_all(state.keys.iter_mut().map(|(key, slot)| async move {
                let kept = self.renew_key(id, ttl, key, slot, deadline).await;
                (key.clone(), kept)
            }))
            .await;
        let mut first_error = None;
        let mut lost_keys = Vec::new();
        for (key, kept) in outcomes {
            match kept {
                Ok(KeyRenewal::Kept) => {}
                Ok(KeyRenewal::NotOurs) => {
                    // Pruned from the record by the next rewrite.
                    state.keys.remove(&key);
                }
                Ok(KeyRenewal::Lost { last_seq }) => {
                    state.keys.remove(&key);
                    if !self.leases().was_let_go(&key, last_seq) {
                        lost_keys.push(key);
                    }
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if !lost_keys.is_empty() {
            // A key the lease proved is gone without this process letting it go (expired early
            // on the server's clock, deleted by someone else): whatever it guarded may already
            // belong to another holder, so the lease ends here.
            tracing::warn!(lease = %id, keys = ?lost_keys, "a bound key was lost behind the lease's back; the lease is lost");
            handle.dead.store(true, Ordering::Release);
            *guard = None;
            return Err(lost(id));
        }
        match first_error {
            None => Ok(ttl),
            Some(e) => Err(e),
        }
    }

    async fn revoke(&self, id: &LeaseId, deadline: Instant) -> CoordResult<()> {
        let op = Operation::RevokeLease;
        let handle = self.leases().handle(id);
        // Dead here first: a bind or renewal that starts from now on fails with `LeaseLost`.
        handle.dead.store(true, Ordering::Release);
        let mut guard = timeout_at(deadline, handle.state.lock())
            .await
            .map_err(|_| CoordError::timed_out(op, self.kv().config.call_timeout))?;
        let mut keys: Vec<BoundKey> = guard
            .take()
            .map(|s| s.keys.into_keys().collect())
            .unwrap_or_default();
        // Tombstone the record, taking the keys it lists (others may have bound some).
        for attempt in 0.. {
            let stored = match self.load(id, op, deadline).await {
                Ok(stored) => stored,
                Err(CoordError::LeaseLost { .. }) => break,
                Err(e) => return Err(e),
            };
            keys.extend(stored.keys.into_keys());
            let tombstone = Write::tombstone(
                self.lease_bucket(),
                id.as_str(),
                self.kv().config.tombstone_ttl,
            )
            .when(Condition::LastSeq(stored.record_seq));
            match self.kv().publish(&tombstone, deadline).await {
                Ok(_) => break,
                Err(JsFailure::WrongLastSequence) if attempt < ATTEMPTS => {}
                Err(JsFailure::WrongLastSequence) => return Err(contention(op, id.to_string())),
                Err(e) => return Err(e.into_coord(op)),
            }
        }
        keys.sort();
        keys.dedup();
        let deletes = keys
            .iter()
            .map(|key| self.delete_if_bound(id, key, deadline));
        for outcome in futures::future::join_all(deletes).await {
            outcome?;
        }
        Ok(())
    }

    /// Deletes `key` if its current value is bound to `lease`.
    async fn delete_if_bound(
        &self,
        lease: &LeaseId,
        key: &BoundKey,
        deadline: Instant,
    ) -> CoordResult<()> {
        let op = Operation::RevokeLease;
        for _ in 0..ATTEMPTS {
            let stored = self
                .kv()
                .last(&key.bucket, &key.name, deadline)
                .await
                .map_err(|e| e.into_coord(op))?;
            let Some(seq) = stored.as_ref().and_then(|s| {
                s.live()
                    .filter(|v| v.lease.as_ref() == Some(lease))
                    .map(|_| s.seq)
            }) else {
                return Ok(());
            };
            let tombstone =
                Write::tombstone(&key.bucket, &key.name, self.kv().config.tombstone_ttl)
                    .when(Condition::LastSeq(seq));
            match self.kv().publish(&tombstone, deadline).await {
                Ok(_) => return Ok(()),
                Err(JsFailure::WrongLastSequence) => {}
                Err(e) => return Err(e.into_coord(op)),
            }
        }
        Err(contention(op, format!("{}/{}", key.bucket, key.name)))
    }
}

#[async_trait]
impl LeaseStore for NatsCoordinator {
    async fn grant_lease(&self, ttl: Duration) -> CoordResult<LeaseGrant> {
        let op = Operation::GrantLease;
        let deadline = self.kv().deadline();
        let ttl = round_ttl(ttl);
        let id = LeaseId::new(uuid::Uuid::now_v7().simple().to_string());
        let record = LeaseRecord {
            ttl_ms: ttl.as_millis() as u64,
            keys: Vec::new(),
        };
        let write = Write {
            ttl: Some(ttl),
            ..Write::value(self.lease_bucket(), id.as_str(), encode(&record)?)
                .when(Condition::LastSeq(0))
        };
        let sent_at = Instant::now();
        let seq = self
            .kv()
            .publish(&write, deadline)
            .await
            .map_err(|e| match e {
                JsFailure::WrongLastSequence => contention(op, id.to_string()),
                e => e.into_coord(op),
            })?;
        self.leases().insert(LeaseHandle {
            id: id.clone(),
            dead: AtomicBool::new(false),
            renewed_here: AtomicBool::new(true),
            state: tokio::sync::Mutex::new(Some(LeaseState {
                ttl,
                record_seq: seq,
                record_sent_at: sent_at,
                keys: BTreeMap::new(),
            })),
        });
        tracing::debug!(lease = %id, ?ttl, "lease granted");
        Ok(LeaseGrant { id, ttl })
    }

    async fn renew_lease(&self, lease: &LeaseId) -> CoordResult<Duration> {
        check_id(lease)?;
        let deadline = self.kv().deadline();
        timeout_at(deadline, self.renew(lease, deadline))
            .await
            .unwrap_or_else(|_| {
                Err(CoordError::timed_out(
                    Operation::RenewLease,
                    self.kv().config.call_timeout,
                ))
            })
    }

    async fn revoke_lease(&self, lease: &LeaseId) -> CoordResult<()> {
        check_id(lease)?;
        let deadline = self.kv().deadline();
        timeout_at(deadline, self.revoke(lease, deadline))
            .await
            .unwrap_or_else(|_| {
                Err(CoordError::timed_out(
                    Operation::RevokeLease,
                    self.kv().config.call_timeout,
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound(sent_at: Instant) -> Option<Bound> {
        Some(Bound {
            seq: 1,
            term: 1,
            value: Bytes::new(),
            sent_at,
        })
    }

    #[test]
    fn a_lease_may_have_expired_once_any_write_is_a_ttl_old() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(2);
        let key = |name: &str| BoundKey {
            bucket: "b".into(),
            name: name.into(),
        };
        let mut state = LeaseState {
            ttl,
            record_seq: 1,
            record_sent_at: t0 + Duration::from_secs(1),
            keys: BTreeMap::from([(key("fresh"), bound(t0 + Duration::from_secs(1)))]),
        };
        assert!(!state.may_have_expired(t0 + Duration::from_millis(2900)));
        assert!(state.may_have_expired(t0 + Duration::from_secs(3)));
        // A key whose renewal failed keeps its older send time, and decides.
        state.keys.insert(key("stale"), bound(t0));
        assert!(state.may_have_expired(t0 + Duration::from_secs(2)));
        // Keys whose sequence is unknown here do not count.
        state.keys.insert(key("stale"), None);
        assert!(!state.may_have_expired(t0 + Duration::from_secs(2)));
    }

    #[test]
    fn lease_ids_must_be_key_names() {
        assert!(check_id(&LeaseId::new("01a2111fa95a778b84a97edbc20d5f30")).is_ok());
        for bad in ["", "a.b", "a b", "a*"] {
            assert!(check_id(&LeaseId::new(bad)).is_err(), "{bad:?}");
        }
    }
}
