//! `App`: a named piece of work the platform runs in one of four modes, with its hooks.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use cluster_core::event::ShardOutbox;
use cluster_core::ids::AppName;

use crate::context::{
    ActiveContext, AppContext, HealthChange, LeaderChange, MemberChange, OwnContext, ReleaseContext,
};
use crate::error::{HookResult, RuntimeError};
use crate::hooks::Hook;

/// How an app's work is spread over the nodes that run it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppMode {
    /// One active node (the elected leader), the others standby.
    ActivePassive,
    /// Every node that runs the app is active.
    Pool,
    /// Exactly `n` active nodes, each holding a fenced slot claim.
    Replicas(u32),
    /// Work split into `partitions` partitions by consistent hashing; each partition has one
    /// owner at a time, with a fencing token.
    Ring {
        /// The number of partitions.
        partitions: u32,
    },
}

impl AppMode {
    /// A short name for status and errors.
    pub fn as_str(&self) -> &'static str {
        match self {
            AppMode::ActivePassive => "active_passive",
            AppMode::Pool => "pool",
            AppMode::Replicas(_) => "replicas",
            AppMode::Ring { .. } => "ring",
        }
    }
}

/// The hooks of an app; every one is optional.
#[derive(Debug, Clone, Default)]
pub struct AppHooks {
    pub(crate) on_start: Option<Hook<AppContext>>,
    pub(crate) on_stop: Option<Hook<AppContext>>,
    pub(crate) on_active: Option<Hook<ActiveContext>>,
    pub(crate) on_passive: Option<Hook<AppContext>>,
    pub(crate) on_leader_change: Option<Hook<LeaderChange>>,
    pub(crate) on_own: Option<Hook<OwnContext>>,
    pub(crate) on_release: Option<Hook<ReleaseContext>>,
    pub(crate) on_member_join: Option<Hook<MemberChange>>,
    pub(crate) on_member_leave: Option<Hook<MemberChange>>,
    pub(crate) on_health_change: Option<Hook<HealthChange>>,
}

/// An app, built with [`App::builder`] and registered with `Platform::register`.
#[derive(Debug, Clone)]
pub struct App {
    pub(crate) name: AppName,
    pub(crate) mode: AppMode,
    pub(crate) hooks: AppHooks,
    pub(crate) hook_timeout: Option<Duration>,
    pub(crate) weight: u32,
    pub(crate) sqlite: Option<crate::sqlite::SqliteSpec>,
    pub(crate) outbox: Option<HandoffOutbox>,
    pub(crate) service: Option<AppService>,
}

/// The service an app runs under its role.
#[derive(Clone)]
pub(crate) struct AppService {
    pub(crate) backend: Arc<dyn cluster_core::backend::Backend>,
    pub(crate) options: crate::service::ServiceOptions,
}

impl std::fmt::Debug for AppService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppService")
            .field("backend", &self.backend.kind())
            .field("options", &self.options)
            .finish()
    }
}

/// The outbox a ring app drains for a partition before releasing it in a graceful handoff.
#[derive(Clone)]
pub(crate) struct HandoffOutbox(pub(crate) Arc<dyn ShardOutbox>);

impl std::fmt::Debug for HandoffOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HandoffOutbox")
    }
}

impl App {
    /// Starts building an app called `name` (`[a-z0-9][a-z0-9-]{0,31}`).
    pub fn builder(name: &str) -> AppBuilder {
        AppBuilder {
            name: name.to_owned(),
            mode: AppMode::ActivePassive,
            hooks: AppHooks::default(),
            hook_timeout: None,
            weight: 1,
            sqlite: None,
            outbox: None,
            service: None,
        }
    }

    /// The app's name.
    pub fn name(&self) -> &AppName {
        &self.name
    }

    /// The app's mode.
    pub fn mode(&self) -> AppMode {
        self.mode
    }
}

