//! Snapshots in the object store: a database image at a known [`Position`], in parts.
//!
//! A snapshot is uploaded part by part (16 MiB each, each with its xxh3-64), then its
//! [`SnapshotManifest`]; it exists once the manifest does, so a reader never finds half a
//! snapshot. Deleting removes the manifest first.
//!
//! Parts are stored zstd-compressed when the manifest's `compression` says so (manifests
//! written before compression have none, and their parts are read as they are); a part's size
//! and checksum are of its plain bytes.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cluster_core::object_store::ObjectStore;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use crate::compression::{self, Compression};
use crate::error::{ReplicationError, ReplicationResult};
use crate::position::Position;
use crate::store_layout;

/// Size of one snapshot part.
pub(crate) const PART_SIZE: usize = 16 << 20;
/// Parts moved at once.
const PARALLEL_PARTS: usize = 4;

/// One part of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotPart {
    /// Its size (plain).
    pub size: u64,
    /// Its xxh3-64 (of the plain bytes).
    pub checksum: u64,
    /// Its size in the store, when compressed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_size: Option<u64>,
}

/// What a snapshot holds: a database image as of `position`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotManifest {
    /// The snapshot's id (`{generation:016x}-{index:016x}`).
    pub id: String,
    /// The history it includes: every segment up to and including this one.
    pub position: Position,
    /// Checksum of the segment at `position` (0 at index 0): the next segment must name it.
    pub segment_checksum: u64,
    /// When the last change it includes was captured (Unix milliseconds).
    pub position_time_ms: u64,
    /// When it was taken (Unix milliseconds).
    pub created_at_ms: u64,
    /// The page size.
    pub page_size: u32,
    /// Its size in bytes.
    pub size: u64,
    /// Its parts, in order.
    pub parts: Vec<SnapshotPart>,
    /// How its parts are stored (`none` for snapshots written before compression).
    #[serde(default)]
    pub compression: Compression,
}

impl SnapshotManifest {
    /// When it was taken.
    pub fn created_at(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(self.created_at_ms)
    }

    /// Bytes its parts take in the store.
    pub fn stored_size(&self) -> u64 {
        self.parts
            .iter()
            .map(|p| p.stored_size.unwrap_or(p.size))
            .sum()
    }
}

pub(crate) fn now_ms() -> u64 {
    coord_client::wall_now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Uploads the database file at `path` as the snapshot at `position`, its parts compressed at
/// zstd `level` (plain at 0).
pub(crate) async fn upload(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    position: Position,
    segment_checksum: u64,
    position_time_ms: u64,
    level: i32,
) -> ReplicationResult<SnapshotManifest> {
    let id = store_layout::snapshot_id(position);
    let file = Arc::new(File::open(path).map_err(|e| ReplicationError::io(path, e))?);
    let size = file
        .metadata()
        .map_err(|e| ReplicationError::io(path, e))?
        .len();
    let mut header = [0u8; 100];
    file.read_exact_at(&mut header, 0)
        .map_err(|e| ReplicationError::io(path, e))?;
    let page_size = crate::replica_file::page_size_of(&header).unwrap_or(4096);
    let count = size.div_ceil(PART_SIZE as u64) as usize;
    let parts = futures::stream::iter(0..count)
        .map(|n| {
            let store = store.clone();
            let file = file.clone();
            let id = id.clone();
            let path = path.to_owned();
            async move {
                let offset = n as u64 * PART_SIZE as u64;
                let len = (size - offset).min(PART_SIZE as u64) as usize;
                let (part, data) = tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0u8; len];
                    file.read_exact_at(&mut buf, offset)?;
                    let mut part = SnapshotPart {
                        size: len as u64,
                        checksum: xxh3_64(&buf),
                        stored_size: None,
                    };
                    if level > 0 {
                        buf = compression::compress(&buf, level);
                        part.stored_size = Some(buf.len() as u64);
                    }
                    Ok::<_, std::io::Error>((part, buf))
                })
                .await
                .map_err(|e| ReplicationError::io(&path, std::io::Error::other(e)))?
                .map_err(|e| ReplicationError::io(&path, e))?;
                let name = store_layout::snapshot_part(&id, n).ok_or_else(|| {
                    ReplicationError::Snapshot {
                        id: id.clone(),
                        detail: "bad part name".into(),
                    }
                })?;
                store.put(&name, data).await?;
                Ok::<_, ReplicationError>(part)
            }
        })
        .buffered(PARALLEL_PARTS)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let manifest = SnapshotManifest {
        id: id.clone(),
        position,
        segment_checksum,
        position_time_ms,
        created_at_ms: now_ms(),
        page_size,
        size,
        parts,
        compression: if level > 0 {
            Compression::Zstd
        } else {
            Compression::None
        },
    };
    let name = store_layout::snapshot_manifest(&id).ok_or_else(|| ReplicationError::Snapshot {
        id: id.clone(),
        detail: "bad manifest name".into(),
    })?;
    store
        .put(&name, serde_json::to_vec(&manifest).unwrap_or_default())
        .await?;
    Ok(manifest)
}

