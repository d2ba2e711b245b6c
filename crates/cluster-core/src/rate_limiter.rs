//! A sliding-window rate limiter as a pure data structure.
//!
//! [`RateLimiter`] admits at most `limit` events in any window of length `window`, counted
//! exactly (a log of admission times, at most `limit` long). It reads no clock: each call passes
//! monotonic now, and a refusal says how long until the next admission would succeed.
//!
//! ```
//! use std::time::Duration;
//! use cluster_core::rate_limiter::RateLimiter;
//! use cluster_core::time::MonoTime;
//!
//! let mut limiter = RateLimiter::new(2, Duration::from_secs(1))?;
//! let t = MonoTime::from_millis;
//! assert!(limiter.try_acquire(t(0)).is_ok());
//! assert!(limiter.try_acquire(t(100)).is_ok());
//! let refused = limiter.try_acquire(t(200)).unwrap_err();
//! assert_eq!(refused.retry_after, Duration::from_millis(800));
//! assert!(limiter.try_acquire(t(1000)).is_ok());
//! # Ok::<(), cluster_core::rate_limiter::RateLimitConfigError>(())
//! ```

use std::collections::VecDeque;
use std::time::Duration;

use crate::time::MonoTime;

/// A limiter setting out of range, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimitConfigError {
    /// `limit` is zero.
    #[error("rate limit must be at least 1")]
    ZeroLimit,
    /// `window` is zero.
    #[error("rate limit window must be greater than zero")]
    ZeroWindow,
}

/// The event was refused; retry after `retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate limit of {limit} per {window:?} reached; retry in {retry_after:?}")]
pub struct RateLimited {
    /// The configured limit.
    pub limit: u32,
    /// The configured window.
    pub window: Duration,
    /// Time until an admission would succeed.
    pub retry_after: Duration,
}

/// Admits at most `limit` events in any sliding window of length `window`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimiter {
    limit: u32,
    window: Duration,
    admitted: VecDeque<MonoTime>,
    latest: MonoTime,
}

impl RateLimiter {
    /// A limiter of `limit` events per `window`.
    pub fn new(limit: u32, window: Duration) -> Result<RateLimiter, RateLimitConfigError> {
        if limit == 0 {
            return Err(RateLimitConfigError::ZeroLimit);
        }
        if window.is_zero() {
            return Err(RateLimitConfigError::ZeroWindow);
        }
        Ok(RateLimiter {
            limit,
            window,
            admitted: VecDeque::with_capacity(limit.min(1024) as usize),
            latest: MonoTime::ZERO,
        })
    }

    /// Admits one event at `now`, or says how long to wait.
    ///
    /// A `now` earlier than one already seen is treated as that time.
    pub fn try_acquire(&mut self, now: MonoTime) -> Result<(), RateLimited> {
        let now = self.advance(now);
        if self.admitted.len() < self.limit as usize {
            self.admitted.push_back(now);
            return Ok(());
        }
        let oldest = self.admitted.front().copied().unwrap_or(now);
        Err(RateLimited {
            limit: self.limit,
            window: self.window,
            retry_after: (oldest + self.window).saturating_duration_since(now),
        })
    }

    /// How many events would be admitted at `now`.
    pub fn available(&mut self, now: MonoTime) -> u32 {
        self.advance(now);
        self.limit - self.admitted.len() as u32
    }

    /// Forgets admissions that have left the window ending at `now`.
    fn advance(&mut self, now: MonoTime) -> MonoTime {
        self.latest = self.latest.max(now);
        let now = self.latest;
        while let Some(&front) = self.admitted.front() {
            if front + self.window <= now {
                self.admitted.pop_front();
            } else {
                break;
            }
        }
        now
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn config_errors_are_typed() {
        assert_eq!(
            RateLimiter::new(0, Duration::from_secs(1)),
            Err(RateLimitConfigError::ZeroLimit)
        );
        assert_eq!(
            RateLimiter::new(1, Duration::ZERO),
            Err(RateLimitConfigError::ZeroWindow)
        );
    }

    #[test]
    fn window_slides() {
        let mut l = RateLimiter::new(3, Duration::from_millis(100)).unwrap();
        let t = MonoTime::from_millis;
        for ms in [0, 10, 20] {
            l.try_acquire(t(ms)).unwrap();
        }
        assert_eq!(l.available(t(50)), 0);
        assert_eq!(
            l.try_acquire(t(50)).unwrap_err().retry_after,
            Duration::from_millis(50)
        );
        assert_eq!(l.available(t(100)), 1);
        assert_eq!(l.available(t(120)), 3);
        // Time going backwards does not reopen the window.
        l.try_acquire(t(120)).unwrap();
        assert_eq!(l.available(t(0)), 2);
    }

    proptest! {
        #[test]
        fn never_more_than_limit_in_any_window_and_never_refuses_needlessly(
            limit in 1u32..6,
            window_ms in 1u64..200,
            gaps in proptest::collection::vec(0u64..80, 1..100),
        ) {
            let window = Duration::from_millis(window_ms);
            let mut l = RateLimiter::new(limit, window).unwrap();
            let mut admitted: Vec<u64> = Vec::new();
            let mut now = 0u64;
            for gap in gaps {
                now += gap;
                let in_window = admitted.iter().filter(|&&a| a + window_ms > now).count();
                let result = l.try_acquire(MonoTime::from_millis(now));
                prop_assert_eq!(result.is_ok(), in_window < limit as usize);
                if let Err(refused) = result {
                    // Retrying exactly when told succeeds.
                    let mut probe = l.clone();
                    let retry = now + refused.retry_after.as_millis() as u64;
                    prop_assert!(probe.try_acquire(MonoTime::from_millis(retry)).is_ok());
                } else {
                    admitted.push(now);
                }
            }
        }
    }
}
