//! The lease part of the port: grant, renew once, revoke.
//!
//! A lease is the store's proof that a process is alive. Keys bound to it (membership records,
//! claims, candidacies, locks) vanish when it expires. The port has one round trip per call; the
//! background keep-alive loop and the lost signal live in the client layer, on top of
//! [`crate::lease`]'s state machine, so every backend gets the same deadline arithmetic.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::coordination::error::CoordResult;

/// A lease as the store names it (etcd lease id, Consul session id, ...). Opaque.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeaseId(String);

impl LeaseId {
    /// Wraps the store's identifier.
    pub fn new(id: impl Into<String>) -> LeaseId {
        LeaseId(id.into())
    }

    /// The store's identifier.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A lease the store granted, with the TTL it actually granted (stores may raise a small TTL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseGrant {
    /// The lease.
    pub id: LeaseId,
    /// The TTL the store granted.
    pub ttl: Duration,
}

/// Granting, renewing and revoking leases.
///
/// Contract:
/// - `grant_lease` returns the TTL the store will honour, which may be larger than asked.
/// - `renew_lease` is one keep-alive round trip. It returns the TTL the lease now has, counted
///   from a moment no earlier than the call was sent. A lease the store no longer knows gives
///   [`CoordError::LeaseLost`](crate::coordination::CoordError::LeaseLost), and renewing never
///   revives it.
/// - `revoke_lease` deletes every key bound to the lease at once. Revoking an unknown lease is
///   not an error.
/// - Every call ends by its deadline: a store that is down gives `Unavailable`, never a hang.
#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// Grants a lease of at least `ttl`.
    async fn grant_lease(&self, ttl: Duration) -> CoordResult<LeaseGrant>;

    /// Renews the lease once; returns its TTL as of this renewal.
    async fn renew_lease(&self, lease: &LeaseId) -> CoordResult<Duration>;

    /// Revokes the lease and deletes every key bound to it.
    async fn revoke_lease(&self, lease: &LeaseId) -> CoordResult<()>;
}
