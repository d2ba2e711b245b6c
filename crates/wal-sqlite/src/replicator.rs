//! `Replicator`: the primary's capture loop. It reads committed transactions from the WAL,
//! cuts them into segments of its generation, puts them in order, checkpoints after shipping,
//! takes snapshots, and answers `sync()` once the store has acknowledged a commit.
//!
//! ```text
//!  start ─► generation (fresh: snapshot at index 0 | continued: parent's seal)
//!    loop every poll_interval or on sync():
//!      poll WAL ─► segment n+1 … ─► put in order (fenced by the term's safe deadline)
//!      all shipped and WAL large ─► PASSIVE checkpoint under the write lock
//!      store down and WAL > max_wal_bytes ─► let go of the WAL; new generation on recovery
//!      WAL found restarted behind capture's back ─► new generation (snapshot)
//!      snapshot due ─► segment up to the snapshot point, shipped, then the snapshot uploaded
//! ```
//!
//! Segments of one generation are put strictly in order and each only after the previous was
//! acknowledged, so the store never holds segment n+1 without n.

use cluster_core::error::Retryable;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_core::backoff::Backoff;
use cluster_core::object_store::ObjectStore;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::capture::{Capture, Polled, SnapshotReader};
use crate::config::ReplicationConfig;
use crate::error::{ReplicationError, ReplicationResult};
use crate::generation::{GenerationManifest, GenerationRecord};
use crate::generation_registry::{GenerationRegistry, fence_record};
use crate::metric_definitions as m;
use crate::page_set::PageSet;
use crate::position::Position;
use crate::restore;
use crate::segment::{Segment, SegmentHeader};
use crate::snapshot::{self, SnapshotManifest, now_ms};
use crate::store_layout;
use crate::term::ReplicationTerm;
use crate::wal_scan::Scanned;

/// How a replicator begins its generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// From a snapshot of the database as it is now.
    Snapshot,
    /// From the end of `parent`: the database (with an empty WAL) is exactly that history, as
    /// after a promotion.
    Parent {
        /// The parent generation's sealed end.
        parent: Position,
    },
}

/// What the primary has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicationStats {
    /// The generation being written.
    pub generation: u64,
    /// The last segment acknowledged by the store.
    pub position: Option<Position>,
    /// Segments captured but not yet acknowledged.
    pub pending_segments: usize,
    /// Segments acknowledged.
    pub segments_shipped: u64,
    /// Segment bytes acknowledged, as stored (compressed).
    pub bytes_shipped: u64,
    /// The same segments' bytes before compression.
    pub plain_bytes_shipped: u64,
    /// Transactions acknowledged.
    pub transactions_shipped: u64,
    /// Generations started by this replicator.
    pub generations_started: u64,
    /// Snapshots taken.
    pub snapshots: u64,
    /// When the newest snapshot was taken (Unix milliseconds).
    pub last_snapshot_ms: Option<u64>,
    /// The newest snapshot's size, and what its parts take in the store.
    pub last_snapshot_bytes: Option<(u64, u64)>,
    /// Why the store is considered down, while it is.
    pub degraded: Option<String>,
    /// The term was lost: nothing more is shipped.
    pub fenced: bool,
}

impl ReplicationStats {
    /// Plain over stored bytes of the segments acknowledged so far (`None` before the first).
    pub fn compression_ratio(&self) -> Option<f64> {
        (self.bytes_shipped > 0)
            .then(|| self.plain_bytes_shipped as f64 / self.bytes_shipped as f64)
    }
}

enum Request {
    Sync(oneshot::Sender<ReplicationResult<Position>>),
    Snapshot(oneshot::Sender<ReplicationResult<SnapshotManifest>>),
}

struct Shared {
    requests: mpsc::Sender<Request>,
    stats: watch::Receiver<ReplicationStats>,
    oldest_pending: watch::Receiver<Option<Instant>>,
    cancel: CancellationToken,
    task: Mutex<Option<tokio::task::JoinHandle<ReplicationResult<()>>>>,
}

/// The primary's replication handle. Cheap to clone.
#[derive(Clone)]
pub struct Replicator {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Replicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicator")
            .field("stats", &*self.shared.stats.borrow())
            .finish()
    }
}

