//! Active-passive: one leader per app, elected through the store, standbys ready to take over.
//!
//! Standbys wait in the store's election queue (etcd: each watches only its predecessor), so
//! they react to the leader's key going away, not to a poll. A leader:
//!
//! 1. wins the campaign under the node's session; its term has a fencing token;
//! 2. runs `on_active` with the token and a cancellation token (an error or timeout steps it
//!    down: resign, `on_passive`, a short backoff, campaign again);
//! 3. stays leader until it steps down, shuts down, its session is lost, or its election key is
//!    gone or re-owned (a store that expired it early). The session is lost at its renew
//!    deadline (send time of the last acknowledged renewal + TTL - margin), before the store can
//!    expire the lease and let another node lead; the term's cancellation token is a child of
//!    the session's, so it fires at that moment whatever the role loop is doing;
//! 4. on leaving: the cancellation token fires first, then the role becomes passive, then it
//!    resigns (handing leadership to the next candidate at once), then `on_passive` runs.

use std::sync::Arc;
use std::time::Duration;

use cluster_core::coordination::{Key, LeaderInfo, Leadership};
use cluster_core::ids::FencingToken;
use cluster_core::naming::{NamespaceKind, namespace};
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::app::AppHooks;
use crate::audit::{AuditKind, AuditRecord};
use crate::context::{ActiveContext, AppContext, LeaderChange, TermAuthority};
use crate::error::RuntimeError;
use crate::hooks::run_optional;
use crate::metric_definitions;
use crate::service::ServiceRole;
use crate::sessions::{Under, under};
use crate::sqlite::SqliteRole;

/// This node's role in an app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "role")]
pub enum Role {
    /// The app has not decided yet.
    Starting,
    /// Standby.
    Passive,
    /// Active, in the term (or slot claim) with this token.
    Active {
        /// The fencing token.
        token: FencingToken,
    },
    /// The app stopped on this node.
    Stopped,
}

/// A handle on an app's election (active-passive mode), and on the role in any mode.
#[derive(Clone)]
pub struct ElectionHandle {
    pub(crate) ctx: AppContext,
    pub(crate) role: watch::Receiver<Role>,
    pub(crate) leader: watch::Receiver<Option<LeaderInfo>>,
    pub(crate) step_down: Option<mpsc::Sender<oneshot::Sender<()>>>,
}

impl std::fmt::Debug for ElectionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElectionHandle")
            .field("role", &*self.role.borrow())
            .finish()
    }
}

impl ElectionHandle {
    /// Whether this node is active now: an active role whose term was won under the session
    /// that is alive now (its deadline read from the clock) and has not ended.
    pub fn is_leader(&self) -> bool {
        matches!(*self.role.borrow(), Role::Active { .. })
            && self
                .ctx
                .shared
                .term()
                .is_some_and(|t| t.holds(&self.ctx.shared.sessions))
    }

    /// The fencing token of the current term, while leading.
    pub fn fencing_token(&self) -> Option<FencingToken> {
        match *self.role.borrow() {
            Role::Active { token } if self.is_leader() => Some(token),
            _ => None,
        }
    }

    /// The current leader as this node last saw it.
    pub fn leader(&self) -> Option<LeaderInfo> {
        self.leader.borrow().clone()
    }

    /// The current role.
    pub fn role(&self) -> Role {
        *self.role.borrow()
    }

    /// A receiver of role changes.
    pub fn roles(&self) -> watch::Receiver<Role> {
        self.role.clone()
    }

