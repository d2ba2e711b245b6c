//! The `Clock` port over tokio's clock.

use std::sync::OnceLock;
use std::time::SystemTime;

use cluster_core::clock::Clock;
use cluster_core::time::MonoTime;
use tokio::time::Instant;

/// The process-wide origin of [`MonoTime`] values, so every crate's values compare.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// The current monotonic time as a [`MonoTime`] (tokio's clock: pausable in tests).
pub fn mono_now() -> MonoTime {
    MonoTime::from_duration(Instant::now().saturating_duration_since(origin()))
}

/// The tokio instant of a [`MonoTime`] from [`mono_now`], for `sleep_until`.
pub fn to_instant(t: MonoTime) -> Instant {
    origin() + t.as_duration()
}

/// The `Clock` port over tokio's monotonic clock and the system wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> MonoTime {
        mono_now()
    }

    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
}