/// The stores and records a replicator writes to.
#[derive(Debug, Clone)]
pub struct ReplicationStores {
    /// The WAL bucket (generations and segments).
    pub wal: Arc<dyn ObjectStore>,
    /// The snapshot bucket.
    pub snapshots: Arc<dyn ObjectStore>,
    /// The generation records.
    pub registry: GenerationRegistry,
}

struct PendingSegment {
    /// Its index, frame range, transaction count and capture time (`captured_at_ms`).
    header: SegmentHeader,
    pages: PageSet,
    /// The plain encoding (what the checksum is of).
    bytes: Vec<u8>,
    /// The bytes put, compressed at the first attempt and reused by every retry.
    stored: Option<Vec<u8>>,
    checksum: u64,
    /// When its oldest change was captured (for the lag).
    captured_at: Instant,
    /// A put of these bytes was tried: they must never change again (the store may hold them).
    attempted: bool,
}

struct Waiter {
    target: u64,
    deadline: Instant,
    reply: oneshot::Sender<ReplicationResult<Position>>,
}

struct Engine {
    capture: Arc<Mutex<Capture>>,
    stores: ReplicationStores,
    term: ReplicationTerm,
    config: ReplicationConfig,
    node: String,
    generation: u64,
    next_index: u64,
    prev_checksum: u64,
    acked: Position,
    acked_checksum: u64,
    acked_ms: u64,
    pending: VecDeque<PendingSegment>,
    waiters: Vec<Waiter>,
    /// A gap: the history must continue in a new generation.
    broken: Option<String>,
    released: bool,
    /// WAL bytes in use at the last checkpoint.
    checkpointed_at: u64,
    /// The last poll found nothing new: reading to the WAL's end under the write lock is short.
    caught_up: bool,
    retry_at: Option<Instant>,
    retry_delay: Duration,
    last_snapshot: Instant,
    snapshot_requests: Vec<oneshot::Sender<ReplicationResult<SnapshotManifest>>>,
    stats: watch::Sender<ReplicationStats>,
    oldest_pending: watch::Sender<Option<Instant>>,
}

async fn blocking<T: Send + 'static>(
    capture: &Arc<Mutex<Capture>>,
    f: impl FnOnce(&mut Capture) -> ReplicationResult<T> + Send + 'static,
) -> ReplicationResult<T> {
    let capture = capture.clone();
    tokio::task::spawn_blocking(move || {
        let mut guard = capture.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    })
    .await
    .map_err(|e| ReplicationError::io("capture", std::io::Error::other(e)))?
}

impl Replicator {
    /// Opens the database at `db` (switching it to WAL mode), starts a generation and the
    /// capture loop. Fails if the term is fenced out or the stores cannot be reached.
    pub async fn start(
        db: &Path,
        node: impl Into<String>,
        config: ReplicationConfig,
        stores: ReplicationStores,
        term: ReplicationTerm,
        from: StartFrom,
    ) -> ReplicationResult<Replicator> {
        config.validate()?;
        let db: PathBuf = db.to_owned();
        let max_segment = config.max_segment_bytes;
        let capture = tokio::task::spawn_blocking(move || Capture::open(&db, max_segment))
            .await
            .map_err(|e| ReplicationError::io("capture", std::io::Error::other(e)))??;
        let (stats, stats_rx) = watch::channel(ReplicationStats::default());
        let (oldest_pending, oldest_rx) = watch::channel(None);
        let mut engine = Engine {
            capture: Arc::new(Mutex::new(capture)),
            stores,
            term,
            retry_delay: config.retry_delay,
            config,
            node: node.into(),
            generation: 0,
            next_index: 1,
            prev_checksum: 0,
            acked: Position {
                generation: 0,
                index: 0,
            },
            acked_checksum: 0,
            acked_ms: now_ms(),
            pending: VecDeque::new(),
            waiters: Vec::new(),
            broken: None,
            released: false,
            checkpointed_at: 0,
            caught_up: false,
            retry_at: None,
            last_snapshot: coord_client::instant_now(),
            snapshot_requests: Vec::new(),
            stats,
            oldest_pending,
        };
        engine.begin_generation(from).await?;
        let (requests, rx) = mpsc::channel(64);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(engine.run(rx, cancel.clone()));
        Ok(Replicator {
            shared: Arc::new(Shared {
                requests,
                stats: stats_rx,
                oldest_pending: oldest_rx,
                cancel,
                task: Mutex::new(Some(task)),
            }),
        })
    }

