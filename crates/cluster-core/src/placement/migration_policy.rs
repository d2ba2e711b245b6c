//! Whether a migration may start now: pure decisions from values passed in.

use std::time::Duration;
use std::time::SystemTime;

use serde::Deserialize;
use serde::Serialize;

use crate::time::MonoTime;

const MINUTES_PER_DAY: u32 = 24 * 60;

/// A daily window, in UTC, during which voluntary migrations may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MaintenanceWindow {
    /// Start, in minutes after midnight UTC (0..1440).
    pub start_minute: u16,
    /// Length in minutes (1..=1440); may run past midnight.
    pub duration_minutes: u16,
}

impl MaintenanceWindow {
    /// How long until the window next opens at minute-of-day `minute` (zero if open now).
    fn wait_from(&self, minute: u32) -> u32 {
        let start = u32::from(self.start_minute);
        let since_start = (minute + MINUTES_PER_DAY - start) % MINUTES_PER_DAY;
        if since_start < u32::from(self.duration_minutes) {
            0
        } else {
            MINUTES_PER_DAY - since_start
        }
    }
}

/// Why a migration is wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationCause {
    /// To even out load or follow a preference: subject to every rule.
    Voluntary,
    /// The source node is leaving or failed: only the concurrency cap applies.
    Forced,
}

/// The facts a decision is made from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MigrationRequest {
    /// Why.
    pub cause: MigrationCause,
    /// Monotonic now.
    pub now: MonoTime,
    /// Wall-clock now (for maintenance windows).
    pub wall: SystemTime,
    /// When this app last started a migration, if ever.
    pub last_migration_at: Option<MonoTime>,
    /// Migrations of this app in flight.
    pub in_flight: usize,
    /// Load of the source node, as a fraction of its capacity (0.0..).
    pub source_load: f64,
}

/// Why a migration must wait.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum DeferReason {
    /// Too soon after the previous migration.
    Cooldown {
        /// Time left.
        remaining: Duration,
    },
    /// Too many migrations in flight.
    ConcurrencyLimit {
        /// Migrations in flight.
        in_flight: usize,
        /// The cap.
        max: usize,
    },
    /// Outside every maintenance window.
    OutsideMaintenanceWindow {
        /// Time until the next window opens.
        opens_in: Duration,
    },
    /// The source is not loaded enough to justify a voluntary move.
    BelowLoadThreshold {
        /// The source's load.
        load: f64,
        /// The threshold.
        threshold: f64,
    },
}

/// The verdict.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum MigrationDecision {
    /// Start now.
    Allow,
    /// Wait, for this reason.
    Defer(DeferReason),
}

/// A policy field that is out of range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// `max_concurrent` is zero.
    #[error("migration policy max_concurrent must be at least 1")]
    ZeroConcurrency,
    /// `load_threshold` is negative or not finite.
    #[error("migration policy load_threshold must be a finite number >= 0, got {value}")]
    LoadThreshold {
        /// The rejected value.
        value: f64,
    },
    /// A maintenance window is out of range.
    #[error(
        "maintenance_windows[{index}]: start_minute must be < 1440 and duration_minutes in 1..=1440"
    )]
    Window {
        /// Index of the bad window.
        index: usize,
    },
}

/// Rules for when migrations may run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MigrationPolicy {
    /// Minimum time between two voluntary migrations of the same app.
    pub cooldown: Duration,
    /// The most migrations of one app in flight at once.
    pub max_concurrent: usize,
    /// Daily UTC windows for voluntary migrations; empty means any time.
    pub maintenance_windows: Vec<MaintenanceWindow>,
    /// Voluntary migrations only leave a source loaded at least this much (0.0: always).
    pub load_threshold: f64,
}

impl Default for MigrationPolicy {
    /// 5 minute cooldown, 1 at a time, any time of day, no load threshold.
    fn default() -> Self {
        MigrationPolicy {
            cooldown: Duration::from_secs(300),
            max_concurrent: 1,
            maintenance_windows: Vec::new(),
            load_threshold: 0.0,
        }
    }
}

impl MigrationPolicy {
    /// Checks every field, naming the first bad one.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.max_concurrent == 0 {
            return Err(PolicyError::ZeroConcurrency);
        }
        if !self.load_threshold.is_finite() || self.load_threshold < 0.0 {
            return Err(PolicyError::LoadThreshold {
                value: self.load_threshold,
            });
        }
        for (index, w) in self.maintenance_windows.iter().enumerate() {
            if u32::from(w.start_minute) >= MINUTES_PER_DAY
                || w.duration_minutes == 0
                || u32::from(w.duration_minutes) > MINUTES_PER_DAY
            {
                return Err(PolicyError::Window { index });
            }
        }
        Ok(())
    }

    /// Decides whether the requested migration may start now.
    ///
    /// Checks run in a fixed order (concurrency, then for voluntary moves: cooldown, window,
    /// load) and the first that fails is reported.
    pub fn decide(&self, request: &MigrationRequest) -> MigrationDecision {
        if request.in_flight >= self.max_concurrent {
            return MigrationDecision::Defer(DeferReason::ConcurrencyLimit {
                in_flight: request.in_flight,
                max: self.max_concurrent,
            });
        }
        if request.cause == MigrationCause::Forced {
            return MigrationDecision::Allow;
        }
        if let Some(last) = request.last_migration_at {
            let elapsed = request.now.saturating_duration_since(last);
            if elapsed < self.cooldown {
                return MigrationDecision::Defer(DeferReason::Cooldown {
                    remaining: self.cooldown - elapsed,
                });
            }
        }
        if let Some(wait) = self.window_wait(request.wall)
            && !wait.is_zero()
        {
            return MigrationDecision::Defer(DeferReason::OutsideMaintenanceWindow {
                opens_in: wait,
            });
        }
        if request.source_load < self.load_threshold {
            return MigrationDecision::Defer(DeferReason::BelowLoadThreshold {
                load: request.source_load,
                threshold: self.load_threshold,
            });
        }
        MigrationDecision::Allow
    }

    /// Time until some window is open (zero if one is), or `None` without windows.
    fn window_wait(&self, wall: SystemTime) -> Option<Duration> {
        let since_epoch = wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let secs_of_day = since_epoch.as_secs() % u64::from(MINUTES_PER_DAY * 60);
        let minute = (secs_of_day / 60) as u32;
        let into_minute = Duration::from_secs(secs_of_day % 60);
        self.maintenance_windows
            .iter()
            .map(|w| w.wait_from(minute))
            .min()
            .map(|minutes| {
                if minutes == 0 {
                    Duration::ZERO
                } else {
                    Duration::from_secs(u64::from(minutes) * 60).saturating_sub(into_minute)
                }
            })
    }
}

#[cfg(test)]
#[path = "migration_policy_test.rs"]
mod tests;
