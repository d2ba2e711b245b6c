//! Leases as a state machine driven by values.
//!
//! A [`Lease`] never reads a clock. It is fed the monotonic send time of each acknowledged
//! request (the grant, then each renewal), the TTL the store granted, and "now"; it answers
//! which [`LeaseState`] the holder is in:
//!
//! ```text
//!   sent_at                       safe_until = sent_at + ttl - margin     expires_at = sent_at + ttl
//!      |------------ Valid ------------|------ RenewDeadlinePassed ------|------ Lost (final) ------>
//! ```
//!
//! Why the *send* time: the store starts the TTL when it receives the request, which is no
//! earlier than when we sent it, so `sent_at + ttl` on our clock is never later than the store's
//! expiry. The `margin` covers clock-rate drift between the two machines and the time the holder
//! needs to notice and stop. A holder acts only while [`LeaseState::Valid`].
//!
//! Renewal acknowledgements only move the deadlines forward. Once the lease is [`LeaseState::Lost`]
//! it stays lost, even if a late acknowledgement arrives: by then another node may have been
//! granted the lease, so the holder must acquire a new one (with a new, larger token).
//!
//! ```
//! use std::time::Duration;
//! use cluster_core::ids::NodeId;
//! use cluster_core::lease::{Lease, RenewalAck, LeaseState, LeaseTiming};
//! use cluster_core::time::MonoTime;
//!
//! let timing = LeaseTiming::new(Duration::from_secs(10), Duration::from_secs(2))?;
//! let t = |s| MonoTime::from_duration(Duration::from_secs(s));
//! let holder = NodeId::new("n1").unwrap();
//! let grant = RenewalAck { sent_at: t(100), ttl: timing.ttl };
//! let mut lease = Lease::granted(holder, timing, grant)?;
//!
//! assert_eq!(lease.observe(t(105)), LeaseState::Valid);
//! assert_eq!(lease.observe(t(108)), LeaseState::RenewDeadlinePassed);
//! // A renewal sent at 107 and acknowledged now extends the lease.
//! lease.renewed(RenewalAck { sent_at: t(107), ttl: timing.ttl }, t(108))?;
//! assert_eq!(lease.observe(t(110)), LeaseState::Valid);
//! assert_eq!(lease.observe(t(117)), LeaseState::Lost);
//! // Too late: a lost lease never comes back.
//! assert!(lease.renewed(RenewalAck { sent_at: t(116), ttl: timing.ttl }, t(117)).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::time::Duration;

use crate::ids::NodeId;
use crate::time::MonoTime;

/// Requested lease duration and the safety margin kept before it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseTiming {
    /// The TTL requested from the store.
    pub ttl: Duration,
    /// How long before the earliest possible expiry the holder stops acting.
    pub margin: Duration,
}

/// A [`LeaseTiming`] or [`RenewalAck`] that cannot give a safe lease, naming the bad field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseTimingError {
    /// `ttl` is zero.
    #[error("lease ttl must be greater than zero")]
    ZeroTtl,
    /// `margin` is zero, leaving no room for drift or pauses.
    #[error("lease margin must be greater than zero")]
    ZeroMargin,
    /// `margin` is not smaller than the TTL, so the lease would never be valid.
    #[error("lease margin ({margin:?}) must be smaller than ttl ({ttl:?})")]
    MarginNotBelowTtl {
        /// The TTL (requested or granted).
        ttl: Duration,
        /// The configured margin.
        margin: Duration,
    },
}

impl LeaseTiming {
    /// Validated timing: `0 < margin < ttl`.
    pub fn new(ttl: Duration, margin: Duration) -> Result<LeaseTiming, LeaseTimingError> {
        let timing = LeaseTiming { ttl, margin };
        timing.validate()?;
        Ok(timing)
    }

    /// Checks `0 < margin < ttl`.
    pub fn validate(&self) -> Result<(), LeaseTimingError> {
        if self.ttl.is_zero() {
            return Err(LeaseTimingError::ZeroTtl);
        }
        if self.margin.is_zero() {
            return Err(LeaseTimingError::ZeroMargin);
        }
        if self.margin >= self.ttl {
            return Err(LeaseTimingError::MarginNotBelowTtl {
                ttl: self.ttl,
                margin: self.margin,
            });
        }
        Ok(())
    }

    /// How often to send renewals: a third of the usable lifetime, so two may fail in a row.
    pub fn renew_interval(&self) -> Duration {
        self.ttl.saturating_sub(self.margin) / 3
    }
}

/// One acknowledged grant or renewal: when we sent the request, and the TTL the store granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RenewalAck {
    /// Monotonic time at which the acknowledged request was sent.
    pub sent_at: MonoTime,
    /// The TTL the store granted (may differ from the one requested).
    pub ttl: Duration,
}

