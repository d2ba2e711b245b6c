//! A clock for tests that moves only when told.

use std::sync::Mutex;
use std::sync::PoisonError;
use std::time::Duration;
use std::time::SystemTime;

use super::Clock;
use crate::time::MonoTime;

/// A [`Clock`] whose time is set by the test: monotonic and wall time advance together.
#[derive(Debug)]
pub struct ManualClock {
    state: Mutex<(MonoTime, SystemTime)>,
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

impl ManualClock {
    /// A clock at monotonic zero and wall time 2024-01-01T00:00:00Z.
    pub fn new() -> ManualClock {
        ManualClock::starting_at(
            MonoTime::ZERO,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_067_200),
        )
    }

    /// A clock starting at the given monotonic and wall times.
    pub fn starting_at(now: MonoTime, wall: SystemTime) -> ManualClock {
        ManualClock {
            state: Mutex::new((now, wall)),
        }
    }

    /// Moves both clocks forward by `d`.
    pub fn advance(&self, d: Duration) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.0 += d;
        state.1 += d;
    }

    /// Sets the wall clock alone, as an NTP step would; monotonic time is unaffected.
    pub fn set_wall(&self, wall: SystemTime) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).1 = wall;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> MonoTime {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).0
    }

    fn wall(&self) -> SystemTime {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advances_only_when_told() {
        let clock = ManualClock::new();
        let (t0, w0) = (clock.now(), clock.wall());
        assert_eq!(clock.now(), t0);
        clock.advance(Duration::from_millis(1500));
        assert_eq!(clock.now(), t0 + Duration::from_millis(1500));
        assert_eq!(clock.wall(), w0 + Duration::from_millis(1500));
        clock.set_wall(SystemTime::UNIX_EPOCH);
        assert_eq!(clock.wall(), SystemTime::UNIX_EPOCH);
        assert_eq!(clock.now(), t0 + Duration::from_millis(1500));
    }
}
