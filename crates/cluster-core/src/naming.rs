//! The one place that names store namespaces.
//!
//! Every key prefix (etcd, Consul) and every bucket (NATS KV, object store) is built by
//! [`namespace`] from a platform, an optional app and a [`NamespaceKind`]. Two renderings exist:
//!
//! | scope          | [`Namespace::key_prefix`]      | [`Namespace::bucket`]        |
//! |----------------|--------------------------------|------------------------------|
//! | app            | `/{platform}/{app}/{kind}/`    | `{platform}_{app}_{kind}`    |
//! | platform-wide  | `/{platform}/_/{kind}/`        | `{platform}_{kind}`          |
//!
//! Why this cannot collide: platform and app names match `[a-z0-9][a-z0-9-]{0,31}`, so they never
//! contain `/` or `_`, and kinds are fixed lowercase words. A bucket name therefore splits on `_`
//! into exactly its parts (two parts: platform-wide, three: app). A key prefix has exactly three
//! `/`-separated segments, and the platform-wide marker `_` is not a valid app name, so no key
//! prefix is equal to, or a prefix of, another (a scan of one namespace never sees another's keys).
//! The older `{platform}_{app}_locks` scheme let app `orders_locks` collide with app `orders`;
//! that app name is now rejected by [`AppName`].
//!
//! ```
//! use cluster_core::ids::{AppName, PlatformName};
//! use cluster_core::naming::{namespace, NamespaceKind};
//!
//! let platform = PlatformName::new("prod")?;
//! let app = AppName::new("orders")?;
//! let locks = namespace(&platform, Some(&app), NamespaceKind::Locks);
//! assert_eq!(locks.key_prefix(), "/prod/orders/locks/");
//! assert_eq!(locks.bucket(), "prod_orders_locks");
//! assert_eq!(locks.key("leader"), "/prod/orders/locks/leader");
//!
//! let members = namespace(&platform, None, NamespaceKind::Members);
//! assert_eq!(members.key_prefix(), "/prod/_/members/");
//! assert_eq!(members.bucket(), "prod_members");
//! # Ok::<(), cluster_core::ids::IdError>(())
//! ```

use std::fmt;

use serde::Deserialize;
use serde::Serialize;

use crate::ids::AppName;
use crate::ids::PlatformName;

/// What a namespace holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum NamespaceKind {
    /// Node membership records.
    Members,
    /// Leader election keys.
    Election,
    /// Named locks.
    Locks,
    /// Partition ownership claims.
    Claims,
    /// Application key-value data.
    Kv,
    /// Published partition assignments.
    Assignments,
    /// Work lanes and queued work.
    Work,
    /// Database snapshots.
    Snapshots,
    /// Write-ahead-log segments.
    Wal,
    /// Lifecycle events.
    Events,
    /// Audit records.
    Audit,
    /// Scheduled jobs.
    Jobs,
    /// Service discovery records.
    Services,
}

impl NamespaceKind {
    /// Every kind, in declaration order.
    pub const ALL: [NamespaceKind; 13] = [
        NamespaceKind::Members,
        NamespaceKind::Election,
        NamespaceKind::Locks,
        NamespaceKind::Claims,
        NamespaceKind::Kv,
        NamespaceKind::Assignments,
        NamespaceKind::Work,
        NamespaceKind::Snapshots,
        NamespaceKind::Wal,
        NamespaceKind::Events,
        NamespaceKind::Audit,
        NamespaceKind::Jobs,
        NamespaceKind::Services,
    ];

    /// The kind's lowercase name as it appears in keys and bucket names.
    pub const fn as_str(self) -> &'static str {
        match self {
            NamespaceKind::Members => "members",
            NamespaceKind::Election => "election",
            NamespaceKind::Locks => "locks",
            NamespaceKind::Claims => "claims",
            NamespaceKind::Kv => "kv",
            NamespaceKind::Assignments => "assignments",
            NamespaceKind::Work => "work",
            NamespaceKind::Snapshots => "snapshots",
            NamespaceKind::Wal => "wal",
            NamespaceKind::Events => "events",
            NamespaceKind::Audit => "audit",
            NamespaceKind::Jobs => "jobs",
            NamespaceKind::Services => "services",
        }
    }
}

impl fmt::Display for NamespaceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The segment that stands for "no app" in key prefixes; not a valid [`AppName`].
const PLATFORM_SCOPE: &str = "_";

/// A store namespace: a platform, an optional app and a kind.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Namespace {
    platform: PlatformName,
    app: Option<AppName>,
    kind: NamespaceKind,
}

/// Builds the namespace of `kind` for an app, or platform-wide when `app` is `None`.
pub fn namespace(platform: &PlatformName, app: Option<&AppName>, kind: NamespaceKind) -> Namespace {
    Namespace {
        platform: platform.clone(),
        app: app.cloned(),
        kind,
    }
}

impl Namespace {
    /// The platform this namespace belongs to.
    pub fn platform(&self) -> &PlatformName {
        &self.platform
    }

    /// The app, or `None` for a platform-wide namespace.
    pub fn app(&self) -> Option<&AppName> {
        self.app.as_ref()
    }

    /// What the namespace holds.
    pub fn kind(&self) -> NamespaceKind {
        self.kind
    }

    /// The key prefix for hierarchical stores (etcd, Consul), ending in `/`.
    pub fn key_prefix(&self) -> String {
        let app = self.app.as_ref().map_or(PLATFORM_SCOPE, AppName::as_str);
        format!("/{}/{}/{}/", self.platform, app, self.kind)
    }

    /// A full key: the key prefix followed by `name`.
    pub fn key(&self, name: &str) -> String {
        let mut key = self.key_prefix();
        key.push_str(name);
        key
    }

    /// The bucket name for flat stores (NATS KV, object store); only `[a-z0-9_-]`.
    pub fn bucket(&self) -> String {
        match &self.app {
            Some(app) => format!("{}_{}_{}", self.platform, app, self.kind),
            None => format!("{}_{}", self.platform, self.kind),
        }
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key_prefix())
    }
}

#[cfg(test)]
#[path = "naming_test.rs"]
mod tests;