    /// The last position acknowledged by the store.
    pub fn position(&self) -> Option<Position> {
        self.shared.stats.borrow().position
    }

    /// How far the store is behind: the age of the oldest captured, unacknowledged change.
    pub fn lag(&self) -> Duration {
        self.shared
            .oldest_pending
            .borrow()
            .map_or(Duration::ZERO, |t| t.elapsed())
    }

    /// Counters and state.
    pub fn stats(&self) -> ReplicationStats {
        self.shared.stats.borrow().clone()
    }

    /// Waits until every transaction committed before the call is acknowledged by the store,
    /// before the term's safe deadline; returns the position that holds it. Fails
    /// `Unavailable` when the store does not acknowledge within `sync_timeout` (the commit may
    /// still reach it later), and `Fenced` once the term is lost.
    pub async fn sync(&self) -> ReplicationResult<Position> {
        let (tx, rx) = oneshot::channel();
        self.shared
            .requests
            .send(Request::Sync(tx))
            .await
            .map_err(|_| ReplicationError::Stopped)?;
        rx.await.map_err(|_| ReplicationError::Stopped)?
    }

    /// Takes a snapshot now (after shipping everything before it).
    pub async fn snapshot(&self) -> ReplicationResult<SnapshotManifest> {
        let (tx, rx) = oneshot::channel();
        self.shared
            .requests
            .send(Request::Snapshot(tx))
            .await
            .map_err(|_| ReplicationError::Stopped)?;
        rx.await.map_err(|_| ReplicationError::Stopped)?
    }

    /// Stops capturing (after a last attempt to ship what is captured) and releases the
    /// database. Returns how the loop ended.
    pub async fn stop(&self) -> ReplicationResult<()> {
        self.shared.cancel.cancel();
        let task = self
            .shared
            .task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match task {
            Some(task) => task
                .await
                .map_err(|e| ReplicationError::io("replicator", std::io::Error::other(e)))?,
            None => Ok(()),
        }
    }

    /// Resolves when the loop has ended (fenced out, stopped).
    pub async fn stopped(&self) {
        self.shared.cancel.cancelled().await;
    }
}

impl Engine {
    fn publish_stats(&self, f: impl FnOnce(&mut ReplicationStats)) {
        self.stats.send_modify(|s| {
            f(s);
            s.generation = self.generation;
            s.pending_segments = self.pending.len();
        });
        let oldest = self.pending.front().map(|p| p.captured_at);
        self.oldest_pending.send_replace(oldest);
        metrics::gauge!(m::LAG_SECONDS).set(oldest.map_or(0.0, |t| t.elapsed().as_secs_f64()));
    }

