//! The simulated connection between one handle and the store, with faults for tests.

use std::sync::Mutex;
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
    /// Calls reach the store and are applied, but every write's reply is lost: the caller sees
    /// `Unavailable` for a change that happened (an ambiguous commit). Reads and watches pass.
    DropReply,
}

/// A handle's link to the store. Switch it to simulate a partition of that one client.
#[derive(Debug)]
pub struct Link {
    mode: AtomicU8,
    healed: Notify,
    /// One-shot faults: (substring of the key path, the fault, how many writes still to hit).
    faults: Mutex<Vec<(String, Fault, usize)>>,
}

impl Default for Link {
    fn default() -> Self {
        Link {
            mode: AtomicU8::new(0),
            healed: Notify::new(),
            faults: Mutex::new(Vec::new()),
        }
    }
}

impl Link {
    /// The current mode.
    pub fn mode(&self) -> LinkMode {
        match self.mode.load(Ordering::SeqCst) {
            1 => LinkMode::Down,
            2 => LinkMode::Blackhole,
            3 => LinkMode::DropReply,
            _ => LinkMode::Pass,
        }
    }

    /// Switches the mode.
    pub fn set_mode(&self, mode: LinkMode) {
        let v = match mode {
            LinkMode::Pass => 0,
            LinkMode::Down => 1,
            LinkMode::Blackhole => 2,
            LinkMode::DropReply => 3,
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
                    LinkMode::Pass | LinkMode::DropReply => return true,
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

    /// Loses the replies of the next `count` writes to a key whose path contains `key_part`:
    /// each is applied at the store and then answered `Unavailable`, whatever the mode.
    pub fn drop_replies_on(&self, key_part: impl Into<String>, count: usize) {
        self.arm(key_part.into(), Fault::LoseReply, count);
    }

    /// Loses the next `count` writes to a key whose path contains `key_part` on the way to the
    /// store: each fails `Unavailable` without being applied.
    pub fn drop_requests_on(&self, key_part: impl Into<String>, count: usize) {
        self.arm(key_part.into(), Fault::LoseRequest, count);
    }

    fn arm(&self, key_part: String, fault: Fault, count: usize) {
        self.faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((key_part, fault, count));
    }

    /// Whether an armed one-shot `fault` applies to a write to `key_path`; consumes it.
    fn take_fault(&self, key_path: &str, fault: Fault) -> bool {
        let mut faults = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        let Some(slot) = faults
            .iter_mut()
            .find(|(part, f, left)| *f == fault && *left > 0 && key_path.contains(part.as_str()))
        else {
            return false;
        };
        slot.2 -= 1;
        faults.retain(|(_, _, left)| *left > 0);
        true
    }

    /// Whether a write to `key_path` is lost before it reaches the store.
    pub(crate) fn request_lost(&self, key_path: &str) -> bool {
        self.take_fault(key_path, Fault::LoseRequest)
    }

    /// Whether the reply of a write applied to `key_path` (none for lease calls) is lost.
    pub(crate) fn reply_lost(&self, key_path: Option<&str>) -> bool {
        if self.mode() == LinkMode::DropReply {
            return true;
        }
        key_path.is_some_and(|path| self.take_fault(path, Fault::LoseReply))
    }
}

/// A one-shot fault armed on a link for writes to matching keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    LoseRequest,
    LoseReply,
}
