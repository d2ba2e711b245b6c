//! `Standby`: a replica that follows the primary's segments, and its promotion.
//!
//! The replica is bootstrapped by a restore, then kept at a transaction boundary by applying
//! segments in order through [`ReplicaFile`](crate::replica_file). Fencing: a segment of an
//! unsealed generation is applied only if, after it was seen, a linearizable read of the
//! coordinator shows the generation's fence still standing (its writer still holds the
//! term). Once a new primary has sealed the generation, segments up to the seal are applied
//! and nothing after it ever is; then the standby moves to the child generation (or rebuilds
//! from a snapshot when the child does not continue from the seal).
//!
//! Promotion (`promote`): stop following, catch up to the last shipped segment, verify with
//! `integrity_check`, CAS the seal into the generation record, move the replica into place as
//! the primary and start a [`Replicator`] on a new generation continuing from the seal.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::ReplicationConfig;
use crate::error::{ReplicationError, ReplicationResult};
use crate::generation::GenerationRecord;
use crate::metric_definitions as m;
use crate::page_set::PageSet;
use crate::position::Position;
use crate::replica_file::{self, ReplicaFile};
use crate::replicator::{ReplicationStores, Replicator, StartFrom};
use crate::restore::{self, Restore, RestoreTarget};
use crate::term::ReplicationTerm;

/// Standby settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StandbyConfig {
    /// How often to look for new segments.
    pub poll_interval: Duration,
    /// Most segments applied in one go.
    pub batch: usize,
}

impl Default for StandbyConfig {
    fn default() -> Self {
        StandbyConfig {
            poll_interval: Duration::from_millis(50),
            batch: 64,
        }
    }
}

/// How a promotion treats a history it cannot reach in full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PromotionOptions {
    /// Promote even when a segment between the replica and the head of its generation is
    /// missing (gone from the store, or listed but unreadable): the generation is sealed where
    /// the replica stands and every later segment, acknowledged or not, is discarded. Off by
    /// default: the promotion fails `MissingSegment` instead.
    pub accept_data_loss: bool,
}

/// A step of a promotion, for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromotionEvent {
    /// Promotion began; the standby stopped following at `position`.
    Started {
        /// Where the replica was.
        position: Option<Position>,
    },
    /// Catching up to the last shipped segment.
    CatchupStarted {
        /// Where catch-up began.
        from: Option<Position>,
    },
    /// Caught up.
    CatchupCompleted {
        /// The last segment applied.
        position: Position,
        /// Segments applied during catch-up.
        segments: u64,
    },
    /// `integrity_check` passed.
    DatabaseVerified,
    /// The old generation is sealed and the new one started.
    Completed {
        /// The new generation.
        generation: u64,
        /// Where it continues from.
        parent: Position,
    },
}

/// Receives promotion events.
pub type PromotionObserver = Arc<dyn Fn(&PromotionEvent) + Send + Sync>;

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Applied {
    position: Position,
    checksum: u64,
}

/// The replica as the follower leaves it.
struct Follower {
    replica: PathBuf,
    file: Option<ReplicaFile>,
    record: Option<GenerationRecord>,
    applied: Option<Applied>,
    stores: ReplicationStores,
    config: StandbyConfig,
    position: watch::Sender<Option<Position>>,
    rebuilds: u64,
    /// When the follower last listed its generation looking for a hole.
    hole_checked_at: Option<tokio::time::Instant>,
}

struct Shared {
    position: watch::Receiver<Option<Position>>,
    cancel: CancellationToken,
    task: Mutex<Option<tokio::task::JoinHandle<Follower>>>,
    stores: ReplicationStores,
}

/// A following replica. Dropping it stops nothing; call [`stop`](Standby::stop) or
/// [`promote`](Standby::promote).
#[derive(Clone)]
pub struct Standby {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Standby {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Standby")
            .field("position", &*self.shared.position.borrow())
            .finish()
    }
}

fn position_file(replica: &Path) -> PathBuf {
    let mut p = replica.as_os_str().to_owned();
    p.push("-position.json");
    PathBuf::from(p)
}

fn save_applied(replica: &Path, applied: &Applied) -> ReplicationResult<()> {
    use std::io::Write;
    let path = position_file(replica);
    let temp = path.with_extension("tmp");
    let io = |e| ReplicationError::io(&path, e);
    let mut f = std::fs::File::create(&temp).map_err(io)?;
    f.write_all(&serde_json::to_vec(applied).unwrap_or_default())
        .map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&temp, &path).map_err(io)
}