    /// Starts a new generation in three steps, each safe to lose: registers its record (a new
    /// number past every record), writes its base snapshot (a fresh start) and its manifest,
    /// and only then moves the head to it (fenced). A start lost before the head moved leaves a
    /// record (and perhaps a manifest) no replica follows and the next start skips; one lost
    /// after has everything a replica or a restore needs.
    async fn begin_generation(&mut self, from: StartFrom) -> ReplicationResult<()> {
        let registry = self.stores.registry.clone();
        let token = self.term.token;
        let fenced = || ReplicationError::Fenced { token };
        if !self.term.valid_at(coord_client::instant_now()) {
            return Err(fenced());
        }
        let head = registry.head().await?;
        let current = match head {
            Some((g, _)) => registry.record(g).await?,
            None => None,
        };
        let generation = registry.next_generation(head.map(|(g, _)| g)).await?;
        if let (StartFrom::Snapshot, Some((old, _))) = (from, &current)
            && old.sealed_through.is_none()
        {
            // Only the holder of the generation's term seals it here: this writer's own
            // generation (a restart or a gap within the term), or one whose writer's term has
            // ended, older than this term. A live successor's generation is never touched.
            let mine = self.term.token.get();
            if old.token > mine {
                return Err(fenced());
            }
            if old.token < mine && registry.fence_stands(old).await? {
                return Err(ReplicationError::Conflict {
                    generation: old.generation,
                    detail: format!(
                        "its writer (token {}) still holds its term; promote to continue it",
                        old.token
                    ),
                });
            }
            // The history ends where its last contiguous segment does.
            let present = restore::segment_indexes(&self.stores.wal, old.generation).await?;
            let mut end = 0;
            for i in present {
                if i == end + 1 {
                    end = i;
                } else {
                    break;
                }
            }
            if !self.term.valid_at(coord_client::instant_now()) {
                return Err(fenced());
            }
            registry
                .seal_fenced(old.generation, end, self.term.fence.as_ref())
                .await?;
        }
        let parent = match from {
            StartFrom::Parent { parent } => Some(parent),
            StartFrom::Snapshot => None,
        };
        let record = GenerationRecord {
            generation,
            token: self.term.token.get(),
            fence: self.term.fence.as_ref().map(fence_record),
            parent,
            sealed_through: None,
        };
        if !self.term.valid_at(coord_client::instant_now()) {
            return Err(fenced());
        }
        registry.register(&record).await?;
        self.generation = generation;
        self.next_index = 1;
        self.prev_checksum = 0;
        self.acked = Position {
            generation,
            index: 0,
        };
        self.acked_checksum = 0;
        self.pending.clear();
        let page_size = blocking(&self.capture, |c| Ok(c.page_size())).await?;
        let base_snapshot = match from {
            StartFrom::Snapshot => {
                let reader = blocking(&self.capture, |c| c.start_fresh()).await?;
                let manifest = self.upload_snapshot(reader).await?;
                Some(manifest.id)
            }
            StartFrom::Parent { .. } => {
                match blocking(&self.capture, |c| c.start_empty()).await? {
                    Polled::Frames(s) => self.cut(s),
                    Polled::Nothing => {}
                    Polled::Gap { reason } => self.broken = Some(reason),
                }
                None
            }
        };
        let manifest = GenerationManifest {
            generation,
            token: self.term.token.get(),
            node: self.node.clone(),
            parent,
            base_snapshot,
            page_size,
            started_at_ms: now_ms(),
        };
        self.stores
            .wal
            .put(
                &store_layout::manifest(generation),
                serde_json::to_vec(&manifest).unwrap_or_default(),
            )
            .await?;
        if !self.term.valid_at(coord_client::instant_now()) {
            return Err(fenced());
        }
        registry
            .move_head(generation, self.term.fence.as_ref(), head)
            .await?;
        metrics::gauge!(m::GENERATION).set(generation as f64);
        self.broken = None;
        self.released = false;
        self.retry_at = None;
        self.retry_delay = self.config.retry_delay;
        metrics::gauge!(m::STORE_DEGRADED).set(0.0);
        tracing::info!(generation, ?parent, token = %self.term.token, "generation started");
        self.publish_stats(|s| {
            s.generations_started += 1;
            s.degraded = None;
            s.position = Some(Position {
                generation,
                index: 0,
            });
        });
        Ok(())
    }

    /// Backs up through `reader` and uploads it as the snapshot at the acknowledged position.
    async fn upload_snapshot(
        &mut self,
        reader: SnapshotReader,
    ) -> ReplicationResult<SnapshotManifest> {
        let dir = std::env::temp_dir();
        let temp = dir.join(format!(
            "wal-snapshot-{}-{:016x}.db",
            std::process::id(),
            fastrand::u64(..)
        ));
        let dest = temp.clone();
        tokio::task::spawn_blocking(move || reader.backup_to(&dest))
            .await
            .map_err(|e| ReplicationError::io(&temp, std::io::Error::other(e)))??;
        let uploaded = snapshot::upload(
            &self.stores.snapshots,
            &temp,
            self.acked,
            self.acked_checksum,
            self.acked_ms,
            self.config.compression_level,
        )
        .await;
        let _ = std::fs::remove_file(&temp);
        let manifest = uploaded?;
        self.last_snapshot = coord_client::instant_now();
        metrics::gauge!(m::SNAPSHOT_AGE_SECONDS).set(0.0);
        let created = manifest.created_at_ms;
        let sizes = (manifest.size, manifest.stored_size());
        self.publish_stats(|s| {
            s.snapshots += 1;
            s.last_snapshot_ms = Some(created);
            s.last_snapshot_bytes = Some(sizes);
        });
        tracing::info!(id = %manifest.id, size = sizes.0, stored = sizes.1, "snapshot uploaded");
        Ok(manifest)
    }

