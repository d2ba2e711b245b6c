//! Errors of replication, restore and promotion.

use std::path::PathBuf;

use cluster_core::coordination::CoordError;
use cluster_core::error::Retryable;
use cluster_core::object_store::ObjectStoreError;

/// What is wrong with a segment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SegmentError {
    /// Its bytes do not decode or their checksum does not match.
    #[error("damaged: {detail}")]
    Damaged {
        /// What failed.
        detail: String,
    },
    /// It decodes but does not belong where it was found (another generation, index, token,
    /// or a broken chain to its predecessor).
    #[error("does not belong here: {detail}")]
    Foreign {
        /// What did not match.
        detail: String,
    },
}

/// Why a replication operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicationError {
    /// The object store failed.
    #[error("object store: {0}")]
    Store(#[from] ObjectStoreError),
    /// The coordination store failed.
    #[error("coordination store: {0}")]
    Coord(#[from] CoordError),
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// A segment is damaged or foreign; it was not applied.
    #[error("segment {generation}/{index}: {source}")]
    Segment {
        /// Its generation.
        generation: u64,
        /// Its index.
        index: u64,
        /// What is wrong.
        #[source]
        source: SegmentError,
    },
    /// A segment is missing while a later one exists; nothing after the gap was applied.
    #[error("segment {generation}/{index} is missing")]
    MissingSegment {
        /// Its generation.
        generation: u64,
        /// Its index.
        index: u64,
    },
    /// A snapshot is damaged or incomplete.
    #[error("snapshot {id}: {detail}")]
    Snapshot {
        /// The snapshot.
        id: String,
        /// What is wrong.
        detail: String,
    },
    /// Nothing to restore from: no snapshot on the way to the target.
    #[error("no snapshot reaches {target}")]
    NoSnapshot {
        /// The requested target.
        target: String,
    },
    /// The database failed verification.
    #[error("verification of {path} failed: {detail}")]
    Verification {
        /// The database.
        path: PathBuf,
        /// `integrity_check`'s first complaint.
        detail: String,
    },
    /// The database is not in WAL mode and could not be switched.
    #[error("{path} is not in WAL mode (journal_mode={mode})")]
    NotWal {
        /// The database.
        path: PathBuf,
        /// Its journal mode.
        mode: String,
    },
    /// This node's token is no longer current; it must not write.
    #[error("fenced out: token {token} is not the current holder's")]
    Fenced {
        /// The token that lost.
        token: cluster_core::ids::FencingToken,
    },
    /// Another node changed the generation record first.
    #[error("generation {generation} was changed concurrently: {detail}")]
    Conflict {
        /// The generation.
        generation: u64,
        /// What was found.
        detail: String,
    },
    /// A sync commit's segment was not acknowledged in time, or only after the lease's safe
    /// deadline: the commit may or may not survive a failover.
    #[error("sync unavailable: {reason}")]
    Unavailable {
        /// Why.
        reason: String,
    },
    /// A configuration value is invalid.
    #[error(transparent)]
    Config(#[from] cluster_core::config::ConfigError),
    /// A graceful stop could not ship the captured tail before the term ended (without a
    /// lease: within `sync_timeout`), or capture was between generations: those commits are
    /// not in the store, and a successor will not have them.
    #[error(
        "stopped with {segments} segment(s), {transactions} transaction(s), not shipped after {shipped:?}: {reason}"
    )]
    TailNotShipped {
        /// The last position the store acknowledged.
        shipped: Option<crate::position::Position>,
        /// Segments captured but never acknowledged.
        segments: usize,
        /// Transactions in them.
        transactions: u64,
        /// Why they were not shipped.
        reason: String,
    },
    /// The replicator or standby has stopped.
    #[error("stopped")]
    Stopped,
}

impl ReplicationError {
    /// An I/O error on `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> ReplicationError {
        ReplicationError::Io {
            path: path.into(),
            source,
        }
    }
}

impl Retryable for ReplicationError {
    /// Retrying later may succeed after a store or coordinator outage.
    fn is_retryable(&self) -> bool {
        match self {
            ReplicationError::Store(e) => e.is_retryable(),
            ReplicationError::Coord(e) => e.is_retryable(),
            ReplicationError::Unavailable { .. } => true,
            _ => false,
        }
    }

    fn as_metrics_label(&self) -> &'static str {
        match self {
            ReplicationError::Store(e) => e.as_metrics_label(),
            ReplicationError::Coord(e) => e.as_metrics_label(),
            ReplicationError::Sqlite(_) => "sqlite",
            ReplicationError::Io { .. } => "io",
            ReplicationError::Segment { source, .. } => source.as_metrics_label(),
            ReplicationError::Config(_) => "config",
            ReplicationError::TailNotShipped { .. } => "tail_not_shipped",
            ReplicationError::Stopped => "stopped",
            ReplicationError::MissingSegment { .. } => "missing_segment",
            ReplicationError::Snapshot { .. } => "snapshot",
            ReplicationError::NoSnapshot { .. } => "no_snapshot",
            ReplicationError::Verification { .. } => "verification",
            ReplicationError::NotWal { .. } => "not_wal",
            ReplicationError::Fenced { .. } => "fenced",
            ReplicationError::Conflict { .. } => "conflict",
            ReplicationError::Unavailable { .. } => "unavailable",
        }
    }
}

impl Retryable for SegmentError {
    fn is_retryable(&self) -> bool {
        false
    }

    fn as_metrics_label(&self) -> &'static str {
        match self {
            SegmentError::Damaged { .. } => "segment_damaged",
            SegmentError::Foreign { .. } => "segment_foreign",
        }
    }
}

/// Result of replication operations.
pub type ReplicationResult<T> = Result<T, ReplicationError>;
