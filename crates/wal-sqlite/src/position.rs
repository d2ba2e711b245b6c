//! `Position`: a point in the replicated history.

use serde::{Deserialize, Serialize};

/// A point in the history: after segment `index` of `generation` (index 0: the generation's
/// starting state, before any segment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Position {
    /// The generation.
    pub generation: u64,
    /// The last segment included.
    pub index: u64,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "g{}/{}", self.generation, self.index)
    }
}