    /// Turns scanned transactions into the next segment, or adds them to the last pending
    /// segment while no put of it was tried (a backlog ships as fewer, larger segments).
    fn cut(&mut self, scanned: Scanned) {
        let max = self.config.max_segment_bytes;
        if let Some(last) = self.pending.back_mut()
            && !last.attempted
            && last.pages.bytes() + scanned.pages.bytes() <= max
        {
            last.pages.merge(scanned.pages);
            last.header.end = scanned.end;
            last.header.db_pages = last.pages.db_pages;
            last.header.page_count = last.pages.pages.len() as u32;
            last.header.transactions += scanned.transactions;
            // The time of its newest change: a restore to a time before it leaves it out.
            last.header.captured_at_ms = now_ms();
            let (bytes, checksum) = Segment::encode(&last.header, &last.pages);
            last.bytes = bytes;
            last.checksum = checksum;
            self.prev_checksum = checksum;
            return;
        }
        let page_size = scanned
            .pages
            .pages
            .values()
            .next()
            .map_or(4096, |p| p.len() as u32);
        let header = SegmentHeader {
            generation: self.generation,
            index: self.next_index,
            token: self.term.token.get(),
            first_frame: scanned.first_frame,
            end: scanned.end,
            page_size,
            db_pages: scanned.pages.db_pages,
            page_count: scanned.pages.pages.len() as u32,
            transactions: scanned.transactions,
            captured_at_ms: now_ms(),
            prev_checksum: self.prev_checksum,
        };
        let (bytes, checksum) = Segment::encode(&header, &scanned.pages);
        self.prev_checksum = checksum;
        self.pending.push_back(PendingSegment {
            header,
            pages: scanned.pages,
            bytes,
            stored: None,
            checksum,
            captured_at: coord_client::instant_now(),
            attempted: false,
        });
        self.next_index += 1;
    }

    /// Polls the WAL until nothing new is there, or a full segment is waiting to be shipped.
    async fn capture_new(&mut self) -> ReplicationResult<()> {
        if self.released || self.broken.is_some() {
            return Ok(());
        }
        // Stop once a full segment waits: shipping goes on during a long bulk load instead of
        // the whole load piling up in memory first.
        while self.pending.iter().filter(|p| !p.attempted).count() < 2 {
            match blocking(&self.capture, |c| c.poll()).await? {
                Polled::Frames(s) => {
                    self.caught_up = false;
                    self.cut(s);
                }
                Polled::Nothing => {
                    self.caught_up = true;
                    break;
                }
                Polled::Gap { reason } => {
                    tracing::warn!(%reason, generation = self.generation, "capture gap: a new generation will start");
                    self.broken = Some(reason);
                    break;
                }
            }
        }
        Ok(())
    }

