//! The ring executor: observes, asks cluster-core's reconciler what to do, and does it.
//!
//! The loop only watches (claims, the target, the session, finished tasks) and executes
//! [`RingCommand`]s; every hook and every handoff runs in a task of its own, so nothing the app
//! does can keep the loop from seeing a change. Cancellation of a partition's work does not
//! depend on the loop at all: each partition's token is a child of the session's.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cluster_core::coordination::{CoordError, LeaseId, OwnershipClaim, WatchEvent, WatchTarget};
use cluster_core::ids::{FencingToken, NodeId, PartitionId};
use cluster_core::naming::{NamespaceKind, namespace};
use cluster_core::rebalance::{HeldPartition, RingCommand, RingObservation, SeenClaim, reconcile};
use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::claims::{apply_claims, open_watch};
use super::handoff::{Leaving, end_claim_in_outbox, run_release_hook};
use super::{AssignmentRecord, RingSettings, RingView, RingViewSender, Works};
use super::{assignment_key, claim_key, claims_prefix};
use crate::app::AppHooks;
use crate::audit::{AuditKind, AuditRecord};
use crate::context::{AppContext, OwnContext, ReleaseReason};
use crate::hooks::run_optional;
use crate::metric_definitions;
use crate::owned_work::PartitionWork;

/// How long a partition whose `on_own` failed is not claimed again by this node.
const OWN_FAILED_BACKOFF: Duration = Duration::from_secs(2);

/// A partition this node holds.
struct Owned {
    claim: OwnershipClaim,
    cancel: CancellationToken,
    work: PartitionWork,
    lost: Arc<AtomicBool>,
    own_done: CancellationToken,
    released: CancellationToken,
    handing_off: bool,
}

/// What a task reports when it ends.
enum Done {
    /// A hook ran; nothing to do.
    Hook,
    /// `on_own` failed: hand the partition back rather than half-serve it.
    OwnFailed(u32, FencingToken),
    /// The partition left this node (its leaving steps ran).
    Left(u32, FencingToken),
}

/// Carries out the reconciler's decisions for one ring app on this node: claims, handoffs,
/// hooks and the cancellation of each ownership.
pub(super) struct PartitionExecutor {
    ctx: AppContext,
    hooks: Arc<AppHooks>,
    settings: RingSettings,
    view_tx: watch::Sender<RingView>,
    works: Works,
    /// The claim of each partition, as the store shows it.
    claims: Vec<Option<OwnershipClaim>>,
    owned: BTreeMap<u32, Owned>,
    /// The newest token of each partition this node let go of.
    retired: BTreeMap<u32, FencingToken>,
    /// Per partition, fires when the last ownership's `on_release` has run.
    last_release: BTreeMap<u32, CancellationToken>,
    tasks: JoinSet<Done>,
    backoff_until: BTreeMap<u32, tokio::time::Instant>,
}

impl PartitionExecutor {
    pub(super) fn new(
        ctx: AppContext,
        hooks: Arc<AppHooks>,
        settings: RingSettings,
        publisher: RingViewSender,
    ) -> PartitionExecutor {
        PartitionExecutor {
            claims: vec![None; settings.partitions as usize],
            ctx,
            hooks,
            settings,
            view_tx: publisher.view,
            works: publisher.works,
            owned: BTreeMap::new(),
            retired: BTreeMap::new(),
            last_release: BTreeMap::new(),
            tasks: JoinSet::new(),
            backoff_until: BTreeMap::new(),
        }
    }

    fn app(&self) -> String {
        self.ctx.app().to_string()
    }

    fn set_work(&self, p: u32, work: Option<PartitionWork>) {
        let mut works = self.works.lock().unwrap_or_else(|e| e.into_inner());
        match work {
            Some(w) => {
                works.insert(PartitionId(p), w);
            }
            None => {
                works.remove(&PartitionId(p));
            }
        }
    }

