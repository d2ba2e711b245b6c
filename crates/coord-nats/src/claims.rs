//! Ownership claims and membership, where renewals move a key's revision.
//!
//! The port's default claim methods take the claim key's revision as the token and expect it to
//! change only with the owner. On NATS KV every renewal rewrites the key, so here the token is
//! the term: the revision of the write that made the current owner (a claim's create or a
//! transfer), which renewals carry in `Coord-Term`. Transfer and release read the key, check
//! the term, and write conditioned on the sequence they read; a renewal in between only makes
//! them read again.

use async_trait::async_trait;
use bytes::Bytes;
use cluster_core::coordination::{
    ClaimRecord, ClaimStore, ConflictDetail, CoordError, CoordResult, Expect, Key, KvEntry,
    LeaseId, MemberInfo, MembershipStore, Operation, OwnershipClaim,
};
use cluster_core::ids::{FencingToken, NodeId, Revision};
use cluster_core::naming::Namespace;
use tokio::time::Instant;

use crate::error::JsFailure;
use crate::kv::{TermDeleted, bound_key};
use crate::{NatsCoordinator, contention};

/// How often a conditional write is retried when a renewal moved the key under it.
const ATTEMPTS: usize = 5;

fn encode_claim(owner: &NodeId, lease: &LeaseId) -> CoordResult<Bytes> {
    serde_json::to_vec(&ClaimRecord {
        owner: owner.clone(),
        lease: lease.to_string(),
    })
    .map(Bytes::from)
    .map_err(|e| CoordError::bad_request(format!("encoding claim record: {e}")))
}

/// A claim as stored: sequence, term and record.
struct StoredClaim {
    seq: u64,
    term: u64,
    record: Option<ClaimRecord>,
}

impl StoredClaim {
    fn claim(&self, resource: &Key) -> Option<OwnershipClaim> {
        let record = self.record.as_ref()?;
        Some(OwnershipClaim {
            resource: resource.clone(),
            owner: record.owner.clone(),
            token: FencingToken::new(self.term),
            lease: LeaseId::new(record.lease.clone()),
        })
    }
}

impl NatsCoordinator {
    async fn read_claim(
        &self,
        resource: &Key,
        op: Operation,
        deadline: Instant,
    ) -> CoordResult<Option<StoredClaim>> {
        let stored = self.read(resource, op, deadline).await?;
        Ok(stored.and_then(|s| {
            s.live().map(|live| StoredClaim {
                seq: s.seq,
                term: live.term,
                record: serde_json::from_slice(&live.value).ok(),
            })
        }))
    }

    /// Writes `value` at `key` bound to `lease` under `expect`.
    pub(crate) async fn put_bound(
        &self,
        key: &Key,
        value: Bytes,
        expect: Expect,
        lease: &LeaseId,
        op: Operation,
        deadline: Instant,
    ) -> CoordResult<u64> {
        self.bind(lease, bound_key(key), value.clone(), deadline, |ttl| {
            self.put_value(key, value, expect, Some((lease, ttl)), op, deadline)
        })
        .await
    }

    fn stale_claim(claim: &OwnershipClaim, current: Option<u64>) -> CoordError {
        CoordError::StaleToken {
            resource: claim.resource.path(),
            presented: claim.token,
            current: current.map(FencingToken::new),
        }
    }
}

#[async_trait]
impl ClaimStore for NatsCoordinator {
    /// The token is the term carried with the value (the entry's `created`), not the revision,
    /// which every renewal moves.
    fn claim_from_entry(&self, entry: &KvEntry) -> Option<OwnershipClaim> {
        let mut claim = cluster_core::coordination::decode_claim(entry)?;
        claim.token = FencingToken::from(entry.created?);
        Some(claim)
    }

    async fn claim(
        &self,
        resource: &Key,
        owner: &NodeId,
        lease: &LeaseId,
    ) -> CoordResult<OwnershipClaim> {
        let op = Operation::Claim;
        let value = encode_claim(owner, lease)?;
        self.within(op, |deadline| async move {
            match self
                .put_bound(resource, value, Expect::Absent, lease, op, deadline)
                .await
            {
                Ok(seq) => Ok(OwnershipClaim {
                    resource: resource.clone(),
                    owner: owner.clone(),
                    token: FencingToken::new(seq),
                    lease: lease.clone(),
                }),
                Err(CoordError::Conflict { .. }) => {
                    let current = self.read_claim(resource, op, deadline).await?;
                    let current = current.as_ref().and_then(|c| c.claim(resource));
                    match current {
                        // Ours already (a retried claim whose first try landed): the same claim.
                        Some(c) if c.owner == *owner && c.lease == *lease => Ok(c),
                        other => Err(CoordError::Conflict {
                            key: resource.path(),
                            detail: ConflictDetail::HeldBy {
                                holder: other
                                    .map_or_else(|| "unknown".to_owned(), |c| c.owner.to_string()),
                            },
                        }),
                    }
                }
                Err(e) => Err(e),
            }
        })
        .await
    }

