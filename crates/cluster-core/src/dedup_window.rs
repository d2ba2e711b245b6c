//! A dedup window as a pure data structure.
//!
//! [`DedupWindow`] remembers keys (event ids, idempotency keys) seen within the last `window`,
//! up to `capacity` keys, and answers whether a key is new or a duplicate. Memory is bounded by
//! `capacity`: when full, the oldest key is forgotten first, and
//! [`DedupWindow::evicted_early`] counts keys forgotten before their window ended, so callers can
//! tell when capacity is too small for their rate. It reads no clock: each call passes monotonic
//! now.
//!
//! ```
//! use std::time::Duration;
//! use cluster_core::dedup_window::{DedupWindow, Seen};
//! use cluster_core::time::MonoTime;
//!
//! let mut dedup = DedupWindow::new(Duration::from_secs(60), 10_000)?;
//! let t = MonoTime::from_duration;
//! assert_eq!(dedup.check_and_record("evt-1", t(Duration::ZERO)), Seen::New);
//! assert_eq!(dedup.check_and_record("evt-1", t(Duration::from_secs(30))), Seen::Duplicate);
//! assert_eq!(dedup.check_and_record("evt-1", t(Duration::from_secs(61))), Seen::New);
//! # Ok::<(), cluster_core::dedup_window::DedupConfigError>(())
//! ```

use std::collections::HashMap;
use std::collections::VecDeque;
use std::hash::Hash;
use std::time::Duration;

use crate::time::MonoTime;

/// A dedup setting out of range, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DedupConfigError {
    /// `window` is zero.
    #[error("dedup window must be greater than zero")]
    ZeroWindow,
    /// `capacity` is zero.
    #[error("dedup capacity must be at least 1")]
    ZeroCapacity,
}

/// Whether a key was seen within the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Seen {
    /// First time (or first time since it left the window).
    New,
    /// Seen within the window.
    Duplicate,
}

/// Remembers keys for `window`, at most `capacity` at once.
#[derive(Debug, Clone)]
pub struct DedupWindow<K> {
    window: Duration,
    capacity: usize,
    /// Key -> when it was recorded.
    seen: HashMap<K, MonoTime>,
    /// Keys in the order recorded (oldest first).
    order: VecDeque<(MonoTime, K)>,
    latest: MonoTime,
    evicted_early: u64,
}

impl<K: Eq + Hash + Clone> DedupWindow<K> {
    /// A window remembering keys for `window`, at most `capacity` at once.
    pub fn new(window: Duration, capacity: usize) -> Result<DedupWindow<K>, DedupConfigError> {
        if window.is_zero() {
            return Err(DedupConfigError::ZeroWindow);
        }
        if capacity == 0 {
            return Err(DedupConfigError::ZeroCapacity);
        }
        Ok(DedupWindow {
            window,
            capacity,
            seen: HashMap::new(),
            order: VecDeque::new(),
            latest: MonoTime::ZERO,
            evicted_early: 0,
        })
    }

    /// Whether `key` was seen within the window ending at `now`; records it if new.
    ///
    /// A duplicate does not extend the key's window: the first sighting counts.
    pub fn check_and_record(&mut self, key: K, now: MonoTime) -> Seen {
        let now = self.expire(now);
        if self.seen.contains_key(&key) {
            return Seen::Duplicate;
        }
        if self.order.len() >= self.capacity
            && let Some((_, oldest)) = self.order.pop_front()
        {
            self.seen.remove(&oldest);
            self.evicted_early += 1;
        }
        self.seen.insert(key.clone(), now);
        self.order.push_back((now, key));
        Seen::New
    }

    /// Whether `key` is remembered at `now`, without recording it.
    pub fn contains(&mut self, key: &K, now: MonoTime) -> bool {
        self.expire(now);
        self.seen.contains_key(key)
    }

    /// Number of keys remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Keys forgotten because of `capacity` before their window ended.
    pub fn evicted_early(&self) -> u64 {
        self.evicted_early
    }

    fn expire(&mut self, now: MonoTime) -> MonoTime {
        self.latest = self.latest.max(now);
        let now = self.latest;
        while let Some((at, _)) = self.order.front() {
            if *at + self.window > now {
                break;
            }
            if let Some((_, key)) = self.order.pop_front() {
                self.seen.remove(&key);
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
            DedupWindow::<u32>::new(Duration::ZERO, 1).unwrap_err(),
            DedupConfigError::ZeroWindow
        );
        assert_eq!(
            DedupWindow::<u32>::new(Duration::from_secs(1), 0).unwrap_err(),
            DedupConfigError::ZeroCapacity
        );
    }

    #[test]
    fn capacity_evicts_oldest_first_and_counts_it() {
        let mut d = DedupWindow::new(Duration::from_secs(60), 2).unwrap();
        let t = MonoTime::from_millis;
        assert_eq!(d.check_and_record(1, t(0)), Seen::New);
        assert_eq!(d.check_and_record(2, t(1)), Seen::New);
        assert_eq!(d.check_and_record(3, t(2)), Seen::New);
        assert_eq!(d.evicted_early(), 1);
        assert!(!d.contains(&1, t(3)));
        assert_eq!(d.check_and_record(2, t(3)), Seen::Duplicate);
        assert_eq!(d.len(), 2);
    }

    proptest! {
        #[test]
        fn matches_a_reference_model_while_under_capacity(
            events in proptest::collection::vec((0u8..20, 0u64..30), 1..200),
        ) {
            let window_ms = 100;
            let mut d = DedupWindow::new(Duration::from_millis(window_ms), 1_000).unwrap();
            let mut first_seen: HashMap<u8, u64> = HashMap::new();
            let mut now = 0;
            for (key, gap) in events {
                now += gap;
                let expected = match first_seen.get(&key) {
                    Some(&at) if at + window_ms > now => Seen::Duplicate,
                    _ => {
                        first_seen.insert(key, now);
                        Seen::New
                    }
                };
                prop_assert_eq!(d.check_and_record(key, MonoTime::from_millis(now)), expected);
            }
            prop_assert_eq!(d.evicted_early(), 0);
        }

        #[test]
        fn never_calls_an_unseen_key_a_duplicate_and_stays_bounded(
            events in proptest::collection::vec((0u16..500, 0u64..5), 1..300),
            capacity in 1usize..20,
        ) {
            let mut d = DedupWindow::new(Duration::from_millis(50), capacity).unwrap();
            let mut ever: std::collections::HashSet<u16> = Default::default();
            let mut now = 0;
            for (key, gap) in events {
                now += gap;
                let seen = d.check_and_record(key, MonoTime::from_millis(now));
                if !ever.contains(&key) {
                    prop_assert_eq!(seen, Seen::New);
                }
                ever.insert(key);
                prop_assert!(d.len() <= capacity);
            }
        }
    }
}
