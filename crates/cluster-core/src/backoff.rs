//! Exponential backoff as a value: the delays double from `initial` up to `max`. Pure: the
//! caller brings the clock and, for jitter, the random source, so the arithmetic is tested
//! without either.

use std::time::Duration;

/// Delays that double from `initial` up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay.
    pub initial: Duration,
    /// The largest delay.
    pub max: Duration,
}

impl Backoff {
    /// Delays from `initial`, doubling, capped at `max`.
    pub const fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff { initial, max }
    }

    /// The delay after one of `previous`: twice it, at most `max` (and at least `initial`).
    pub fn after(&self, previous: Duration) -> Duration {
        previous.saturating_mul(2).max(self.initial).min(self.max)
    }

    /// The delay before retry `attempt` (1-based): `initial` doubled `attempt - 1` times, at most
    /// `max`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.initial.saturating_mul(1u32 << doublings).min(self.max)
    }

    /// [`Backoff::ceiling`] with jitter over its upper half: `unit` in `[0, 1]` (from the
    /// caller's random source; a NaN counts as 0) picks a delay in `[ceiling / 2, ceiling]`, so
    /// retries of many clients spread out while none waits less than half the ceiling.
    pub fn jittered(&self, attempt: u32, unit: f64) -> Duration {
        let ceiling = self.ceiling(attempt);
        let half = ceiling / 2;
        let unit = if unit.is_nan() {
            0.0
        } else {
            unit.clamp(0.0, 1.0)
        };
        half + (ceiling - half).mul_f64(unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));

    #[test]
    fn ceilings_double_to_the_cap_and_never_overflow() {
        let ms = |a| B.ceiling(a).as_millis();
        assert_eq!(
            (ms(0), ms(1), ms(2), ms(3), ms(5), ms(6)),
            (50, 50, 100, 200, 800, 1000)
        );
        assert_eq!(B.ceiling(u32::MAX), B.max);
        let huge = Backoff::new(Duration::MAX / 2, Duration::MAX);
        assert_eq!(huge.ceiling(40), Duration::MAX);
    }

    #[test]
    fn after_doubles_from_initial_to_the_cap() {
        assert_eq!(B.after(Duration::ZERO), B.initial);
        assert_eq!(
            B.after(Duration::from_millis(300)),
            Duration::from_millis(600)
        );
        assert_eq!(B.after(Duration::from_millis(600)), B.max);
        assert_eq!(B.after(Duration::MAX), B.max);
    }

    #[test]
    fn jitter_stays_in_the_upper_half() {
        assert_eq!(B.jittered(3, 0.0), Duration::from_millis(100));
        assert_eq!(B.jittered(3, 1.0), Duration::from_millis(200));
        assert_eq!(B.jittered(3, 0.5), Duration::from_millis(150));
        assert_eq!(B.jittered(3, 7.0), Duration::from_millis(200));
        assert_eq!(B.jittered(3, f64::NAN), Duration::from_millis(100));
    }
}