/// Every complete snapshot, oldest position first.
pub(crate) async fn list(store: &Arc<dyn ObjectStore>) -> ReplicationResult<Vec<SnapshotManifest>> {
    let mut out = Vec::new();
    for info in store.list(store_layout::SNAPSHOTS).await? {
        let Some(id) = store_layout::parse_snapshot_manifest(info.name.as_str()) else {
            continue;
        };
        if let Some(m) = read_manifest(store, id).await? {
            out.push(m);
        }
    }
    out.sort_by_key(|m| m.position);
    Ok(out)
}

/// One snapshot's manifest.
pub(crate) async fn read_manifest(
    store: &Arc<dyn ObjectStore>,
    id: &str,
) -> ReplicationResult<Option<SnapshotManifest>> {
    let Some(name) = store_layout::snapshot_manifest(id) else {
        return Ok(None);
    };
    let Some(object) = store.get(&name).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&object.data)
        .map(Some)
        .map_err(|e| ReplicationError::Snapshot {
            id: id.to_owned(),
            detail: format!("unreadable manifest: {e}"),
        })
}

/// Downloads a snapshot into a new file at `dest`, checking every part; reports bytes done.
pub(crate) async fn download(
    store: &Arc<dyn ObjectStore>,
    manifest: &SnapshotManifest,
    dest: &Path,
    mut progress: impl FnMut(u64),
) -> ReplicationResult<()> {
    let file = Arc::new(File::create(dest).map_err(|e| ReplicationError::io(dest, e))?);
    let id = manifest.id.clone();
    let compressed = manifest.compression == Compression::Zstd;
    let mut parts = futures::stream::iter(manifest.parts.iter().cloned().enumerate())
        .map(|(n, part)| {
            let store = store.clone();
            let id = id.clone();
            async move {
                let name = store_layout::snapshot_part(&id, n).ok_or_else(|| {
                    ReplicationError::Snapshot {
                        id: id.clone(),
                        detail: "bad part name".into(),
                    }
                })?;
                let object = store
                    .get(&name)
                    .await?
                    .ok_or_else(|| ReplicationError::Snapshot {
                        id: id.clone(),
                        detail: format!("part {n} is missing"),
                    })?;
                let damaged = |detail: String| ReplicationError::Snapshot {
                    id: id.clone(),
                    detail: format!("part {n} is damaged{detail}"),
                };
                let data = if compressed {
                    let stored = object.data;
                    let limit = usize::try_from(part.size)
                        .unwrap_or(usize::MAX)
                        .min(PART_SIZE);
                    tokio::task::spawn_blocking(move || compression::decompress(&stored, limit))
                        .await
                        .map_err(|e| damaged(format!(": {e}")))?
                        .map_err(|e| damaged(format!(": {e}")))?
                } else {
                    object.data
                };
                if data.len() as u64 != part.size || xxh3_64(&data) != part.checksum {
                    return Err(damaged(String::new()));
                }
                Ok::<_, ReplicationError>((n, data))
            }
        })
        .buffered(PARALLEL_PARTS);
    while let Some(part) = parts.next().await {
        let (n, data) = part?;
        let len = data.len() as u64;
        let file = file.clone();
        let dest_path = dest.to_owned();
        tokio::task::spawn_blocking(move || file.write_all_at(&data, n as u64 * PART_SIZE as u64))
            .await
            .map_err(|e| ReplicationError::io(&dest_path, std::io::Error::other(e)))?
            .map_err(|e| ReplicationError::io(&dest_path, e))?;
        progress(len);
    }
    file.set_len(manifest.size)
        .map_err(|e| ReplicationError::io(dest, e))?;
    Ok(())
}

/// Deletes a snapshot (manifest first, so it stops existing before its parts go).
pub(crate) async fn delete(store: &Arc<dyn ObjectStore>, id: &str) -> ReplicationResult<bool> {
    let Some(name) = store_layout::snapshot_manifest(id) else {
        return Ok(false);
    };
    let existed = store.delete(&name).await?;
    for info in store.list(&store_layout::snapshot_prefix(id)).await? {
        store.delete(&info.name).await?;
    }
    Ok(existed)
}
