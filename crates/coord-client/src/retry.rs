//! Retrying retryable coordination errors with exponential backoff and jitter.

use cluster_core::error::Retryable;
use std::future::Future;
use std::time::Duration;

use cluster_core::coordination::CoordResult;

/// How long and how often to retry an operation that failed with a retryable error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first backoff.
    pub initial: Duration,
    /// The largest backoff.
    pub max: Duration,
    /// Give up once this much time has passed since the first attempt.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(1),
            budget: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// No retries: one attempt.
    pub const NONE: RetryPolicy = RetryPolicy {
        initial: Duration::ZERO,
        max: Duration::ZERO,
        budget: Duration::ZERO,
    };

    /// The backoff before attempt `attempt` (1-based), with full jitter in [d/2, d].
    pub fn backoff(&self, attempt: u32) -> Duration {
        cluster_core::backoff::Backoff::new(self.initial, self.max)
            .jittered(attempt, fastrand::f64())
    }

    /// Runs `op` until it succeeds, fails with a non-retryable error, or the budget is spent;
    /// returns the last error then.
    pub async fn run<T, F, Fut>(&self, mut op: F) -> CoordResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = CoordResult<T>>,
    {
        let started = crate::instant_now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match op().await {
                Err(e) if e.is_retryable() => {
                    let wait = self.backoff(attempt);
                    if started.elapsed() + wait > self.budget {
                        return Err(e);
                    }
                    tracing::debug!(attempt, error = %e, ?wait, "retrying");
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cluster_core::coordination::{CoordError, Operation};

    #[test]
    fn backoff_grows_to_the_cap_with_jitter_in_the_upper_half() {
        let p = RetryPolicy::default();
        for attempt in 1..30 {
            let d = p.backoff(attempt);
            let full = (p.initial * 2u32.pow((attempt - 1).min(20))).min(p.max);
            assert!(
                d >= full / 2 && d <= full,
                "attempt {attempt}: {d:?} vs {full:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_only_retryable_errors_within_the_budget() {
        let p = RetryPolicy::default();
        let mut calls = 0;
        let result: CoordResult<()> = p
            .run(|| {
                calls += 1;
                async {
                    Err(CoordError::timed_out(
                        Operation::Read,
                        Duration::from_secs(1),
                    ))
                }
            })
            .await;
        assert!(result.is_err());
        assert!(calls > 3, "retried {calls} times");

        let mut calls = 0;
        let result: CoordResult<()> = p
            .run(|| {
                calls += 1;
                async { Err(CoordError::bad_request("no")) }
            })
            .await;
        assert!(matches!(result, Err(CoordError::BadRequest { .. })));
        assert_eq!(calls, 1);
    }
}