    /// Puts pending segments in order; stops at the first failure (retried later).
    async fn ship(&mut self) -> ReplicationResult<()> {
        if self
            .retry_at
            .is_some_and(|t| coord_client::instant_now() < t)
        {
            return Ok(());
        }
        while let Some(front) = self.pending.front_mut() {
            if !self.term.valid_at(coord_client::instant_now()) {
                return Err(ReplicationError::Fenced {
                    token: self.term.token,
                });
            }
            front.attempted = true;
            let stored = match &front.stored {
                Some(stored) => stored.clone(),
                None => {
                    let stored = stored_form(&front.bytes, self.config.compression_level).await;
                    front.stored = Some(stored.clone());
                    stored
                }
            };
            let name = store_layout::segment(self.generation, front.header.index);
            match self.stores.wal.put(&name, stored).await {
                Ok(_) => {
                    let done = self.pending.pop_front();
                    let Some(done) = done else { break };
                    let acked_at = coord_client::instant_now();
                    self.acked = Position {
                        generation: self.generation,
                        index: done.header.index,
                    };
                    self.acked_checksum = done.checksum;
                    self.acked_ms = done.header.captured_at_ms;
                    let plain = done.bytes.len() as u64;
                    let size = done.stored.as_ref().map_or(plain, |s| s.len() as u64);
                    metrics::counter!(m::SEGMENTS_SHIPPED).increment(1);
                    metrics::counter!(m::BYTES_SHIPPED).increment(size);
                    metrics::counter!(m::PLAIN_BYTES_SHIPPED).increment(plain);
                    if self.retry_at.take().is_some() {
                        tracing::info!("object store reachable again");
                        metrics::gauge!(m::STORE_DEGRADED).set(0.0);
                    }
                    self.retry_delay = self.config.retry_delay;
                    let position = self.acked;
                    self.publish_stats(|s| {
                        s.position = Some(position);
                        s.segments_shipped += 1;
                        s.bytes_shipped += size;
                        s.plain_bytes_shipped += plain;
                        if let Some(ratio) = s.compression_ratio() {
                            metrics::gauge!(m::COMPRESSION_RATIO).set(ratio);
                        }
                        s.transactions_shipped += u64::from(done.header.transactions);
                        s.degraded = None;
                    });
                    self.resolve(acked_at);
                }
                Err(e) => {
                    tracing::warn!(error = %e, segment = %name, "segment put failed; will retry");
                    metrics::gauge!(m::STORE_DEGRADED).set(1.0);
                    self.retry_at = Some(coord_client::instant_now() + self.retry_delay);
                    self.retry_delay =
                        Backoff::new(self.config.retry_delay, Duration::from_secs(1))
                            .after(self.retry_delay);
                    let reason = e.to_string();
                    self.publish_stats(|s| s.degraded = Some(reason));
                    break;
                }
            }
        }
        Ok(())
    }

    /// Answers the sync waiters the acknowledged position now covers, and those out of time.
    fn resolve(&mut self, acked_at: Instant) {
        let acked = self.acked;
        let in_term = self.term.valid_at(acked_at);
        let now = coord_client::instant_now();
        let token = self.term.token.get();
        self.waiters.retain_mut(|w| {
            if w.target <= acked.index {
                let result = if in_term {
                    Ok(acked)
                } else {
                    Err(ReplicationError::Unavailable {
                        reason: "acknowledged after the lease's safe deadline".into(),
                    })
                };
                let reply = std::mem::replace(&mut w.reply, oneshot::channel().0);
                let _ = reply.send(result);
                false
            } else if now >= w.deadline {
                let reply = std::mem::replace(&mut w.reply, oneshot::channel().0);
                let _ = reply.send(Err(ReplicationError::Unavailable {
                    reason: format!(
                        "not acknowledged by the store within the sync timeout (token {token})"
                    ),
                }));
                false
            } else {
                true
            }
        });
    }

    fn fail_waiters(&mut self, error: impl Fn() -> ReplicationError) {
        for w in self.waiters.drain(..) {
            let _ = w.reply.send(Err(error()));
        }
        for r in self.snapshot_requests.drain(..) {
            let _ = r.send(Err(error()));
        }
    }

    async fn on_sync(
        &mut self,
        reply: oneshot::Sender<ReplicationResult<Position>>,
    ) -> ReplicationResult<()> {
        if let Some(reason) = &self.broken {
            let _ = reply.send(Err(ReplicationError::Unavailable {
                reason: format!("capture is between generations: {reason}"),
            }));
            return Ok(());
        }
        self.capture_new().await?;
        let target = self.next_index - 1;
        self.waiters.push(Waiter {
            target,
            deadline: coord_client::instant_now() + self.config.sync_timeout,
            reply,
        });
        self.ship().await?;
        self.resolve(coord_client::instant_now());
        Ok(())
    }

