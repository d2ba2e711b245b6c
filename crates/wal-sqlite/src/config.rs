//! `ReplicationConfig`: how the primary captures, ships, checkpoints and snapshots.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use cluster_core::config::ConfigError;

use crate::error::ReplicationError;

/// Which snapshots to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    /// Keep at most this many (at least 1).
    pub keep: usize,
    /// Delete snapshots older than this (the newest is always kept).
    #[serde(with = "cluster_core::config::duration_ms::option")]
    pub max_age: Option<Duration>,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            keep: 3,
            max_age: Some(Duration::from_secs(7 * 24 * 3600)),
        }
    }
}

/// Primary-side settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplicationConfig {
    /// How often the WAL is checked for new commits (a `sync()` checks at once).
    #[serde(with = "cluster_core::config::duration_ms")]
    pub poll_interval: Duration,
    /// Page bytes per segment before it is cut (a larger single transaction makes one larger
    /// segment).
    pub max_segment_bytes: usize,
    /// WAL size at which capture checkpoints (PASSIVE) once everything is shipped.
    pub checkpoint_wal_bytes: u64,
    /// While the store is down, the WAL may grow to this before capture lets go of it (and
    /// starts a new generation once the store is back).
    pub max_wal_bytes: u64,
    /// How long `sync()` waits for the store's acknowledgement before failing `Unavailable`.
    #[serde(with = "cluster_core::config::duration_ms")]
    pub sync_timeout: Duration,
    /// Take a snapshot this often (none if unset).
    #[serde(with = "cluster_core::config::duration_ms::option")]
    pub snapshot_interval: Option<Duration>,
    /// Which snapshots to keep; segments behind the oldest kept one are deleted.
    pub retention: Retention,
    /// First retry delay after a failed put; doubles up to a second.
    #[serde(with = "cluster_core::config::duration_ms")]
    pub retry_delay: Duration,
    /// zstd level for segments and snapshots (1 fastest, up to 19); 0 stores them plain.
    pub compression_level: i32,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            poll_interval: Duration::from_millis(10),
            max_segment_bytes: 8 << 20,
            checkpoint_wal_bytes: 16 << 20,
            max_wal_bytes: 512 << 20,
            sync_timeout: Duration::from_secs(5),
            snapshot_interval: Some(Duration::from_secs(3600)),
            retention: Retention::default(),
            retry_delay: Duration::from_millis(50),
            compression_level: 1,
        }
    }
}

impl ReplicationConfig {
    /// Checks every field, naming the first bad one.
    pub fn validate(&self) -> Result<(), ReplicationError> {
        let bad = |field: &'static str, reason: &str| {
            Err(ReplicationError::Config(ConfigError::new(
                "wal replication",
                field,
                reason,
            )))
        };
        if self.poll_interval.is_zero() {
            return bad("poll_interval", "must be positive");
        }
        if self.max_segment_bytes < 4096 {
            return bad("max_segment_bytes", "must be at least 4096");
        }
        if self.max_wal_bytes < self.checkpoint_wal_bytes {
            return bad("max_wal_bytes", "must be at least checkpoint_wal_bytes");
        }
        if self.sync_timeout.is_zero() {
            return bad("sync_timeout", "must be positive");
        }
        if self.retention.keep == 0 {
            return bad("retention.keep", "must be at least 1");
        }
        if !(0..=19).contains(&self.compression_level) {
            return bad("compression_level", "must be 0 (plain) to 19");
        }
        if self.snapshot_interval.is_some_and(|d| d.is_zero()) {
            return bad("snapshot_interval", "must be positive when set");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_fields_are_named() {
        ReplicationConfig::default().validate().unwrap();
        let bad = ReplicationConfig {
            retention: Retention {
                keep: 0,
                max_age: None,
            },
            ..ReplicationConfig::default()
        };
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("retention.keep"), "{err}");
        let parsed: ReplicationConfig =
            serde_json::from_str(r#"{"poll_interval": 25, "snapshot_interval": null}"#).unwrap();
        assert_eq!(parsed.poll_interval, Duration::from_millis(25));
        assert_eq!(parsed.snapshot_interval, None);
        let err = ReplicationConfig {
            compression_level: 20,
            ..ReplicationConfig::default()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(err.contains("compression_level"), "{err}");
    }
}
