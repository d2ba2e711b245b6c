//! Ring mode: partitions owned one at a time, moved safely when nodes come and go.
//!
//! Three parts cooperate, all driven by watches:
//!
//! - **Claims.** Partition `p` is an ownership claim on `p-{p}` in the app's claims namespace,
//!   bound to the owner's lease; its token grows with every new owner.
//! - **The planner.** One node per app (elected on `ring-planner`) computes, with cluster-core's
//!   rebalance planner, the fair split of partitions over the live members that run the app
//!   (weighted; within one partition of each share) and publishes the target assignment at
//!   `assignments/ring`, fenced by its planner term. It publishes the plan one wave at a time
//!   (at most `max_concurrent_moves` partitions changing owner), re-planning as claims move and
//!   members join, leave or fail.
//! - **Each node** reconciles: it claims the partitions the target gives it once they are free,
//!   and hands off those it no longer should own: stop intake, drain in-flight work (up to the
//!   drain timeout), leave queued work in the store for the next owner, cancel, `on_release`,
//!   release the claim with its token. The new owner's claim succeeds only after that release,
//!   or after a failed owner's lease has expired; so a partition never has two owners with
//!   valid tokens, and `on_own` on the new owner runs only after the old owner let go.
//!
//! When the node's session is lost, every partition's cancellation fires at once (at the renew
//! deadline), `on_release` runs with reason `lost`, and the claims are left to expire.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use cluster_core::coordination::{
    CoordError, Coordinator, Expect, Key, KeyPrefix, LeaseId, MemberInfo, OwnershipClaim,
    WatchEvent, WatchStart, WatchStream, WatchTarget,
};
use cluster_core::ids::{FencingToken, NodeId, PartitionId};
use cluster_core::naming::{NamespaceKind, namespace};
use cluster_core::rebalance::{
    Member, OwnershipTable, PartitionOwner, PlanConstraints, RebalancePlanner,
};
use cluster_core::ring::partition_of;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::app::AppHooks;
use crate::audit::AuditKind;
use crate::context::{AppContext, OwnContext, ReleaseContext, ReleaseReason};
use crate::error::RuntimeError;
use crate::hooks::run_optional;
use crate::metric_names;
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
    pub mine: BTreeMap<u32, FencingToken>,
    /// The partitions this node is handing off.
    pub draining: BTreeSet<u32>,
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
        let wanted: BTreeSet<u32> = self
            .target
            .iter()
            .enumerate()
            .filter(|(_, t)| t.as_ref() == Some(node))
            .map(|(p, _)| p as u32)
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
type Works = Arc<std::sync::Mutex<BTreeMap<u32, PartitionWork>>>;

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
        let p = self.partition_for(key).0;
        let view = self.view.borrow();
        view.mine.contains_key(&p) && !view.draining.contains(&p)
    }

    /// The partitions this node owns, with their tokens.
    pub fn owned_partitions(&self) -> BTreeMap<PartitionId, FencingToken> {
        self.view
            .borrow()
            .mine
            .iter()
            .map(|(p, t)| (PartitionId(*p), *t))
            .collect()
    }

    /// The durable work queue of partition `p`, while this node owns it and takes new work.
    pub fn work(&self, p: PartitionId) -> Option<PartitionWork> {
        if self.view.borrow().draining.contains(&p.0) {
            return None;
        }
        self.works
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&p.0)
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
        let mut view = self.view.clone();
        let wait = async {
            loop {
                if view.borrow_and_update().settled_for(&self.node) {
                    return Ok(self.owned_partitions());
                }
                if view.changed().await.is_err() {
                    return Err(RuntimeError::NotRunning);
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| RuntimeError::Timeout(timeout))?
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

fn assignment_key(ctx: &AppContext) -> Result<Key, CoordError> {
    Key::new(
        namespace(ctx.platform(), Some(ctx.app()), NamespaceKind::Assignments),
        "ring",
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

/// A partition this node owns.
struct Owned {
    claim: OwnershipClaim,
    lease: LeaseId,
    cancel: CancellationToken,
    work: PartitionWork,
}

/// What the driver publishes to its handles.
#[derive(Clone)]
pub(crate) struct RingPublisher {
    pub(crate) view: watch::Sender<RingView>,
    works: Works,
}

/// Creates the handle and the publisher the driver writes to.
pub(crate) fn channel(node: NodeId, partitions: u32) -> (RingPublisher, RingHandle) {
    let (tx, rx) = watch::channel(RingView::empty(partitions));
    let works = Works::default();
    (
        RingPublisher {
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

async fn open_watch(
    coord: &Arc<dyn Coordinator>,
    target: WatchTarget,
    stop: &CancellationToken,
) -> Option<WatchStream> {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return None,
            w = coord.watch(target.clone(), WatchStart::Now) => match w {
                Ok(w) => return Some(w),
                Err(e) => {
                    tracing::debug!(error = %e, "ring watch failed; retrying");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            },
        }
    }
}

/// Applies a claims-watch event to the owners table, never going back in revision: a claim
/// this node made (and recorded at once) is newer than a snapshot taken before it, and a delete
/// of an older claim does not erase a newer one.
fn apply_claims(
    coord: &dyn Coordinator,
    owners: &mut [Option<(NodeId, FencingToken)>],
    event: WatchEvent,
) {
    fn newer(current: &Option<(NodeId, FencingToken)>, revision: u64) -> bool {
        current.as_ref().is_some_and(|(_, t)| t.get() > revision)
    }
    match event {
        WatchEvent::Snapshot { entries, revision } => {
            let mut seen: BTreeMap<u32, (NodeId, FencingToken)> = BTreeMap::new();
            for e in entries {
                if let (Some(p), Some(c)) = (partition_of_key(&e.key), coord.claim_from_entry(&e)) {
                    seen.insert(p, (c.owner, c.token));
                }
            }
            for (p, slot) in owners.iter_mut().enumerate() {
                if !newer(slot, revision.0) {
                    *slot = seen.remove(&(p as u32));
                }
            }
        }
        WatchEvent::Put(e) => {
            if let (Some(p), Some(c)) = (partition_of_key(&e.key), coord.claim_from_entry(&e))
                && let Some(slot) = owners.get_mut(p as usize)
                && !newer(slot, c.token.get())
            {
                *slot = Some((c.owner, c.token));
            }
        }
        WatchEvent::Delete { key, revision } => {
            if let Some(p) = partition_of_key(&key)
                && let Some(slot) = owners.get_mut(p as usize)
                && !newer(slot, revision.0)
            {
                *slot = None;
            }
        }
    }
}

/// Runs the ring of one app on this node until `stop` fires.
pub(crate) async fn drive(
    ctx: AppContext,
    hooks: Arc<AppHooks>,
    settings: RingSettings,
    members: watch::Receiver<BTreeMap<NodeId, MemberInfo>>,
    publisher: RingPublisher,
    stop: CancellationToken,
) {
    let planner_stop = stop.child_token();
    tokio::spawn(plan(
        ctx.clone(),
        settings.clone(),
        members,
        publisher.view.subscribe(),
        planner_stop.clone(),
    ));
    let mut node = RingNode {
        ctx,
        hooks,
        settings,
        view_tx: publisher.view,
        works: publisher.works,
        owned: BTreeMap::new(),
        handoffs: JoinSet::new(),
        backoff_until: BTreeMap::new(),
    };
    node.run(&stop).await;
    planner_stop.cancel();
    node.shutdown().await;
}

struct RingNode {
    ctx: AppContext,
    hooks: Arc<AppHooks>,
    settings: RingSettings,
    view_tx: watch::Sender<RingView>,
    works: Works,
    owned: BTreeMap<u32, Owned>,
    handoffs: JoinSet<u32>,
    backoff_until: BTreeMap<u32, tokio::time::Instant>,
}

impl RingNode {
    fn app(&self) -> String {
        self.ctx.app().to_string()
    }

    fn set_work(&self, p: u32, work: Option<PartitionWork>) {
        let mut works = self.works.lock().unwrap_or_else(|e| e.into_inner());
        match work {
            Some(w) => {
                works.insert(p, w);
            }
            None => {
                works.remove(&p);
            }
        }
    }

    async fn run(&mut self, stop: &CancellationToken) {
        let coord = self.ctx.coordinator().clone();
        let (Ok(claims_prefix), Ok(assignment_key)) =
            (claims_prefix(&self.ctx), assignment_key(&self.ctx))
        else {
            return;
        };
        let sessions = self.ctx.shared.sessions.clone();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        'outer: loop {
            let Some(mut claims) =
                open_watch(&coord, WatchTarget::Prefix(claims_prefix.clone()), stop).await
            else {
                break;
            };
            let Some(mut assignment) =
                open_watch(&coord, WatchTarget::Key(assignment_key.clone()), stop).await
            else {
                break;
            };
            loop {
                let session = self.ctx.shared.sessions.current();
                tokio::select! {
                    _ = stop.cancelled() => break 'outer,
                    event = claims.next() => match event {
                        Some(Ok(event)) => self.view_tx.send_modify(|v| apply_claims(coord.as_ref(), &mut v.owners, event)),
                        _ => continue 'outer,
                    },
                    event = assignment.next() => match event {
                        Some(Ok(event)) => self.apply_assignment(event),
                        _ => continue 'outer,
                    },
                    Some(done) = self.handoffs.join_next() => {
                        if let Ok(p) = done {
                            self.handed_off(p);
                        }
                    }
                    _ = async { match &session { Some(s) => { s.lost().await; } None => std::future::pending().await } } => {}
                    _ = sessions.alive(), if session.is_none() => {}
                    _ = tick.tick() => {}
                }
                self.reconcile().await;
            }
        }
    }

    fn apply_assignment(&mut self, event: WatchEvent) {
        let value = match event {
            WatchEvent::Snapshot { entries, .. } => entries.into_iter().next().map(|e| e.value),
            WatchEvent::Put(e) => Some(e.value),
            WatchEvent::Delete { .. } => None,
        };
        let record = value.and_then(|v| serde_json::from_slice::<AssignmentRecord>(&v).ok());
        let partitions = self.settings.partitions as usize;
        self.view_tx.send_modify(|view| match record {
            Some(r) if r.owners.len() == partitions => {
                view.target = r.owners;
                view.version = r.version;
            }
            _ => {}
        });
    }

    /// Drops every partition whose authority is gone: the session was lost or replaced, or the
    /// store no longer shows our claim.
    async fn drop_lost(&mut self) {
        let session = self.ctx.shared.sessions.current();
        let view = self.view_tx.borrow().clone();
        let lost: Vec<u32> = self
            .owned
            .iter()
            .filter(|(p, o)| {
                let session_ok = session.as_ref().is_some_and(|s| s.lease() == &o.lease);
                let store_ok = view
                    .owners
                    .get(**p as usize)
                    .cloned()
                    .flatten()
                    .is_some_and(|(n, t)| n == o.claim.owner && t == o.claim.token);
                let still_held = session_ok && store_ok;
                !still_held && !view.draining.contains(p)
            })
            .map(|(p, _)| *p)
            .collect();
        for p in lost {
            if let Some(owned) = self.owned.remove(&p) {
                self.set_work(p, None);
                owned.cancel.cancel();
                self.view_tx.send_modify(|v| {
                    v.mine.remove(&p);
                });
                self.released(p, &owned, ReleaseReason::Lost).await;
            }
        }
    }

    async fn released(&self, p: u32, owned: &Owned, reason: ReleaseReason) {
        let app = self.app();
        metrics::counter!(metric_names::OWNERSHIP_CHANGES, "reason" => match reason {
            ReleaseReason::Handoff => "handoff",
            ReleaseReason::Lost => "lost",
            ReleaseReason::Shutdown => "released",
        })
        .increment(1);
        self.ctx.shared.audit.record(
            AuditKind::PartitionReleased,
            Some(&app),
            Some(owned.claim.token.get()),
            Some(p),
            Some(format!("{reason:?}").to_lowercase()),
        );
        let rc = ReleaseContext {
            app: self.ctx.clone(),
            partition: PartitionId(p),
            token: owned.claim.token,
            reason,
        };
        let _ = run_optional(
            &self.hooks.on_release,
            &app,
            "on_release",
            rc,
            self.settings.hook_timeout,
        )
        .await;
        metrics::gauge!(metric_names::OWNED_PARTITIONS, "app" => app).set(self.owned.len() as f64);
    }

    async fn reconcile(&mut self) {
        self.drop_lost().await;
        let Some(session) = self.ctx.shared.sessions.current() else {
            return;
        };
        let view = self.view_tx.borrow().clone();
        let me = self.ctx.node().clone();
        let now = tokio::time::Instant::now();
        for p in 0..self.settings.partitions {
            let target = view.target.get(p as usize).cloned().flatten();
            let owner = view.owners.get(p as usize).cloned().flatten();
            let mine = self.owned.contains_key(&p);
            if target.as_ref() == Some(&me) {
                let free = owner.is_none();
                let backing_off = self.backoff_until.get(&p).is_some_and(|t| *t > now);
                if !mine && free && !backing_off && session.is_alive() {
                    self.claim(p, &session).await;
                }
            } else if mine && !view.draining.contains(&p) {
                self.start_handoff(p);
            }
        }
    }

    async fn claim(&mut self, p: u32, session: &coord_client::Session) {
        let Ok(key) = claim_key(&self.ctx, p) else {
            return;
        };
        let claim = match self
            .ctx
            .coordinator()
            .claim(&key, self.ctx.node(), session.lease())
            .await
        {
            Ok(c) => c,
            Err(CoordError::Conflict { .. }) => return,
            Err(e) => {
                tracing::debug!(partition = p, error = %e, "claim failed");
                return;
            }
        };
        let app = self.app();
        // Work items sit next to the claim keys (one bucket on NATS KV), so a fenced write is
        // one store operation on every backend.
        let work_ns = namespace(
            self.ctx.platform(),
            Some(self.ctx.app()),
            NamespaceKind::Claims,
        );
        let work = PartitionWork::new(
            self.ctx.coordinator().clone(),
            work_ns,
            PartitionId(p),
            claim.fence(),
        );
        let cancel = CancellationToken::new();
        let owned = Owned {
            claim: claim.clone(),
            lease: session.lease().clone(),
            cancel: cancel.clone(),
            work: work.clone(),
        };
        self.owned.insert(p, owned);
        self.set_work(p, Some(work.clone()));
        self.view_tx.send_modify(|v| {
            v.mine.insert(p, claim.token);
            if let Some(o) = v.owners.get_mut(p as usize) {
                *o = Some((claim.owner.clone(), claim.token));
            }
        });
        metrics::counter!(metric_names::OWNERSHIP_CHANGES, "reason" => "claimed").increment(1);
        metrics::gauge!(metric_names::OWNED_PARTITIONS, "app" => app.clone())
            .set(self.owned.len() as f64);
        self.ctx.shared.audit.record(
            AuditKind::PartitionOwned,
            Some(&app),
            Some(claim.token.get()),
            Some(p),
            None,
        );
        let oc = OwnContext {
            app: self.ctx.clone(),
            partition: PartitionId(p),
            token: claim.token,
            fence: claim.fence(),
            cancel,
            work,
        };
        if run_optional(
            &self.hooks.on_own,
            &app,
            "on_own",
            oc,
            self.settings.hook_timeout,
        )
        .await
        .is_err()
        {
            // A partition whose on_own failed is handed back rather than half-served.
            self.backoff_until
                .insert(p, tokio::time::Instant::now() + Duration::from_secs(2));
            if let Some(owned) = self.owned.remove(&p) {
                self.set_work(p, None);
                owned.cancel.cancel();
                self.view_tx.send_modify(|v| {
                    v.mine.remove(&p);
                });
                let _ = self.ctx.coordinator().release(&owned.claim).await;
                self.released(p, &owned, ReleaseReason::Handoff).await;
            }
        }
    }

    /// Hands partition `p` off in the background: stop intake, drain, cancel, on_release, release.
    fn start_handoff(&mut self, p: u32) {
        let Some(owned) = self.owned.get(&p) else {
            return;
        };
        self.view_tx.send_modify(|v| {
            v.draining.insert(p);
        });
        let work = owned.work.clone();
        let cancel = owned.cancel.clone();
        let claim = owned.claim.clone();
        let drain = self.settings.drain_timeout;
        let outbox = self.settings.outbox.clone();
        let ctx = self.ctx.clone();
        let hooks = self.hooks.clone();
        let hook_timeout = self.settings.hook_timeout;
        self.handoffs.spawn(async move {
            let app = ctx.app().to_string();
            if !work.drain(drain).await {
                tracing::warn!(app, partition = p, "drain timed out; unfinished items pass to the next owner");
            }
            drain_outbox(&app, outbox.as_ref(), p, drain).await;
            cancel.cancel();
            metrics::counter!(metric_names::OWNERSHIP_CHANGES, "reason" => "handoff").increment(1);
            ctx.shared.audit.record(
                AuditKind::PartitionReleased,
                Some(&app),
                Some(claim.token.get()),
                Some(p),
                Some("handoff".into()),
            );
            let rc = ReleaseContext {
                app: ctx.clone(),
                partition: PartitionId(p),
                token: claim.token,
                reason: ReleaseReason::Handoff,
            };
            let _ = run_optional(&hooks.on_release, &app, "on_release", rc, hook_timeout).await;
            if let Err(e) = ctx.coordinator().release(&claim).await {
                tracing::warn!(app, partition = p, error = %e, "release failed; the claim ends with the lease");
            }
            p
        });
    }

    /// A handoff task finished: the partition is released and no longer this node's.
    fn handed_off(&mut self, p: u32) {
        self.owned.remove(&p);
        self.set_work(p, None);
        self.view_tx.send_modify(|v| {
            v.mine.remove(&p);
            v.draining.remove(&p);
        });
    }

    async fn shutdown(&mut self) {
        // Handoffs in flight finish (each is bounded by the drain and hook timeouts): aborting
        // one after its on_release ran would run on_release again below.
        while let Some(done) = self.handoffs.join_next().await {
            if let Ok(p) = done {
                self.handed_off(p);
            }
        }
        let owned = std::mem::take(&mut self.owned);
        for (p, o) in owned {
            // As in a handoff: stop intake, drain, then cancel the owner's work.
            self.set_work(p, None);
            self.view_tx.send_modify(|v| {
                v.mine.remove(&p);
                v.draining.remove(&p);
            });
            o.work.drain(self.settings.drain_timeout).await;
            drain_outbox(
                &self.app(),
                self.settings.outbox.as_ref(),
                p,
                self.settings.drain_timeout,
            )
            .await;
            o.cancel.cancel();
            let _ = self.ctx.coordinator().release(&o.claim).await;
            self.released(p, &o, ReleaseReason::Shutdown).await;
        }
    }
}

/// Waits until the events of partition `p` have left the app's outbox, if it has one. On a
/// timeout the release goes on (the events stay in the outbox and reach consumers later, where
/// the next owner's larger epoch makes them `stale_epoch` dead letters, not losses).
async fn drain_outbox(
    app: &str,
    outbox: Option<&crate::app::HandoffOutbox>,
    p: u32,
    limit: Duration,
) {
    let Some(outbox) = outbox else { return };
    if let Err(e) = outbox.0.drain_shard(PartitionId(p), limit).await {
        metrics::counter!(metric_names::OUTBOX_DRAIN_TIMEOUTS, "app" => app.to_owned())
            .increment(1);
        tracing::warn!(app, partition = p, error = %e, "outbox not drained before the release");
    }
}

/// The members that may own partitions of `app`, as the planner sees them.
fn ring_members(app: &str, members: &BTreeMap<NodeId, MemberInfo>) -> Vec<Member> {
    members
        .values()
        .filter(|m| {
            m.metadata
                .get(APPS_META)
                .is_some_and(|apps| apps.split(',').any(|a| a == app))
        })
        .map(|m| {
            if m.metadata.get(LEAVING_META).is_some_and(|v| v == "true") {
                Member::leaving(m.node.clone())
            } else {
                let weight = m
                    .metadata
                    .get(&format!("weight.{app}"))
                    .and_then(|w| w.parse().ok())
                    .unwrap_or(1);
                Member::active(m.node.clone(), weight)
            }
        })
        .collect()
}

/// The next target, planned from the previous one so that a fair target stays put.
///
/// The base is the previous target (or the current owners when there is none). The planner's
/// minimal plan from that base moves only what membership requires: partitions of failed or
/// leaving nodes, unowned ones, and the fewest needed to even out the load. Unowned and failed
/// partitions are assigned at once; handoffs (moves away from a live owner) are capped at
/// `max_moves` in flight, counting those already under way.
fn next_target(
    planner: &RebalancePlanner,
    previous: Option<&[Option<NodeId>]>,
    owners: &[Option<(NodeId, FencingToken)>],
    members: &[Member],
    max_moves: usize,
) -> Option<Vec<Option<NodeId>>> {
    let base: Vec<Option<NodeId>> = match previous {
        Some(p) if p.len() == owners.len() => p.to_vec(),
        _ => owners.iter().map(|o| o.clone().map(|(n, _)| n)).collect(),
    };
    let table = OwnershipTable::from_owners(base.iter().zip(owners).map(|(target, owner)| {
        target.clone().map(|node| PartitionOwner {
            token: owner
                .as_ref()
                .filter(|(n, _)| *n == node)
                .map_or(FencingToken::ZERO, |(_, t)| *t),
            node,
        })
    }));
    let plan = planner.plan(&table, members).ok()?;
    let live = |node: &NodeId| members.iter().any(|m| &m.id == node);
    let is_handoff = |p: usize, to: &NodeId| {
        owners[p]
            .as_ref()
            .is_some_and(|(owner, _)| owner != to && live(owner))
    };
    let mut target = base;
    let mut in_motion = target
        .iter()
        .enumerate()
        .filter(|(p, t)| t.as_ref().is_some_and(|t| is_handoff(*p, t)))
        .count();
    for m in plan.moves() {
        let p = m.partition.0 as usize;
        if p >= target.len() {
            continue;
        }
        let handoff = is_handoff(p, &m.to);
        if handoff && in_motion >= max_moves {
            continue;
        }
        target[p] = Some(m.to.clone());
        if handoff {
            in_motion += 1;
        }
    }
    Some(target)
}

/// The planner: while this node leads `ring-planner`, publish the next target on every change.
async fn plan(
    ctx: AppContext,
    settings: RingSettings,
    mut members: watch::Receiver<BTreeMap<NodeId, MemberInfo>>,
    mut view: watch::Receiver<RingView>,
    stop: CancellationToken,
) {
    let app = ctx.app().to_string();
    let (Ok(key), Ok(target_key)) = (planner_key(&ctx), assignment_key(&ctx)) else {
        return;
    };
    let Ok(planner) = RebalancePlanner::new(PlanConstraints {
        max_concurrent_moves: settings.max_concurrent_moves.max(1),
    }) else {
        return;
    };
    loop {
        let session = tokio::select! {
            _ = stop.cancelled() => return,
            s = ctx.shared.sessions.alive() => s,
        };
        let term = tokio::select! {
            _ = stop.cancelled() => return,
            _ = session.lost() => continue,
            t = ctx.coordinator().campaign(&key, ctx.node().as_str(), session.lease()) => t,
        };
        let Ok(term) = term else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        tracing::debug!(app, token = %term.token, "ring planner elected");
        // The planner is the only writer while it leads, so its own last target is the base of
        // the next one (the watch of the assignment may lag its own writes).
        let mut last: Option<Vec<Option<NodeId>>> = match stored(&ctx, &target_key).await {
            Ok(record) => record.map(|r| r.owners),
            Err(_) => continue,
        };
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            if !session.is_alive() {
                break;
            }
            let owners = view.borrow_and_update().owners.clone();
            let eligible = ring_members(&app, &members.borrow_and_update());
            let cap = settings.max_concurrent_moves.max(1);
            if let Some(target) = next_target(&planner, last.as_deref(), &owners, &eligible, cap)
                && last.as_ref() != Some(&target)
            {
                match publish(&ctx, &target_key, &term.fence(), target.clone()).await {
                    Ok(()) => last = Some(target),
                    Err(e) => tracing::debug!(app, error = %e, "publishing the assignment failed"),
                }
            }
            tokio::select! {
                _ = stop.cancelled() => {
                    let _ = ctx.coordinator().resign(&term).await;
                    return;
                }
                _ = session.lost() => break,
                _ = members.changed() => {}
                _ = view.changed() => {}
                _ = tick.tick() => {}
            }
        }
    }
}

/// The stored target assignment, if any.
async fn stored(ctx: &AppContext, key: &Key) -> Result<Option<AssignmentRecord>, CoordError> {
    Ok(ctx
        .coordinator()
        .get(key)
        .await?
        .and_then(|e| serde_json::from_slice(&e.value).ok()))
}

/// Writes the target if it changed, fenced by the planner's term (CAS where the backend has
/// no fenced writes).
async fn publish(
    ctx: &AppContext,
    key: &Key,
    fence: &cluster_core::coordination::Fence,
    owners: Vec<Option<NodeId>>,
) -> Result<(), CoordError> {
    let coord = ctx.coordinator();
    let current = coord.get(key).await?;
    let previous = current
        .as_ref()
        .and_then(|e| serde_json::from_slice::<AssignmentRecord>(&e.value).ok());
    if previous.as_ref().is_some_and(|r| r.owners == owners) {
        return Ok(());
    }
    let record = AssignmentRecord {
        version: previous.map_or(1, |r| r.version + 1),
        owners,
    };
    let value = serde_json::to_vec(&record).map_err(|e| CoordError::bad_request(e.to_string()))?;
    if coord.capabilities().put_if_held {
        coord.put_if_held(key, value, fence).await?;
    } else {
        let expect = current.map_or(Expect::Absent, |e| Expect::Revision(e.revision));
        coord.put(key, value, expect, None).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: &str) -> NodeId {
        NodeId::new(n).unwrap()
    }

    #[test]
    fn failed_owner_partitions_are_reassigned_at_once_and_a_fair_target_stays_put() {
        let planner = RebalancePlanner::new(PlanConstraints {
            max_concurrent_moves: 2,
        })
        .unwrap();
        let (a, b, c) = (node("a"), node("b"), node("c"));
        let previous: Vec<Option<NodeId>> =
            (0..6).map(|p| Some([&a, &b, &c][p % 3].clone())).collect();
        let owners: Vec<Option<(NodeId, FencingToken)>> = previous
            .iter()
            .map(|t| {
                t.clone()
                    .filter(|n| *n != a)
                    .map(|n| (n, FencingToken::new(5)))
            })
            .collect();
        let members = [Member::active(b.clone(), 1), Member::active(c.clone(), 1)];
        let target = next_target(&planner, Some(&previous), &owners, &members, 2).unwrap();
        assert!(target.iter().all(|t| t.as_ref() != Some(&a)), "{target:?}");
        for p in [1usize, 2, 4, 5] {
            assert_eq!(
                target[p], previous[p],
                "partition {p} of a live owner moved"
            );
        }
        let again = next_target(&planner, Some(&target), &owners, &members, 2).unwrap();
        assert_eq!(again, target, "a fair target must be stable");
    }

    #[test]
    fn handoffs_are_capped_but_unowned_partitions_are_not() {
        let planner = RebalancePlanner::new(PlanConstraints {
            max_concurrent_moves: 16,
        })
        .unwrap();
        let (a, b) = (node("a"), node("b"));
        let owners: Vec<Option<(NodeId, FencingToken)>> = (0..10)
            .map(|_| Some((a.clone(), FencingToken::new(1))))
            .collect();
        let previous: Vec<Option<NodeId>> = (0..10).map(|_| Some(a.clone())).collect();
        let members = [Member::active(a.clone(), 1), Member::active(b.clone(), 1)];
        let target = next_target(&planner, Some(&previous), &owners, &members, 2).unwrap();
        assert_eq!(
            target.iter().filter(|t| t.as_ref() == Some(&b)).count(),
            2,
            "{target:?}"
        );
        let unowned: Vec<Option<(NodeId, FencingToken)>> = vec![None; 10];
        let target = next_target(&planner, None, &unowned, &members, 2).unwrap();
        assert!(target.iter().all(Option::is_some));
    }
}
