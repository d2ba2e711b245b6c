//! A partition leaving this node: the source-side steps of cluster-core's `PartitionMove`.
//!
//! The steps come from [`PartitionMove::steps`], the script the planner's safety property test
//! runs, filtered to those this node performs: stop intake, drain, transfer queued work (a no-op
//! here: queued items already live in the store next to the claim, and the next owner lists
//! them), release. Releasing is, in this order: cancel the partition's work, wait for `on_own`
//! to have returned, `on_release`, then the store release with the claim's token.
//!
//! With an outbox (`drain_outbox_on_handoff`), the release also ends the claim in the outbox
//! before the store release: from then on the publisher refuses every event of the partition
//! under this token (a task of the old owner that publishes late is told `ClaimExpired`), and the
//! outbox is drained once more of what reached it before that.
//!
//! The drain is bounded by the drain timeout and by the node's authority: the partition's
//! cancellation token is a child of the session's, so a session lost mid-drain ends the drain
//! at once, and the release step then reports the partition `lost` and releases nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cluster_core::coordination::{CoordError, OwnershipClaim};
use cluster_core::ids::{FencingToken, NodeId, PartitionId};
use cluster_core::rebalance::{MoveKind, PartitionMove, PartitionOwner, StepAction};
use tokio_util::sync::CancellationToken;

use crate::app::{AppHooks, HandoffOutbox};
use crate::audit::{AuditKind, AuditRecord};
use crate::context::{AppContext, ReleaseContext, ReleaseReason};
use crate::hooks::run_optional;
use crate::metric_definitions;
use crate::owned_work::PartitionWork;

/// What a partition's leaving needs: its claim, work, and the signals around its hooks.
pub(super) struct Leaving {
    pub(super) ctx: AppContext,
    pub(super) hooks: Arc<AppHooks>,
    pub(super) claim: OwnershipClaim,
    pub(super) partition: u32,
    pub(super) work: PartitionWork,
    /// The partition's cancellation (a child of the session's).
    pub(super) cancel: CancellationToken,
    /// Set when the executor learnt the claim is no longer ours (session or store).
    pub(super) lost: Arc<AtomicBool>,
    /// Fires once `on_own` has returned.
    pub(super) own_done: CancellationToken,
    /// Fired here once `on_release` has run.
    pub(super) released: CancellationToken,
    /// The next owner, if known (a rebalance); none on shutdown or a failed `on_own`.
    pub(super) to: Option<NodeId>,
    /// Why it leaves, while the node still holds it.
    pub(super) reason: ReleaseReason,
    pub(super) drain_timeout: Duration,
    pub(super) hook_timeout: Duration,
    pub(super) outbox: Option<HandoffOutbox>,
}

impl Leaving {
    /// Runs this node's steps of the move, in order. Returns the partition and its token.
    pub(super) async fn run(self) -> (u32, FencingToken) {
        let me = self.ctx.node().clone();
        let kind = match self.reason {
            ReleaseReason::Shutdown => MoveKind::Leave,
            _ => MoveKind::Rebalance,
        };
        let plan = PartitionMove {
            partition: PartitionId(self.partition),
            from: Some(PartitionOwner {
                node: me.clone(),
                token: self.claim.token,
            }),
            to: self.to.clone().unwrap_or_else(|| me.clone()),
            kind,
        };
        for step in plan.steps().filter(|s| s.actor == &me) {
            match step.action {
                StepAction::StopIntake => self.work.close_intake(),
                StepAction::Drain => self.drain().await,
                // Queued items stay in the store under the partition, for the next owner.
                StepAction::TransferQueued => {}
                StepAction::Release { token } => self.release(token).await,
                // The receiving node's steps.
                StepAction::AwaitLeaseExpiry { .. }
                | StepAction::Claim { .. }
                | StepAction::AdoptQueued => {}
            }
        }
        (self.partition, self.claim.token)
    }

