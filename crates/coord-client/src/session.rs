//! `Session`: a lease that keeps itself alive and says when it is lost.
//!
//! ```text
//!  open ──grant──► Alive{safe_until} ──renewal acked──► Alive{later safe_until}
//!                      │                     │
//!                      │ safe_until passes   │ store: lease unknown     close()
//!                      ▼                     ▼                            ▼
//!                Lost(Expired)         Lost(Revoked)                Lost(Closed)
//! ```
//!
//! The deadline is `cluster_core::lease`'s: the send time of the last acknowledged renewal plus
//! the granted TTL minus the margin, on the monotonic clock. The store starts its TTL no earlier
//! than we sent the request, so the lost signal fires before the store can expire the lease and
//! let another node take what it guarded. Lost is final: the keeper stops, sends a best-effort
//! revoke, and the caller must open a new session (and re-register, re-claim) with a new lease.
//!
//! The deadline is kept on two clocks: tokio's monotonic clock (which tests can pause) and a clock
//! that keeps counting through a system suspend ([`BootClock`], `CLOCK_BOOTTIME`), so a machine
//! resumed from suspend after the TTL finds its session lost instead of trusting a clock that
//! stood still. [`Session::safe_until`] is the earlier of the two, in monotonic terms.
//!
//! Lost is also one event for everything the lease authorised: [`Session::child_token`] gives
//! cancellation tokens that all fire together the moment the session is lost, whoever notices
//! first (the keeper at `safe_until`, or any [`Session::is_alive`] call that reads the clock past
//! it), so a term's or a partition's work never depends on another task to be told.

use std::sync::Arc;
use std::time::Duration;

use cluster_core::coordination::{CoordError, CoordResult, LeaseId, LeaseStore};
use cluster_core::ids::NodeId;
use cluster_core::lease::{Lease, LeaseState, LeaseTiming, RenewalAck};
use cluster_core::time::MonoTime;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use cluster_core::clock::Clock;

use crate::clock::{BootClock, mono_now, to_instant};

/// How often a waiting keeper re-reads the suspend-aware clock: a sleep on the monotonic clock
/// does not advance while the machine is suspended.
const DEADLINE_RECHECK: Duration = Duration::from_millis(250);

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostReason {
    /// The local deadline passed without an acknowledged renewal.
    Expired,
    /// The store said the lease no longer exists.
    Revoked,
    /// The session was closed by its owner.
    Closed,
}

/// Where a session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// The lease is held; act only before `safe_until`.
    Alive {
        /// The last moment the holder may act, unless a renewal moves it.
        safe_until: MonoTime,
    },
    /// The lease is gone for good.
    Lost(LostReason),
}

struct Shared {
    lease: LeaseId,
    ttl: Duration,
    timing: LeaseTiming,
    state: watch::Sender<SessionState>,
    /// Stops the keeper.
    cancel: CancellationToken,
    /// Fires once the session is lost; every [`Session::child_token`] is a child of it.
    lost: CancellationToken,
    /// The clock that counts suspended time.
    boot: Arc<dyn Clock>,
    /// The deadline on `boot`: its reading at the last acknowledged renewal's send + ttl - margin.
    boot_safe_until: std::sync::Mutex<MonoTime>,
}

impl Shared {
    /// Declares the session lost (if it was not already): final. The state changes first, so a
    /// task woken by the lost token sees `Lost`.
    fn declare_lost(&self, reason: LostReason) {
        self.state.send_if_modified(|state| match state {
            SessionState::Alive { .. } => {
                *state = SessionState::Lost(reason);
                true
            }
            SessionState::Lost(_) => false,
        });
        self.lost.cancel();
    }

    /// The deadline on the suspend-aware clock, moved into monotonic terms at `now`: earlier
    /// than `safe_until` by however long the machine was suspended since the last renewal.
    fn effective(&self, safe_until: MonoTime, now: MonoTime) -> MonoTime {
        let boot_left = self
            .boot_safe_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .saturating_duration_since(self.boot.now());
        safe_until.min(now + boot_left)
    }

    /// The deadline now, while alive.
    fn deadline(&self, now: MonoTime) -> Option<MonoTime> {
        match *self.state.borrow() {
            SessionState::Alive { safe_until } => Some(self.effective(safe_until, now)),
            SessionState::Lost(_) => None,
        }
    }

