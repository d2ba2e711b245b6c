//! Fencing: reject writes made on behalf of an owner that has since been replaced.
//!
//! The receiving side of a guarded write keeps, per resource, the newest [`FencingToken`] it
//! has accepted: its [`HighWater`] mark. A write that presents an older token is refused with
//! [`StaleToken`]; an equal or newer token is admitted and raises the mark.
//!
//! The mark is state the caller persists next to the resource it protects, ideally in the same
//! transaction as the guarded write, so a restart can never lower it. Two APIs serve that:
//!
//! - [`HighWater::admit`] is a pure function from the stored mark and the presented token to
//!   the mark to store back: an adapter reads the mark, calls it, and writes both in one
//!   transaction.
//! - [`FencingGuard`] keeps marks for many resources in memory; [`FencingGuard::restore`] loads
//!   persisted marks and [`FencingGuard::admit`] returns the new mark to persist.
//!
//! ```
//! use cluster_core::fencing::{FencingGuard, HighWater};
//! use cluster_core::ids::FencingToken;
//!
//! let mut guard = FencingGuard::new();
//! let mark = guard.admit("orders/p7", FencingToken::new(12))?;
//! assert_eq!(mark, HighWater::at(FencingToken::new(12)));
//!
//! // A paused former owner wakes up with its old token: refused.
//! let stale = guard.admit("orders/p7", FencingToken::new(9)).unwrap_err();
//! assert_eq!(stale.newest, FencingToken::new(12));
//!
//! // After a restart, the persisted mark is loaded back before any write is accepted.
//! let mut restarted = FencingGuard::new();
//! restarted.restore("orders/p7", mark);
//! assert!(restarted.check("orders/p7", FencingToken::new(9)).is_err());
//! # Ok::<(), cluster_core::fencing::StaleToken>(())
//! ```

use std::collections::HashMap;

use serde::Deserialize;
use serde::Serialize;

use crate::ids::FencingToken;

/// A write presented a token older than the newest one accepted for the resource.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stale fencing token for {resource:?}: presented {presented}, newest accepted {newest}")]
pub struct StaleToken {
    /// The guarded resource.
    pub resource: String,
    /// The token the write carried.
    pub presented: FencingToken,
    /// The newest token accepted so far.
    pub newest: FencingToken,
}

/// The newest token accepted for one resource; persisted by the caller, serialised as an
/// integer or `null`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct HighWater(Option<FencingToken>);

impl HighWater {
    /// The mark of a resource that has accepted no token yet.
    pub const NONE: HighWater = HighWater(None);

    /// A mark at `token`.
    pub const fn at(token: FencingToken) -> HighWater {
        HighWater(Some(token))
    }

    /// The newest accepted token, if any.
    pub const fn newest(self) -> Option<FencingToken> {
        self.0
    }

    /// Whether `token` would be admitted (it is not older than the mark).
    pub fn check(self, resource: &str, token: FencingToken) -> Result<(), StaleToken> {
        match self.0 {
            Some(newest) if token < newest => Err(StaleToken {
                resource: resource.to_owned(),
                presented: token,
                newest,
            }),
            _ => Ok(()),
        }
    }

    /// Admits `token`, returning the mark to persist; refuses a token older than the mark.
    pub fn admit(self, resource: &str, token: FencingToken) -> Result<HighWater, StaleToken> {
        self.check(resource, token)?;
        Ok(HighWater(Some(token)))
    }

    /// The larger of two marks; merging never lowers a mark.
    pub fn merge(self, other: HighWater) -> HighWater {
        self.max(other)
    }
}

/// In-memory high-water marks for many resources.
#[derive(Debug, Clone, Default)]
pub struct FencingGuard {
    marks: HashMap<String, HighWater>,
}

impl FencingGuard {
    /// A guard that has accepted nothing.
    pub fn new() -> FencingGuard {
        FencingGuard::default()
    }