    /// Publishes the claims as the view's owners.
    fn publish_owners(&self) {
        let owners: Vec<Option<(NodeId, FencingToken)>> = self
            .claims
            .iter()
            .map(|c| c.as_ref().map(|c| (c.owner.clone(), c.token)))
            .collect();
        self.view_tx.send_modify(|v| v.owners = owners);
    }

    fn owned_gauge(&self) {
        metrics::gauge!(metric_definitions::OWNED_PARTITIONS, "app" => self.app())
            .set(self.owned.len() as f64);
    }

    pub(super) async fn run(&mut self, stop: &CancellationToken) {
        let coord = self.ctx.coordinator().clone();
        let (Ok(claims_prefix), Ok(assignment_key)) =
            (claims_prefix(&self.ctx), assignment_key(&self.ctx))
        else {
            return;
        };
        let sessions = self.ctx.shared.sessions.clone();
        let mut tick = tokio::time::interval(crate::timing::pace::RECONCILE_TICK);
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
                let session = sessions.current();
                tokio::select! {
                    _ = stop.cancelled() => break 'outer,
                    event = claims.next() => match event {
                        Some(Ok(event)) => {
                            apply_claims(coord.as_ref(), &mut self.claims, event);
                            self.publish_owners();
                        }
                        _ => continue 'outer,
                    },
                    event = assignment.next() => match event {
                        Some(Ok(event)) => self.apply_assignment(event),
                        _ => continue 'outer,
                    },
                    Some(done) = self.tasks.join_next() => {
                        if let Ok(done) = done {
                            self.finished(done);
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

    /// Asks the core what to do about every partition and does it.
    async fn reconcile(&mut self) {
        let session = self.ctx.shared.sessions.current();
        let lease: Option<LeaseId> = session.as_ref().map(|s| s.lease().clone());
        let seen: Vec<Option<SeenClaim>> = self
            .claims
            .iter()
            .map(|c| {
                c.as_ref().map(|c| SeenClaim {
                    owner: c.owner.clone(),
                    token: c.token,
                    lease: c.lease.clone(),
                })
            })
            .collect();
        let held: BTreeMap<u32, HeldPartition> = self
            .owned
            .iter()
            .map(|(p, o)| {
                (
                    *p,
                    HeldPartition {
                        token: o.claim.token,
                        lease: o.claim.lease.clone(),
                        handing_off: o.handing_off,
                    },
                )
            })
            .collect();
        let now = coord_client::instant_now();
        self.backoff_until.retain(|_, until| *until > now);
        let backing_off: BTreeSet<u32> = self.backoff_until.keys().copied().collect();
        let target = self.view_tx.borrow().target.clone();
        let me = self.ctx.node().clone();
        let commands = reconcile(&RingObservation {
            me: &me,
            session: lease.as_ref(),
            target: &target,
            claims: &seen,
            held: &held,
            backing_off: &backing_off,
            retired: &self.retired,
        });
        for command in commands {
            match command {
                RingCommand::Drop { partition, token } => self.drop_lost(partition.0, token),
                RingCommand::Cut { partition } => {
                    if let Some(o) = self.owned.get(&partition.0) {
                        o.lost.store(true, Ordering::SeqCst);
                        o.cancel.cancel();
                    }
                }
                RingCommand::Claim { partition } => {
                    if let Some(session) = &session {
                        self.claim(partition.0, session).await;
                    }
                }
                RingCommand::Adopt { partition, token } => {
                    let p = partition.0;
                    if let (Some(session), Some(claim)) = (&session, self.seen_claim(p, token)) {
                        tracing::info!(app = %self.ctx.app(), partition = p, token = %token, "adopting a claim whose reply was lost");
                        self.take(p, claim, session);
                    }
                }
                RingCommand::ReleaseStray { partition, token } => {
                    self.release_stray(partition.0, token).await;
                }
                RingCommand::Handoff {
                    partition,
                    token: _,
                    to,
                } => self.leave(partition.0, Some(to), ReleaseReason::Handoff),
                _ => {}
            }
        }
    }

    fn seen_claim(&self, p: u32, token: FencingToken) -> Option<OwnershipClaim> {
        self.claims
            .get(p as usize)
            .cloned()
            .flatten()
            .filter(|c| c.token == token)
    }

    /// The authority over `p` is gone: its work stops now, and `on_release(lost)` follows.
    fn drop_lost(&mut self, p: u32, token: FencingToken) {
        let Some(o) = self.owned.remove(&p) else {
            return;
        };
        o.lost.store(true, Ordering::SeqCst);
        o.cancel.cancel();
        self.retired.insert(p, token);
        self.set_work(p, None);
        self.view_tx.send_modify(|v| {
            v.mine.remove(&PartitionId(p));
            v.draining.remove(&PartitionId(p));
        });
        self.owned_gauge();
        // A partition being handed off reports its own end (as lost) from its handoff task.
        if !o.handing_off {
            let (ctx, hooks, timeout) = (
                self.ctx.clone(),
                self.hooks.clone(),
                self.settings.hook_timeout,
            );
            let (outbox, limit) = (self.settings.outbox.clone(), self.settings.drain_timeout);
            self.tasks.spawn(async move {
                run_release_hook(
                    &ctx,
                    &hooks,
                    p,
                    token,
                    ReleaseReason::Lost,
                    &o.own_done,
                    timeout,
                )
                .await;
                if let Some(outbox) = &outbox {
                    // The old owner's late publishes under this token are refused from now on.
                    end_claim_in_outbox(ctx.app().as_ref(), outbox, p, token, limit, false).await;
                }
                o.released.cancel();
                Done::Hook
            });
        }
    }

    async fn claim(&mut self, p: u32, session: &coord_client::Session) {
        let Ok(key) = claim_key(&self.ctx, p) else {
            return;
        };
        match self
            .ctx
            .coordinator()
            .claim(&key, self.ctx.node(), session.lease())
            .await
        {
            Ok(claim) => self.take(p, claim, session),
            Err(CoordError::Conflict { .. }) => {}
            // Maybe applied: the watch shows the claim under our lease then, and it is adopted.
            Err(e) => tracing::debug!(partition = p, error = %e, "claim failed"),
        }
    }

    /// Holds and serves `p` with `claim`: its work is cancelled with the session.
    fn take(&mut self, p: u32, claim: OwnershipClaim, session: &coord_client::Session) {
        if !session.is_alive() || &claim.lease != session.lease() {
            return;
        }
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
        let cancel = session.child_token();
        let own_done = CancellationToken::new();
        let released = CancellationToken::new();
        let previous = self.last_release.insert(p, released.clone());
        self.owned.insert(
            p,
            Owned {
                claim: claim.clone(),
                cancel: cancel.clone(),
                work: work.clone(),
                lost: Arc::new(AtomicBool::new(false)),
                own_done: own_done.clone(),
                released,
                handing_off: false,
            },
        );
        self.set_work(p, Some(work.clone()));
        if let Some(slot) = self.claims.get_mut(p as usize) {
            *slot = Some(claim.clone());
        }
        self.publish_owners();
        self.view_tx.send_modify(|v| {
            v.mine.insert(PartitionId(p), claim.token);
        });
        metrics::counter!(metric_definitions::OWNERSHIP_CHANGES, "reason" => "claimed")
            .increment(1);
        self.owned_gauge();
        self.ctx.shared.audit.record(
            AuditRecord::new(AuditKind::PartitionOwned)
                .app(&app)
                .token(claim.token)
                .partition(PartitionId(p)),
        );
        let oc = OwnContext {
            app: self.ctx.clone(),
            partition: PartitionId(p),
            token: claim.token,
            fence: claim.fence(),
            cancel: cancel.clone(),
            work,
        };
        let hooks = self.hooks.clone();
        let timeout = self.settings.hook_timeout;
        let token = claim.token;
        self.tasks.spawn(async move {
            // on_own and on_release alternate strictly per partition: the previous ownership's
            // on_release has run before this on_own starts.
            if let Some(previous) = previous {
                previous.cancelled().await;
            }
            let ok = cancel.is_cancelled()
                || run_optional(&hooks.on_own, &app, "on_own", oc, timeout)
                    .await
                    .is_ok();
            own_done.cancel();
            if ok {
                Done::Hook
            } else {
                Done::OwnFailed(p, token)
            }
        });
    }

    /// Releases a claim of ours that we neither hold nor want (its reply or an earlier release
    /// was lost): always safe, the store deletes it only while it carries `token`.
    async fn release_stray(&mut self, p: u32, token: FencingToken) {
        let Some(claim) = self.seen_claim(p, token) else {
            return;
        };
        self.retired.insert(p, token);
        match self.ctx.coordinator().release(&claim).await {
            Ok(()) | Err(CoordError::StaleToken { .. }) => {
                tracing::info!(app = %self.ctx.app(), partition = p, token = %token, "released a stray claim");
            }
            Err(e) => tracing::debug!(partition = p, error = %e, "stray release failed; retried"),
        }
    }

    /// Starts the leaving steps of `p` in a task: stop intake, drain, cancel, on_release, release.
    fn leave(&mut self, p: u32, to: Option<NodeId>, reason: ReleaseReason) {
        let Some(o) = self.owned.get_mut(&p) else {
            return;
        };
        if o.handing_off {
            return;
        }
        o.handing_off = true;
        let leaving = Leaving {
            ctx: self.ctx.clone(),
            hooks: self.hooks.clone(),
            claim: o.claim.clone(),
            partition: p,
            work: o.work.clone(),
            cancel: o.cancel.clone(),
            lost: o.lost.clone(),
            own_done: o.own_done.clone(),
            released: o.released.clone(),
            to,
            reason,
            drain_timeout: self.settings.drain_timeout,
            hook_timeout: self.settings.hook_timeout,
            outbox: self.settings.outbox.clone(),
        };
        self.view_tx.send_modify(|v| {
            v.draining.insert(PartitionId(p));
        });
        self.tasks.spawn(async move {
            let (p, token) = leaving.run().await;
            Done::Left(p, token)
        });
    }

    fn finished(&mut self, done: Done) {
        match done {
            Done::Hook => {}
            Done::OwnFailed(p, token) => {
                if self
                    .owned
                    .get(&p)
                    .is_some_and(|o| o.claim.token == token && !o.handing_off)
                {
                    self.backoff_until
                        .insert(p, coord_client::instant_now() + OWN_FAILED_BACKOFF);
                    self.leave(p, None, ReleaseReason::Handoff);
                }
            }
            Done::Left(p, token) => {
                if self.owned.get(&p).is_some_and(|o| o.claim.token == token) {
                    self.owned.remove(&p);
                    self.retired.insert(p, token);
                    self.set_work(p, None);
                    self.owned_gauge();
                }
                if !self.owned.contains_key(&p) {
                    self.view_tx.send_modify(|v| {
                        v.mine.remove(&PartitionId(p));
                        v.draining.remove(&PartitionId(p));
                    });
                }
            }
        }
    }

    /// Hands every partition back at once: those not leaving yet start their leaving steps now
    /// (cancel, then `on_release`, then release, each after a drain bounded by the drain
    /// timeout), and every task, handoffs in flight included, runs to its end.
    pub(super) async fn shutdown(&mut self) {
        let staying: Vec<u32> = self
            .owned
            .iter()
            .filter(|(_, o)| !o.handing_off)
            .map(|(p, _)| *p)
            .collect();
        for p in staying {
            self.set_work(p, None);
            self.view_tx.send_modify(|v| {
                v.mine.remove(&PartitionId(p));
            });
            self.leave(p, None, ReleaseReason::Shutdown);
        }
        while let Some(done) = self.tasks.join_next().await {
            if let Ok(done) = done {
                self.finished(done);
            }
        }
    }
}