    /// Whether the session may act at `now`; declares it lost once `now` is past the deadline.
    fn alive_at(&self, now: MonoTime) -> bool {
        match self.deadline(now) {
            Some(deadline) if now < deadline => return true,
            Some(_) => {}
            None => return false,
        }
        self.declare_lost(LostReason::Expired);
        false
    }

    /// Resolves once the deadline has passed on either clock.
    async fn deadline_passed(&self) {
        loop {
            let now = mono_now();
            let Some(deadline) = self.deadline(now) else {
                return;
            };
            if now >= deadline {
                return;
            }
            let wait = deadline
                .saturating_duration_since(now)
                .min(DEADLINE_RECHECK);
            tokio::time::sleep_until(to_instant(now + wait)).await;
        }
    }
}

/// A lease with a background keep-alive and a lost signal. Cloning shares the session.
///
/// Dropping the last clone does not revoke the lease (a crashed process cannot either); call
/// [`Session::close`] for a graceful end, or [`Session::abandon`] to simulate a crash in tests.
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("lease", &self.shared.lease)
            .field("ttl", &self.shared.ttl)
            .field("state", &*self.shared.state.borrow())
            .finish()
    }
}

impl Session {
    /// Grants a lease of `timing.ttl` for `holder` and starts keeping it alive.
    ///
    /// Fails with `BadRequest` when the TTL the store granted leaves no room for the margin.
    pub async fn open(
        store: Arc<dyn LeaseStore>,
        holder: NodeId,
        timing: LeaseTiming,
    ) -> CoordResult<Session> {
        Session::open_with_clock(store, holder, timing, Arc::new(BootClock)).await
    }

    /// [`open`](Self::open), with `boot` as the clock that counts suspended time (tests pass
    /// one they can drive; production uses [`BootClock`]).
    pub async fn open_with_clock(
        store: Arc<dyn LeaseStore>,
        holder: NodeId,
        timing: LeaseTiming,
        boot: Arc<dyn Clock>,
    ) -> CoordResult<Session> {
        timing
            .validate()
            .map_err(|e| CoordError::bad_request(format!("lease timing: {e}")))?;
        let boot_sent_at = boot.now();
        let sent_at = mono_now();
        let grant = store.grant_lease(timing.ttl).await?;
        // A session lease carries no fencing token of its own: the terms and claims made under
        // it carry theirs.
        let lease = Lease::granted(
            holder,
            timing,
            RenewalAck {
                sent_at,
                ttl: grant.ttl,
            },
        )
        .map_err(|e| {
            CoordError::bad_request(format!(
                "granted ttl {:?} with margin {:?}: {e}",
                grant.ttl, timing.margin
            ))
        })?;
        let (state, _) = watch::channel(SessionState::Alive {
            safe_until: lease.safe_until(),
        });
        let shared = Arc::new(Shared {
            lease: grant.id.clone(),
            ttl: grant.ttl,
            timing,
            state,
            cancel: CancellationToken::new(),
            lost: CancellationToken::new(),
            boot_safe_until: std::sync::Mutex::new(
                (boot_sent_at + grant.ttl).saturating_sub(timing.margin),
            ),
            boot,
        });
        tokio::spawn(keep_alive(store, lease, shared.clone()));
        tracing::debug!(lease = %grant.id, ttl = ?grant.ttl, "session opened");
        Ok(Session { shared })
    }

    /// The lease.
    pub fn lease(&self) -> &LeaseId {
        &self.shared.lease
    }

    /// The TTL the store granted.
    pub fn ttl(&self) -> Duration {
        self.shared.ttl
    }

    /// The timing the session was opened with.
    pub fn timing(&self) -> LeaseTiming {
        self.shared.timing
    }

    /// The current state.
    pub fn state(&self) -> SessionState {
        *self.shared.state.borrow()
    }

    /// Whether the holder may act now: alive and before the deadline (checked against the clock
    /// too, so a starved keeper task cannot make a stale session look alive).
    ///
    /// Once it answers `false` it never answers `true` again: a read past the deadline declares
    /// the session lost, even if a renewal is on its way back.
    pub fn is_alive(&self) -> bool {
        self.shared.alive_at(mono_now())
    }

    /// A cancellation token that fires when the session is lost (or when it is cancelled
    /// itself): the one signal that ends everything this lease authorised, all at once.
    pub fn child_token(&self) -> CancellationToken {
        self.shared.lost.child_token()
    }