    /// The current mark of `resource`.
    pub fn high_water(&self, resource: &str) -> HighWater {
        self.marks.get(resource).copied().unwrap_or_default()
    }

    /// Loads a persisted mark; an older mark than the one held is ignored.
    pub fn restore(&mut self, resource: impl Into<String>, mark: HighWater) {
        let held = self.marks.entry(resource.into()).or_default();
        *held = held.merge(mark);
    }

    /// Whether a write for `resource` carrying `token` would be admitted.
    pub fn check(&self, resource: &str, token: FencingToken) -> Result<(), StaleToken> {
        self.high_water(resource).check(resource, token)
    }

    /// Admits a write for `resource` carrying `token` and returns the mark to persist.
    pub fn admit(&mut self, resource: &str, token: FencingToken) -> Result<HighWater, StaleToken> {
        let current = self.high_water(resource);
        let next = current.admit(resource, token)?;
        if next != current {
            self.marks.insert(resource.to_owned(), next);
        }
        Ok(next)
    }

    /// Every resource with its mark, for persisting the whole guard.
    pub fn marks(&self) -> impl Iterator<Item = (&str, HighWater)> {
        self.marks.iter().map(|(k, v)| (k.as_str(), *v))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn t(v: u64) -> FencingToken {
        FencingToken::new(v)
    }

    #[test]
    fn older_tokens_are_refused_with_both_tokens_named() {
        let mut guard = FencingGuard::new();
        guard.admit("r", t(5)).unwrap();
        guard.admit("r", t(5)).unwrap(); // the same owner writes again
        let err = guard.admit("r", t(4)).unwrap_err();
        assert_eq!(
            err,
            StaleToken {
                resource: "r".into(),
                presented: t(4),
                newest: t(5)
            }
        );
        assert!(err.to_string().contains("t4") && err.to_string().contains("t5"));
        assert_eq!(guard.admit("other", t(1)), Ok(HighWater::at(t(1))));
    }

    #[test]
    fn restore_never_lowers_a_mark() {
        let mut guard = FencingGuard::new();
        guard.admit("r", t(9)).unwrap();
        guard.restore("r", HighWater::at(t(3)));
        assert_eq!(guard.high_water("r"), HighWater::at(t(9)));
        guard.restore("r", HighWater::at(t(11)));
        assert!(guard.check("r", t(10)).is_err());
    }

    #[test]
    fn high_water_serialises_as_integer_or_null() {
        assert_eq!(serde_json::to_string(&HighWater::NONE).unwrap(), "null");
        assert_eq!(serde_json::to_string(&HighWater::at(t(7))).unwrap(), "7");
        let back: HighWater = serde_json::from_str("7").unwrap();
        assert_eq!(back.newest(), Some(t(7)));
    }

    proptest! {
        #[test]
        fn guards_never_accept_an_older_token(tokens in proptest::collection::vec(0u64..50, 1..60)) {
            let mut guard = FencingGuard::new();
            let mut newest: Option<u64> = None;
            for v in tokens {
                let result = guard.admit("r", t(v));
                match newest {
                    Some(n) if v < n => prop_assert!(result.is_err()),
                    _ => {
                        prop_assert_eq!(result, Ok(HighWater::at(t(v))));
                        newest = Some(v);
                    }
                }
                // The mark never decreases and always equals the max admitted so far.
                prop_assert_eq!(guard.high_water("r").newest(), newest.map(t));
            }
        }

        #[test]
        fn persisting_and_restoring_keeps_refusing(a in 0u64..100, b in 0u64..100) {
            let mut guard = FencingGuard::new();
            let mark = guard.admit("r", t(a)).unwrap();
            let json = serde_json::to_string(&mark).unwrap();
            let mut restarted = FencingGuard::new();
            restarted.restore("r", serde_json::from_str(&json).unwrap());
            prop_assert_eq!(restarted.check("r", t(b)).is_ok(), b >= a);
        }
    }
}
