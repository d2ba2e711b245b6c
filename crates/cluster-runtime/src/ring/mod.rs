//! Ring mode: partitions owned one at a time, moved safely when nodes come and go.
//!
//! The parts, one module each:
//!
//! - **Claims** ([`claims`]). Partition `p` is an ownership claim on `p-{p}` in the app's claims
//!   namespace, bound to the owner's lease; its token grows with every new owner. Each node
//!   watches every claim of the app.
//! - **The planner** ([`planner`]). One node per app (elected on `ring-planner`) publishes the
//!   target assignment, fenced by its planner term, one wave of handoffs at a time.
//! - **The executor** ([`executor`]). Each node feeds what it sees (target, claims, what it holds,
//!   its session) to cluster-core's [`reconcile`](cluster_core::rebalance::reconcile) and carries
//!   out the commands: claim free partitions targeted here, hand off the others, drop what its
//!   authority no longer covers, adopt or release claims whose reply was lost. Hooks and handoffs
//!   run in tasks of their own, never inside the loop that watches the session.
//! - **Handoffs** ([`handoff`]). A graceful handoff executes the source-side steps of the core's
//!   [`PartitionMove`](cluster_core::rebalance::PartitionMove): stop intake, drain in-flight work
//!   (up to the drain timeout), leave queued work in the store for the next owner, then cancel,
//!   `on_release`, and release the claim with its token. The new owner's claim succeeds only
//!   after that release, or after a failed owner's lease has expired.
//!
//! Every owned partition's cancellation token is a child of the session's: when the session is
//! lost, every partition's work (those being handed off included) is cancelled at that moment,
//! all at once, whatever hooks are running; `on_release` then runs with reason `lost`, and the
//! claims are left to expire.

mod claims;
mod executor;
mod handoff;
mod planner;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use cluster_core::coordination::{CoordError, Key, KeyPrefix, MemberInfo};
use cluster_core::ids::{FencingToken, NodeId, PartitionId};
use cluster_core::naming::{NamespaceKind, namespace};
use cluster_core::ring::partition_of;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::app::AppHooks;
use crate::context::AppContext;
use crate::error::RuntimeError;
use crate::owned_work::PartitionWork;

/// Member metadata key listing the apps a node runs (comma-separated).
pub(crate) const APPS_META: &str = "apps";
/// Member metadata key set to `true` while a node leaves gracefully.
pub(crate) const LEAVING_META: &str = "leaving";

/// What a node knows of its ring.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RingView {
    /// The target owner of each partition, as last published by the planner.
    pub target: Vec<Option<NodeId>>,
    /// The claimed owner and token of each partition, as the store says.
    pub owners: Vec<Option<(NodeId, FencingToken)>>,
    /// The partitions this node owns and serves, with their tokens.
    pub mine: BTreeMap<PartitionId, FencingToken>,
    /// The partitions this node is handing off.
    pub draining: BTreeSet<PartitionId>,
    /// The version of the target assignment.
    pub version: u64,
}

impl RingView {
    fn empty(partitions: u32) -> Self {
        RingView {
            target: vec![None; partitions as usize],
            owners: vec![None; partitions as usize],
            ..RingView::default()
        }
    }

    /// Whether this node owns exactly what the target gives it, with nothing in motion.
    fn settled_for(&self, node: &NodeId) -> bool {
        let wanted: BTreeSet<PartitionId> = self
            .target
            .iter()
            .enumerate()
            .filter(|(_, t)| t.as_ref() == Some(node))
            .map(|(p, _)| PartitionId(p as u32))
            .collect();
        self.version > 0
            && self.draining.is_empty()
            && wanted == self.mine.keys().copied().collect()
    }
}

/// A handle on an app's ring.
#[derive(Clone)]
pub struct RingHandle {
    node: NodeId,
    partitions: u32,
    pub(crate) view: watch::Receiver<RingView>,
    works: Works,
}

/// The work handles of the partitions a node owns, shared by the driver and the handle.
type Works = Arc<std::sync::Mutex<BTreeMap<PartitionId, PartitionWork>>>;

impl std::fmt::Debug for RingHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingHandle")
            .field("partitions", &self.partitions)
            .field("mine", &self.view.borrow().mine.len())
            .finish()
    }
}

impl RingHandle {
    /// The number of partitions.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// The partition of `key`: depends only on the key and the partition count.
    pub fn partition_for(&self, key: impl AsRef<[u8]>) -> PartitionId {
        partition_of(key.as_ref(), self.partitions)
    }

    /// The node that owns `key`'s partition now (its claim), or the target owner while it is
    /// unclaimed.
    pub fn node_for(&self, key: impl AsRef<[u8]>) -> Option<NodeId> {
        let p = self.partition_for(key).0 as usize;
        let view = self.view.borrow();
        view.owners
            .get(p)
            .cloned()
            .flatten()
            .map(|(n, _)| n)
            .or_else(|| view.target.get(p).cloned().flatten())
    }

