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
//! Lost is also one event for everything the lease authorised: [`Session::child_token`] gives
//! cancellation tokens that all fire together the moment the session is lost, whoever notices
//! first (the keeper at `safe_until`, or any [`Session::is_alive`] call that reads the clock past
//! it), so a term's or a partition's work never depends on another task to be told.

use std::sync::Arc;
use std::time::Duration;

use cluster_core::coordination::{CoordError, CoordResult, LeaseId, LeaseStore};
use cluster_core::ids::{Epoch, FencingToken, NodeId};
use cluster_core::lease::{Lease, LeaseGrant, LeaseState, LeaseTiming};
use cluster_core::time::MonoTime;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::clock::{mono_now, to_instant};

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

    /// Whether the session may act at `now`; declares it lost once `now` is past the deadline.
    fn alive_at(&self, now: MonoTime) -> bool {
        match *self.state.borrow() {
            SessionState::Alive { safe_until } if now < safe_until => return true,
            SessionState::Alive { .. } => {}
            SessionState::Lost(_) => return false,
        }
        self.declare_lost(LostReason::Expired);
        false
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
        timing
            .validate()
            .map_err(|e| CoordError::bad_request(format!("lease timing: {e}")))?;
        let sent_at = mono_now();
        let grant = store.grant_lease(timing.ttl).await?;
        // A session lease carries no fencing token of its own: terms and claims made under it
        // carry theirs. Epoch and token are therefore zero here.
        let lease = Lease::granted(
            holder,
            Epoch(0),
            FencingToken::new(0),
            timing,
            LeaseGrant {
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

    /// The last moment the holder may act, while alive.
    pub fn safe_until(&self) -> Option<MonoTime> {
        match self.state() {
            SessionState::Alive { safe_until } => Some(safe_until),
            SessionState::Lost(_) => None,
        }
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
        let safe_until = lease.safe_until();
        // Biased: once the deadline has passed, it wins over a renewal that is ready too.
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep_until(to_instant(safe_until)) => break LostReason::Expired,
            _ = shared.lost.cancelled() => break LostReason::Expired,
            _ = tokio::time::sleep_until(to_instant(next_try)) => {}
        }
        let sent_at = mono_now();
        let outcome = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep_until(to_instant(safe_until)) => break LostReason::Expired,
            _ = shared.lost.cancelled() => break LostReason::Expired,
            outcome = store.renew_lease(&shared.lease) => outcome,
        };
        let now = mono_now();
        if now >= safe_until {
            // Answered too late: the holder may already have been told the session is lost,
            // and lost is final.
            break LostReason::Expired;
        }
        match outcome {
            Ok(ttl) => match lease.renewed(LeaseGrant { sent_at, ttl }, now) {
                Ok(LeaseState::Valid) => {
                    let extended = lease.safe_until();
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
