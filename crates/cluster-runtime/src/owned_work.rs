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
//! - A graceful move closes intake, waits for in-flight items to finish (up to the drain
//!   timeout), and leaves queued items in the store for the new owner: nothing lost, nothing
//!   run twice.
//! - After a crash, the new owner's [`PartitionWork::unfinished`] lists the items the old owner
//!   queued or started; it re-runs each once under its own, larger token.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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

struct Local {
    in_flight: AtomicUsize,
    intake_open: AtomicBool,
    idle: Notify,
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
            .field("in_flight", &self.local.in_flight.load(Ordering::Relaxed))
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
                in_flight: AtomicUsize::new(0),
                intake_open: AtomicBool::new(true),
                idle: Notify::new(),
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

    /// Queues an item; a second enqueue of the same id is a no-op (dedup on partition + id).
    pub async fn enqueue(&self, id: &str, payload: impl Into<String>) -> Result<(), WorkError> {
        if !self.local.intake_open.load(Ordering::SeqCst) {
            return Err(WorkError::IntakeClosed(self.partition));
        }
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

    /// Marks an item in flight under this owner's token and returns it.
    pub async fn start(&self, id: &str) -> Result<WorkItem, WorkError> {
        let (mut item, _) = self.read(id).await?.ok_or_else(|| WorkError::Unknown {
            partition: self.partition,
            id: id.to_owned(),
        })?;
        item.state = WorkState::InFlight;
        item.token = self.fence.token.get();
        item.attempts += 1;
        self.local.in_flight.fetch_add(1, Ordering::SeqCst);
        if let Err(e) = self.write(&item).await {
            self.finished_one();
            return Err(e);
        }
        Ok(item)
    }

    /// Completes an item. Refused by the store (`StaleToken`) if this node no longer owns the
    /// partition, so a late completion from a former owner never lands, even if the new owner
    /// has finished and removed the item meanwhile.
    pub async fn complete(&self, id: &str) -> Result<(), WorkError> {
        let result = async {
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
            // The fenced write comes first: it is what refuses a former owner.
            self.write(&item).await?;
            // The record is terminal now; deleting it only needs it not to have moved since.
            if let Some((_, revision)) = self.read(id).await? {
                let _ = self
                    .coord
                    .delete(&self.key(id)?, Expect::Revision(revision))
                    .await;
            }
            match existing {
                Some(_) => Ok(()),
                None => Err(WorkError::Unknown {
                    partition: self.partition,
                    id: id.to_owned(),
                }),
            }
        }
        .await;
        self.finished_one();
        result
    }

    /// Puts a started item back in the queue (the work failed and may be retried).
    pub async fn requeue(&self, id: &str) -> Result<(), WorkError> {
        let result = async {
            let (mut item, _) = self.read(id).await?.ok_or_else(|| WorkError::Unknown {
                partition: self.partition,
                id: id.to_owned(),
            })?;
            item.state = WorkState::Queued;
            item.token = self.fence.token.get();
            self.write(&item).await
        }
        .await;
        self.finished_one();
        result
    }

    fn finished_one(&self) {
        let before = self
            .local
            .in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_sub(1))
            })
            .unwrap_or(0);
        if before <= 1 {
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

    /// How many items this node has in flight.
    pub fn in_flight(&self) -> usize {
        self.local.in_flight.load(Ordering::SeqCst)
    }

    /// Stops taking new work and waits (at most `limit`) for in-flight items to finish; returns
    /// whether they all did.
    pub(crate) async fn drain(&self, limit: Duration) -> bool {
        self.local.intake_open.store(false, Ordering::SeqCst);
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
