//! `Restore`: a database rebuilt from the latest usable snapshot and the segments after it, up
//! to a position or a time, then verified.
//!
//! The history is a chain of generations: each continues its parent up to the parent's seal,
//! or starts from a snapshot. A restore picks the target generation, walks parents back to the
//! newest snapshot on the chain at or before the target, downloads it, applies every segment
//! after it in order, checking each one's checksum, generation, index, token and link to its
//! predecessor, and runs `PRAGMA integrity_check` before moving the file into place. A missing
//! or damaged segment stops the restore with an error naming it; nothing after it is applied.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cluster_core::object_store::ObjectStore;
use futures::StreamExt;
use tokio::sync::watch;

use crate::error::{ReplicationError, ReplicationResult, SegmentError};
use crate::generation::GenerationManifest;
use crate::generation_registry::GenerationRegistry;
use crate::page_set::PageSet;
use crate::position::Position;
use crate::replica_file;
use crate::segment::Segment;
use crate::snapshot::{self, SnapshotManifest};
use crate::store_layout;

/// Segments fetched at once.
const PARALLEL_SEGMENTS: usize = 16;
/// Page bytes merged in memory before they are written.
const MERGE_BYTES: usize = 64 << 20;

/// How far to restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreTarget {
    /// Everything there is: the newest generation to its last contiguous segment.
    Latest,
    /// Exactly this position.
    Position(Position),
    /// The last segment captured at or before this time.
    Time(SystemTime),
}

impl std::fmt::Display for RestoreTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestoreTarget::Latest => f.write_str("latest"),
            RestoreTarget::Position(p) => write!(f, "{p}"),
            RestoreTarget::Time(t) => write!(f, "{t:?}"),
        }
    }
}

/// Progress of a restore.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreProgress {
    /// Snapshot bytes downloaded.
    pub snapshot_bytes: u64,
    /// Snapshot size.
    pub snapshot_total: u64,
    /// Segments applied.
    pub segments: u64,
    /// Segment bytes applied.
    pub segment_bytes: u64,
}

/// Where a restore's time went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreTimings {
    /// Downloading, decompressing and writing the snapshot.
    pub snapshot: Duration,
    /// Fetching, checking and applying the segments after it.
    pub segments: Duration,
    /// Of `segments`: waiting for fetched segments (download, decompression, decoding).
    pub segments_fetch_wait: Duration,
    /// Making the restored file durable (fsync).
    pub sync: Duration,
    /// `PRAGMA integrity_check`.
    pub verify: Duration,
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreReport {
    /// The position the restored database is at.
    pub position: Position,
    /// The snapshot it started from.
    pub snapshot: String,
    /// Segments applied.
    pub segments: u64,
    /// Bytes downloaded.
    pub bytes: u64,
    /// Capture time of the last change included (Unix milliseconds).
    pub position_time_ms: u64,
    /// Checksum of the last segment applied (the snapshot's, if none).
    pub last_checksum: u64,
    /// Where the time went.
    pub timings: RestoreTimings,
}

/// Restores from a WAL bucket and a snapshot bucket.
#[derive(Debug, Clone)]
pub struct Restore {
    wal: Arc<dyn ObjectStore>,
    snapshots: Arc<dyn ObjectStore>,
    progress: Option<watch::Sender<RestoreProgress>>,
    registry: Option<GenerationRegistry>,
}

/// Every generation manifest in the WAL bucket.
pub(crate) async fn manifests(
    wal: &Arc<dyn ObjectStore>,
) -> ReplicationResult<BTreeMap<u64, GenerationManifest>> {
    let mut out = BTreeMap::new();
    for info in wal.list(store_layout::GENERATIONS).await? {
        let Some(g) = store_layout::parse_manifest(info.name.as_str()) else {
            continue;
        };
        if let Some(object) = wal.get(&info.name).await? {
            match serde_json::from_slice::<GenerationManifest>(&object.data) {
                Ok(m) => {
                    out.insert(g, m);
                }
                Err(e) => {
                    tracing::warn!(generation = g, error = %e, "unreadable generation manifest")
                }
            }
        }
    }
    Ok(out)
}