    async fn maintain(&mut self) -> ReplicationResult<()> {
        // Degraded while a retry is due later. A retry time that has passed with nothing
        // pending was set by a failed step other than a put (starting a generation after a
        // gap, say): no put will clear it, so it ends here and the step is tried again.
        let now = coord_client::instant_now();
        let degraded = self.retry_at.is_some_and(|t| now < t);
        if !degraded && self.pending.is_empty() && self.retry_at.take().is_some() {
            tracing::info!("retrying after a failed replication step");
        }
        let (wal_size, wal_in_use) =
            blocking(&self.capture, |c| Ok((c.wal_size(), c.wal_in_use()))).await?;
        if degraded && !self.released && wal_size > self.config.max_wal_bytes {
            tracing::warn!(
                wal_size,
                limit = self.config.max_wal_bytes,
                "object store down and WAL over its limit: releasing the WAL"
            );
            blocking(&self.capture, |c| {
                c.release();
                Ok(())
            })
            .await?;
            self.released = true;
            return Ok(());
        }
        if degraded {
            return Ok(());
        }
        if self.released {
            match blocking(&self.capture, |c| c.reacquire()).await? {
                Polled::Frames(s) => self.cut(s),
                Polled::Nothing => {}
                Polled::Gap { reason } => self.broken = Some(reason),
            }
            self.released = false;
        }
        if let Some(reason) = self.broken.clone() {
            if self.pending.is_empty() {
                tracing::info!(%reason, "starting a new generation after a capture gap");
                self.begin_generation(StartFrom::Snapshot).await?;
            }
            return Ok(());
        }
        let snapshot_due = !self.snapshot_requests.is_empty()
            || self
                .config
                .snapshot_interval
                .is_some_and(|every| self.last_snapshot.elapsed() >= every);
        if !self.caught_up {
            // Snapshots and checkpoints read the rest of the WAL under the write lock: only
            // once capture has caught up, so that stays a few milliseconds.
            return Ok(());
        }
        if self.pending.is_empty() && snapshot_due {
            let (polled, reader) = blocking(&self.capture, |c| c.snapshot_reader()).await?;
            match polled {
                Polled::Frames(s) => self.cut(s),
                Polled::Nothing => {}
                Polled::Gap { reason } => {
                    self.broken = Some(reason);
                    return Ok(());
                }
            }
            self.ship().await?;
            if !self.pending.is_empty() {
                // Not shipped yet: the snapshot would get ahead of the store. Try again later.
                return Ok(());
            }
            let result = self.upload_snapshot(reader).await;
            let requests = std::mem::take(&mut self.snapshot_requests);
            match result {
                Ok(manifest) => {
                    for r in requests {
                        let _ = r.send(Ok(manifest.clone()));
                    }
                    if let Err(e) = self.apply_retention().await {
                        tracing::warn!(error = %e, "snapshot retention failed; will retry after the next snapshot");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "snapshot failed");
                    for r in requests {
                        let _ = r.send(Err(ReplicationError::Unavailable {
                            reason: e.to_string(),
                        }));
                    }
                    self.last_snapshot = coord_client::instant_now();
                }
            }
            return Ok(());
        }
        // Checkpoint when the WAL in use passed the threshold, and again only after it grew by
        // a quarter of it (readers of the application may keep a checkpoint from completing).
        let threshold = self.config.checkpoint_wal_bytes;
        let grown =
            wal_in_use < self.checkpointed_at || wal_in_use - self.checkpointed_at >= threshold / 4;
        if self.pending.is_empty() && wal_in_use >= threshold && grown {
            self.checkpointed_at = wal_in_use;
            match blocking(&self.capture, |c| c.checkpoint()).await? {
                Polled::Frames(s) => self.cut(s),
                Polled::Nothing => {}
                Polled::Gap { reason } => self.broken = Some(reason),
            }
        }
        Ok(())
    }

    /// On a graceful stop: captures what is committed and ships it, retrying failed puts at
    /// once and then with a short backoff, until everything is shipped or the term ends
    /// (without a lease, for at most `sync_timeout`). A tail left unshipped is reported.
    async fn ship_tail(&mut self) -> ReplicationResult<()> {
        let started = coord_client::instant_now();
        let backoff = Backoff::new(self.config.poll_interval, Duration::from_millis(250));
        let mut delay = backoff.initial;
        let mut last_error = None;
        if let Err(e) = self.capture_new().await {
            last_error = Some(e.to_string());
        }
        while !self.pending.is_empty() {
            let now = coord_client::instant_now();
            if !self.term.valid_at(now) {
                last_error = Some("the term ended".into());
                break;
            }
            if self.term.safe_until.is_none() && now - started >= self.config.sync_timeout {
                last_error = Some(format!(
                    "not acknowledged within the sync timeout ({:?})",
                    self.config.sync_timeout
                ));
                break;
            }
            // The loop's retry schedule does not apply: this is the last chance.
            self.retry_at = None;
            match self.ship().await {
                Ok(()) => {}
                Err(e @ ReplicationError::Fenced { .. }) => {
                    last_error = Some(e.to_string());
                    break;
                }
                Err(e) => last_error = Some(e.to_string()),
            }
            if self.pending.is_empty() {
                break;
            }
            if let Some(reason) = self.stats.borrow().degraded.clone() {
                last_error = Some(reason);
            }
            tokio::time::sleep(delay).await;
            delay = backoff.after(delay);
        }
        if !self.pending.is_empty() {
            let segments = self.pending.len();
            let transactions = self
                .pending
                .iter()
                .map(|p| u64::from(p.header.transactions))
                .sum();
            tracing::error!(
                segments,
                transactions,
                shipped = %self.acked,
                "stopping with commits that never reached the store"
            );
            return Err(ReplicationError::TailNotShipped {
                shipped: Some(self.acked),
                segments,
                transactions,
                reason: last_error.unwrap_or_else(|| "not acknowledged".into()),
            });
        }
        if let Some(reason) = &self.broken {
            // Commits after the gap were never captured into any generation.
            return Err(ReplicationError::TailNotShipped {
                shipped: Some(self.acked),
                segments: 0,
                transactions: 0,
                reason: format!("capture is between generations: {reason}"),
            });
        }
        Ok(())
    }

