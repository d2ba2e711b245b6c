//! The watch part of the port: level-based change streams.

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::coordination::error::{CoordError, CoordResult};
use crate::coordination::key::{Key, KeyPrefix};
use crate::coordination::kv_store::KvEntry;
use crate::ids::Revision;

/// What to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchTarget {
    /// One key.
    Key(Key),
    /// Every key under a prefix.
    Prefix(KeyPrefix),
}

impl WatchTarget {
    /// Whether `key` is watched.
    pub fn matches(&self, key: &Key) -> bool {
        match self {
            WatchTarget::Key(k) => k == key,
            WatchTarget::Prefix(p) => p.contains(key),
        }
    }
}

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchStart {
    /// With a [`WatchEvent::Snapshot`] of the current values, then changes after it.
    Now,
    /// With every change after this revision, no snapshot. Only backends with full history
    /// honour this exactly; others answer `Unsupported`.
    After(Revision),
}

/// One item of a watch stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// The complete current state of the watched keys at `revision`: keys absent here are
    /// absent. Sent first, and again after any gap the watcher could not fill (reconnect on a
    /// backend without full history); replaces everything the watcher knew.
    Snapshot {
        /// Every watched key that exists.
        entries: Vec<KvEntry>,
        /// The store revision the snapshot reflects.
        revision: Revision,
    },
    /// A key was written.
    Put(KvEntry),
    /// A key was deleted, by a delete or because its lease expired.
    Delete {
        /// The key.
        key: Key,
        /// The revision of the deletion.
        revision: Revision,
    },
}

impl WatchEvent {
    /// The store revision this event is at.
    pub fn revision(&self) -> Revision {
        match self {
            WatchEvent::Snapshot { revision, .. } | WatchEvent::Delete { revision, .. } => {
                *revision
            }
            WatchEvent::Put(entry) => entry.revision,
        }
    }
}

/// A stream of watch events; it ends only when dropped or after a terminal error.
pub type WatchStream = BoxStream<'static, Result<WatchEvent, CoordError>>;

/// Whether a backend's watches deliver every revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchHistory {
    /// Every revision of every watched key is delivered, in order; [`WatchStart::After`] works;
    /// history the store compacted gives [`CoordError::Compacted`].
    FullHistory,
    /// Intermediate values may be skipped; a [`WatchEvent::Snapshot`] follows any gap.
    LatestValue,
}

/// Watching keys.
///
/// Contract (level-based): per key, the watcher first gets the current value (in a snapshot),
/// then changes in revision order; it never gets a revision older than one already delivered;
/// it always gets deletes, including lease expiries. Watches survive reconnects and server
/// restarts: the stream resumes by itself (with a new snapshot if a gap cannot be filled) and
/// only errors on something the watcher must act on (`Compacted`, `BadRequest`).
#[async_trait]
pub trait WatchStore: Send + Sync {
    /// Opens a watch on `target` starting at `start`.
    async fn watch(&self, target: WatchTarget, start: WatchStart) -> CoordResult<WatchStream>;
}
