//! The node health state machine: joining -> alive -> suspect -> dead, and left.
//!
//! A [`NodeHealth`] is fed [`Observation`]s (heartbeats with their monotonic receive time,
//! ticks of "now", a graceful leave) and reports each [`HealthTransition`]. Thresholds come from
//! [`HealthThresholds`]:
//!
//! ```text
//!  Joining --join_heartbeats heartbeats--> Alive --silent suspect_after--> Suspect
//!     |                                      ^                               |
//!     |                                      +---------- heartbeat ----------+
//!     +--------- silent dead_after ---------------> Dead <-- silent dead_after
//!  any non-final state --leave announced--> Left          (Dead and Left are final)
//! ```
//!
//! Dead and Left are final for this incarnation: a node that comes back rejoins as a new
//! `NodeHealth` (and must acquire new leases with new tokens).
//!
//! ```
//! use std::time::Duration;
//! use cluster_core::node_health::{HealthState, HealthThresholds, NodeHealth, Observation};
//! use cluster_core::time::MonoTime;
//!
//! let t = |s| MonoTime::from_duration(Duration::from_secs(s));
//! let thresholds = HealthThresholds::new(Duration::from_secs(5), Duration::from_secs(15), 1)?;
//! let mut node = NodeHealth::joining(thresholds, t(0));
//! node.observe(Observation::Heartbeat { at: t(1) });
//! assert_eq!(node.state(), HealthState::Alive);
//! node.observe(Observation::Tick { now: t(7) });
//! assert_eq!(node.state(), HealthState::Suspect);
//! node.observe(Observation::Tick { now: t(16) });
//! assert_eq!(node.state(), HealthState::Dead);
//! // A late heartbeat does not bring a dead node back.
//! assert_eq!(node.observe(Observation::Heartbeat { at: t(17) }), None);
//! # Ok::<(), cluster_core::node_health::HealthConfigError>(())
//! ```

use std::time::Duration;

use serde::Deserialize;
use serde::Serialize;

use crate::time::MonoTime;

/// Where a node stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    /// Seen, not yet confirmed by enough heartbeats.
    Joining,
    /// Heartbeating on time.
    Alive,
    /// Silent for longer than `suspect_after`.
    Suspect,
    /// Silent for longer than `dead_after`: final.
    Dead,
    /// Announced a graceful leave: final.
    Left,
}

impl HealthState {
    /// Whether no further transition can happen.
    pub fn is_final(self) -> bool {
        matches!(self, HealthState::Dead | HealthState::Left)
    }
}

/// Something learned about the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Observation {
    /// A heartbeat received at monotonic time `at`.
    Heartbeat {
        /// Receive time.
        at: MonoTime,
    },
    /// Time has passed: re-evaluate silence at `now`.
    Tick {
        /// Monotonic now.
        now: MonoTime,
    },
    /// The node announced it is leaving.
    LeaveAnnounced,
}

/// A change of state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HealthTransition {
    /// State before.
    pub from: HealthState,
    /// State after.
    pub to: HealthState,
}

/// A threshold that is out of range, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HealthConfigError {
    /// `suspect_after` is zero.
    #[error("suspect_after must be greater than zero")]
    ZeroSuspectAfter,
    /// `dead_after` is not longer than `suspect_after`.
    #[error("dead_after ({dead_after:?}) must be longer than suspect_after ({suspect_after:?})")]
    DeadNotAfterSuspect {
        /// Configured `suspect_after`.
        suspect_after: Duration,
        /// Configured `dead_after`.
        dead_after: Duration,
    },
    /// `join_heartbeats` is zero.
    #[error("join_heartbeats must be at least 1")]
    ZeroJoinHeartbeats,
}

/// How long silence lasts before suspicion and death, and how many heartbeats confirm a join.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HealthThresholds {
    /// Silence after which an alive node is suspect.
    pub suspect_after: Duration,
    /// Silence after which a node is dead.
    pub dead_after: Duration,
    /// Heartbeats that move a joining node to alive.
    pub join_heartbeats: u32,
}

impl Default for HealthThresholds {
    /// Suspect after 5 s, dead after 15 s, alive after 2 heartbeats.
    fn default() -> Self {
        HealthThresholds {
            suspect_after: Duration::from_secs(5),
            dead_after: Duration::from_secs(15),
            join_heartbeats: 2,
        }
    }
}

impl HealthThresholds {
    /// Validated thresholds.
    pub fn new(
        suspect_after: Duration,
        dead_after: Duration,
        join_heartbeats: u32,
    ) -> Result<HealthThresholds, HealthConfigError> {
        let thresholds = HealthThresholds {
            suspect_after,
            dead_after,
            join_heartbeats,
        };
        thresholds.validate()?;
        Ok(thresholds)
    }

    /// Checks `0 < suspect_after < dead_after` and `join_heartbeats >= 1`.
    pub fn validate(&self) -> Result<(), HealthConfigError> {
        if self.suspect_after.is_zero() {
            return Err(HealthConfigError::ZeroSuspectAfter);
        }
        if self.dead_after <= self.suspect_after {
            return Err(HealthConfigError::DeadNotAfterSuspect {
                suspect_after: self.suspect_after,
                dead_after: self.dead_after,
            });
        }
        if self.join_heartbeats == 0 {
            return Err(HealthConfigError::ZeroJoinHeartbeats);
        }
        Ok(())
    }
}

/// One node's health, as seen by an observer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeHealth {
    thresholds: HealthThresholds,
    state: HealthState,
    last_heard: MonoTime,
    heartbeats: u32,
}

impl NodeHealth {
    /// A node first seen at `seen_at`, in [`HealthState::Joining`].
    pub fn joining(thresholds: HealthThresholds, seen_at: MonoTime) -> NodeHealth {
        NodeHealth {
            thresholds,
            state: HealthState::Joining,
            last_heard: seen_at,
            heartbeats: 0,
        }
    }

    /// The current state.
    pub fn state(&self) -> HealthState {
        self.state
    }

    /// When the node was last heard from.
    pub fn last_heard(&self) -> MonoTime {
        self.last_heard
    }

    /// Applies an observation; returns the transition it caused, if any.
    pub fn observe(&mut self, observation: Observation) -> Option<HealthTransition> {
        if self.state.is_final() {
            return None;
        }
        let next = match observation {
            Observation::LeaveAnnounced => HealthState::Left,
            Observation::Heartbeat { at } => {
                // An out-of-order heartbeat still counts, but never moves `last_heard` back.
                self.last_heard = self.last_heard.max(at);
                self.heartbeats = self.heartbeats.saturating_add(1);
                match self.state {
                    HealthState::Joining if self.heartbeats < self.thresholds.join_heartbeats => {
                        HealthState::Joining
                    }
                    _ => HealthState::Alive,
                }
            }
            Observation::Tick { now } => {
                let silent = now.saturating_duration_since(self.last_heard);
                if silent >= self.thresholds.dead_after {
                    HealthState::Dead
                } else if silent >= self.thresholds.suspect_after
                    && self.state == HealthState::Alive
                {
                    HealthState::Suspect
                } else {
                    self.state
                }
            }
        };
        let from = self.state;
        self.state = next;
        (from != next).then_some(HealthTransition { from, to: next })
    }
}

#[cfg(test)]
#[path = "node_health_test.rs"]
mod tests;
