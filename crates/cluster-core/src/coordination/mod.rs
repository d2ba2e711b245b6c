//! The coordination port: what the platform needs from etcd, Consul or NATS KV.
//!
//! The port is split by capability, one trait per file, and [`Coordinator`] is all of them:
//!
//! | trait | what |
//! | --- | --- |
//! | [`LeaseStore`] | grant, renew once, revoke a lease |
//! | [`KvStore`] | get, list, conditional put and delete, `put_if_held` |
//! | [`WatchStore`] | level-based watches: snapshot, then changes in revision order |
//! | [`ElectionStore`] | campaign, resign, leader, observe; a fencing token per term |
//! | [`MembershipStore`] | register under a lease (`NodeIdInUse`), list, watch |
//! | [`ClaimStore`] | claim, transfer, release with tokens; the token is the claim key's revision |
//! | [`LockStore`] | named locks with a token |
//!
//! Keys are [`Key`]s: a [`Namespace`](crate::naming::Namespace) from the naming function plus a
//! name, rendered by each adapter for its store. Errors are one [`CoordError`] enum whose
//! [`is_retryable`](crate::error::Retryable::is_retryable) tells an outage from a refusal.
//!
//! Fencing reaches the store itself: every claim, leadership and lock gives a [`Fence`] (a key
//! and the revision it had when taken), and [`KvStore::put_if_held`] commits a write only while
//! that fence stands, in one store operation.
//!
//! The port has one store round trip per call. Keep-alive loops, the lost signal and retries
//! are built once on top of it (the client layer), not in every adapter.

mod claim_store;
mod coordinator;
mod election_store;
mod error;
mod fence;
mod key;
mod kv_store;
mod lease_store;
mod lock_store;
mod membership_store;
pub mod queue_election;
mod watch_store;

pub use claim_store::{ClaimRecord, ClaimStore, OwnershipClaim, decode_claim};
pub use coordinator::{Capabilities, Coordinator};
pub use election_store::{ElectionStore, LeaderInfo, LeaderStream, Leadership};
pub use error::{
    ConflictDetail, CoordError, CoordResult, DeadlineExceeded, ErrorSource, Operation,
};
pub use fence::Fence;
pub use key::{Key, KeyPrefix, NAME_CHARSET};
pub use kv_store::{Expect, KvEntry, KvStore};
pub use lease_store::{LeaseGrant, LeaseId, LeaseStore};
pub use lock_store::{LockHold, LockStore};
pub use membership_store::{
    MemberInfo, MembershipEvent, MembershipStore, MembershipStream, decode_member,
    membership_events,
};
pub use watch_store::{WatchEvent, WatchHistory, WatchStart, WatchStore, WatchStream, WatchTarget};
