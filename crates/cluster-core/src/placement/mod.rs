//! Placement: which nodes may run an app instance, in what order of preference, and whether a
//! migration may happen now.
//!
//! - [`PlacementRules`] evaluates [`PlacementRule`]s over [`NodeCandidate`]s into a
//!   [`Placement`]: nodes that pass every hard rule, ranked by soft-rule score then load, and
//!   the nodes excluded with every [`ExclusionReason`] that applies.
//! - [`MigrationPolicy`] decides whether a migration may start now ([`MigrationDecision`]):
//!   cooldown, concurrency cap, maintenance windows and a load threshold, all from values passed
//!   in.
//!
//! ```
//! use std::collections::{BTreeMap, BTreeSet};
//! use cluster_core::ids::{AppName, NodeId};
//! use cluster_core::placement::{ExclusionReason, NodeCandidate, PlacementRule, PlacementRules};
//!
//! let node = |id: &str, zone: &str, apps: &[&str]| NodeCandidate {
//!     id: NodeId::new(id).unwrap(),
//!     labels: BTreeMap::from([("zone".to_owned(), zone.to_owned())]),
//!     apps: apps.iter().map(|a| AppName::new(*a).unwrap()).collect(),
//!     load: 0,
//!     schedulable: true,
//! };
//! let rules = PlacementRules::new(vec![
//!     PlacementRule::AvoidLabel { key: "zone".into(), value: "c".into() },
//!     PlacementRule::PreferLabel { key: "zone".into(), value: "b".into(), weight: 10 },
//!     PlacementRule::AwayFromApp { app: AppName::new("orders")? },
//! ]);
//! let placement = rules.rank(&[
//!     node("n1", "a", &[]),
//!     node("n2", "b", &[]),
//!     node("n3", "c", &[]),
//!     node("n4", "b", &["orders"]),
//! ]);
//! assert_eq!(placement.best().map(NodeId::as_str), Some("n2"));
//! assert_eq!(placement.ranked.len(), 2);
//! assert!(matches!(
//!     placement.excluded[1].reasons[0],
//!     ExclusionReason::AppPresent { .. }
//! ));
//! # Ok::<(), cluster_core::ids::IdError>(())
//! ```

mod migration_policy;
mod node_candidate;
mod placement_rules;

pub use migration_policy::DeferReason;
pub use migration_policy::MaintenanceWindow;
pub use migration_policy::MigrationCause;
pub use migration_policy::MigrationDecision;
pub use migration_policy::MigrationPolicy;
pub use migration_policy::MigrationRequest;
pub use migration_policy::PolicyError;
pub use node_candidate::NodeCandidate;
pub use placement_rules::Excluded;
pub use placement_rules::ExclusionReason;
pub use placement_rules::Placement;
pub use placement_rules::PlacementRule;
pub use placement_rules::PlacementRules;
pub use placement_rules::RankedNode;
