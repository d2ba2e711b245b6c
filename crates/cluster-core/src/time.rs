//! Monotonic time as a value.
//!
//! [`MonoTime`] is a point on a monotonic clock, expressed as the [`Duration`] since an
//! arbitrary per-process origin (the [`Clock`](crate::clock::Clock) adapter picks the origin,
//! usually the moment it was created). Only differences between two `MonoTime`s from the same
//! clock mean anything; they are never serialised or sent to another process.
//!
//! ```
//! use std::time::Duration;
//! use cluster_core::time::MonoTime;
//!
//! let sent = MonoTime::from_duration(Duration::from_secs(10));
//! let deadline = sent + Duration::from_secs(5);
//! assert_eq!(deadline.saturating_duration_since(sent), Duration::from_secs(5));
//! assert_eq!(sent.saturating_duration_since(deadline), Duration::ZERO);
//! ```

use std::fmt;
use std::ops::Add;
use std::ops::AddAssign;
use std::time::Duration;

/// A point on a monotonic clock: the time elapsed since the clock's origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MonoTime(Duration);

impl MonoTime {
    /// The clock's origin.
    pub const ZERO: MonoTime = MonoTime(Duration::ZERO);

    /// The point `since_origin` after the clock's origin.
    pub const fn from_duration(since_origin: Duration) -> MonoTime {
        MonoTime(since_origin)
    }

    /// The point `millis` milliseconds after the origin.
    pub const fn from_millis(millis: u64) -> MonoTime {
        MonoTime(Duration::from_millis(millis))
    }

    /// The time elapsed since the clock's origin.
    pub const fn as_duration(self) -> Duration {
        self.0
    }

    /// Time from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: MonoTime) -> Duration {
        self.0.saturating_sub(earlier.0)
    }

    /// `self + d`, or `None` on overflow.
    pub fn checked_add(self, d: Duration) -> Option<MonoTime> {
        self.0.checked_add(d).map(MonoTime)
    }

    /// `self - d`, clamped at the origin.
    pub fn saturating_sub(self, d: Duration) -> MonoTime {
        MonoTime(self.0.saturating_sub(d))
    }
}

/// Adding saturates at the largest representable time instead of panicking.
impl Add<Duration> for MonoTime {
    type Output = MonoTime;
    fn add(self, d: Duration) -> MonoTime {
        MonoTime(self.0.saturating_add(d))
    }
}

impl AddAssign<Duration> for MonoTime {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl fmt::Display for MonoTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}
