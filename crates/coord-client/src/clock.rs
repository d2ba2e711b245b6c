//! The `Clock` port over tokio's clock, and the one module of the product crates that reads a
//! clock (`clippy.toml` forbids `Instant::now` and `SystemTime::now` everywhere else).
//!
//! Deadlines that decide ownership run on [`MonoTime`] from an injected `Clock` ([`BootClock`] for
//! sessions); [`instant_now`] serves timers and call deadlines that tokio sleeps on; [`wall_now`]
//! stamps records shown to people.
#![allow(clippy::disallowed_methods)]

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

/// tokio's current instant, for timers, call deadlines and elapsed-time metrics (pausable in
/// tests). Never for an ownership deadline: those are [`MonoTime`] values from a `Clock`.
pub fn instant_now() -> Instant {
    Instant::now()
}

/// The wall clock, for timestamps shown to people or stored in records; never for deadlines.
pub fn wall_now() -> SystemTime {
    SystemTime::now()
}

/// The tokio instant of a [`MonoTime`] from [`mono_now`], for `sleep_until`.
pub fn to_instant(t: MonoTime) -> Instant {
    origin() + t.as_duration()
}

/// A clock that keeps counting while the machine is suspended (Linux `CLOCK_BOOTTIME`), as
/// [`MonoTime`] from the process's first reading.
///
/// `CLOCK_MONOTONIC` (tokio's and std's `Instant`) stops during a system suspend: a host or VM
/// resumed after longer than a lease's TTL would otherwise believe its session valid. Sessions
/// check their deadline on this clock too.
#[derive(Debug, Clone, Copy, Default)]
pub struct BootClock;

impl BootClock {
    fn read() -> std::time::Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes into the timespec we own; BOOTTIME exists on Linux.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
        if rc != 0 {
            // Not expected on Linux; fall back to the monotonic clock rather than fail.
            return Instant::now().saturating_duration_since(origin());
        }
        std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }
}

impl Clock for BootClock {
    fn now(&self) -> MonoTime {
        static BOOT_ORIGIN: OnceLock<std::time::Duration> = OnceLock::new();
        let origin = *BOOT_ORIGIN.get_or_init(BootClock::read);
        MonoTime::from_duration(BootClock::read().saturating_sub(origin))
    }

    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
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
