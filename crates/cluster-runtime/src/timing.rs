//! The platform's timing settings, validated together.

use std::time::Duration;

use cluster_core::lease::LeaseTiming;

use crate::error::RuntimeError;

/// Every timing knob of a platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// The lease TTL asked of the store.
    pub lease_ttl: Duration,
    /// How long before the earliest possible expiry a node stops acting as leader or owner.
    pub lease_margin: Duration,
    /// The default time a hook may run before it counts as failed.
    pub hook_timeout: Duration,
    /// How long a graceful shutdown may take (hooks, drains, releases).
    pub shutdown_timeout: Duration,
    /// How long a moving partition may take to drain its in-flight work.
    pub drain_timeout: Duration,
    /// How long to wait after a failed `on_active` or a step-down before campaigning again (so
    /// another candidate takes the term, also on stores without a candidate queue).
    pub step_down_backoff: Duration,
}

/// The pace of the runtime's retry loops, named once.
///
/// None of these is a safety deadline: those come from the lease timing and fire whatever a
/// loop is doing. They bound how soon a loop tries a failed store call again or looks at a view
/// without a change, trading store load against reaction time.
pub(crate) mod pace {
    use std::time::Duration;

    /// Before a failed store call (a watch, an observation, a claim, a campaign) is tried again.
    pub(crate) const STORE_RETRY: Duration = Duration::from_millis(500);
    /// Before a watch that a safety path relies on (the ring's claims, a leader's own election
    /// key) is opened again: shorter than [`STORE_RETRY`], so a lost key is seen sooner.
    pub(crate) const SAFETY_WATCH_REOPEN: Duration = Duration::from_millis(300);
    /// How often the ring planner and executor reconcile without a change to react to.
    pub(crate) const RECONCILE_TICK: Duration = Duration::from_millis(500);
    /// Before a slot whose `on_active` failed (or whose term ended unhealthy) claims again.
    pub(crate) const SLOT_RECLAIM: Duration = Duration::from_secs(1);
    /// The shortest pause between attempts to open a replicated database.
    pub(crate) const DATABASE_OPEN_RETRY: Duration = Duration::from_millis(500);
}

impl Default for Timing {
    /// TTL 10 s, margin 2 s (renewals every ~2.7 s), hooks 5 s, shutdown 30 s, drain 10 s.
    fn default() -> Self {
        Timing {
            lease_ttl: Duration::from_secs(10),
            lease_margin: Duration::from_secs(2),
            hook_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(10),
            step_down_backoff: Duration::from_secs(1),
        }
    }
}

impl Timing {
    /// The interval between lease renewals (the heartbeat): `(ttl - margin) / 3`.
    pub fn heartbeat(&self) -> Duration {
        self.lease().renew_interval()
    }

    /// The lease timing for sessions.
    pub fn lease(&self) -> LeaseTiming {
        LeaseTiming {
            ttl: self.lease_ttl,
            margin: self.lease_margin,
        }
    }

    /// Sets the margin so that renewals go out every `heartbeat`.
    pub fn with_heartbeat(mut self, heartbeat: Duration) -> Result<Self, RuntimeError> {
        let used = heartbeat.saturating_mul(3);
        if used >= self.lease_ttl {
            return Err(RuntimeError::config(
                "heartbeat",
                format!(
                    "3 x heartbeat ({used:?}) must be below the lease ttl ({:?}) to leave a safety margin",
                    self.lease_ttl
                ),
            ));
        }
        self.lease_margin = self.lease_ttl - used;
        Ok(self)
    }

    /// Refuses combinations that cannot be safe, naming the field and the reason.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        if self.lease_ttl < Duration::from_millis(500) {
            return Err(RuntimeError::config(
                "lease_ttl",
                format!(
                    "{:?} is too short to renew reliably; use at least 500ms",
                    self.lease_ttl
                ),
            ));
        }
        if self.lease_margin.is_zero() {
            return Err(RuntimeError::config(
                "lease_margin",
                "must be greater than zero: a paused node needs time to notice it lost its lease",
            ));
        }
        if self.lease_margin >= self.lease_ttl {
            return Err(RuntimeError::config(
                "lease_margin",
                format!(
                    "the renew deadline (ttl - margin) must come before the lease can expire: margin {:?} >= ttl {:?}",
                    self.lease_margin, self.lease_ttl
                ),
            ));
        }
        if self.heartbeat() < Duration::from_millis(50) {
            return Err(RuntimeError::config(
                "lease_margin",
                format!(
                    "leaves a heartbeat of {:?}; keep (ttl - margin) / 3 at 50ms or more",
                    self.heartbeat()
                ),
            ));
        }
        for (field, value) in [
            ("hook_timeout", self.hook_timeout),
            ("shutdown_timeout", self.shutdown_timeout),
            ("drain_timeout", self.drain_timeout),
        ] {
            if value.is_zero() {
                return Err(RuntimeError::config(field, "must be greater than zero"));
            }
        }
        if self.shutdown_timeout < self.hook_timeout {
            return Err(RuntimeError::config(
                "shutdown_timeout",
                format!(
                    "{:?} is shorter than hook_timeout {:?}: on_stop could never finish",
                    self.shutdown_timeout, self.hook_timeout
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(t: Timing) -> String {
        match t.validate() {
            Err(RuntimeError::Config(e)) => e.field.into_owned(),
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn refuses_unsafe_combinations_naming_the_field() {
        assert!(Timing::default().validate().is_ok());
        let t = Timing::default();
        assert_eq!(
            field(Timing {
                lease_margin: t.lease_ttl,
                ..t
            }),
            "lease_margin"
        );
        assert_eq!(
            field(Timing {
                lease_margin: Duration::ZERO,
                ..t
            }),
            "lease_margin"
        );
        assert_eq!(
            field(Timing {
                lease_ttl: Duration::from_millis(100),
                ..t
            }),
            "lease_ttl"
        );
        assert_eq!(
            field(Timing {
                shutdown_timeout: Duration::from_secs(1),
                ..t
            }),
            "shutdown_timeout"
        );
    }

    #[test]
    fn heartbeat_sets_the_margin() {
        let t = Timing::default()
            .with_heartbeat(Duration::from_secs(2))
            .unwrap();
        assert_eq!(t.lease_margin, Duration::from_secs(4));
        assert_eq!(t.heartbeat(), Duration::from_secs(2));
        assert!(
            Timing::default()
                .with_heartbeat(Duration::from_secs(4))
                .is_err()
        );
    }
}