    async fn apply_retention(&mut self) -> ReplicationResult<()> {
        crate::snapshots::apply_retention(
            &self.stores.wal,
            &self.stores.snapshots,
            self.config.retention,
        )
        .await
    }

    async fn run(
        mut self,
        mut requests: mpsc::Receiver<Request>,
        cancel: CancellationToken,
    ) -> ReplicationResult<()> {
        let mut tick = tokio::time::interval(self.config.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let result = loop {
            let step = tokio::select! {
                _ = cancel.cancelled() => break self.ship_tail().await,
                request = requests.recv() => match request {
                    Some(Request::Sync(reply)) => self.on_sync(reply).await,
                    Some(Request::Snapshot(reply)) => {
                        self.snapshot_requests.push(reply);
                        Ok(())
                    }
                    None => break Ok(()),
                },
                _ = tick.tick() => {
                    let r = async {
                        self.capture_new().await?;
                        self.ship().await?;
                        self.maintain().await?;
                        self.resolve(coord_client::instant_now());
                        Ok::<(), ReplicationError>(())
                    };
                    r.await
                }
            };
            if let Err(e) = step {
                match e {
                    ReplicationError::Fenced { .. } => break Err(e),
                    e if e.is_retryable() => {
                        tracing::warn!(error = %e, "replication step failed; retrying");
                        self.retry_at = Some(coord_client::instant_now() + self.retry_delay);
                        let reason = e.to_string();
                        self.publish_stats(|s| s.degraded = Some(reason));
                    }
                    e => {
                        tracing::error!(error = %e, "replication step failed");
                        let reason = e.to_string();
                        self.publish_stats(|s| s.degraded = Some(reason));
                    }
                }
            }
            let age = self.last_snapshot.elapsed().as_secs_f64();
            metrics::gauge!(m::SNAPSHOT_AGE_SECONDS).set(age);
            self.publish_stats(|_| {});
        };
        let fenced = matches!(result, Err(ReplicationError::Fenced { .. }));
        if fenced {
            tracing::warn!(token = %self.term.token, "term lost: replication stopped");
            self.publish_stats(|s| s.fenced = true);
            let token = self.term.token;
            self.fail_waiters(|| ReplicationError::Fenced { token });
        } else {
            self.fail_waiters(|| ReplicationError::Stopped);
        }
        blocking(&self.capture, |c| {
            c.release();
            Ok(())
        })
        .await?;
        cancel.cancel();
        result
    }
}

/// A segment's bytes as put: compressed at zstd `level` (off the async threads when large), or
/// plain at level 0.
async fn stored_form(plain: &[u8], level: i32) -> Vec<u8> {
    if level == 0 {
        return plain.to_vec();
    }
    if plain.len() < 256 << 10 {
        return crate::compression::compress(plain, level);
    }
    let owned = plain.to_vec();
    match tokio::task::spawn_blocking(move || crate::compression::compress(&owned, level)).await {
        Ok(stored) => stored,
        // The blocking pool is shutting down: plain bytes are a valid stored form too.
        Err(_) => plain.to_vec(),
    }
}
