//! SQLite replication: WAL frames captured into segments, shipped to an ObjectStore,
//! applied on standbys; snapshots, point-in-time restore and promotion on failover.
#![warn(missing_docs)]
#![warn(clippy::unwrap_used)]

mod dir_object_store;

pub use dir_object_store::DirObjectStore;