    /// Waits until this node leads; returns the term's token.
    pub async fn wait_for_leadership(
        &self,
        timeout: Duration,
    ) -> Result<FencingToken, RuntimeError> {
        let mut role = self.role.clone();
        let wait = async {
            loop {
                if let Role::Active { token } = *role.borrow_and_update() {
                    return Ok(token);
                }
                if role.changed().await.is_err() {
                    return Err(RuntimeError::NotRunning);
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| RuntimeError::Timeout(timeout))?
    }

    /// Steps down if leading: leadership passes to the next candidate; returns once this node
    /// has resigned. A no-op when not leading.
    pub async fn step_down(&self) -> Result<(), RuntimeError> {
        let Some(tx) = &self.step_down else {
            return Err(RuntimeError::WrongMode {
                app: self.ctx.app().to_string(),
                needed: "active_passive",
            });
        };
        if !matches!(*self.role.borrow(), Role::Active { .. }) {
            return Ok(());
        }
        let (done_tx, done_rx) = oneshot::channel();
        tx.send(done_tx)
            .await
            .map_err(|_| RuntimeError::NotRunning)?;
        done_rx.await.map_err(|_| RuntimeError::NotRunning)
    }
}

/// What the role loop does after a term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterTerm {
    /// Campaign again.
    Campaign,
    /// Wait a moment, then campaign (after a failed `on_active`, so others can lead).
    Backoff,
    /// The app is stopping.
    Stop,
}

/// Why a term ended.
#[derive(Debug)]
enum TermEnd {
    ActiveFailed,
    /// The term's service failed while it served (its restarts ran out).
    ServiceFailed(String),
    Lost,
    StepDown(oneshot::Sender<()>),
    Shutdown,
}

/// The election key of an app.
pub(crate) fn election_key(ctx: &AppContext) -> Result<Key, RuntimeError> {
    let ns = namespace(ctx.platform(), Some(ctx.app()), NamespaceKind::Election);
    Ok(Key::new(ns, "leader")?)
}

/// Watches the app's leader: publishes it, runs `on_leader_change`, records leader changes.
pub(crate) async fn observe_leader(
    ctx: AppContext,
    hooks: Arc<AppHooks>,
    timeout: Duration,
    leader_tx: watch::Sender<Option<LeaderInfo>>,
    stop: CancellationToken,
) {
    let Ok(key) = election_key(&ctx) else { return };
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            s = ctx.coordinator().observe_leader(&key) => s,
        };
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "observing the leader failed; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(crate::timing::pace::STORE_RETRY) => continue,
                }
            }
        };
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => return,
                n = stream.next() => n,
            };
            let leader = match next {
                Some(Ok(leader)) => leader,
                Some(Err(_)) | None => break,
            };
            let changed = leader_tx.send_if_modified(|current| {
                let changed = current.as_ref().map(|l| l.token) != leader.as_ref().map(|l| l.token);
                *current = leader.clone();
                changed
            });
            if changed {
                let app = ctx.app().to_string();
                metrics::counter!(metric_definitions::LEADER_CHANGES, "app" => app.clone())
                    .increment(1);
                ctx.shared.audit.record(
                    AuditRecord::new(AuditKind::LeaderChanged)
                        .app(&app)
                        .maybe_token(leader.as_ref().map(|l| l.token))
                        .maybe_detail(leader.as_ref().map(|l| format!("leader: {}", l.holder))),
                );
                let change = LeaderChange {
                    app: ctx.clone(),
                    leader,
                };
                let _ = run_optional(
                    &hooks.on_leader_change,
                    &app,
                    "on_leader_change",
                    change,
                    timeout,
                )
                .await;
            }
        }
    }
}

/// What the active-passive role loop of one app works with.
pub(crate) struct Driver {
    pub(crate) ctx: AppContext,
    pub(crate) hooks: Arc<AppHooks>,
    /// Each hook's time limit.
    pub(crate) timeout: Duration,
    /// The pause before campaigning again after a failed `on_active` or campaign.
    pub(crate) backoff: Duration,
    pub(crate) role_tx: watch::Sender<Role>,
    /// The app's replicated database, if it has one.
    pub(crate) sqlite: Option<Arc<SqliteRole>>,
    /// The app's service, if it runs one.
    pub(crate) service: Option<Arc<ServiceRole>>,
}

/// Runs the active-passive role loop of one app until `stop` fires.
pub(crate) async fn drive(
    driver: Driver,
    mut step_down_rx: mpsc::Receiver<oneshot::Sender<()>>,
    stop: CancellationToken,
) {
    let Driver {
        ctx,
        hooks,
        timeout,
        backoff,
        role_tx,
        sqlite,
        service,
    } = driver;
    let app = ctx.app().to_string();
    let Ok(key) = election_key(&ctx) else { return };
    if let Some(db) = &sqlite {
        // A standby follows the leader's database before it can campaign.
        while let Err(e) = db.follow().await {
            tracing::warn!(app, error = %e, "cannot follow the replicated database yet; retrying");
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
        }
    }
    let _ = run_optional(&hooks.on_passive, &app, "on_passive", ctx.clone(), timeout).await;
    role_tx.send_replace(Role::Passive);
    loop {
        let Some(session) = ctx.shared.sessions.next_live(&stop).await else {
            break;
        };
        let campaign = match under(
            &session,
            &stop,
            ctx.coordinator()
                .campaign(&key, ctx.node().as_str(), session.lease()),
        )
        .await
        {
            Under::Stopped => break,
            Under::Lost => continue,
            Under::Done(t) => t,
        };
        let term = match campaign {
            Ok(term) if session.is_alive() => term,
            Ok(_) => continue,
            Err(e) => {
                tracing::debug!(app, error = %e, "campaign failed; retrying");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => continue,
                }
            }
        };
        match lead(
            &ctx,
            &hooks,
            timeout,
            &role_tx,
            &mut step_down_rx,
            &stop,
            &session,
            &term,
            sqlite.as_deref(),
            service.as_deref(),
        )
        .await
        {
            AfterTerm::Campaign => {}
            AfterTerm::Backoff => tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(backoff) => {}
            },
            AfterTerm::Stop => break,
        }
    }
    if let Some(db) = &sqlite {
        db.close().await;
    }
    role_tx.send_replace(Role::Stopped);
}

