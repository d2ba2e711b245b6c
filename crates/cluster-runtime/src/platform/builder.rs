//! `PlatformBuilder`: every setting of a node, checked once by `build`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_core::coordination::Coordinator;
use cluster_core::event::{Durability, EventBus, Subjects, Topology};
use cluster_core::ids::{NodeId, PlatformName};
use tokio::sync::watch;

use crate::error::RuntimeError;
use crate::health::HealthRegistry;
use crate::sessions::SessionSlot;
use crate::timing::Timing;

use super::*;

/// Builds a [`Platform`].
pub struct PlatformBuilder {
    name: String,
    node: String,
    coordinator: Option<Arc<dyn Coordinator>>,
    bus: Option<Arc<dyn EventBus>>,
    subject_prefix: String,
    durability: Durability,
    address: String,
    labels: BTreeMap<String, String>,
    timing: Timing,
    heartbeat: Option<Duration>,
    http_addr: Option<SocketAddr>,
    max_concurrent_moves: usize,
    object_stores: Option<Arc<dyn cluster_core::object_store::ObjectStores>>,
    clock: Arc<dyn cluster_core::clock::Clock>,
    admin_token: Option<String>,
}

impl std::fmt::Debug for PlatformBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformBuilder")
            .field("name", &self.name)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl PlatformBuilder {
    /// Where the runtime reads time for its health breakers and audit stamps (default: tokio's
    /// clock and the system wall clock). Sessions keep their deadlines on the boot clock.
    pub fn clock(mut self, clock: Arc<dyn cluster_core::clock::Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The coordination store (required).
    pub fn coordinator(mut self, coordinator: Arc<dyn Coordinator>) -> Self {
        self.coordinator = Some(coordinator);
        self
    }

    /// The event bus for audit events (optional; without one, audit is logged and kept in memory).
    pub fn event_bus(mut self, bus: Arc<dyn EventBus>) -> Self {
        self.bus = Some(bus);
        self
    }

    /// The subject prefix on the event bus (default `cluster`).
    pub fn subject_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.subject_prefix = prefix.into();
        self
    }

    /// Copies kept of the platform streams this node creates, the audit stream
    /// `{PREFIX}_AUDIT` (default [`Durability::SingleServer`]). Give the same value the
    /// publishers' [`Topology`] uses, or the two would keep re-setting the stream's replicas.
    pub fn stream_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Where other nodes reach this one (recorded in its member record).
    pub fn address(mut self, address: impl Into<String>) -> Self {
        self.address = address.into();
        self
    }

    /// A placement label (`zone=a`).
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// The lease TTL (default 10 s).
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.timing.lease_ttl = ttl;
        self
    }

    /// The safety margin before the lease's earliest expiry (default 2 s).
    pub fn lease_margin(mut self, margin: Duration) -> Self {
        self.timing.lease_margin = margin;
        self
    }

    /// The renewal interval; sets the margin to `ttl - 3 x heartbeat`.
    pub fn heartbeat(mut self, heartbeat: Duration) -> Self {
        self.heartbeat = Some(heartbeat);
        self
    }

    /// The default hook timeout (default 5 s).
    pub fn hook_timeout(mut self, timeout: Duration) -> Self {
        self.timing.hook_timeout = timeout;
        self
    }

    /// The graceful shutdown budget (default 30 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.timing.shutdown_timeout = timeout;
        self
    }

    /// How long a moving partition may drain in-flight work (default 10 s).
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.timing.drain_timeout = timeout;
        self
    }

    /// The most partitions of one ring app moving at once (default 16).
    pub fn max_concurrent_moves(mut self, moves: usize) -> Self {
        self.max_concurrent_moves = moves;
        self
    }

    /// Where replicated apps keep WAL segments and snapshots (needed by `App::with_sqlite`).
    pub fn object_stores(
        mut self,
        provider: Arc<dyn cluster_core::object_store::ObjectStores>,
    ) -> Self {
        self.object_stores = Some(provider);
        self
    }

    /// The token the admin API's mutating calls must carry (`Authorization: Bearer TOKEN`);
    /// without one they are refused.
    pub fn admin_token(mut self, token: impl Into<String>) -> Self {
        self.admin_token = Some(token.into());
        self
    }

    /// Serves `/health`, `/ready`, `/status` and `/metrics` on `addr` (port 0: any free port).
    pub fn http_addr(mut self, addr: SocketAddr) -> Self {
        self.http_addr = Some(addr);
        self
    }

    /// Validates everything and builds the platform (no I/O yet).
    pub fn build(self) -> Result<Platform, RuntimeError> {
        let name = PlatformName::new(self.name)?;
        let node = NodeId::new(self.node)?;
        let coord = self.coordinator.ok_or_else(|| {
            RuntimeError::config("coordinator", "a coordination store is required")
        })?;
        let mut timing = self.timing;
        if let Some(hb) = self.heartbeat {
            timing = timing.with_heartbeat(hb)?;
        }
        timing.validate()?;
        if self.max_concurrent_moves == 0 {
            return Err(RuntimeError::config(
                "max_concurrent_moves",
                "must be at least 1",
            ));
        }
        let subjects = Subjects::new(self.subject_prefix.clone())
            .map_err(|e| RuntimeError::config("subject_prefix", e.to_string()))?;
        Ok(Platform {
            inner: Arc::new(Inner {
                name,
                node,
                coord,
                bus: self.bus,
                topology: Topology::new(subjects, self.durability),
                address: self.address,
                labels: self.labels,
                timing,
                http_addr: self.http_addr,
                admin_token: self.admin_token,
                max_concurrent_moves: self.max_concurrent_moves,
                object_stores: self.object_stores,
                sessions: SessionSlot::default(),
                members: watch::channel(BTreeMap::new()).0,
                health: HealthRegistry::new(self.clock.clone()),
                clock: self.clock,
                apps: Mutex::new(Vec::new()),
                audit: Mutex::new(None),
                state: watch::channel(NodeState::Starting).0,
                self_health: watch::channel(cluster_core::node_health::HealthState::Joining).0,
                bound_http: Mutex::new(None),
            }),
        })
    }
}

impl Platform {
    /// Starts building the node `node_id` of platform `name`.
    pub fn builder(name: &str, node_id: &str) -> PlatformBuilder {
        PlatformBuilder {
            name: name.to_owned(),
            node: node_id.to_owned(),
            coordinator: None,
            bus: None,
            subject_prefix: "cluster".to_owned(),
            durability: Durability::SingleServer,
            address: String::new(),
            labels: BTreeMap::new(),
            timing: Timing::default(),
            clock: Arc::new(coord_client::TokioClock),
            heartbeat: None,
            http_addr: None,
            max_concurrent_moves: 16,
            object_stores: None,
            admin_token: None,
        }
    }
}
