//! The `Clock` port: the only way time enters the runtime.
//!
//! The core never reads a clock; the runtime asks a [`Clock`] and passes the values in. Adapters
//! outside the core implement it over `std::time::Instant` / `SystemTime` or tokio's paused time.
//! `ManualClock` (with the `test-util` feature) is a clock that moves only when told.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use cluster_core::clock::{Clock, ManualClock};
//!
//! let clock = Arc::new(ManualClock::new());
//! let port: Arc<dyn Clock> = clock.clone();
//! let t0 = port.now();
//! clock.advance(Duration::from_secs(3));
//! assert_eq!(port.now().saturating_duration_since(t0), Duration::from_secs(3));
//! ```

use std::time::SystemTime;

use crate::time::MonoTime;

/// A source of time: a monotonic clock for deadlines and a wall clock for timestamps.
///
/// Implementations must keep [`Clock::now`] non-decreasing. [`Clock::wall`] may jump (NTP); use
/// it only for timestamps shown to people or stored in events, never for deadlines.
pub trait Clock: Send + Sync {
    /// The current monotonic time.
    fn now(&self) -> MonoTime;

    /// The current wall-clock time.
    fn wall(&self) -> SystemTime;
}

#[cfg(any(test, feature = "test-util"))]
mod manual;

#[cfg(any(test, feature = "test-util"))]
pub use manual::ManualClock;