/// One term: `on_active`, hold, then leave in order. Returns what to do next.
#[allow(clippy::too_many_arguments)]
async fn lead(
    ctx: &AppContext,
    hooks: &AppHooks,
    timeout: Duration,
    role_tx: &watch::Sender<Role>,
    step_down_rx: &mut mpsc::Receiver<oneshot::Sender<()>>,
    stop: &CancellationToken,
    session: &coord_client::Session,
    term: &Leadership,
    sqlite: Option<&SqliteRole>,
    service: Option<&ServiceRole>,
) -> AfterTerm {
    let app = ctx.app().to_string();
    // Fires with the session, or when the term ends for any other reason.
    let cancel = session.child_token();
    let key_gone = CancellationToken::new();
    let key_watch = tokio::spawn(watch_term_key(
        ctx.clone(),
        term.clone(),
        key_gone.clone(),
        cancel.clone(),
    ));
    ctx.shared.set_term(Some(TermAuthority {
        lease: session.lease().clone(),
        cancel: cancel.clone(),
        token: term.token,
        fence: term.fence(),
    }));
    role_tx.send_replace(Role::Active { token: term.token });
    metrics::gauge!(metric_definitions::ELECTION_EPOCH, "app" => app.clone())
        .set(term.token.get() as f64);
    ctx.shared.audit.record(
        AuditRecord::new(AuditKind::LeaderAcquired)
            .app(&app)
            .token(term.token),
    );
    let active = ActiveContext {
        app: ctx.clone(),
        token: term.token,
        fence: Some(term.fence()),
        cancel: cancel.clone(),
        slot: None,
    };
    let acquired_at = coord_client::instant_now();
    // The failover sequence: promote the database, start the service (ready once its critical
    // checks pass), then on_active. A failing step fails the term; the steps before it are
    // undone in reverse as the term ends (service stopped, database demoted, term resigned).
    let start = async {
        // A replicated database is promoted before the app's own on_active: the app finds its
        // data in place, and a failed promotion fails the term like a failed on_active.
        if let Some(db) = sqlite
            && let Err(e) = db.promote(&active, session.clone()).await
        {
            tracing::warn!(app, error = %e, "database promotion failed");
            return false;
        }
        if !ServiceRole::start_or_roll_back(service, ctx, term.token, Some(session)).await {
            return false;
        }
        let ok = run_optional(&hooks.on_active, &app, "on_active", active.clone(), timeout)
            .await
            .is_ok();
        if !ok && (service.is_some() || sqlite.is_some()) {
            ctx.shared.audit.record(
                AuditRecord::new(AuditKind::FailoverRolledBack)
                    .app(&app)
                    .token(term.token)
                    .detail("on_active failed"),
            );
        }
        ok
    };
    let started = tokio::select! {
        ok = start => ok,
        _ = session.lost() => false,
        _ = key_gone.cancelled() => false,
    };
    if started {
        metrics::histogram!(metric_definitions::FAILOVER_DURATION, "app" => app.clone())
            .record(acquired_at.elapsed().as_secs_f64());
    }
    let fenced_out = async {
        match sqlite {
            Some(db) => db.fenced_out().await,
            None => std::future::pending().await,
        }
    };
    let service_failed = ServiceRole::failed_if_any(service);
    let end = if !started {
        if session.is_alive() && !key_gone.is_cancelled() {
            TermEnd::ActiveFailed
        } else {
            TermEnd::Lost
        }
    } else {
        tokio::select! {
            _ = session.lost() => TermEnd::Lost,
            _ = key_gone.cancelled() => TermEnd::Lost,
            _ = fenced_out => TermEnd::Lost,
            reason = service_failed => TermEnd::ServiceFailed(reason),
            _ = stop.cancelled() => TermEnd::Shutdown,
            request = step_down_rx.recv() => match request {
                Some(done) => TermEnd::StepDown(done),
                None => TermEnd::Shutdown,
            },
        }
    };
    if let TermEnd::ServiceFailed(reason) = &end {
        // The same undo as a failing start: service, database, term, in that order.
        ctx.shared.audit.record(
            AuditRecord::new(AuditKind::FailoverRolledBack)
                .app(&app)
                .token(term.token)
                .detail(format!("the service failed during the term: {reason}")),
        );
    }
    // Leader-scoped work stops first, before anything else can happen: the term's token, then
    // its service (whose supervisor also kills it at the deadline by itself).
    cancel.cancel();
    if let Some(svc) = service {
        svc.stop(ctx, Some(term.token)).await;
    }
    key_watch.abort();
    ctx.shared.set_term(None);
    role_tx.send_replace(Role::Passive);
    metrics::gauge!(metric_definitions::ELECTION_EPOCH, "app" => app.clone()).set(0.0);
    let token = term.token;
    match &end {
        TermEnd::Lost => {
            let why = if key_gone.is_cancelled() {
                "election key gone"
            } else {
                "session lost"
            };
            ctx.shared.audit.record(
                AuditRecord::new(AuditKind::LeaderLost)
                    .app(&app)
                    .token(token)
                    .detail(why),
            );
        }
        TermEnd::StepDown(_) => {
            ctx.shared.audit.record(
                AuditRecord::new(AuditKind::StepDownInitiated)
                    .app(&app)
                    .token(token),
            );
        }
        TermEnd::ActiveFailed => {
            ctx.shared.audit.record(
                AuditRecord::new(AuditKind::StepDownInitiated)
                    .app(&app)
                    .token(token)
                    .detail("on_active failed"),
            );
        }
        TermEnd::ServiceFailed(_) => {
            ctx.shared.audit.record(
                AuditRecord::new(AuditKind::StepDownInitiated)
                    .app(&app)
                    .token(token)
                    .detail("the service failed"),
            );
        }
        TermEnd::Shutdown => {}
    }
    if !matches!(end, TermEnd::Lost) {
        // The last commits of the term are shipped before the successor can promote.
        if let Some(db) = sqlite
            && let Err(e) = db.stop_primary().await
        {
            tracing::warn!(app, error = %e, "stopping the database's replication failed");
        }
        // Hand leadership to the next candidate at once.
        if let Err(e) = ctx.coordinator().resign(term).await {
            tracing::warn!(app, error = %e, "resign failed; the term ends when the lease does");
        }
        ctx.shared.audit.record(
            AuditRecord::new(AuditKind::LeaderReleased)
                .app(&app)
                .token(token),
        );
    }
    if let Some(db) = sqlite
        && !matches!(end, TermEnd::Shutdown)
        && let Err(e) = db.follow().await
    {
        tracing::warn!(app, error = %e, "cannot follow the replicated database");
    }
    let _ = run_optional(&hooks.on_passive, &app, "on_passive", ctx.clone(), timeout).await;
    match end {
        TermEnd::StepDown(done) => {
            let _ = done.send(());
            // Stores without a queue of candidates (NATS KV, Consul) give the term to whoever
            // creates the key first: campaigning at once could win it straight back.
            AfterTerm::Backoff
        }
        TermEnd::Lost => AfterTerm::Campaign,
        TermEnd::ActiveFailed | TermEnd::ServiceFailed(_) => AfterTerm::Backoff,
        TermEnd::Shutdown => AfterTerm::Stop,
    }
}

