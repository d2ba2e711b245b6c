//! The ownership part of the port: claims on resources, with a fencing token per owner change.
//!
//! A claim lives at the resource's key, bound to the owner's lease. The key is written only when
//! the owner changes, so its revision is the fencing token: claim = create if absent; transfer
//! = write guarded by revision == token; release = delete guarded by revision == token. Each
//! claim or transfer therefore yields a token larger than any earlier one of that resource.
//! The default methods build this on [`KvStore`]; backends whose revisions move without an owner
//! change (NATS KV renews by rewriting) override them.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::coordination::error::{ConflictDetail, CoordError, CoordResult};
use crate::coordination::fence::Fence;
use crate::coordination::key::Key;
use crate::coordination::kv_store::{Expect, KvEntry, KvStore};
use crate::coordination::lease_store::LeaseId;
use crate::ids::{FencingToken, NodeId, Revision};

/// An owner's hold on a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnershipClaim {
    /// The claimed resource.
    pub resource: Key,
    /// The owner.
    pub owner: NodeId,
    /// The fencing token of this ownership.
    pub token: FencingToken,
    /// The lease the claim is bound to.
    pub lease: LeaseId,
}

impl OwnershipClaim {
    /// The fence that proves this ownership still stands.
    pub fn fence(&self) -> Fence {
        Fence {
            key: self.resource.clone(),
            token: self.token,
        }
    }
}

/// The value stored at a claimed resource's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRecord {
    /// The owner.
    pub owner: NodeId,
    /// The owner's lease.
    pub lease: String,
}

/// Decodes a claim from a resource's entry, its token being the entry's revision (backends
/// whose revisions move without an owner change override [`ClaimStore::claim_from_entry`]).
pub fn decode_claim(entry: &KvEntry) -> Option<OwnershipClaim> {
    let record: ClaimRecord = serde_json::from_slice(&entry.value).ok()?;
    Some(OwnershipClaim {
        resource: entry.key.clone(),
        owner: record.owner,
        token: FencingToken::from(entry.revision),
        lease: LeaseId::new(record.lease),
    })
}

fn encode(owner: &NodeId, lease: &LeaseId) -> CoordResult<Vec<u8>> {
    serde_json::to_vec(&ClaimRecord {
        owner: owner.clone(),
        lease: lease.to_string(),
    })
    .map_err(|e| CoordError::bad_request(format!("encoding claim record: {e}")))
}

/// Ownership claims.
///
/// Contract: `claim` fails with `Conflict` (`HeldBy`) while another claim stands; `transfer` and
/// `release` with a token that is not the current one fail with `StaleToken` and change
/// nothing; every successful claim or transfer gives a token larger than any earlier one of the
/// resource; a claim vanishes when its lease ends.
#[async_trait]
pub trait ClaimStore: KvStore {
    /// Claims `resource` for `owner` under `lease`.
    async fn claim(
        &self,
        resource: &Key,
        owner: &NodeId,
        lease: &LeaseId,
    ) -> CoordResult<OwnershipClaim> {
        match self
            .put(resource, encode(owner, lease)?, Expect::Absent, Some(lease))
            .await
        {
            Ok(revision) => Ok(OwnershipClaim {
                resource: resource.clone(),
                owner: owner.clone(),
                token: FencingToken::from(revision),
                lease: lease.clone(),
            }),
            Err(CoordError::Conflict { .. }) => {
                let holder = self
                    .get(resource)
                    .await?
                    .and_then(|e| decode_claim(&e))
                    .map_or_else(|| "unknown".to_owned(), |c| c.owner.to_string());
                Err(CoordError::Conflict {
                    key: resource.path(),
                    detail: ConflictDetail::HeldBy { holder },
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Hands the resource from `claim`'s owner to `to` under `to_lease`, in one step.
    async fn transfer(
        &self,
        claim: &OwnershipClaim,
        to: &NodeId,
        to_lease: &LeaseId,
    ) -> CoordResult<OwnershipClaim> {
        let expect = Expect::Revision(Revision(claim.token.get()));
        match self
            .put(
                &claim.resource,
                encode(to, to_lease)?,
                expect,
                Some(to_lease),
            )
            .await
        {
            Ok(revision) => Ok(OwnershipClaim {
                resource: claim.resource.clone(),
                owner: to.clone(),
                token: FencingToken::from(revision),
                lease: to_lease.clone(),
            }),
            Err(CoordError::Conflict { .. }) => Err(self.stale(claim).await),
            Err(e) => Err(e),
        }
    }

    /// Releases the resource; it is unowned until the next claim.
    async fn release(&self, claim: &OwnershipClaim) -> CoordResult<()> {
        match self
            .delete(
                &claim.resource,
                Expect::Revision(Revision(claim.token.get())),
            )
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) | Err(CoordError::Conflict { .. }) => Err(self.stale(claim).await),
            Err(e) => Err(e),
        }
    }

    /// The claim an entry of a claim key holds, as this backend encodes it (watchers of claim
    /// keys use this; the default takes the entry's revision as the token).
    fn claim_from_entry(&self, entry: &KvEntry) -> Option<OwnershipClaim> {
        decode_claim(entry)
    }

    /// The resource's current claim, if any.
    async fn owner(&self, resource: &Key) -> CoordResult<Option<OwnershipClaim>> {
        Ok(self.get(resource).await?.and_then(|e| decode_claim(&e)))
    }

    /// The `StaleToken` error for `claim`, with the current token if it can be read.
    async fn stale(&self, claim: &OwnershipClaim) -> CoordError {
        let current = self
            .get(&claim.resource)
            .await
            .ok()
            .flatten()
            .map(|e| FencingToken::from(e.revision));
        CoordError::StaleToken {
            resource: claim.resource.path(),
            presented: claim.token,
            current,
        }
    }
}