    /// The last moment the holder may act, while alive (on the monotonic clock, earlier by any
    /// time the machine spent suspended since the last renewal).
    pub fn safe_until(&self) -> Option<MonoTime> {
        self.shared.deadline(mono_now())
    }

    /// Resolves when the session is lost, with the reason.
    pub async fn lost(&self) -> LostReason {
        let mut rx = self.shared.state.subscribe();
        loop {
            if let SessionState::Lost(reason) = *rx.borrow_and_update() {
                return reason;
            }
            if rx.changed().await.is_err() {
                return LostReason::Closed;
            }
        }
    }

    /// A receiver of state changes.
    pub fn subscribe(&self) -> watch::Receiver<SessionState> {
        self.shared.state.subscribe()
    }

    /// Ends the session: stops the keep-alive and revokes the lease, deleting every key bound
    /// to it at once.
    pub async fn close(&self, store: &dyn LeaseStore) -> CoordResult<()> {
        self.shared.cancel.cancel();
        self.shared.declare_lost(LostReason::Closed);
        store.revoke_lease(&self.shared.lease).await
    }

    /// Stops the keep-alive without revoking, as a crashed process would: the store expires
    /// the lease after its TTL. For tests and for handing a lease off on shutdown.
    pub fn abandon(&self) {
        self.shared.cancel.cancel();
        self.shared.declare_lost(LostReason::Closed);
    }
}

/// How long a failed renewal waits before the next try: short, since the deadline is near.
fn retry_pause(timing: LeaseTiming) -> Duration {
    (timing.renew_interval() / 4).clamp(Duration::from_millis(20), Duration::from_millis(500))
}

async fn keep_alive(store: Arc<dyn LeaseStore>, mut lease: Lease, shared: Arc<Shared>) {
    let cancel = shared.cancel.clone();
    let mut next_try = lease.renew_at();
    let reason = loop {
        // Biased: once the deadline has passed, it wins over a renewal that is ready too.
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            () = shared.deadline_passed() => break LostReason::Expired,
            _ = shared.lost.cancelled() => break LostReason::Expired,
            _ = tokio::time::sleep_until(to_instant(next_try)) => {}
        }
        let boot_sent_at = shared.boot.now();
        let sent_at = mono_now();
        let outcome = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            () = shared.deadline_passed() => break LostReason::Expired,
            _ = shared.lost.cancelled() => break LostReason::Expired,
            outcome = store.renew_lease(&shared.lease) => outcome,
        };
        let now = mono_now();
        if !shared.alive_at(now) {
            // Answered too late: the holder may already have been told the session is lost,
            // and lost is final.
            break LostReason::Expired;
        }
        match outcome {
            Ok(ttl) => match lease.renewed(RenewalAck { sent_at, ttl }, now) {
                Ok(LeaseState::Valid) => {
                    let extended = lease.safe_until();
                    let boot_extended = (boot_sent_at + ttl).saturating_sub(shared.timing.margin);
                    {
                        let mut boot = shared
                            .boot_safe_until
                            .lock()
                            .unwrap_or_else(|e| e.into_inner());
                        *boot = (*boot).max(boot_extended);
                    }
                    let still_alive = shared.state.send_if_modified(|state| match state {
                        SessionState::Alive { .. } => {
                            *state = SessionState::Alive {
                                safe_until: extended,
                            };
                            true
                        }
                        SessionState::Lost(_) => false,
                    });
                    if !still_alive {
                        break LostReason::Expired;
                    }
                    next_try = lease.renew_at();
                }
                Ok(_) | Err(_) => break LostReason::Expired,
            },
            Err(CoordError::LeaseLost { .. }) => break LostReason::Revoked,
            Err(e) => {
                tracing::warn!(lease = %shared.lease, error = %e, "lease renewal failed; retrying");
                next_try = now + retry_pause(shared.timing);
            }
        }
    };
    lease.mark_lost();
    shared.declare_lost(reason);
    tracing::warn!(lease = %shared.lease, ?reason, "session lost");
    // Best effort: the lease may be alive at the store still (our deadline is conservative);
    // revoking lets others take over sooner. Bounded so a dead store cannot hold the task.
    let _ = tokio::time::timeout(Duration::from_secs(2), store.revoke_lease(&shared.lease)).await;
}

#[cfg(test)]
#[path = "session_test.rs"]
mod tests;