    /// Whether this node owns `key`'s partition and takes new work for it.
    pub fn owns_key(&self, key: impl AsRef<[u8]>) -> bool {
        let p = self.partition_for(key);
        let view = self.view.borrow();
        view.mine.contains_key(&p) && !view.draining.contains(&p)
    }

    /// The partitions this node owns, with their tokens.
    pub fn owned_partitions(&self) -> BTreeMap<PartitionId, FencingToken> {
        self.view
            .borrow()
            .mine
            .iter()
            .map(|(p, t)| (*p, *t))
            .collect()
    }

    /// The durable work queue of partition `p`, while this node owns it and takes new work.
    pub fn work(&self, p: PartitionId) -> Option<PartitionWork> {
        if self.view.borrow().draining.contains(&p) {
            return None;
        }
        self.works
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&p)
            .cloned()
    }

    /// The whole view.
    pub fn view(&self) -> RingView {
        self.view.borrow().clone()
    }

    /// Waits until this node owns exactly the partitions the target gives it.
    pub async fn wait_for_partitions(
        &self,
        timeout: Duration,
    ) -> Result<BTreeMap<PartitionId, FencingToken>, RuntimeError> {
        tokio::time::timeout(timeout, self.settled())
            .await
            .map_err(|_| RuntimeError::Timeout(timeout))?
    }

    /// Waits, without a limit, until this node holds exactly its share and nothing drains.
    pub(crate) async fn settled(
        &self,
    ) -> Result<BTreeMap<PartitionId, FencingToken>, RuntimeError> {
        let mut view = self.view.clone();
        loop {
            if view.borrow_and_update().settled_for(&self.node) {
                return Ok(self.owned_partitions());
            }
            if view.changed().await.is_err() {
                return Err(RuntimeError::NotRunning);
            }
        }
    }
}

/// The target assignment as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct AssignmentRecord {
    version: u64,
    owners: Vec<Option<NodeId>>,
}

fn claim_key(ctx: &AppContext, p: u32) -> Result<Key, CoordError> {
    Key::new(
        namespace(ctx.platform(), Some(ctx.app()), NamespaceKind::Claims),
        format!("p-{p}"),
    )
}

fn claims_prefix(ctx: &AppContext) -> Result<KeyPrefix, CoordError> {
    KeyPrefix::new(
        namespace(ctx.platform(), Some(ctx.app()), NamespaceKind::Claims),
        "p-",
    )
}

/// The target assignment sits in the election namespace, next to the planner's term: one store
/// (one bucket on NATS KV), so the planner's write is fenced by its term on every backend.
fn assignment_key(ctx: &AppContext) -> Result<Key, CoordError> {
    Key::new(
        namespace(ctx.platform(), Some(ctx.app()), NamespaceKind::Election),
        "ring-assignment",
    )
}

fn planner_key(ctx: &AppContext) -> Result<Key, CoordError> {
    Key::new(
        namespace(ctx.platform(), Some(ctx.app()), NamespaceKind::Election),
        "ring-planner",
    )
}

fn partition_of_key(key: &Key) -> Option<u32> {
    key.name().strip_prefix("p-")?.parse().ok()
}

/// Settings of a ring driver.
#[derive(Debug, Clone)]
pub(crate) struct RingSettings {
    pub(crate) partitions: u32,
    pub(crate) hook_timeout: Duration,
    pub(crate) drain_timeout: Duration,
    pub(crate) max_concurrent_moves: usize,
    /// Drained for a partition before its graceful release.
    pub(crate) outbox: Option<crate::app::HandoffOutbox>,
}

/// What the driver publishes to its handles.
#[derive(Clone)]
pub(crate) struct RingViewSender {
    pub(crate) view: watch::Sender<RingView>,
    works: Works,
}

/// Creates the handle and the publisher the driver writes to.
pub(crate) fn channel(node: NodeId, partitions: u32) -> (RingViewSender, RingHandle) {
    let (tx, rx) = watch::channel(RingView::empty(partitions));
    let works = Works::default();
    (
        RingViewSender {
            view: tx,
            works: works.clone(),
        },
        RingHandle {
            node,
            partitions,
            view: rx,
            works,
        },
    )
}

/// Runs the ring of one app on this node until `stop` fires, then hands every partition back.
pub(crate) async fn drive(
    ctx: AppContext,
    hooks: Arc<AppHooks>,
    settings: RingSettings,
    members: watch::Receiver<BTreeMap<NodeId, MemberInfo>>,
    publisher: RingViewSender,
    stop: CancellationToken,
) {
    let planner_stop = stop.child_token();
    tokio::spawn(planner::plan(
        ctx.clone(),
        settings.clone(),
        members,
        publisher.view.subscribe(),
        planner_stop.clone(),
    ));
    let mut node = executor::PartitionExecutor::new(ctx, hooks, settings, publisher);
    node.run(&stop).await;
    planner_stop.cancel();
    node.shutdown().await;
}
