//! Owned work: a partition's queued and in-flight items, kept durably in the store and written
//! under the owner's claim.
//!
//! Each item lives at `work/p{partition}/{work id}` in the app's claims namespace, next to the
//! partition's claim key `p-{partition}`, so a work id is unique per partition and a handover
//! never duplicates it. Sharing the claim's namespace keeps each fenced write one store
//! operation on every backend: on NATS KV, where a write can only be conditioned on a key of its
//! own bucket, the claim and the items are in one bucket. Every write is fenced by the
//! partition's claim (`put_if_held`): after ownership moves, a write or completion sent with the
//! old token is refused by the store.
//!
//! - A graceful move closes intake (no enqueue and no start from then on), waits for the items
//!   this handle started to finish (up to the drain timeout), and leaves queued items in the
//!   store for the new owner: nothing lost, nothing run twice.
//! - A completed item stays as a `done` record, so enqueueing its id again is a no-op: "run once
//!   per id" holds until the app removes finished records with [`PartitionWork::purge_done`].
//! - After a crash, the new owner's [`PartitionWork::unfinished`] lists the items the old owner
//!   queued or started; it re-runs each once under its own, larger token.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cluster_core::coordination::{CoordError, Coordinator, Expect, Fence, Key, KeyPrefix};
use cluster_core::ids::{FencingToken, PartitionId};
use cluster_core::naming::Namespace;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// Where an item stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkState {
    /// Waiting to run.
    Queued,
    /// Started by the owner whose token the item carries.
    InFlight,
    /// Finished (kept only until the record is deleted).
    Done,
}

/// One unit of owned work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkItem {
    /// Unique within its partition.
    pub id: String,
    /// Where it stands.
    pub state: WorkState,
    /// Application data.
    pub payload: String,
    /// The token of the owner that last wrote it.
    pub token: u64,
    /// How many times it was started.
    pub attempts: u32,
}

/// Why owned work could not be recorded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkError {
    /// The partition is being handed off: no new work is taken.
    #[error("partition {0} is not taking new work (handoff in progress)")]
    IntakeClosed(PartitionId),
    /// The store refused the write: this node no longer owns the partition (or it failed).
    #[error(transparent)]
    Store(#[from] CoordError),
    /// The item has completed already; it is not started again.
    #[error("work item {id} in partition {partition} is done already")]
    AlreadyDone {
        /// The partition.
        partition: PartitionId,
        /// The id.
        id: String,
    },
    /// No such item.
    #[error("no work item {id} in partition {partition}")]
    Unknown {
        /// The partition.
        partition: PartitionId,
        /// The id.
        id: String,
    },
    /// A stored item could not be decoded.
    #[error("work item {key} is not valid: {reason}")]
    Corrupt {
        /// Its key.
        key: String,
        /// The decode error.
        reason: String,
    },
}

impl cluster_core::error::Retryable for WorkError {
    fn is_retryable(&self) -> bool {
        match self {
            WorkError::Store(e) => e.is_retryable(),
            WorkError::IntakeClosed(_)
            | WorkError::AlreadyDone { .. }
            | WorkError::Unknown { .. }
            | WorkError::Corrupt { .. } => false,
        }
    }

    fn as_metrics_label(&self) -> &'static str {
        match self {
            WorkError::IntakeClosed(_) => "intake_closed",
            WorkError::Store(e) => e.as_metrics_label(),
            WorkError::AlreadyDone { .. } => "already_done",
            WorkError::Unknown { .. } => "unknown",
            WorkError::Corrupt { .. } => "corrupt",
        }
    }
}

struct Local {
    /// The ids this handle started and has not completed or requeued.
    started: std::sync::Mutex<BTreeSet<String>>,
    intake_open: AtomicBool,
    idle: Notify,
    /// Serialises each read-then-write of one item, so two concurrent enqueues of an id write
    /// it once (the store's fence keeps other nodes out; this keeps this node's tasks apart).
    writes: tokio::sync::Mutex<()>,
}

