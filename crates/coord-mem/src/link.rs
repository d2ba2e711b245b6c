//! The simulated connection between one handle and the store, with faults for tests.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// What the link between a handle and the store does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkMode {
    /// Calls go through.
    Pass,
    /// Calls fail at once with `Unavailable` (connection refused).
    Down,
    /// Calls hang until the link heals or the call deadline passes; watch events are held.
    Blackhole,
}

/// A handle's link to the store. Switch it to simulate a partition of that one client.
#[derive(Debug)]
pub struct Link {
    mode: AtomicU8,
    healed: Notify,
}

impl Default for Link {
    fn default() -> Self {
        Link {
            mode: AtomicU8::new(0),
            healed: Notify::new(),
        }
    }
}

impl Link {
    /// The current mode.
    pub fn mode(&self) -> LinkMode {
        match self.mode.load(Ordering::SeqCst) {
            1 => LinkMode::Down,
            2 => LinkMode::Blackhole,
            _ => LinkMode::Pass,
        }
    }

    /// Switches the mode.
    pub fn set_mode(&self, mode: LinkMode) {
        let v = match mode {
            LinkMode::Pass => 0,
            LinkMode::Down => 1,
            LinkMode::Blackhole => 2,
        };
        self.mode.store(v, Ordering::SeqCst);
        self.healed.notify_waiters();
    }

    /// Waits until the link passes traffic, at most `limit`; returns whether it does.
    pub(crate) async fn wait_pass(&self, limit: Option<Duration>) -> bool {
        let wait = async {
            loop {
                let notified = self.healed.notified();
                match self.mode() {
                    LinkMode::Pass => return true,
                    LinkMode::Down if limit.is_some() => return false,
                    _ => notified.await,
                }
            }
        };
        match limit {
            Some(limit) => tokio::time::timeout(limit, wait).await.unwrap_or(false),
            None => wait.await,
        }
    }
}
