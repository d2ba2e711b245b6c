//! Reads, conditional writes and fenced writes over JetStream KV.
//!
//! Every write is one publish whose condition the stream leader checks when it stores the
//! message: `Expect::Revision(r)` is `Nats-Expected-Last-Subject-Sequence: r`; `Expect::Absent`
//! expects no message, or the tombstone or delete marker found there. Conflicts are read back
//! only to say what was found. Reads go to the stream leader.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cluster_core::coordination::{
    ConflictDetail, CoordError, CoordResult, Expect, Fence, Key, KeyPrefix, KvEntry, KvStore,
    LeaseId, Operation,
};
use cluster_core::ids::{FencingToken, Revision};
use tokio::time::{Instant, timeout_at};

use crate::error::JsFailure;
use crate::jetstream_kv::{Condition, Stored, Write};
use crate::lease_table::BoundKey;
use crate::{NatsCoordinator, contention, layout, watch};

/// How often a conditional write is retried when the key moved under it.
const ATTEMPTS: usize = 5;

/// What [`NatsCoordinator::delete_term`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TermDeleted {
    /// The term's value was deleted.
    Deleted,
    /// The term had ended already; `current` is the term there now, if any.
    AlreadyOver { current: Option<u64> },
}

/// The bucket-and-name of a key.
pub(crate) fn bound_key(key: &Key) -> BoundKey {
    layout::place(key)
}

/// Our entry for a stored message of `key`, if it holds a value.
pub(crate) fn entry(key: &Key, stored: &Stored) -> Option<KvEntry> {
    stored.live().map(|live| KvEntry {
        key: key.clone(),
        value: live.value.to_vec(),
        revision: Revision(stored.seq),
        created: Some(Revision(live.term)),
        lease: live.lease.clone(),
    })
}

impl NatsCoordinator {
    /// Runs `f` with the call deadline of `op`. Every step of `f` ends by that deadline, except
    /// creating a bucket on first use, which has `create_timeout`; the outer bound covers both.
    pub(crate) async fn within<T, Fut>(
        &self,
        op: Operation,
        f: impl FnOnce(Instant) -> Fut,
    ) -> CoordResult<T>
    where
        Fut: Future<Output = CoordResult<T>>,
    {
        let config = &self.kv().config;
        let deadline = self.kv().deadline();
        timeout_at(deadline + config.create_timeout, f(deadline))
            .await
            .unwrap_or_else(|_| {
                Err(CoordError::timed_out(
                    op,
                    config.call_timeout + config.create_timeout,
                ))
            })
    }

    /// The last message of `key`, from the stream leader.
    pub(crate) async fn read(
        &self,
        key: &Key,
        op: Operation,
        deadline: Instant,
    ) -> CoordResult<Option<Stored>> {
        let at = layout::place(key);
        self.kv()
            .last(&at.bucket, &at.name, deadline)
            .await
            .map_err(|e| e.into_coord(op))
    }

    /// Writes `value` at `key` if `expect` holds; with `binding`, bound to that lease and TTL
    /// (the caller holds the lease, see [`NatsCoordinator::bind`]).
    pub(crate) async fn put_value(
        &self,
        key: &Key,
        value: Bytes,
        expect: Expect,
        binding: Option<(&LeaseId, Duration)>,
        op: Operation,
        deadline: Instant,
    ) -> CoordResult<u64> {
        let at = layout::place(key);
        let base = Write {
            ttl: binding.map(|(_, ttl)| ttl),
            lease: binding.map(|(lease, _)| lease),
            ..Write::value(&at.bucket, &at.name, value)
        };
        match expect {
            Expect::Any => self
                .kv()
                .publish(&base, deadline)
                .await
                .map_err(|e| e.into_coord(op)),
            Expect::Revision(expected) => {
                let write = base.when(Condition::LastSeq(expected.0));
                match self.kv().publish(&write, deadline).await {
                    Ok(seq) => Ok(seq),
                    Err(JsFailure::WrongLastSequence) => {
                        let found = self.read(key, op, deadline).await?;
                        Err(CoordError::Conflict {
                            key: key.path(),
                            detail: ConflictDetail::RevisionMoved {
                                expected,
                                found: found
                                    .filter(|s| s.live().is_some())
                                    .map(|s| Revision(s.seq)),
                            },
                        })
                    }
                    Err(e) => Err(e.into_coord(op)),
                }
            }
            Expect::Absent => {
                // No message at all, or a tombstone / delete marker: whatever is last must stay
                // last until we write.
                let mut last_gone = 0;
                for _ in 0..ATTEMPTS {
                    let write = base.clone().when(Condition::LastSeq(last_gone));
                    match self.kv().publish(&write, deadline).await {
                        Ok(seq) => return Ok(seq),
                        Err(JsFailure::WrongLastSequence) => {
                            match self.read(key, op, deadline).await? {
                                Some(s) if s.live().is_some() => {
                                    return Err(CoordError::Conflict {
                                        key: key.path(),
                                        detail: ConflictDetail::Exists {
                                            revision: Revision(s.seq),
                                        },
                                    });
                                }
                                Some(gone) => last_gone = gone.seq,
                                None => last_gone = 0,
                            }
                        }
                        Err(e) => return Err(e.into_coord(op)),
                    }
                }
                Err(contention(op, key.path()))
            }
        }
    }

