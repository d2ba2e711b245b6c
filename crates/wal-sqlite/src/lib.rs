//! SQLite replication: WAL frames captured into segments, shipped to an ObjectStore,
//! applied on standbys; snapshots, point-in-time restore and promotion on failover.
#![warn(clippy::unwrap_used)]