/// Indexes of a generation's segments present in the store.
pub(crate) async fn segment_indexes(
    wal: &Arc<dyn ObjectStore>,
    generation: u64,
) -> ReplicationResult<Vec<u64>> {
    let mut out: Vec<u64> = wal
        .list(&store_layout::segments_of(generation))
        .await?
        .iter()
        .filter_map(|i| store_layout::parse_segment(i.name.as_str()).map(|(_, i)| i))
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// Fetches and verifies one segment.
pub(crate) async fn fetch_segment(
    wal: &Arc<dyn ObjectStore>,
    generation: u64,
    index: u64,
    token: u64,
) -> ReplicationResult<Option<Segment>> {
    let Some(object) = wal.get(&store_layout::segment(generation, index)).await? else {
        return Ok(None);
    };
    let segment = Segment::decode(&object.data).map_err(|source| ReplicationError::Segment {
        generation,
        index,
        source,
    })?;
    let h = &segment.header;
    if h.generation != generation || h.index != index || h.token != token {
        return Err(ReplicationError::Segment {
            generation,
            index,
            source: SegmentError::Foreign {
                detail: format!(
                    "names generation {} index {} token {}; expected token {token}",
                    h.generation, h.index, h.token
                ),
            },
        });
    }
    Ok(Some(segment))
}

/// One link of the chain to restore: a generation and how far into it.
#[derive(Debug, Clone)]
struct Link {
    manifest: GenerationManifest,
    /// The last segment to apply; `None`: to the contiguous end.
    through: Option<u64>,
}

impl Restore {
    /// A restore reading from these buckets.
    pub fn new(wal: Arc<dyn ObjectStore>, snapshots: Arc<dyn ObjectStore>) -> Restore {
        Restore {
            wal,
            snapshots,
            progress: None,
            registry: None,
        }
    }

    /// Reads the generation records from `registry`: `Latest` is then the head generation, and
    /// a restore never goes past a generation's seal (segments put after it, by a primary that
    /// lost its term, are not part of the history).
    pub fn with_registry(mut self, registry: GenerationRegistry) -> Restore {
        self.registry = Some(registry);
        self
    }

    /// The seal of `generation`, if the registry is known and has one.
    async fn seal_of(&self, generation: u64) -> ReplicationResult<Option<u64>> {
        match &self.registry {
            Some(r) => Ok(r
                .record(generation)
                .await?
                .and_then(|(r, _)| r.sealed_through)),
            None => Ok(None),
        }
    }

    /// Reports progress on `sender` as the restore runs.
    pub fn with_progress(mut self, sender: watch::Sender<RestoreProgress>) -> Restore {
        self.progress = Some(sender);
        self
    }

    fn report(&self, f: impl FnOnce(&mut RestoreProgress)) {
        if let Some(p) = &self.progress {
            p.send_modify(f);
        }
    }

    /// The chain of generations leading to `target`, oldest first.
    async fn chain(&self, target: RestoreTarget) -> ReplicationResult<Vec<Link>> {
        let all = manifests(&self.wal).await?;
        let no = || ReplicationError::NoSnapshot {
            target: target.to_string(),
        };
        let (last, through) = match target {
            RestoreTarget::Latest => {
                let head = match &self.registry {
                    Some(r) => r.current().await?.map(|(r, _)| r.generation),
                    None => None,
                };
                // The head generation (a newer manifest may be a start that never became
                // the head); without records, the newest manifest.
                let g = match head {
                    Some(h) => *all.range(..=h).next_back().ok_or_else(no)?.0,
                    None => *all.keys().next_back().ok_or_else(no)?,
                };
                (g, self.seal_of(g).await?)
            }
            RestoreTarget::Position(p) => (p.generation, Some(p.index)),
            RestoreTarget::Time(t) => {
                let t = t
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                let g = all
                    .values()
                    .filter(|m| m.started_at_ms <= t)
                    .map(|m| m.generation)
                    .next_back()
                    .ok_or_else(no)?;
                (g, self.seal_of(g).await?)
            }
        };
        let mut chain = Vec::new();
        let mut next = Some((last, through));
        while let Some((g, through)) = next {
            let manifest = all.get(&g).cloned().ok_or_else(no)?;
            next = manifest.parent.map(|p| (p.generation, Some(p.index)));
            chain.push(Link { manifest, through });
        }
        chain.reverse();
        Ok(chain)
    }

    /// The newest snapshot usable for `chain` (at or before each link's end, and for a time
    /// target, taken of changes captured at or before it).
    async fn pick_snapshot(
        &self,
        chain: &[Link],
        target: RestoreTarget,
    ) -> ReplicationResult<(usize, SnapshotManifest)> {
        let t = match target {
            RestoreTarget::Time(t) => Some(
                t.duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
            ),
            _ => None,
        };
        let snapshots = snapshot::list(&self.snapshots).await?;
        for snap in snapshots.iter().rev() {
            if t.is_some_and(|t| snap.position_time_ms > t) {
                continue;
            }
            if let Some(at) = chain
                .iter()
                .position(|l| l.manifest.generation == snap.position.generation)
                && chain[at].through.is_none_or(|th| snap.position.index <= th)
            {
                return Ok((at, snap.clone()));
            }
        }
        Err(ReplicationError::NoSnapshot {
            target: target.to_string(),
        })
    }

    /// Restores to `target` into `dest` (replacing it), verified.
    pub async fn run(
        &self,
        target: RestoreTarget,
        dest: &Path,
    ) -> ReplicationResult<RestoreReport> {
        let chain = self.chain(target).await?;
        let (start, snap) = self.pick_snapshot(&chain, target).await?;
        tracing::info!(snapshot = %snap.id, generations = chain.len() - start, %target, "restore starting");
        let temp = temp_path(dest);
        let _ = std::fs::remove_file(&temp);
        self.report(|p| p.snapshot_total = snap.size);
        let mut timings = RestoreTimings::default();
        let phase = coord_client::instant_now();
        snapshot::download(&self.snapshots, &snap, &temp, |n| {
            self.report(|p| p.snapshot_bytes += n)
        })
        .await?;
        timings.snapshot = phase.elapsed();
        let phase = coord_client::instant_now();
        let mut bytes = snap.size;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&temp)
            .map_err(|e| ReplicationError::io(&temp, e))?;
        let mut position = snap.position;
        let mut last_checksum = snap.segment_checksum;
        let mut position_time_ms = snap.position_time_ms;
        let mut segments = 0u64;
        let time_limit = match target {
            RestoreTarget::Time(t) => Some(
                t.duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
            ),
            _ => None,
        };
        let mut pending = PageSet::default();
        'chain: for link in &chain[start..] {
            let g = link.manifest.generation;
            let first = if g == snap.position.generation {
                snap.position.index + 1
            } else {
                // A child starts where its parent was sealed: chain of checksums restarts.
                last_checksum = 0;
                1
            };
            if g != snap.position.generation {
                position = Position {
                    generation: g,
                    index: 0,
                };
            }
            let present = segment_indexes(&self.wal, g).await?;
            let end = match link.through {
                Some(th) => th,
                None => {
                    // To the contiguous end; a hole followed by more segments is an error.
                    let mut end = first.saturating_sub(1);
                    for i in present.iter().filter(|i| **i >= first) {
                        if *i == end + 1 {
                            end = *i;
                        } else {
                            return Err(ReplicationError::MissingSegment {
                                generation: g,
                                index: end + 1,
                            });
                        }
                    }
                    end
                }
            };
            let token = link.manifest.token;
            let wal = self.wal.clone();
            let mut fetches = futures::stream::iter(first..=end)
                .map(|i| {
                    let wal = wal.clone();
                    async move { (i, fetch_segment(&wal, g, i, token).await) }
                })
                .buffered(PARALLEL_SEGMENTS);
            loop {
                let waited = coord_client::instant_now();
                let next = fetches.next().await;
                timings.segments_fetch_wait += waited.elapsed();
                let Some((i, fetched)) = next else { break };
                let segment = fetched?.ok_or(ReplicationError::MissingSegment {
                    generation: g,
                    index: i,
                })?;
                if time_limit.is_some_and(|t| segment.header.captured_at_ms > t) {
                    break 'chain;
                }
                if segment.header.prev_checksum != last_checksum {
                    return Err(ReplicationError::Segment {
                        generation: g,
                        index: i,
                        source: SegmentError::Foreign {
                            detail: "does not follow the previous segment".into(),
                        },
                    });
                }
                last_checksum = segment.checksum;
                position_time_ms = segment.header.captured_at_ms;
                position = Position {
                    generation: g,
                    index: i,
                };
                let size = segment.pages.bytes() as u64;
                bytes += size;
                segments += 1;
                pending.merge(segment.pages);
                if pending.bytes() >= MERGE_BYTES {
                    flush(&file, &temp, &mut pending, snap.page_size)?;
                }
                self.report(|p| {
                    p.segments += 1;
                    p.segment_bytes += size;
                });
            }
            if let Some(th) = link.through
                && position.generation == g
                && position.index < th
                && time_limit.is_none()
            {
                return Err(ReplicationError::MissingSegment {
                    generation: g,
                    index: position.index + 1,
                });
            }
        }
        flush(&file, &temp, &mut pending, snap.page_size)?;
        replica_file::finish_header(&file).map_err(|e| ReplicationError::io(&temp, e))?;
        timings.segments = phase.elapsed();
        let phase = coord_client::instant_now();
        file.sync_all()
            .map_err(|e| ReplicationError::io(&temp, e))?;
        drop(file);
        timings.sync = phase.elapsed();
        let phase = coord_client::instant_now();
        let verify = temp.clone();
        tokio::task::spawn_blocking(move || replica_file::integrity_check(&verify))
            .await
            .map_err(|e| ReplicationError::io(&temp, std::io::Error::other(e)))??;
        timings.verify = phase.elapsed();
        for suffix in ["-wal", "-shm", "-journal"] {
            let mut p = dest.as_os_str().to_owned();
            p.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(p));
        }
        std::fs::rename(&temp, dest).map_err(|e| ReplicationError::io(dest, e))?;
        tracing::info!(%position, segments, bytes, ?timings, "restore verified");
        Ok(RestoreReport {
            position,
            snapshot: snap.id,
            segments,
            bytes,
            position_time_ms,
            last_checksum,
            timings,
        })
    }
}

fn flush(
    file: &std::fs::File,
    path: &Path,
    pending: &mut PageSet,
    page_size: u32,
) -> ReplicationResult<()> {
    if pending.pages.is_empty() && pending.db_pages == 0 {
        return Ok(());
    }
    replica_file::write_pages(file, page_size, pending)
        .map_err(|e| ReplicationError::io(path, e))?;
    *pending = PageSet::default();
    Ok(())
}

fn temp_path(dest: &Path) -> PathBuf {
    let mut p = dest.as_os_str().to_owned();
    p.push(".restoring");
    PathBuf::from(p)
}

/// How long ago a Unix-millisecond time was.
pub(crate) fn age_of(ms: u64) -> Duration {
    coord_client::wall_now()
        .duration_since(SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
        .unwrap_or_default()
}
