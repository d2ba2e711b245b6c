//! Every metric this crate records, by its exact name.
//!
//! | name | type | what |
//! | --- | --- | --- |
//! | `wal_replication_lag_seconds` | gauge | age of the oldest captured change not yet acknowledged by the store |
//! | `wal_segments_shipped_total` | counter | segments acknowledged by the store |
//! | `wal_bytes_shipped_total` | counter | segment bytes acknowledged by the store, as stored (compressed) |
//! | `wal_plain_bytes_shipped_total` | counter | the same segments' bytes before compression |
//! | `wal_compression_ratio` | gauge | plain over stored bytes of the segments this replicator shipped |
//! | `wal_segments_applied_total` | counter | segments applied to a replica |
//! | `wal_snapshot_age_seconds` | gauge | age of the newest snapshot this node took |
//! | `wal_generation` | gauge | the generation being written or followed |
//! | `wal_store_degraded` | gauge | 1 while segment puts fail, else 0 |
//! | `wal_missing_segments_total` | counter | holes a replica found below the head of its generation with no snapshot past them |

/// `wal_replication_lag_seconds`.
pub const LAG_SECONDS: &str = "wal_replication_lag_seconds";
/// `wal_segments_shipped_total`.
pub const SEGMENTS_SHIPPED: &str = "wal_segments_shipped_total";
/// `wal_bytes_shipped_total`.
pub const BYTES_SHIPPED: &str = "wal_bytes_shipped_total";
/// `wal_plain_bytes_shipped_total`.
pub const PLAIN_BYTES_SHIPPED: &str = "wal_plain_bytes_shipped_total";
/// `wal_compression_ratio`.
pub const COMPRESSION_RATIO: &str = "wal_compression_ratio";
/// `wal_segments_applied_total`.
pub const SEGMENTS_APPLIED: &str = "wal_segments_applied_total";
/// `wal_snapshot_age_seconds`.
pub const SNAPSHOT_AGE_SECONDS: &str = "wal_snapshot_age_seconds";
/// `wal_generation`.
pub const GENERATION: &str = "wal_generation";
/// `wal_store_degraded`.
pub const STORE_DEGRADED: &str = "wal_store_degraded";
/// `wal_missing_segments_total`.
pub const MISSING_SEGMENTS: &str = "wal_missing_segments_total";