    /// Writes a tombstone at `key` if its last message is at `seq`.
    pub(crate) async fn tombstone(
        &self,
        key: &Key,
        seq: u64,
        deadline: Instant,
    ) -> Result<u64, JsFailure> {
        let at = layout::place(key);
        let write = Write::tombstone(&at.bucket, &at.name, self.kv().config.tombstone_ttl)
            .when(Condition::LastSeq(seq));
        let written = self.kv().publish(&write, deadline).await;
        if written.is_ok() {
            self.leases().let_go(at, seq);
        }
        written
    }

    /// Deletes the value at `key` whose term is `term` (and, if given, bound to `lease`);
    /// renewals may move its revision meanwhile.
    pub(crate) async fn delete_term(
        &self,
        key: &Key,
        term: u64,
        lease: Option<&LeaseId>,
        op: Operation,
        deadline: Instant,
    ) -> CoordResult<TermDeleted> {
        for _ in 0..ATTEMPTS {
            let stored = self.read(key, op, deadline).await?;
            let Some((seq, live)) = stored.as_ref().and_then(|s| s.live().map(|l| (s.seq, l)))
            else {
                return Ok(TermDeleted::AlreadyOver { current: None });
            };
            if live.term != term || (lease.is_some() && live.lease.as_ref() != lease) {
                return Ok(TermDeleted::AlreadyOver {
                    current: Some(live.term),
                });
            }
            match self.tombstone(key, seq, deadline).await {
                Ok(_) => return Ok(TermDeleted::Deleted),
                Err(JsFailure::WrongLastSequence) => {}
                Err(e) => return Err(e.into_coord(op)),
            }
        }
        Err(contention(op, key.path()))
    }

    async fn delete_inner(
        &self,
        key: &Key,
        expect: Expect,
        deadline: Instant,
    ) -> CoordResult<bool> {
        let op = Operation::Write;
        match expect {
            Expect::Any => {
                for _ in 0..ATTEMPTS {
                    let Some(stored) = self.read(key, op, deadline).await? else {
                        return Ok(false);
                    };
                    if stored.live().is_none() {
                        return Ok(false);
                    }
                    match self.tombstone(key, stored.seq, deadline).await {
                        Ok(_) => return Ok(true),
                        Err(JsFailure::WrongLastSequence) => {}
                        Err(e) => return Err(e.into_coord(op)),
                    }
                }
                Err(contention(op, key.path()))
            }
            Expect::Absent => match self.read(key, op, deadline).await? {
                Some(s) if s.live().is_some() => Err(CoordError::Conflict {
                    key: key.path(),
                    detail: ConflictDetail::Exists {
                        revision: Revision(s.seq),
                    },
                }),
                _ => Ok(false),
            },
            Expect::Revision(expected) => match self.tombstone(key, expected.0, deadline).await {
                Ok(_) => Ok(true),
                Err(JsFailure::WrongLastSequence) => {
                    let found = self.read(key, op, deadline).await?;
                    Err(CoordError::Conflict {
                        key: key.path(),
                        detail: ConflictDetail::RevisionMoved {
                            expected,
                            found: found
                                .filter(|s| s.live().is_some())
                                .map(|s| Revision(s.seq)),
                        },
                    })
                }
                Err(e) => Err(e.into_coord(op)),
            },
        }
    }