/// Where a lease stands at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeaseState {
    /// Before `safe_until`: the holder may act.
    Valid,
    /// Past `safe_until` but before the earliest possible expiry: stop acting, keep renewing.
    RenewDeadlinePassed,
    /// Possibly expired at the store, or revoked: final.
    Lost,
}

impl LeaseState {
    /// Whether the holder may act on the lease (only when [`LeaseState::Valid`]).
    pub fn may_act(self) -> bool {
        self == LeaseState::Valid
    }
}

/// A renewal that could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseError {
    /// The lease was already lost; a new lease is needed.
    #[error("the lease of {holder} is lost; acquire a new lease")]
    Lost {
        /// The holder of the lost lease.
        holder: NodeId,
    },
    /// The acknowledged request claims to have been sent after `now`.
    #[error("renewal sent at {sent_at} is later than now ({now})")]
    SentInFuture {
        /// The claimed send time.
        sent_at: MonoTime,
        /// The current time passed in.
        now: MonoTime,
    },
    /// The granted TTL cannot give a safe lease with the configured margin.
    #[error(transparent)]
    Timing(#[from] LeaseTimingError),
}

/// A lease held by this node, tracked from acknowledged grants and renewals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    holder: NodeId,
    timing: LeaseTiming,
    last_sent_at: MonoTime,
    expires_at: MonoTime,
    latest_now: MonoTime,
    lost: bool,
}

impl Lease {
    /// A lease from its first acknowledged grant.
    pub fn granted(
        holder: NodeId,
        timing: LeaseTiming,
        grant: RenewalAck,
    ) -> Result<Lease, LeaseTimingError> {
        timing.validate()?;
        LeaseTiming::new(grant.ttl, timing.margin)?;
        Ok(Lease {
            holder,
            timing,
            last_sent_at: grant.sent_at,
            expires_at: grant.sent_at + grant.ttl,
            latest_now: grant.sent_at,
            lost: false,
        })
    }

    /// The state at `now`; reaching [`LeaseState::Lost`] is latched.
    ///
    /// Times earlier than one already observed are treated as that time, so the state never
    /// moves backwards.
    pub fn observe(&mut self, now: MonoTime) -> LeaseState {
        self.latest_now = self.latest_now.max(now);
        let state = self.state_at(self.latest_now);
        if state == LeaseState::Lost {
            self.lost = true;
        }
        state
    }

    /// The state at `now`, without recording the observation.
    pub fn state_at(&self, now: MonoTime) -> LeaseState {
        if self.lost || now >= self.expires_at {
            LeaseState::Lost
        } else if now >= self.safe_until() {
            LeaseState::RenewDeadlinePassed
        } else {
            LeaseState::Valid
        }
    }

    /// Applies an acknowledged renewal received at `now`; deadlines only move forward.
    pub fn renewed(&mut self, ack: RenewalAck, now: MonoTime) -> Result<LeaseState, LeaseError> {
        if ack.sent_at > now {
            return Err(LeaseError::SentInFuture {
                sent_at: ack.sent_at,
                now,
            });
        }
        if self.observe(now) == LeaseState::Lost {
            return Err(LeaseError::Lost {
                holder: self.holder.clone(),
            });
        }
        LeaseTiming::new(ack.ttl, self.timing.margin)?;
        let expires_at = ack.sent_at + ack.ttl;
        if expires_at > self.expires_at {
            self.expires_at = expires_at;
            self.last_sent_at = self.last_sent_at.max(ack.sent_at);
        }
        Ok(self.observe(now))
    }

    /// Marks the lease lost (the store said it is gone, or the holder gave it up): final.
    pub fn mark_lost(&mut self) {
        self.lost = true;
    }

    /// Whether the lease has been observed lost.
    pub fn is_lost(&self) -> bool {
        self.lost
    }

    /// The last moment the holder may act.
    pub fn safe_until(&self) -> MonoTime {
        self.expires_at.saturating_sub(self.timing.margin)
    }

    /// The earliest moment the store may consider the lease expired.
    pub fn expires_at(&self) -> MonoTime {
        self.expires_at
    }

    /// When the next renewal should be sent.
    pub fn renew_at(&self) -> MonoTime {
        self.last_sent_at + self.timing.renew_interval()
    }

    /// The holder.
    pub fn holder(&self) -> &NodeId {
        &self.holder
    }

    /// The timing the lease was created with.
    pub fn timing(&self) -> LeaseTiming {
        self.timing
    }
}

#[cfg(test)]
#[path = "lease_test.rs"]
mod tests;