fn load_applied(replica: &Path) -> Option<Applied> {
    let bytes = std::fs::read(position_file(replica)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Removes a database and its side files (a demoted primary's, or a replica to rebuild).
pub fn discard_database(path: &Path) -> ReplicationResult<()> {
    for suffix in ["", "-wal", "-shm", "-journal", "-position.json"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::remove_file(PathBuf::from(&p)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ReplicationError::io(PathBuf::from(p), e)),
        }
    }
    Ok(())
}

impl Standby {
    /// Starts following into the replica at `replica` (bootstrapped by a restore when it is
    /// missing or its position unknown).
    pub async fn start(
        replica: &Path,
        config: StandbyConfig,
        stores: ReplicationStores,
    ) -> ReplicationResult<Standby> {
        let (position, position_rx) = watch::channel(None);
        let mut follower = Follower {
            replica: replica.to_owned(),
            file: None,
            record: None,
            applied: None,
            stores: stores.clone(),
            config,
            position,
            rebuilds: 0,
            hole_checked_at: None,
        };
        if replica.exists()
            && let Some(applied) = load_applied(replica)
        {
            let path = replica.to_owned();
            let file = tokio::task::spawn_blocking(move || ReplicaFile::open(&path))
                .await
                .map_err(|e| ReplicationError::io(replica, std::io::Error::other(e)))??;
            follower.record = stores
                .registry
                .record(applied.position.generation)
                .await?
                .map(|(r, _)| r);
            follower.file = Some(file);
            follower.applied = Some(applied);
            follower.position.send_replace(Some(applied.position));
        }
        let cancel = CancellationToken::new();
        let task = tokio::spawn(follower.run(cancel.clone()));
        Ok(Standby {
            shared: Arc::new(Shared {
                position: position_rx,
                cancel,
                task: Mutex::new(Some(task)),
                stores,
            }),
        })
    }

    /// The last position applied to the replica.
    pub fn position(&self) -> Option<Position> {
        *self.shared.position.borrow()
    }

    /// Waits until the replica is at or past `target` (or `limit` passes); returns the
    /// position reached.
    pub async fn wait_for(&self, target: Position, limit: Duration) -> Option<Position> {
        let mut rx = self.shared.position.clone();
        let reached = tokio::time::timeout(limit, rx.wait_for(|p| p.is_some_and(|p| p >= target)))
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|p| *p);
        reached.or_else(|| self.position())
    }

    async fn stop_follower(&self) -> ReplicationResult<Follower> {
        self.shared.cancel.cancel();
        let task = self
            .shared
            .task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or(ReplicationError::Stopped)?;
        task.await
            .map_err(|e| ReplicationError::io("standby", std::io::Error::other(e)))
    }

    /// Stops following; the replica stays as it is.
    pub async fn stop(&self) -> ReplicationResult<Option<Position>> {
        let follower = self.stop_follower().await?;
        Ok(follower.applied.map(|a| a.position))
    }

    /// Promotes this standby to primary of `primary` under `term` (see the module docs). With
    /// no history in the store at all, the database at `primary` starts the first generation.
    /// Fails `MissingSegment`, sealing nothing, when the replica cannot reach the head of its
    /// generation (see [`promote_with`](Standby::promote_with) to accept the loss).
    pub async fn promote(
        &self,
        primary: &Path,
        node: &str,
        config: ReplicationConfig,
        term: ReplicationTerm,
        observer: Option<PromotionObserver>,
    ) -> ReplicationResult<Replicator> {
        self.promote_with(
            primary,
            node,
            config,
            term,
            observer,
            PromotionOptions::default(),
        )
        .await
    }

    /// [`promote`](Standby::promote) with `options`.
    pub async fn promote_with(
        &self,
        primary: &Path,
        node: &str,
        config: ReplicationConfig,
        term: ReplicationTerm,
        observer: Option<PromotionObserver>,
        options: PromotionOptions,
    ) -> ReplicationResult<Replicator> {
        let emit = |e: PromotionEvent| {
            tracing::info!(event = ?e, "promotion");
            if let Some(o) = &observer {
                o(&e);
            }
        };
        let mut follower = self.stop_follower().await?;
        let from = follower.applied.map(|a| a.position);
        emit(PromotionEvent::Started { position: from });
        emit(PromotionEvent::CatchupStarted { from });
        let before = follower.applied.map_or(0, |a| a.position.index);
        if follower.applied.is_none() && self.shared.stores.registry.current().await?.is_none() {
            // Nothing was ever replicated: this node's database (possibly new) is the start.
            let replicator = Replicator::start(
                primary,
                node,
                config,
                self.shared.stores.clone(),
                term,
                StartFrom::Snapshot,
            )
            .await?;
            let generation = replicator.stats().generation;
            emit(PromotionEvent::Completed {
                generation,
                parent: Position {
                    generation: 0,
                    index: 0,
                },
            });
            return Ok(replicator);
        }
        follower.catch_up(options).await?;
        let applied = follower.applied.ok_or(ReplicationError::NoSnapshot {
            target: "anything to promote".into(),
        })?;
        let record = follower.record.clone().ok_or(ReplicationError::Conflict {
            generation: applied.position.generation,
            detail: "no generation record".into(),
        })?;
        emit(PromotionEvent::CatchupCompleted {
            position: applied.position,
            segments: applied.position.index.saturating_sub(before),
        });
        let replica = follower.replica.clone();
        follower.file = None;
        let verify = replica.clone();
        tokio::task::spawn_blocking(move || replica_file::integrity_check(&verify))
            .await
            .map_err(|e| ReplicationError::io(&replica, std::io::Error::other(e)))??;
        emit(PromotionEvent::DatabaseVerified);
        let seal = self
            .shared
            .stores
            .registry
            .seal(record.generation, applied.position.index)
            .await?;
        if seal != applied.position.index {
            return Err(ReplicationError::Conflict {
                generation: record.generation,
                detail: format!(
                    "sealed at {seal} by another node while this replica is at {}",
                    applied.position.index
                ),
            });
        }
        discard_database(primary)?;
        std::fs::rename(&replica, primary).map_err(|e| ReplicationError::io(primary, e))?;
        let _ = std::fs::remove_file(position_file(&replica));
        let parent = applied.position;
        let replicator = Replicator::start(
            primary,
            node,
            config,
            self.shared.stores.clone(),
            term,
            StartFrom::Parent { parent },
        )
        .await?;
        let generation = replicator.stats().generation;
        emit(PromotionEvent::Completed { generation, parent });
        Ok(replicator)
    }
}

/// What one step of following found.
enum Step {
    Applied,
    Idle,
}

impl Follower {
    async fn run(mut self, cancel: CancellationToken) -> Follower {
        let mut tick = tokio::time::interval(self.config.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return self,
                _ = tick.tick() => {}
            }
            loop {
                match self.step(true).await {
                    Ok(Step::Applied) if !cancel.is_cancelled() => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "standby step failed; retrying");
                        break;
                    }
                }
            }
        }
    }

    /// Applies what can be applied now. `fenced`: apply unsealed segments only while the
    /// writer's fence stands (off during a promotion's catch-up: the caller holds the term).
    async fn step(&mut self, fenced: bool) -> ReplicationResult<Step> {
        self.step_with(fenced, PromotionOptions::default()).await
    }

    /// [`step`](Follower::step); `options` decide what a promotion's catch-up does at a hole.
    async fn step_with(
        &mut self,
        fenced: bool,
        options: PromotionOptions,
    ) -> ReplicationResult<Step> {
        let registry = self.stores.registry.clone();
        let Some(applied) = self.applied else {
            return self.bootstrap(fenced).await;
        };
        let Some(record) = self.record.clone() else {
            self.record = registry
                .record(applied.position.generation)
                .await?
                .map(|(r, _)| r);
            return Ok(Step::Idle);
        };
        let g = record.generation;
        // Fetch what is there after the position, in order.
        let mut segments = Vec::new();
        let mut next = applied.position.index + 1;
        let mut checksum = applied.checksum;
        while segments.len() < self.config.batch {
            if record.sealed_through.is_some_and(|s| next > s) {
                break;
            }
            match restore::fetch_segment(&self.stores.wal, g, next, record.token).await? {
                Some(s) => {
                    if s.header.prev_checksum != checksum {
                        return Err(ReplicationError::Segment {
                            generation: g,
                            index: next,
                            source: crate::error::SegmentError::Foreign {
                                detail: "does not follow the applied segment".into(),
                            },
                        });
                    }
                    checksum = s.checksum;
                    segments.push(s);
                    next += 1;
                }
                None => break,
            }
        }
        if !segments.is_empty() {
            // Read after the segments were seen: the fence or the seal decides how far.
            let (fresh, _) = registry
                .record(g)
                .await?
                .ok_or(ReplicationError::Conflict {
                    generation: g,
                    detail: "record vanished".into(),
                })?;
            let limit = match fresh.sealed_through {
                Some(s) => s,
                None if !fenced || registry.fence_stands(&fresh).await? => u64::MAX,
                None => applied.position.index,
            };
            self.record = Some(fresh);
            segments.retain(|s| s.header.index <= limit);
            if segments.is_empty() {
                return Ok(Step::Idle);
            }
            let mut set = PageSet::default();
            let mut last = applied;
            for s in segments {
                last = Applied {
                    position: Position {
                        generation: g,
                        index: s.header.index,
                    },
                    checksum: s.checksum,
                };
                set.merge(s.pages);
            }
            let count = last.position.index - applied.position.index;
            self.apply(set, last).await?;
            metrics::counter!(m::SEGMENTS_APPLIED).increment(count);
            return Ok(Step::Applied);
        }
        // Nothing new. A segment missing below the head of the generation (deleted by
        // retention while this replica was away, or listed but not readable) is a hole: the
        // replica must not stop, or be promoted, short of the head.
        if !fenced
            || self
                .hole_checked_at
                .is_none_or(|t| t.elapsed() >= self.config.poll_interval * 20)
        {
            self.hole_checked_at = Some(coord_client::instant_now());
            if let Some(step) = self.at_hole(&record, next, fenced, options).await? {
                return Ok(step);
            }
        }
        // Has the generation ended?
        let (fresh, _) = registry
            .record(g)
            .await?
            .ok_or(ReplicationError::Conflict {
                generation: g,
                detail: "record vanished".into(),
            })?;
        self.record = Some(fresh.clone());
        let Some(seal) = fresh.sealed_through else {
            return Ok(Step::Idle);
        };
        if applied.position.index > seal {
            tracing::warn!(
                generation = g,
                seal,
                at = applied.position.index,
                "replica is past the seal: rebuilding"
            );
            self.applied = None;
            return Ok(Step::Idle);
        }
        if applied.position.index < seal {
            return Err(ReplicationError::MissingSegment {
                generation: g,
                index: applied.position.index + 1,
            });
        }
        match registry.successor_of(g).await? {
            Some(child)
                if child.parent
                    == Some(Position {
                        generation: g,
                        index: seal,
                    }) =>
            {
                tracing::info!(
                    from = g,
                    to = child.generation,
                    "following the next generation"
                );
                let next = Applied {
                    position: Position {
                        generation: child.generation,
                        index: 0,
                    },
                    checksum: 0,
                };
                save_applied(&self.replica, &next)?;
                self.applied = Some(next);
                self.record = Some(child);
                self.position.send_replace(Some(next.position));
                metrics::gauge!(m::GENERATION).set(next.position.generation as f64);
                Ok(Step::Applied)
            }
            Some(_) => {
                tracing::info!(
                    generation = g,
                    "the next generation does not continue from the seal: rebuilding"
                );
                self.applied = None;
                Ok(Step::Applied)
            }
            None => Ok(Step::Idle),
        }
    }

    /// Whether segment `next` of `record`'s generation is missing below its head (the seal, or
    /// the last listed segment while unsealed); if so, what to do: rebuild from a snapshot past
    /// the hole if one exists; otherwise, following, wait (nothing can be applied); catching up
    /// for a promotion, fail `MissingSegment` unless the loss is accepted.
    async fn at_hole(
        &mut self,
        record: &GenerationRecord,
        next: u64,
        fenced: bool,
        options: PromotionOptions,
    ) -> ReplicationResult<Option<Step>> {
        let g = record.generation;
        let fresh = self
            .stores
            .registry
            .record(g)
            .await?
            .map_or_else(|| record.clone(), |(r, _)| r);
        let head = match fresh.sealed_through {
            Some(seal) => seal,
            None => restore::segment_indexes(&self.stores.wal, g)
                .await?
                .last()
                .copied()
                .unwrap_or(0),
        };
        if next > head {
            return Ok(None);
        }
        let bridge = crate::snapshot::list(&self.stores.snapshots)
            .await?
            .into_iter()
            .rfind(|s| {
                s.position.generation == g
                    && s.position.index >= next
                    && fresh
                        .sealed_through
                        .is_none_or(|seal| s.position.index <= seal)
            });
        if let Some(snap) = bridge {
            tracing::warn!(
                generation = g,
                missing = next,
                head,
                snapshot = %snap.id,
                "segment missing below the head of the generation: rebuilding from the snapshot past it"
            );
            self.applied = None;
            return Ok(Some(Step::Applied));
        }
        metrics::counter!(m::MISSING_SEGMENTS).increment(1);
        if fenced {
            tracing::error!(
                generation = g,
                missing = next,
                head,
                "segment missing below the head of the generation and no snapshot past it: the replica cannot follow"
            );
            return Ok(Some(Step::Idle));
        }
        if options.accept_data_loss {
            tracing::error!(
                generation = g,
                missing = next,
                head,
                "segment missing below the head: promoting anyway, as asked; segments {next}..={head} are discarded"
            );
            return Ok(Some(Step::Idle));
        }
        Err(ReplicationError::MissingSegment {
            generation: g,
            index: next,
        })
    }

    async fn apply(&mut self, set: PageSet, last: Applied) -> ReplicationResult<()> {
        let Some(mut file) = self.file.take() else {
            self.applied = None;
            return Ok(());
        };
        let replica = self.replica.clone();
        let (file, result) = tokio::task::spawn_blocking(move || {
            let r = file
                .apply(&set)
                .and_then(|()| save_applied(&replica, &last));
            (file, r)
        })
        .await
        .map_err(|e| ReplicationError::io(&self.replica, std::io::Error::other(e)))?;
        self.file = Some(file);
        result?;
        self.applied = Some(last);
        self.position.send_replace(Some(last.position));
        Ok(())
    }

    /// Builds the replica from the store: the current generation up to its seal, or to its
    /// contiguous end while its writer's fence stands.
    async fn bootstrap(&mut self, fenced: bool) -> ReplicationResult<Step> {
        let registry = self.stores.registry.clone();
        let Some((record, _)) = registry.current().await? else {
            return Ok(Step::Idle);
        };
        let g = record.generation;
        let through = match record.sealed_through {
            Some(s) => s,
            None => {
                // To the contiguous end after the newest snapshot of the generation (retention
                // deletes the segments before it), or after its start.
                let base = crate::snapshot::list(&self.stores.snapshots)
                    .await?
                    .iter()
                    .filter(|s| s.position.generation == g)
                    .map(|s| s.position.index)
                    .max()
                    .unwrap_or(0);
                let mut end = base;
                for i in restore::segment_indexes(&self.stores.wal, g).await? {
                    if i <= base {
                        continue;
                    }
                    if i == end + 1 {
                        end = i;
                    } else {
                        break;
                    }
                }
                if fenced && !registry.fence_stands(&record).await? {
                    return Ok(Step::Idle);
                }
                end
            }
        };
        self.file = None;
        let report = Restore::new(self.stores.wal.clone(), self.stores.snapshots.clone())
            .run(
                RestoreTarget::Position(Position {
                    generation: g,
                    index: through,
                }),
                &self.replica,
            )
            .await?;
        let applied = Applied {
            position: report.position,
            checksum: report.last_checksum,
        };
        save_applied(&self.replica, &applied)?;
        let path = self.replica.clone();
        let file = tokio::task::spawn_blocking(move || ReplicaFile::open(&path))
            .await
            .map_err(|e| ReplicationError::io(&self.replica, std::io::Error::other(e)))??;
        self.file = Some(file);
        self.applied = Some(applied);
        self.record = Some(record);
        self.rebuilds += 1;
        self.position.send_replace(Some(applied.position));
        tracing::info!(position = %applied.position, rebuilds = self.rebuilds, "replica built from the store");
        Ok(Step::Applied)
    }

    /// Applies everything shipped, without waiting for fences (the caller won the term).
    async fn catch_up(&mut self, options: PromotionOptions) -> ReplicationResult<()> {
        loop {
            match self.step_with(false, options).await? {
                Step::Applied => continue,
                Step::Idle => return Ok(()),
            }
        }
    }
}
