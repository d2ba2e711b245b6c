//! Errors of the coordination port.
//!
//! One enum for every coordination operation, because callers react to the same few outcomes
//! whatever the operation: the lease is gone, the token is stale, someone else won the race, the
//! store is unreachable (retry), or the request itself was wrong (do not retry).

use crate::ids::{FencingToken, NodeId, Revision};

pub use crate::error::{DeadlineExceeded, ErrorSource};

crate::operation_enum! {
    /// Which operation failed, for errors and metric labels.
    pub enum Operation {
        /// Granting a lease.
        GrantLease => "grant_lease",
        /// Renewing a lease.
        RenewLease => "renew_lease",
        /// Revoking a lease.
        RevokeLease => "revoke_lease",
        /// Reading a key or a prefix.
        Read => "read",
        /// Writing or deleting a key.
        Write => "write",
        /// Opening or resuming a watch.
        Watch => "watch",
        /// Campaigning, resigning or reading a leader.
        Election => "election",
        /// Registering or listing members.
        Membership => "membership",
        /// Claiming, transferring or releasing ownership.
        Claim => "claim",
        /// Taking or releasing a lock.
        Lock => "lock",
    }
}

/// Why a coordination operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CoordError {
    /// The lease is gone: expired at the store, revoked, or declared lost locally past its
    /// deadline. Final for that lease; a new one must be granted.
    #[error("lease {lease} is lost")]
    LeaseLost {
        /// The lease.
        lease: crate::coordination::LeaseId,
    },
    /// The token presented is not the current one for the resource: someone else holds it now,
    /// or it was released.
    #[error("stale fencing token {presented} for {resource} (current: {})", current.map_or("none".to_owned(), |t| t.to_string()))]
    StaleToken {
        /// The resource (claim key, election or lock).
        resource: String,
        /// The token the caller presented.
        presented: FencingToken,
        /// The token the store holds now, if any and if known.
        current: Option<FencingToken>,
    },
    /// A compare-and-set or create lost: the key exists, or its revision moved.
    #[error("conflict on {key}: {detail}")]
    Conflict {
        /// The key.
        key: String,
        /// What did not match.
        detail: ConflictDetail,
    },
    /// Another live lease already registered this node id.
    #[error("node id {node} is already registered by a live lease")]
    NodeIdInUse {
        /// The node id.
        node: NodeId,
    },
    /// A full-history watch asked for revisions the store has compacted away.
    #[error("revision {requested} is compacted (oldest available: {compacted})")]
    Compacted {
        /// The first revision the watcher needed.
        requested: Revision,
        /// The compaction revision.
        compacted: Revision,
    },
    /// The store could not be reached or did not answer in time. Retryable.
    #[error("coordination store unavailable during {operation}: {source}")]
    Unavailable {
        /// What was being done.
        operation: Operation,
        /// The underlying failure.
        #[source]
        source: ErrorSource,
    },
    /// The request is invalid and retrying it will not help.
    #[error("bad request: {reason}")]
    BadRequest {
        /// What is wrong with it.
        reason: String,
    },
    /// This backend cannot do the operation soundly.
    #[error("{operation} is not supported by the {backend} backend: {reason}")]
    Unsupported {
        /// The operation.
        operation: &'static str,
        /// The backend's name.
        backend: &'static str,
        /// Why, in a sentence.
        reason: &'static str,
    },
}

/// What a [`CoordError::Conflict`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConflictDetail {
    /// The key was expected to be absent but exists.
    Exists {
        /// Its current revision.
        revision: Revision,
    },
    /// The key was expected at one revision but is at another, or absent.
    RevisionMoved {
        /// The revision the caller expected.
        expected: Revision,
        /// The revision found, `None` if the key is absent.
        found: Option<Revision>,
    },
    /// The resource is held by someone else.
    HeldBy {
        /// The holder as recorded by the store.
        holder: String,
    },
}

impl std::fmt::Display for ConflictDetail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConflictDetail::Exists { revision } => write!(f, "exists at revision {revision}"),
            ConflictDetail::RevisionMoved { expected, found } => match found {
                Some(found) => write!(f, "expected revision {expected}, found {found}"),
                None => write!(f, "expected revision {expected}, key is absent"),
            },
            ConflictDetail::HeldBy { holder } => write!(f, "held by {holder}"),
        }
    }
}

crate::unavailable_error!(CoordError, Operation);

impl CoordError {
    /// A [`CoordError::BadRequest`].
    pub fn bad_request(reason: impl Into<String>) -> Self {
        CoordError::BadRequest {
            reason: reason.into(),
        }
    }
}

impl crate::error::Retryable for CoordError {
    fn is_retryable(&self) -> bool {
        matches!(self, CoordError::Unavailable { .. })
    }

    fn as_metrics_label(&self) -> &'static str {
        match self {
            CoordError::LeaseLost { .. } => "lease_lost",
            CoordError::StaleToken { .. } => "stale_token",
            CoordError::Conflict { .. } => "conflict",
            CoordError::NodeIdInUse { .. } => "node_id_in_use",
            CoordError::Compacted { .. } => "compacted",
            CoordError::Unavailable { .. } => "unavailable",
            CoordError::BadRequest { .. } => "bad_request",
            CoordError::Unsupported { .. } => "unsupported",
        }
    }
}

/// The result of a coordination operation.
pub type CoordResult<T> = Result<T, CoordError>;