    async fn transfer(
        &self,
        claim: &OwnershipClaim,
        to: &NodeId,
        to_lease: &LeaseId,
    ) -> CoordResult<OwnershipClaim> {
        let op = Operation::Claim;
        let value = encode_claim(to, to_lease)?;
        self.within(op, |deadline| async move {
            for _ in 0..ATTEMPTS {
                let current = self.read_claim(&claim.resource, op, deadline).await?;
                let seq = match current {
                    Some(c) if c.term == claim.token.get() => c.seq,
                    other => return Err(Self::stale_claim(claim, other.map(|c| c.term))),
                };
                let expect = Expect::Revision(Revision(seq));
                match self
                    .put_bound(
                        &claim.resource,
                        value.clone(),
                        expect,
                        to_lease,
                        op,
                        deadline,
                    )
                    .await
                {
                    Ok(seq) => {
                        // Handed over: the old lease's renewal drops the key quietly.
                        self.leases()
                            .let_go(crate::layout::place(&claim.resource), seq);
                        return Ok(OwnershipClaim {
                            resource: claim.resource.clone(),
                            owner: to.clone(),
                            token: FencingToken::new(seq),
                            lease: to_lease.clone(),
                        });
                    }
                    // Renewed (or taken) meanwhile: read again.
                    Err(CoordError::Conflict { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Err(contention(op, claim.resource.path()))
        })
        .await
    }

    async fn release(&self, claim: &OwnershipClaim) -> CoordResult<()> {
        let op = Operation::Claim;
        self.within(op, |deadline| async move {
            match self
                .delete_term(&claim.resource, claim.token.get(), None, op, deadline)
                .await?
            {
                TermDeleted::Deleted => Ok(()),
                TermDeleted::AlreadyOver { current } => Err(Self::stale_claim(claim, current)),
            }
        })
        .await
    }

    async fn owner(&self, resource: &Key) -> CoordResult<Option<OwnershipClaim>> {
        let op = Operation::Claim;
        self.within(op, |deadline| async move {
            Ok(self
                .read_claim(resource, op, deadline)
                .await?
                .and_then(|c| c.claim(resource)))
        })
        .await
    }

    async fn stale(&self, claim: &OwnershipClaim) -> CoordError {
        let current = self
            .owner(&claim.resource)
            .await
            .ok()
            .flatten()
            .map(|c| c.token.get());
        Self::stale_claim(claim, current)
    }
}

fn member_key(ns: &Namespace, node: &NodeId) -> CoordResult<Key> {
    Key::new(ns.clone(), node.as_str())
}

#[async_trait]
impl MembershipStore for NatsCoordinator {
    /// Rewrites this node's record; renewals moving the record in between only make it retry.
    async fn update_member(
        &self,
        ns: &Namespace,
        member: &MemberInfo,
        lease: &LeaseId,
    ) -> CoordResult<Revision> {
        let op = Operation::Membership;
        let key = member_key(ns, &member.node)?;
        let value = Bytes::from(
            serde_json::to_vec(member)
                .map_err(|e| CoordError::bad_request(format!("encoding member record: {e}")))?,
        );
        self.within(op, |deadline| async move {
            for _ in 0..ATTEMPTS {
                let stored = self.read(&key, op, deadline).await?;
                let seq = match stored.as_ref().and_then(|s| s.live().map(|l| (s.seq, l))) {
                    Some((seq, live)) if live.lease.as_ref() == Some(lease) => seq,
                    _ => {
                        return Err(CoordError::LeaseLost {
                            lease: lease.clone(),
                        });
                    }
                };
                let expect = Expect::Revision(Revision(seq));
                match self
                    .put_bound(&key, value.clone(), expect, lease, op, deadline)
                    .await
                {
                    Ok(seq) => return Ok(Revision(seq)),
                    Err(CoordError::Conflict { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Err(contention(op, key.path()))
        })
        .await
    }

    /// Removes this node's record if `lease` holds it; a record of another lease stays.
    async fn deregister(&self, ns: &Namespace, node: &NodeId, lease: &LeaseId) -> CoordResult<()> {
        let op = Operation::Membership;
        let key = member_key(ns, node)?;
        self.within(op, |deadline| async move {
            for _ in 0..ATTEMPTS {
                let stored = self.read(&key, op, deadline).await?;
                let Some(seq) = stored.as_ref().and_then(|s| {
                    s.live()
                        .filter(|l| l.lease.as_ref() == Some(lease))
                        .map(|_| s.seq)
                }) else {
                    return Ok(());
                };
                match self.tombstone(&key, seq, deadline).await {
                    Ok(_) => return Ok(()),
                    Err(JsFailure::WrongLastSequence) => {}
                    Err(e) => return Err(e.into_coord(op)),
                }
            }
            Err(contention(op, key.path()))
        })
        .await
    }
}
