//! Hard and soft placement rules, evaluated to a ranked node list.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde::Serialize;

use super::node_candidate::NodeCandidate;
use crate::ids::AppName;
use crate::ids::NodeId;

/// One placement rule. All are hard (a node failing one is excluded) except `PreferLabel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum PlacementRule {
    /// Only nodes with label `key=value`.
    OnLabel {
        /// Label key.
        key: String,
        /// Required value.
        value: String,
    },
    /// No node with label `key=value`.
    AvoidLabel {
        /// Label key.
        key: String,
        /// Avoided value.
        value: String,
    },
    /// Soft: nodes with label `key=value` score `weight` more (negative discourages).
    PreferLabel {
        /// Label key.
        key: String,
        /// Preferred value.
        value: String,
        /// Score added when the label matches.
        weight: i32,
    },
    /// Only the listed nodes.
    OnNodes {
        /// The allowed nodes.
        nodes: BTreeSet<NodeId>,
    },
    /// Affinity: only nodes that already run `app`.
    WithApp {
        /// The app to run next to.
        app: AppName,
    },
    /// Anti-affinity: no node that runs `app`.
    AwayFromApp {
        /// The app to stay away from.
        app: AppName,
    },
}

/// Why a node was excluded.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum ExclusionReason {
    /// The node does not accept new work.
    NotSchedulable,
    /// An `on_label` rule: the node lacks `key=value`.
    MissingLabel {
        /// Label key.
        key: String,
        /// Required value.
        value: String,
    },
    /// An `avoid_label` rule: the node has `key=value`.
    AvoidedLabel {
        /// Label key.
        key: String,
        /// Avoided value.
        value: String,
    },
    /// An `on_nodes` rule: the node is not listed.
    NotListed,
    /// A `with_app` rule: the node does not run `app`.
    AppAbsent {
        /// The app required alongside.
        app: AppName,
    },
    /// An `away_from_app` rule: the node runs `app`.
    AppPresent {
        /// The app to stay away from.
        app: AppName,
    },
}

/// A node that passed every hard rule, with its soft-rule score.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RankedNode {
    /// The node.
    pub id: NodeId,
    /// Sum of matching `prefer_label` weights.
    pub score: i64,
    /// Its current load (tie-breaker).
    pub load: u32,
}

/// A node excluded by hard rules, with every reason that applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Excluded {
    /// The node.
    pub id: NodeId,
    /// Each failed rule, in rule order (`NotSchedulable` first).
    pub reasons: Vec<ExclusionReason>,
}

/// The result of evaluating rules: ranked candidates and explained exclusions.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Placement {
    /// Eligible nodes, best first: higher score, then lower load, then node id.
    pub ranked: Vec<RankedNode>,
    /// Excluded nodes in input order.
    pub excluded: Vec<Excluded>,
}

impl Placement {
    /// The best node, if any passed.
    pub fn best(&self) -> Option<&NodeId> {
        self.ranked.first().map(|r| &r.id)
    }

    /// Why `node` was excluded (empty if it was not).
    pub fn reasons_for(&self, node: &NodeId) -> &[ExclusionReason] {
        self.excluded
            .iter()
            .find(|e| &e.id == node)
            .map_or(&[], |e| e.reasons.as_slice())
    }
}

/// A set of placement rules for one app.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PlacementRules {
    rules: Vec<PlacementRule>,
}

impl PlacementRules {
    /// Rules evaluated in the given order.
    pub fn new(rules: Vec<PlacementRule>) -> PlacementRules {
        PlacementRules { rules }
    }

    /// The rules.
    pub fn rules(&self) -> &[PlacementRule] {
        &self.rules
    }

    /// Every hard rule `node` fails (empty: it is eligible).
    pub fn exclusions(&self, node: &NodeCandidate) -> Vec<ExclusionReason> {
        let mut reasons = Vec::new();
        if !node.schedulable {
            reasons.push(ExclusionReason::NotSchedulable);
        }
        for rule in &self.rules {
            let failed = match rule {
                PlacementRule::OnLabel { key, value } => {
                    (!node.has_label(key, value)).then(|| ExclusionReason::MissingLabel {
                        key: key.clone(),
                        value: value.clone(),
                    })
                }
                PlacementRule::AvoidLabel { key, value } => {
                    node.has_label(key, value)
                        .then(|| ExclusionReason::AvoidedLabel {
                            key: key.clone(),
                            value: value.clone(),
                        })
                }
                PlacementRule::PreferLabel { .. } => None,
                PlacementRule::OnNodes { nodes } => {
                    (!nodes.contains(&node.id)).then_some(ExclusionReason::NotListed)
                }
                PlacementRule::WithApp { app } => (!node.apps.contains(app))
                    .then(|| ExclusionReason::AppAbsent { app: app.clone() }),
                PlacementRule::AwayFromApp { app } => node
                    .apps
                    .contains(app)
                    .then(|| ExclusionReason::AppPresent { app: app.clone() }),
            };
            reasons.extend(failed);
        }
        reasons
    }

    /// The soft-rule score of `node`.
    pub fn score(&self, node: &NodeCandidate) -> i64 {
        self.rules
            .iter()
            .map(|rule| match rule {
                PlacementRule::PreferLabel { key, value, weight } if node.has_label(key, value) => {
                    i64::from(*weight)
                }
                _ => 0,
            })
            .sum()
    }

    /// Evaluates every candidate: a ranked list and the excluded nodes with reasons.
    pub fn rank(&self, candidates: &[NodeCandidate]) -> Placement {
        let mut placement = Placement::default();
        for node in candidates {
            let reasons = self.exclusions(node);
            if reasons.is_empty() {
                placement.ranked.push(RankedNode {
                    id: node.id.clone(),
                    score: self.score(node),
                    load: node.load,
                });
            } else {
                placement.excluded.push(Excluded {
                    id: node.id.clone(),
                    reasons,
                });
            }
        }
        placement.ranked.sort_by(|a, b| {
            b.score
                .cmp(&a.score)
                .then(a.load.cmp(&b.load))
                .then(a.id.cmp(&b.id))
        });
        placement
    }
}

#[cfg(test)]
#[path = "placement_rules_test.rs"]
mod tests;