    async fn put_if_held_inner(
        &self,
        key: &Key,
        value: Bytes,
        fence: &Fence,
        deadline: Instant,
    ) -> CoordResult<u64> {
        let op = Operation::Write;
        let at = layout::place(key);
        let fence_at = layout::place(&fence.key);
        for _ in 0..ATTEMPTS {
            let stored = self.read(&fence.key, op, deadline).await?;
            let current = stored
                .as_ref()
                .and_then(|s| s.live().map(|l| (s.seq, l.term)));
            let fence_seq = match current {
                Some((seq, term)) if term == fence.token.get() => seq,
                _ => {
                    return Err(CoordError::StaleToken {
                        resource: fence.key.path(),
                        presented: fence.token,
                        current: current.map(|(_, term)| FencingToken::new(term)),
                    });
                }
            };
            // One publish, conditioned on the fence key's last sequence: the message at that
            // sequence carries the fence's term, so the condition holding means the term stands.
            let write = Write::value(&at.bucket, &at.name, value.clone())
                .when(Condition::OtherLastSeq(&fence_at.name, fence_seq));
            match self.kv().publish(&write, deadline).await {
                Ok(seq) => return Ok(seq),
                // A renewal (or a new term) moved the fence key: read it again.
                Err(JsFailure::WrongLastSequence) => {}
                Err(e) => return Err(e.into_coord(op)),
            }
        }
        Err(contention(op, fence.key.path()))
    }
}

#[async_trait]
impl KvStore for NatsCoordinator {
    async fn get(&self, key: &Key) -> CoordResult<Option<KvEntry>> {
        self.within(Operation::Read, |deadline| async move {
            Ok(self
                .read(key, Operation::Read, deadline)
                .await?
                .and_then(|s| entry(key, &s)))
        })
        .await
    }

    async fn list(&self, prefix: &KeyPrefix) -> CoordResult<Vec<KvEntry>> {
        self.within(Operation::Read, |deadline| {
            watch::list(self, prefix, deadline)
        })
        .await
    }

    async fn put(
        &self,
        key: &Key,
        value: Vec<u8>,
        expect: Expect,
        lease: Option<&LeaseId>,
    ) -> CoordResult<Revision> {
        let op = Operation::Write;
        let value = Bytes::from(value);
        self.within(op, |deadline| async move {
            let seq = match lease {
                None => {
                    self.put_value(key, value, expect, None, op, deadline)
                        .await?
                }
                Some(lease) => {
                    self.bind(lease, bound_key(key), value.clone(), deadline, |ttl| {
                        self.put_value(key, value, expect, Some((lease, ttl)), op, deadline)
                    })
                    .await?
                }
            };
            Ok(Revision(seq))
        })
        .await
    }

    async fn delete(&self, key: &Key, expect: Expect) -> CoordResult<bool> {
        self.within(Operation::Write, |deadline| {
            self.delete_inner(key, expect, deadline)
        })
        .await
    }

    /// Within one bucket (every namespace of one app): one publish conditioned on the fence
    /// key's last sequence (`Nats-Expected-Last-Subject-Sequence-Subject`). Across buckets:
    /// `Unsupported`, as `capabilities().put_if_held` says; see the crate docs.
    async fn put_if_held(&self, key: &Key, value: Vec<u8>, fence: &Fence) -> CoordResult<Revision> {
        if layout::bucket(key.namespace()) != layout::bucket(fence.key.namespace()) {
            return Err(CoordError::Unsupported {
                operation: "put_if_held",
                backend: "nats",
                reason: "the fence key is in another bucket, and no JetStream write can be \
                         conditioned on another stream (atomic batches are single-stream too)",
            });
        }
        let value = Bytes::from(value);
        self.within(Operation::Write, |deadline| async move {
            self.put_if_held_inner(key, value, fence, deadline)
                .await
                .map(Revision)
        })
        .await
    }

    /// The fence key's revision moves with every renewal; the term it carries does not.
    async fn fence_holds(&self, fence: &Fence) -> CoordResult<bool> {
        self.within(Operation::Read, |deadline| async move {
            let stored = self.read(&fence.key, Operation::Read, deadline).await?;
            Ok(stored
                .as_ref()
                .and_then(|s| s.live().map(|l| l.term))
                .is_some_and(|term| term == fence.token.get()))
        })
        .await
    }
}