/// Watches the term's own election key; when it is deleted or no longer carries the term (a
/// store that expired it early, an operator's delete), the term ends at once: `gone` and the
/// term's `cancel` fire. Transient watch errors reopen the watch; a store that cannot answer
/// ends the term through the session instead.
async fn watch_term_key(
    ctx: AppContext,
    term: Leadership,
    gone: CancellationToken,
    cancel: CancellationToken,
) {
    use cluster_core::coordination::{WatchEvent, WatchStart, WatchTarget};
    let coord = ctx.coordinator().clone();
    let fence = term.fence();
    let still_ours = |revision: u64| {
        let coord = coord.clone();
        let fence = fence.clone();
        async move {
            // Renewals move the revision on some stores (NATS KV): the adapter decides.
            revision == fence.token.get() || coord.fence_holds(&fence).await.unwrap_or(true)
        }
    };
    loop {
        let watch = coord
            .watch(
                WatchTarget::Key(term.candidate_key.clone()),
                WatchStart::Now,
            )
            .await;
        let Ok(mut watch) = watch else {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(crate::timing::pace::SAFETY_WATCH_REOPEN) => continue,
            }
        };
        loop {
            let event = tokio::select! {
                _ = cancel.cancelled() => return,
                e = watch.next() => e,
            };
            let ours = match event {
                Some(Ok(WatchEvent::Snapshot { entries, .. })) => match entries.first() {
                    Some(e) => still_ours(e.revision.0).await,
                    None => false,
                },
                Some(Ok(WatchEvent::Put(e))) => still_ours(e.revision.0).await,
                Some(Ok(WatchEvent::Delete { .. })) => false,
                Some(Err(_)) | None => break,
            };
            if !ours {
                tracing::warn!(app = %ctx.app(), token = %term.token, "the election key no longer carries this term; ending it");
                gone.cancel();
                cancel.cancel();
                return;
            }
        }
    }
}