impl Local {
    fn started(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.started.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The durable work of one owned partition.
#[derive(Clone)]
pub struct PartitionWork {
    coord: Arc<dyn Coordinator>,
    ns: Namespace,
    partition: PartitionId,
    fence: Fence,
    local: Arc<Local>,
}

impl std::fmt::Debug for PartitionWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionWork")
            .field("partition", &self.partition)
            .field("token", &self.fence.token)
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl PartitionWork {
    pub(crate) fn new(
        coord: Arc<dyn Coordinator>,
        ns: Namespace,
        partition: PartitionId,
        fence: Fence,
    ) -> Self {
        PartitionWork {
            coord,
            ns,
            partition,
            fence,
            local: Arc::new(Local {
                started: std::sync::Mutex::new(BTreeSet::new()),
                intake_open: AtomicBool::new(true),
                idle: Notify::new(),
                writes: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The partition.
    pub fn partition(&self) -> PartitionId {
        self.partition
    }

    /// The token writes are made under.
    pub fn token(&self) -> FencingToken {
        self.fence.token
    }

    fn key(&self, id: &str) -> Result<Key, WorkError> {
        Ok(Key::new(
            self.ns.clone(),
            format!("work/p{}/{id}", self.partition.0),
        )?)
    }

    async fn read(
        &self,
        id: &str,
    ) -> Result<Option<(WorkItem, cluster_core::ids::Revision)>, WorkError> {
        let key = self.key(id)?;
        match self.coord.get(&key).await? {
            None => Ok(None),
            Some(entry) => serde_json::from_slice(&entry.value)
                .map(|item| Some((item, entry.revision)))
                .map_err(|e| WorkError::Corrupt {
                    key: key.path(),
                    reason: e.to_string(),
                }),
        }
    }

    async fn write(&self, item: &WorkItem) -> Result<(), WorkError> {
        let key = self.key(&item.id)?;
        let value = serde_json::to_vec(item).map_err(|e| WorkError::Corrupt {
            key: key.path(),
            reason: e.to_string(),
        })?;
        self.coord.put_if_held(&key, value, &self.fence).await?;
        Ok(())
    }

    fn intake(&self) -> Result<(), WorkError> {
        if self.local.intake_open.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(WorkError::IntakeClosed(self.partition))
        }
    }

    /// Queues an item; enqueueing an id the partition already has (queued, in flight or done)
    /// is a no-op (dedup on partition + id).
    pub async fn enqueue(&self, id: &str, payload: impl Into<String>) -> Result<(), WorkError> {
        self.intake()?;
        let _serial = self.local.writes.lock().await;
        if self.read(id).await?.is_some() {
            return Ok(());
        }
        self.write(&WorkItem {
            id: id.to_owned(),
            state: WorkState::Queued,
            payload: payload.into(),
            token: self.fence.token.get(),
            attempts: 0,
        })
        .await
    }

    /// Marks an item in flight under this owner's token and returns it. Refused with
    /// `IntakeClosed` once a handoff has begun: queued items are left for the next owner.
    pub async fn start(&self, id: &str) -> Result<WorkItem, WorkError> {
        self.intake()?;
        let _serial = self.local.writes.lock().await;
        let (mut item, _) = self.read(id).await?.ok_or_else(|| WorkError::Unknown {
            partition: self.partition,
            id: id.to_owned(),
        })?;
        if item.state == WorkState::Done {
            return Err(WorkError::AlreadyDone {
                partition: self.partition,
                id: id.to_owned(),
            });
        }
        // Checked again now that the read is done: a drain that began meanwhile wins.
        self.intake()?;
        item.state = WorkState::InFlight;
        item.token = self.fence.token.get();
        item.attempts += 1;
        self.local.started().insert(id.to_owned());
        if let Err(e) = self.write(&item).await {
            self.finished_one(id);
            return Err(e);
        }
        Ok(item)
    }

    /// Completes an item: it stays as a `done` record (so its id is not queued again). Refused
    /// by the store (`StaleToken`) if this node no longer owns the partition, so a late
    /// completion from a former owner never lands.
    pub async fn complete(&self, id: &str) -> Result<(), WorkError> {
        let result = async {
            let _serial = self.local.writes.lock().await;
            let existing = self.read(id).await?;
            let mut item = existing.clone().map(|(item, _)| item).unwrap_or(WorkItem {
                id: id.to_owned(),
                state: WorkState::Done,
                payload: String::new(),
                token: 0,
                attempts: 0,
            });
            item.state = WorkState::Done;
            item.token = self.fence.token.get();
            // The fenced write is what refuses a former owner.
            self.write(&item).await?;
            match existing {
                Some(_) => Ok(()),
                None => Err(WorkError::Unknown {
                    partition: self.partition,
                    id: id.to_owned(),
                }),
            }
        }
        .await;
        self.finished_one(id);
        result
    }

    /// Puts a started item back in the queue (the work failed and may be retried).
    pub async fn requeue(&self, id: &str) -> Result<(), WorkError> {
        let result = async {
            let _serial = self.local.writes.lock().await;
            let (mut item, _) = self.read(id).await?.ok_or_else(|| WorkError::Unknown {
                partition: self.partition,
                id: id.to_owned(),
            })?;
            item.state = WorkState::Queued;
            item.token = self.fence.token.get();
            self.write(&item).await
        }
        .await;
        self.finished_one(id);
        result
    }

    /// Deletes the `done` records of the partition (after which their ids may be queued again);
    /// returns how many. Deletes are conditional on the record not having moved.
    pub async fn purge_done(&self) -> Result<usize, WorkError> {
        let _serial = self.local.writes.lock().await;
        let prefix = KeyPrefix::new(self.ns.clone(), format!("work/p{}/", self.partition.0))?;
        let mut purged = 0;
        for entry in self.coord.list(&prefix).await? {
            let done = serde_json::from_slice::<WorkItem>(&entry.value)
                .is_ok_and(|item| item.state == WorkState::Done);
            if done
                && self
                    .coord
                    .delete(&entry.key, Expect::Revision(entry.revision))
                    .await?
            {
                purged += 1;
            }
        }
        Ok(purged)
    }

    /// An item this handle started has finished (completed or requeued); others do not count.
    fn finished_one(&self, id: &str) {
        let now_idle = {
            let mut started = self.local.started();
            started.remove(id) && started.is_empty()
        };
        if now_idle {
            self.local.idle.notify_waiters();
        }
    }

    /// Every queued or in-flight item of the partition, sorted by id: on taking a partition
    /// over, the items to run (queued) or re-run (in flight under an older token).
    pub async fn unfinished(&self) -> Result<Vec<WorkItem>, WorkError> {
        let prefix = KeyPrefix::new(self.ns.clone(), format!("work/p{}/", self.partition.0))?;
        let mut items = Vec::new();
        for entry in self.coord.list(&prefix).await? {
            let item: WorkItem =
                serde_json::from_slice(&entry.value).map_err(|e| WorkError::Corrupt {
                    key: entry.key.path(),
                    reason: e.to_string(),
                })?;
            if item.state != WorkState::Done {
                items.push(item);
            }
        }
        Ok(items)
    }

    /// How many items this handle started and has not finished.
    pub fn in_flight(&self) -> usize {
        self.local.started().len()
    }

    /// Stops taking new work: enqueue and start are refused from now on.
    pub(crate) fn close_intake(&self) {
        self.local.intake_open.store(false, Ordering::SeqCst);
    }

    /// Stops taking new work and waits (at most `limit`) for in-flight items to finish; returns
    /// whether they all did.
    pub(crate) async fn drain(&self, limit: Duration) -> bool {
        self.close_intake();
        let wait = async {
            loop {
                let idle = self.local.idle.notified();
                if self.in_flight() == 0 {
                    return;
                }
                idle.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }
}