    async fn drain(&self) {
        let app = self.ctx.app().to_string();
        let p = self.partition;
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => return,
            drained = self.work.drain(self.drain_timeout) => if !drained {
                tracing::warn!(app, partition = p, "drain timed out; unfinished items pass to the next owner");
            },
        }
        if let Some(outbox) = &self.outbox {
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => {}
                () = drain_outbox(&app, outbox, p, self.drain_timeout) => {}
            }
        }
    }

    /// Whether this node still holds the claim: nothing said it was lost, and the session it
    /// was made under is the live one.
    fn still_held(&self) -> bool {
        !self.lost.load(Ordering::SeqCst)
            && self
                .ctx
                .shared
                .sessions
                .current()
                .is_some_and(|s| s.lease() == &self.claim.lease)
    }

    async fn release(&self, token: FencingToken) {
        self.cancel.cancel();
        let held = self.still_held();
        let reason = if held {
            self.reason
        } else {
            ReleaseReason::Lost
        };
        run_release_hook(
            &self.ctx,
            &self.hooks,
            self.partition,
            token,
            reason,
            &self.own_done,
            self.hook_timeout,
        )
        .await;
        if let Some(outbox) = &self.outbox {
            end_claim_in_outbox(
                self.ctx.app().as_ref(),
                outbox,
                self.partition,
                token,
                self.drain_timeout,
                held,
            )
            .await;
        }
        self.released.cancel();
        if held {
            match self.ctx.coordinator().release(&self.claim).await {
                Ok(()) | Err(CoordError::StaleToken { .. }) => {}
                Err(e) => tracing::warn!(
                    app = %self.ctx.app(),
                    partition = self.partition,
                    error = %e,
                    "release failed; it is retried while the claim shows under this node's lease"
                ),
            }
        }
    }
}

/// Records the end of an ownership and runs `on_release`, once `on_own` has returned (the two
/// alternate strictly per partition). The partition's work was cancelled before this runs.
pub(super) async fn run_release_hook(
    ctx: &AppContext,
    hooks: &AppHooks,
    partition: u32,
    token: FencingToken,
    reason: ReleaseReason,
    own_done: &CancellationToken,
    hook_timeout: Duration,
) {
    let app = ctx.app().to_string();
    own_done.cancelled().await;
    metrics::counter!(metric_definitions::OWNERSHIP_CHANGES, "reason" => match reason {
        ReleaseReason::Handoff => "handoff",
        ReleaseReason::Lost => "lost",
        ReleaseReason::Shutdown => "released",
    })
    .increment(1);
    ctx.shared.audit.record(
        AuditRecord::new(AuditKind::PartitionReleased)
            .app(&app)
            .token(token)
            .partition(PartitionId(partition))
            .detail(format!("{reason:?}").to_lowercase()),
    );
    let rc = ReleaseContext {
        app: ctx.clone(),
        partition: PartitionId(partition),
        token,
        reason,
    };
    let _ = run_optional(&hooks.on_release, &app, "on_release", rc, hook_timeout).await;
}

/// Ends the ownership `token` of partition `p` in the outbox: the publisher refuses the
/// partition's events under that token from now on, and waits for publishes in flight. While
/// the claim is still held (a graceful release), what reached the outbox before that is drained.
pub(super) async fn end_claim_in_outbox(
    app: &str,
    outbox: &HandoffOutbox,
    p: u32,
    token: FencingToken,
    limit: Duration,
    drain: bool,
) {
    if let Err(e) = outbox.0.end_claim(PartitionId(p), token, limit).await {
        metrics::counter!(metric_definitions::OUTBOX_DRAIN_TIMEOUTS, "app" => app.to_owned())
            .increment(1);
        tracing::warn!(app, partition = p, error = %e, "publishes in flight did not finish before the claim ended");
    }
    if drain {
        drain_outbox(app, outbox, p, limit).await;
    }
}

/// Waits until the events of partition `p` have left the app's outbox. On a timeout the release
/// goes on (the events stay in the outbox and reach consumers later, where the next owner's
/// larger epoch makes them `stale_epoch` dead letters, not losses).
async fn drain_outbox(app: &str, outbox: &HandoffOutbox, p: u32, limit: Duration) {
    if let Err(e) = outbox.0.drain_shard(PartitionId(p), limit).await {
        metrics::counter!(metric_definitions::OUTBOX_DRAIN_TIMEOUTS, "app" => app.to_owned())
            .increment(1);
        tracing::warn!(app, partition = p, error = %e, "outbox not drained before the release");
    }
}
