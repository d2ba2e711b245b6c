//! A node as placement sees it.

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use serde::Deserialize;
use serde::Serialize;

use crate::ids::AppName;
use crate::ids::NodeId;

/// A node that might receive an app instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCandidate {
    /// The node.
    pub id: NodeId,
    /// Its labels (`zone=eu-1`, `disk=ssd`, ...).
    pub labels: BTreeMap<String, String>,
    /// Apps that already run on it.
    pub apps: BTreeSet<AppName>,
    /// How many instances it runs now; fewer ranks higher among equal scores.
    pub load: u32,
    /// Whether it accepts new work at all (alive, not cordoned).
    pub schedulable: bool,
}

impl NodeCandidate {
    /// Whether the node carries label `key=value`.
    pub fn has_label(&self, key: &str, value: &str) -> bool {
        self.labels.get(key).is_some_and(|v| v == value)
    }
}
