//! SQLite replication: WAL frames captured into segments, shipped to an ObjectStore,
//! applied on standbys; snapshots, point-in-time restore and promotion on failover.
#![warn(missing_docs)]
#![warn(clippy::unwrap_used)]

mod capture;
mod compression;
mod config;
mod error;
mod generation;
mod generation_registry;
pub mod metric_definitions;
mod page_set;
mod position;
mod replica_file;
mod replicator;
mod restore;
mod segment;
mod snapshot;
mod snapshots;
mod standby;
mod store_layout;
mod term;
mod wal_format;
mod wal_scan;

pub use compression::Compression;
pub use config::{ReplicationConfig, Retention};
pub use error::{ReplicationError, ReplicationResult, SegmentError};
pub use generation::{FenceRecord, GenerationManifest, GenerationRecord};
pub use generation_registry::GenerationRegistry;
pub use position::Position;
pub use replicator::{ReplicationStats, ReplicationStores, Replicator, StartFrom};
pub use restore::{Restore, RestoreProgress, RestoreReport, RestoreTarget, RestoreTimings};
pub use segment::SegmentHeader;
pub use snapshot::{SnapshotManifest, SnapshotPart};
pub use snapshots::Snapshots;
pub use standby::{
    PromotionEvent, PromotionObserver, PromotionOptions, Standby, StandbyConfig, discard_database,
};
pub use term::{ReplicationTerm, SafeDeadline};
pub use wal_scan::WalPosition;
