//! SQLite replication: WAL frames captured into segments, shipped to an ObjectStore,
//! applied on standbys; snapshots, point-in-time restore and promotion on failover.
#![warn(missing_docs)]
#![warn(clippy::unwrap_used)]

mod dir_object_store;
mod error;
mod generation;
mod generation_registry;
mod page_set;
mod position;
mod replica_file;
mod segment;
mod store_layout;
mod wal_format;
mod wal_scan;

pub use dir_object_store::DirObjectStore;
pub use error::{ReplicationError, ReplicationResult, SegmentError};
pub use generation::{FenceRecord, GenerationManifest, GenerationRecord};
pub use generation_registry::GenerationRegistry;
pub use position::Position;
pub use segment::SegmentHeader;
pub use wal_scan::WalPosition;
