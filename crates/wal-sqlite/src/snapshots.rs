//! `Snapshots`: the app's snapshot namespace as a handle: create, list, latest, restore,
//! delete, and the retention that also deletes segments no kept snapshot needs.

use std::path::Path;
use std::sync::Arc;

use cluster_core::object_store::ObjectStore;

use crate::config::Retention;
use crate::error::{ReplicationError, ReplicationResult};
use crate::replicator::Replicator;
use crate::restore::{self, Restore, RestoreReport, RestoreTarget};
use crate::snapshot::{self, SnapshotManifest};
use crate::store_layout;

/// Snapshots of one replicated database.
#[derive(Debug, Clone)]
pub struct Snapshots {
    wal: Arc<dyn ObjectStore>,
    snapshots: Arc<dyn ObjectStore>,
    replicator: Option<Replicator>,
}

impl Snapshots {
    /// Snapshots in `snapshots`, with history in `wal`; `replicator` (on the primary) takes new
    /// ones.
    pub fn new(
        wal: Arc<dyn ObjectStore>,
        snapshots: Arc<dyn ObjectStore>,
        replicator: Option<Replicator>,
    ) -> Snapshots {
        Snapshots {
            wal,
            snapshots,
            replicator,
        }
    }

    /// Takes a snapshot now, at a transaction boundary, without stopping writers.
    pub async fn create(&self) -> ReplicationResult<SnapshotManifest> {
        match &self.replicator {
            Some(r) => r.snapshot().await,
            None => Err(ReplicationError::Unavailable {
                reason: "snapshots are taken by the primary".into(),
            }),
        }
    }

    /// Every snapshot, oldest position first.
    pub async fn list(&self) -> ReplicationResult<Vec<SnapshotManifest>> {
        snapshot::list(&self.snapshots).await
    }

    /// The newest snapshot.
    pub async fn latest(&self) -> ReplicationResult<Option<SnapshotManifest>> {
        Ok(self.list().await?.pop())
    }

    /// Restores exactly snapshot `id` (no segments after it) into `dest`, verified.
    pub async fn restore(&self, id: &str, dest: &Path) -> ReplicationResult<RestoreReport> {
        let position =
            store_layout::parse_snapshot_id(id).ok_or_else(|| ReplicationError::Snapshot {
                id: id.to_owned(),
                detail: "not a snapshot id".into(),
            })?;
        Restore::new(self.wal.clone(), self.snapshots.clone())
            .run(RestoreTarget::Position(position), dest)
            .await
    }

    /// Deletes snapshot `id`; returns whether it existed.
    pub async fn delete(&self, id: &str) -> ReplicationResult<bool> {
        snapshot::delete(&self.snapshots, id).await
    }

    /// Applies `retention` now.
    pub async fn apply_retention(&self, retention: Retention) -> ReplicationResult<()> {
        apply_retention(&self.wal, &self.snapshots, retention).await
    }
}

/// Deletes snapshots past `retention` (never the newest), then every segment behind the
/// oldest snapshot kept: nothing a restore from a kept snapshot needs.
pub(crate) async fn apply_retention(
    wal: &Arc<dyn ObjectStore>,
    snapshots: &Arc<dyn ObjectStore>,
    retention: Retention,
) -> ReplicationResult<()> {
    let mut all = snapshot::list(snapshots).await?;
    all.reverse(); // newest first
    let mut kept = Vec::new();
    for (n, snap) in all.into_iter().enumerate() {
        let too_old = retention
            .max_age
            .is_some_and(|max| restore::age_of(snap.created_at_ms) > max);
        if n == 0 || (n < retention.keep && !too_old) {
            kept.push(snap);
        } else {
            tracing::info!(id = %snap.id, "snapshot past retention: deleting");
            snapshot::delete(snapshots, &snap.id).await?;
        }
    }
    let Some(oldest) = kept.last().map(|s| s.position) else {
        return Ok(());
    };
    for generation in restore::manifests(wal).await?.into_keys() {
        if generation > oldest.generation {
            break;
        }
        for index in restore::segment_indexes(wal, generation).await? {
            if generation < oldest.generation || index <= oldest.index {
                wal.delete(&store_layout::segment(generation, index))
                    .await?;
            }
        }
    }
    Ok(())
}
