//! Waiting on observable state instead of sleeping.
//!
//! A test never sleeps to let something happen: it waits until what it needs is true
//! ([`eventually`], whose limit only bounds a hang), or, to show that something does *not*
//! happen, it checks that a predicate [`stays_true_for`] a stated time. The second is the only
//! kind of wait whose length is part of the test's meaning, so it is named and its cost is
//! explicit at the call site.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often both waits look.
const POLL: Duration = Duration::from_millis(20);

/// Polls `check` until it holds; panics naming `what` after `limit` (which only bounds a hang).
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "never happened within {limit:?}: {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Checks `holds` for `window`, looking every few milliseconds; panics naming `what` at the
/// first look where it is false. For negative claims: "b does not take the lock a holds".
pub async fn stays_true_for(what: &str, window: Duration, mut holds: impl FnMut() -> bool) {
    let start = Instant::now();
    loop {
        assert!(
            holds(),
            "stopped holding after {:?} of {window:?}: {what}",
            start.elapsed()
        );
        if start.elapsed() >= window {
            return;
        }
        tokio::time::sleep(POLL.min(window)).await;
    }
}