/// Builds an [`App`].
#[derive(Debug)]
pub struct AppBuilder {
    name: String,
    mode: AppMode,
    hooks: AppHooks,
    hook_timeout: Option<Duration>,
    weight: u32,
    sqlite: Option<crate::sqlite::SqliteSpec>,
    outbox: Option<HandoffOutbox>,
    service: Option<AppService>,
}

macro_rules! hook_setter {
    ($(#[$doc:meta])* $name:ident, $ctx:ty) => {
        $(#[$doc])*
        pub fn $name<F, Fut>(mut self, f: F) -> Self
        where
            F: Fn($ctx) -> Fut + Send + Sync + 'static,
            Fut: Future<Output = HookResult> + Send + 'static,
        {
            self.hooks.$name = Some(Hook::new(f));
            self
        }
    };
}

impl AppBuilder {
    /// One leader, the rest standby (the default).
    pub fn active_passive(mut self) -> Self {
        self.mode = AppMode::ActivePassive;
        self
    }

    /// Every node active.
    pub fn pool(mut self) -> Self {
        self.mode = AppMode::Pool;
        self
    }

    /// Exactly `n` active nodes, each holding a fenced slot claim.
    pub fn replicas(mut self, n: u32) -> Self {
        self.mode = AppMode::Replicas(n);
        self
    }

    /// Work split into `partitions` partitions by consistent hashing.
    pub fn ring(mut self, partitions: u32) -> Self {
        self.mode = AppMode::Ring { partitions };
        self
    }

    /// The time each hook of this app may take (default: the platform's hook timeout).
    pub fn hook_timeout(mut self, timeout: Duration) -> Self {
        self.hook_timeout = Some(timeout);
        self
    }

    /// The publisher whose outbox holds this ring app's events (their `shard` is the
    /// partition): a graceful handoff waits, up to the drain timeout, until the moving
    /// partition's events have left the outbox before releasing it, so the next owner's events
    /// come after every event of this one. Ring apps only.
    pub fn drain_outbox_on_handoff(mut self, outbox: Arc<dyn ShardOutbox>) -> Self {
        self.outbox = Some(HandoffOutbox(outbox));
        self
    }

    /// Replicates the SQLite database at `path` to the other nodes (active-passive only): the
    /// leader's writes are captured into WAL segments, standbys follow them into
    /// `replica_path`, and a new leader promotes its replica before `on_active` runs.
    /// Requires `PlatformBuilder::object_stores` and the `sqlite` feature.
    #[cfg(feature = "sqlite")]
    pub fn with_sqlite(
        mut self,
        path: impl Into<std::path::PathBuf>,
        replica_path: impl Into<std::path::PathBuf>,
        snapshot_interval: Option<Duration>,
        retention: wal_sqlite::Retention,
    ) -> Self {
        self.sqlite = Some(crate::sqlite::SqliteSpec {
            path: path.into(),
            replica_path: replica_path.into(),
            snapshot_interval,
            retention,
            accept_data_loss: false,
        });
        self
    }

    /// Lets a promotion go ahead when a WAL segment between the standby's replica and the head
    /// of its generation is missing, sealing the generation where the replica stands and losing
    /// every later commit, acknowledged ones included. Off by default: such a promotion is
    /// refused (`promotion_refused` in the audit) and the node stays a standby. Set only after
    /// a disaster, knowingly; ignored without [`with_sqlite`](Self::with_sqlite).
    #[cfg(feature = "sqlite")]
    pub fn accept_data_loss_on_promotion(mut self, accept: bool) -> Self {
        if let Some(spec) = &mut self.sqlite {
            spec.accept_data_loss = accept;
        }
        self
    }

    /// Runs the app's service with `backend` while this node holds the app's role: started
    /// after the database is promoted and before `on_active`, ready once the critical checks
    /// of `options` pass, stopped first when the role ends (a term's service never outlives
    /// the term). Not for ring apps: a ring has no single service to run.
    pub fn backend(
        mut self,
        backend: Arc<dyn cluster_core::backend::Backend>,
        options: crate::service::ServiceOptions,
    ) -> Self {
        self.service = Some(AppService { backend, options });
        self
    }

    /// This node's relative weight in ring mode (default 1).
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    hook_setter!(
        /// Runs once when the app starts on this node, before any role.
        on_start, AppContext);
    hook_setter!(
        /// Runs once when the app stops on this node, after every role ended.
        on_stop, AppContext);
    hook_setter!(
        /// Runs when this node becomes active, with the term's token; an error steps it down.
        on_active, ActiveContext);
    hook_setter!(
        /// Runs when this node becomes (or starts as) standby.
        on_passive, AppContext);
    hook_setter!(
        /// Runs when the app's leader changes (on every node).
        on_leader_change, LeaderChange);
    hook_setter!(
        /// Runs when this node comes to own a partition (ring mode).
        on_own, OwnContext);
    hook_setter!(
        /// Runs when this node stops owning a partition (ring mode).
        on_release, ReleaseContext);
    hook_setter!(
        /// Runs when a node joins the platform.
        on_member_join, MemberChange);
    hook_setter!(
        /// Runs when a node leaves the platform (or its lease expires).
        on_member_leave, MemberChange);
    hook_setter!(
        /// Runs when this node's overall health changes.
        on_health_change, HealthChange);

    /// Validates and builds the app.
    pub fn build(self) -> Result<App, RuntimeError> {
        let name = AppName::new(self.name)?;
        match self.mode {
            AppMode::Replicas(0) => {
                return Err(RuntimeError::config("replicas", "must be at least 1"));
            }
            AppMode::Ring { partitions: 0 } => {
                return Err(RuntimeError::config(
                    "ring.partitions",
                    "must be at least 1",
                ));
            }
            AppMode::Ring { partitions } if partitions > 65_536 => {
                return Err(RuntimeError::config(
                    "ring.partitions",
                    "at most 65536 partitions",
                ));
            }
            _ => {}
        }
        if self.hook_timeout.is_some_and(|t| t.is_zero()) {
            return Err(RuntimeError::config(
                "hook_timeout",
                "must be greater than zero",
            ));
        }
        if self.outbox.is_some() && !matches!(self.mode, AppMode::Ring { .. }) {
            return Err(RuntimeError::config(
                "outbox",
                "only ring apps hand partitions over; their shards are the partitions",
            ));
        }
        if self.sqlite.is_some() && self.mode != AppMode::ActivePassive {
            return Err(RuntimeError::config(
                "sqlite",
                "replication follows the election: only active-passive apps can have a database",
            ));
        }
        if let Some(spec) = &self.sqlite {
            spec.validate()?;
        }
        if self.weight == 0 {
            return Err(RuntimeError::config("weight", "must be at least 1"));
        }
        if self.service.is_some() && matches!(self.mode, AppMode::Ring { .. }) {
            return Err(RuntimeError::config(
                "backend",
                "a ring app's partitions have no single service to run; backends run for \
                 active-passive, pool and replicas apps",
            ));
        }
        Ok(App {
            name,
            mode: self.mode,
            hooks: self.hooks,
            hook_timeout: self.hook_timeout,
            weight: self.weight,
            sqlite: self.sqlite,
            outbox: self.outbox,
            service: self.service,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_names_the_bad_field() {
        assert!(App::builder("orders").ring(64).build().is_ok());
        let err = App::builder("Orders").build().unwrap_err();
        assert!(matches!(err, RuntimeError::Id(_)), "{err}");
        let err = App::builder("orders").ring(0).build().unwrap_err();
        assert!(
            matches!(&err, RuntimeError::Config(e) if e.field == "ring.partitions"),
            "{err}"
        );
        let err = App::builder("orders").replicas(0).build().unwrap_err();
        assert!(
            matches!(&err, RuntimeError::Config(e) if e.field == "replicas"),
            "{err}"
        );
    }
}
