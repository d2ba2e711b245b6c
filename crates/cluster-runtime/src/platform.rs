//! `Platform`: one node of a cluster, hosting apps.
//!
//! `run` does, in order: open a session (a lease kept alive by `coord-client`) and register the
//! node under it (a node id held by another live lease is refused with `NodeIdInUse`); start the
//! health, status and metrics endpoint; watch membership; start every app's driver. When the
//! session is lost (store unreachable past the retry budget, or the process was paused) every
//! driver stops what the lease authorised at the renew deadline, `/ready` turns false, and the
//! platform opens a new session and registers again as soon as the store answers.
//!
//! Shutdown is graceful: the node marks itself leaving (ring apps hand their partitions off),
//! stops every app (leaders resign, owners release), runs `on_stop`, deregisters and revokes its
//! lease, within the shutdown timeout.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_core::coordination::{Coordinator, Key, LockHold, MemberInfo, MembershipEvent};
use cluster_core::event::{Durability, EventBus, Subjects, Topology};
use cluster_core::ids::{NodeId, PlatformName};
use cluster_core::naming::{Namespace, NamespaceKind, namespace};
use coord_client::{LostReason, Session};
use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::app::{App, AppMode};
use crate::audit::{Audit, AuditKind};
use crate::context::{AppContext, AppShared, HealthChange, MemberChange, lock_in};
use crate::election::{self, ElectionHandle, Role};
use crate::error::RuntimeError;
use crate::health::{HealthRegistry, HealthStatus};
use crate::hooks::run_optional;
use crate::kv::AppKv;
use crate::metric_names;
use crate::ring::{self, APPS_META, LEAVING_META, RingHandle, RingSettings};
use crate::sessions::SessionSlot;
use crate::slots;
use crate::timing::Timing;

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
                max_concurrent_moves: self.max_concurrent_moves,
                object_stores: self.object_stores,
                sessions: SessionSlot::default(),
                members: watch::channel(BTreeMap::new()).0,
                health: HealthRegistry::default(),
                apps: Mutex::new(Vec::new()),
                audit: Mutex::new(None),
                state: watch::channel(NodeState::Starting).0,
                self_health: watch::channel(cluster_core::node_health::HealthState::Joining).0,
                bound_http: Mutex::new(None),
            }),
        })
    }
}

/// Where the node is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Not joined yet.
    Starting,
    /// Registered under a live session.
    Joined,
    /// The session was lost; waiting for the store to register again.
    Rejoining,
    /// Leaving gracefully.
    Leaving,
    /// Stopped.
    Stopped,
}

/// A registered app and its handles.
pub(crate) struct RegisteredApp {
    pub(crate) app: App,
    pub(crate) ctx: AppContext,
    pub(crate) role_tx: watch::Sender<Role>,
    pub(crate) election: ElectionHandle,
    pub(crate) step_down_rx: Mutex<Option<mpsc::Receiver<tokio::sync::oneshot::Sender<()>>>>,
    pub(crate) leader_tx: watch::Sender<Option<cluster_core::coordination::LeaderInfo>>,
    pub(crate) ring: Option<(ring::RingPublisher, RingHandle)>,
    pub(crate) settled: watch::Sender<bool>,
    pub(crate) sqlite: std::sync::OnceLock<Arc<crate::sqlite::SqliteRole>>,
}

pub(crate) struct Inner {
    pub(crate) name: PlatformName,
    pub(crate) node: NodeId,
    pub(crate) coord: Arc<dyn Coordinator>,
    bus: Option<Arc<dyn EventBus>>,
    /// The platform's streams and subjects.
    topology: Topology,
    address: String,
    labels: BTreeMap<String, String>,
    pub(crate) timing: Timing,
    http_addr: Option<SocketAddr>,
    max_concurrent_moves: usize,
    object_stores: Option<Arc<dyn cluster_core::object_store::ObjectStores>>,
    pub(crate) sessions: SessionSlot,
    pub(crate) members: watch::Sender<BTreeMap<NodeId, MemberInfo>>,
    pub(crate) health: HealthRegistry,
    pub(crate) apps: Mutex<Vec<Arc<RegisteredApp>>>,
    audit: Mutex<Option<Audit>>,
    pub(crate) state: watch::Sender<NodeState>,
    self_health: watch::Sender<cluster_core::node_health::HealthState>,
    bound_http: Mutex<Option<SocketAddr>>,
}

/// One node of a cluster. Cheap to clone.
#[derive(Clone)]
pub struct Platform {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Platform")
            .field("name", &self.inner.name)
            .field("node", &self.inner.node)
            .finish_non_exhaustive()
    }
}

/// A registered app, as the code that registered it uses it.
#[derive(Clone)]
pub struct AppHandle {
    registered: Arc<RegisteredApp>,
}

impl std::fmt::Debug for AppHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppHandle")
            .field("app", &self.registered.app.name)
            .finish()
    }
}

impl AppHandle {
    /// The app's key-value space.
    pub fn kv(&self) -> &AppKv {
        self.registered.ctx.kv()
    }

    /// The app's context (names, store, locks).
    pub fn context(&self) -> &AppContext {
        &self.registered.ctx
    }

    /// The role handle (election in active-passive mode; the role in every mode).
    pub fn election(&self) -> &ElectionHandle {
        &self.registered.election
    }

    /// The ring handle, in ring mode.
    pub fn ring(&self) -> Option<&RingHandle> {
        self.registered.ring.as_ref().map(|(_, h)| h)
    }

    /// Takes the app lock `name`.
    pub async fn lock(&self, name: &str) -> Result<LockHold, RuntimeError> {
        self.registered.ctx.lock(name).await
    }

    /// The database replicator, while this node is the leader of a replicated app
    /// (`position()`, `lag()`, `sync()`, `stats()`).
    pub fn db(&self) -> Option<wal_sqlite::Replicator> {
        self.registered.sqlite.get().and_then(|s| s.replicator())
    }

    /// The app's snapshots (`create()` needs this node to lead), once the app runs.
    pub fn snapshots(&self) -> Option<wal_sqlite::Snapshots> {
        self.registered.sqlite.get().map(|s| s.snapshots())
    }

    /// Waits until the app has made its first decision on this node (joined its election,
    /// claimed its share).
    pub async fn wait_settled(&self, timeout: Duration) -> Result<(), RuntimeError> {
        let mut rx = self.registered.settled.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|s| *s))
            .await
            .map_err(|_| RuntimeError::Timeout(timeout))?
            .map(|_| ())
            .map_err(|_| RuntimeError::NotRunning)
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
            heartbeat: None,
            http_addr: None,
            max_concurrent_moves: 16,
            object_stores: None,
        }
    }

    /// The platform's name.
    pub fn name(&self) -> &PlatformName {
        &self.inner.name
    }

    /// This node's id.
    pub fn node(&self) -> &NodeId {
        &self.inner.node
    }

    /// The timing in force.
    pub fn timing(&self) -> Timing {
        self.inner.timing
    }

    /// The node's lifecycle state.
    pub fn state(&self) -> NodeState {
        *self.inner.state.borrow()
    }

    /// A receiver of lifecycle changes.
    pub fn states(&self) -> watch::Receiver<NodeState> {
        self.inner.state.subscribe()
    }

    /// The last moment this node may act on its current session, if it has a live one.
    pub fn session_deadline(&self) -> Option<cluster_core::time::MonoTime> {
        self.inner.sessions.current().and_then(|s| s.safe_until())
    }

    /// This node's health state as it judges itself (joining, alive, suspect, dead, left).
    pub fn node_health(&self) -> cluster_core::node_health::HealthState {
        *self.inner.self_health.borrow()
    }

    /// The live members this node sees.
    pub fn members(&self) -> BTreeMap<NodeId, MemberInfo> {
        self.inner.members.borrow().clone()
    }

    /// The health registry (register checks; read the status).
    pub fn health(&self) -> &HealthRegistry {
        &self.inner.health
    }

    /// Recent audit events.
    pub fn audit(&self) -> Vec<crate::audit::AuditEvent> {
        self.inner
            .audit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(Audit::recent)
            .unwrap_or_default()
    }

    /// The metrics in Prometheus text format.
    pub fn metrics(&self) -> String {
        crate::http::render_metrics()
    }

    /// The address the HTTP endpoint listens on, once running.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        *self
            .inner
            .bound_http
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the node is ready: joined under a live session and every app settled.
    pub fn is_ready(&self) -> bool {
        self.state() == NodeState::Joined
            && self.inner.sessions.current().is_some()
            && self
                .inner
                .apps
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .all(|a| *a.settled.borrow())
    }

    /// Takes the platform-wide lock `name` (shared by every app).
    pub async fn lock(&self, name: &str) -> Result<LockHold, RuntimeError> {
        let ns = namespace(&self.inner.name, None, NamespaceKind::Locks);
        lock_in(
            &self.inner.coord,
            &self.inner.sessions,
            Key::new(ns, name)?,
            &self.inner.node,
        )
        .await
    }

    /// Registers an app; call before [`run`](Self::run). Returns its handle.
    pub fn register(&self, app: App) -> Result<AppHandle, RuntimeError> {
        if app.sqlite.is_some() && self.inner.object_stores.is_none() {
            return Err(RuntimeError::config(
                "object_stores",
                format!(
                    "app {} replicates a database: set PlatformBuilder::object_stores",
                    app.name
                ),
            ));
        }
        let mut apps = self.inner.apps.lock().unwrap_or_else(|p| p.into_inner());
        if apps.iter().any(|a| a.app.name == app.name) {
            return Err(RuntimeError::DuplicateApp(app.name.to_string()));
        }
        let kv_ns = namespace(&self.inner.name, Some(&app.name), NamespaceKind::Kv);
        let audit = self.audit_sink();
        let ctx = AppContext {
            shared: Arc::new(AppShared {
                platform: self.inner.name.clone(),
                app: app.name.clone(),
                node: self.inner.node.clone(),
                coord: self.inner.coord.clone(),
                kv: AppKv::new(self.inner.coord.clone(), kv_ns),
                audit,
                sessions: self.inner.sessions.clone(),
                term: Mutex::new(None),
            }),
        };
        let (role_tx, role_rx) = watch::channel(Role::Starting);
        let (leader_tx, leader_rx) = watch::channel(None);
        let (step_tx, step_rx) = mpsc::channel(4);
        let election = ElectionHandle {
            ctx: ctx.clone(),
            role: role_rx,
            leader: leader_rx,
            step_down: matches!(app.mode, AppMode::ActivePassive).then_some(step_tx),
        };
        let ring = match app.mode {
            AppMode::Ring { partitions } => {
                Some(ring::channel(self.inner.node.clone(), partitions))
            }
            _ => None,
        };
        let registered = Arc::new(RegisteredApp {
            app,
            ctx,
            role_tx,
            election,
            step_down_rx: Mutex::new(Some(step_rx)),
            leader_tx,
            ring,
            settled: watch::channel(false).0,
            sqlite: std::sync::OnceLock::new(),
        });
        apps.push(registered.clone());
        Ok(AppHandle { registered })
    }

    /// The audit sink; created on first use so it can spawn inside the runtime.
    fn audit_sink(&self) -> Audit {
        let mut slot = self.inner.audit.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = slot.as_ref() {
            return a.clone();
        }
        let bus = tokio::runtime::Handle::try_current()
            .ok()
            .and(self.inner.bus.clone())
            .map(|b| (b, self.inner.topology.subjects.clone()));
        let audit = Audit::new(self.inner.name.as_str(), self.inner.node.as_str(), bus);
        *slot = Some(audit.clone());
        audit
    }

    fn members_ns(&self) -> Namespace {
        namespace(&self.inner.name, None, NamespaceKind::Members)
    }

    fn member_record(&self, leaving: bool) -> MemberInfo {
        let apps = self.inner.apps.lock().unwrap_or_else(|p| p.into_inner());
        let mut metadata = BTreeMap::new();
        metadata.insert(
            APPS_META.to_owned(),
            apps.iter()
                .map(|a| a.app.name.to_string())
                .collect::<Vec<_>>()
                .join(","),
        );
        for a in apps.iter() {
            metadata.insert(format!("weight.{}", a.app.name), a.app.weight.to_string());
        }
        if leaving {
            metadata.insert(LEAVING_META.to_owned(), "true".to_owned());
        }
        metadata.insert("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned());
        MemberInfo {
            node: self.inner.node.clone(),
            address: self.inner.address.clone(),
            labels: self.inner.labels.clone(),
            metadata,
        }
    }

    /// Runs the node until `shutdown` resolves, then leaves gracefully.
    ///
    /// Fails at once with `NodeIdInUse` if another live node holds this node's id.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<(), RuntimeError> {
        let inner = &self.inner;
        crate::http::install_recorder();
        let audit = self.audit_sink();
        if let Some(bus) = &inner.bus
            && let Err(e) = bus.ensure_stream(&inner.topology.audit_spec()).await
        {
            tracing::warn!(error = %e, "audit stream not available; audit events stay local");
        }
        let stop = CancellationToken::new();
        let first = self.join().await?;
        if let Some(addr) = inner.http_addr {
            let bound = crate::http::serve(self.clone(), addr, stop.clone()).await?;
            *inner.bound_http.lock().unwrap_or_else(|p| p.into_inner()) = Some(bound);
        }
        let lifecycle = tokio::spawn(self.clone().keep_joined(first, stop.clone()));
        tokio::spawn(self.clone().watch_members(audit, stop.clone()));
        tokio::spawn(self.clone().dispatch_health(stop.clone()));
        tokio::spawn(crate::self_health::track(
            self.clone(),
            inner.self_health.clone(),
            stop.clone(),
        ));
        let app_stop = CancellationToken::new();
        let mut drivers = tokio::task::JoinSet::new();
        let apps: Vec<Arc<RegisteredApp>> =
            inner.apps.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for app in &apps {
            drivers.spawn(self.clone().drive_app(app.clone(), app_stop.clone()));
        }

        shutdown.await;
        tracing::info!(node = %inner.node, "shutting down");
        inner.state.send_replace(NodeState::Leaving);
        let graceful = async {
            self.leave_rings(&apps).await;
            app_stop.cancel();
            while drivers.join_next().await.is_some() {}
        };
        if tokio::time::timeout(inner.timing.shutdown_timeout, graceful)
            .await
            .is_err()
        {
            // Out of time: everything the session authorised is cancelled at once (its child
            // tokens fire) before the lease is revoked below and others may take over; then
            // the drivers are stopped where they are.
            tracing::warn!(
                "graceful shutdown ran out of time; cancelling everything before revoking the lease"
            );
            stop.cancel();
            if let Some(session) = inner.sessions.latest() {
                session.abandon();
            }
            drivers.shutdown().await;
        }
        stop.cancel();
        let _ = lifecycle.await;
        if let Some(session) = inner.sessions.latest() {
            let _ = inner
                .coord
                .deregister(&self.members_ns(), &inner.node, session.lease())
                .await;
            let _ = session.close(inner.coord.as_ref()).await;
        }
        inner.sessions.set(None);
        inner.state.send_replace(NodeState::Stopped);
        metrics::gauge!(metric_names::SESSION_ALIVE).set(0.0);
        Ok(())
    }

    /// Opens a session and registers the node; `NodeIdInUse` is returned as is.
    async fn join(&self) -> Result<Session, RuntimeError> {
        let inner = &self.inner;
        let session = Session::open(
            inner.coord.clone(),
            inner.node.clone(),
            inner.timing.lease(),
        )
        .await?;
        let record = self.member_record(false);
        if let Err(e) = inner
            .coord
            .register(&self.members_ns(), &record, session.lease())
            .await
        {
            let _ = session.close(inner.coord.as_ref()).await;
            return Err(e.into());
        }
        inner.sessions.set(Some(session.clone()));
        inner.state.send_replace(NodeState::Joined);
        metrics::gauge!(metric_names::SESSION_ALIVE).set(1.0);
        tracing::info!(node = %inner.node, lease = %session.lease(), "joined");
        Ok(session)
    }

    /// Keeps the node joined: on session loss, waits for the store and joins again.
    async fn keep_joined(self, mut session: Session, stop: CancellationToken) {
        let inner = &self.inner;
        loop {
            let reason = tokio::select! {
                _ = stop.cancelled() => return,
                r = session.lost() => r,
            };
            if reason == LostReason::Closed && stop.is_cancelled() {
                return;
            }
            inner.sessions.set(None);
            metrics::gauge!(metric_names::SESSION_ALIVE).set(0.0);
            metrics::counter!(metric_names::SESSIONS_LOST, "reason" => match reason {
                LostReason::Expired => "expired",
                LostReason::Revoked => "revoked",
                LostReason::Closed => "closed",
            })
            .increment(1);
            inner.state.send_replace(NodeState::Rejoining);
            tracing::warn!(node = %inner.node, ?reason, "session lost; rejoining when the store answers");
            let mut backoff = Duration::from_millis(100);
            session = loop {
                if stop.is_cancelled() {
                    return;
                }
                match self.join().await {
                    Ok(s) => break s,
                    Err(e) => {
                        // Our previous lease may still be alive at the store (NodeIdInUse until
                        // it expires); keep trying.
                        tracing::debug!(error = %e, "rejoin failed; retrying");
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                }
            };
        }
    }

    /// Watches membership: publishes it, runs member hooks, records joins and leaves.
    async fn watch_members(self, audit: Audit, stop: CancellationToken) {
        let inner = &self.inner;
        let ns = self.members_ns();
        loop {
            let stream = tokio::select! {
                _ = stop.cancelled() => return,
                s = inner.coord.watch_members(&ns) => s,
            };
            let Ok(mut stream) = stream else {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            };
            loop {
                let event = tokio::select! {
                    _ = stop.cancelled() => return,
                    e = stream.next() => e,
                };
                let Some(Ok(event)) = event else { break };
                let (joined, left) = match event {
                    MembershipEvent::Snapshot(all) => {
                        let before = inner.members.borrow().clone();
                        let now: BTreeMap<NodeId, MemberInfo> =
                            all.into_iter().map(|m| (m.node.clone(), m)).collect();
                        let joined: Vec<MemberInfo> = now
                            .values()
                            .filter(|m| !before.contains_key(&m.node))
                            .cloned()
                            .collect();
                        let left: Vec<MemberInfo> = before
                            .values()
                            .filter(|m| !now.contains_key(&m.node))
                            .cloned()
                            .collect();
                        inner.members.send_replace(now);
                        (joined, left)
                    }
                    MembershipEvent::Joined(m) => {
                        inner.members.send_modify(|all| {
                            all.insert(m.node.clone(), m.clone());
                        });
                        (vec![m], vec![])
                    }
                    MembershipEvent::Updated(m) => {
                        inner.members.send_modify(|all| {
                            all.insert(m.node.clone(), m);
                        });
                        (vec![], vec![])
                    }
                    MembershipEvent::Left(node) => {
                        let mut gone = None;
                        inner.members.send_modify(|all| gone = all.remove(&node));
                        (vec![], gone.into_iter().collect())
                    }
                };
                metrics::gauge!(metric_names::MEMBERS).set(inner.members.borrow().len() as f64);
                for m in joined {
                    audit.record(
                        AuditKind::MemberJoined,
                        None,
                        None,
                        None,
                        Some(m.node.to_string()),
                    );
                    self.member_hooks(&m, true).await;
                }
                for m in left {
                    audit.record(
                        AuditKind::MemberLeft,
                        None,
                        None,
                        None,
                        Some(m.node.to_string()),
                    );
                    self.member_hooks(&m, false).await;
                }
            }
        }
    }

    async fn member_hooks(&self, member: &MemberInfo, joined: bool) {
        let apps: Vec<Arc<RegisteredApp>> = self
            .inner
            .apps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for a in apps {
            let change = MemberChange {
                app: a.ctx.clone(),
                member: member.clone(),
            };
            let timeout = a.app.hook_timeout.unwrap_or(self.inner.timing.hook_timeout);
            let name = a.app.name.to_string();
            let hook = if joined {
                &a.app.hooks.on_member_join
            } else {
                &a.app.hooks.on_member_leave
            };
            let label = if joined {
                "on_member_join"
            } else {
                "on_member_leave"
            };
            let _ = run_optional(hook, &name, label, change, timeout).await;
        }
    }

    /// Runs `on_health_change` on every app when the node's health changes.
    async fn dispatch_health(self, stop: CancellationToken) {
        let mut status = self.inner.health.subscribe();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                changed = status.changed() => if changed.is_err() { return },
            }
            let now: HealthStatus = *status.borrow_and_update();
            let apps: Vec<Arc<RegisteredApp>> = self
                .inner
                .apps
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            for a in apps {
                let change = HealthChange {
                    app: a.ctx.clone(),
                    status: now,
                };
                let timeout = a.app.hook_timeout.unwrap_or(self.inner.timing.hook_timeout);
                let _ = run_optional(
                    &a.app.hooks.on_health_change,
                    a.app.name.as_str(),
                    "on_health_change",
                    change,
                    timeout,
                )
                .await;
            }
        }
    }

    /// Runs one app: `on_start`, its mode's driver, `on_stop`.
    async fn drive_app(self, app: Arc<RegisteredApp>, stop: CancellationToken) {
        let inner = &self.inner;
        let name = app.app.name.to_string();
        let timeout = app.app.hook_timeout.unwrap_or(inner.timing.hook_timeout);
        let hooks = Arc::new(app.app.hooks.clone());
        let _ = run_optional(&hooks.on_start, &name, "on_start", app.ctx.clone(), timeout).await;
        let observer_stop = stop.child_token();
        if matches!(app.app.mode, AppMode::ActivePassive) {
            tokio::spawn(election::observe_leader(
                app.ctx.clone(),
                hooks.clone(),
                timeout,
                app.leader_tx.clone(),
                observer_stop.clone(),
            ));
        }
        let settle = {
            let app = app.clone();
            let mut roles = app.role_tx.subscribe();
            let ring = app.ring.as_ref().map(|(_, h)| h.clone());
            let stop = stop.clone();
            tokio::spawn(async move {
                // Settled again under every session: after a rejoin the app is not ready until
                // its ring has its share again (or its role is decided).
                loop {
                    let Some(session) = app.ctx.shared.sessions.next_live(&stop).await else {
                        return;
                    };
                    let settled = async {
                        match &ring {
                            Some(ring) => {
                                let _ = ring.wait_for_partitions(Duration::from_secs(3600)).await;
                            }
                            None => {
                                let _ = roles.wait_for(|r| *r != Role::Starting).await;
                            }
                        }
                    };
                    tokio::select! {
                        _ = settled => { app.settled.send_replace(true); }
                        _ = session.lost() => continue,
                        _ = stop.cancelled() => return,
                    }
                    tokio::select! {
                        _ = session.lost() => { app.settled.send_replace(false); }
                        _ = stop.cancelled() => return,
                    }
                }
            })
        };
        match app.app.mode {
            AppMode::ActivePassive => {
                let sqlite = match (&app.app.sqlite, &inner.object_stores) {
                    (Some(spec), Some(provider)) => {
                        let retry = inner
                            .timing
                            .step_down_backoff
                            .max(Duration::from_millis(500));
                        crate::sqlite::SqliteRole::open_retrying(
                            &app.ctx,
                            spec,
                            provider.as_ref(),
                            retry,
                            &stop,
                        )
                        .await
                        .map(|role| {
                            let role = Arc::new(role);
                            let _ = app.sqlite.set(role.clone());
                            role
                        })
                    }
                    _ => None,
                };
                let step_down_rx = app
                    .step_down_rx
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take();
                // An app with a database whose buckets never opened (stopped first) does not run.
                if let Some(rx) = step_down_rx
                    && (app.app.sqlite.is_none() || sqlite.is_some())
                {
                    let driver = election::Driver {
                        ctx: app.ctx.clone(),
                        hooks: hooks.clone(),
                        timeout,
                        backoff: inner.timing.step_down_backoff,
                        role_tx: app.role_tx.clone(),
                        sqlite,
                    };
                    election::drive(driver, rx, stop.clone()).await;
                }
            }
            AppMode::Pool => {
                slots::drive_pool(
                    app.ctx.clone(),
                    hooks.clone(),
                    timeout,
                    app.role_tx.clone(),
                    stop.clone(),
                )
                .await
            }
            AppMode::Replicas(n) => {
                slots::drive_replicas(
                    app.ctx.clone(),
                    hooks.clone(),
                    timeout,
                    n,
                    app.role_tx.clone(),
                    stop.clone(),
                )
                .await
            }
            AppMode::Ring { partitions } => {
                if let Some((publisher, _)) = &app.ring {
                    let settings = RingSettings {
                        partitions,
                        hook_timeout: timeout,
                        drain_timeout: inner.timing.drain_timeout,
                        max_concurrent_moves: inner.max_concurrent_moves,
                        outbox: app.app.outbox.clone(),
                    };
                    app.role_tx.send_replace(Role::Passive);
                    ring::drive(
                        app.ctx.clone(),
                        hooks.clone(),
                        settings,
                        inner.members.subscribe(),
                        publisher.clone(),
                        stop.clone(),
                    )
                    .await;
                    app.role_tx.send_replace(Role::Stopped);
                }
            }
        }
        observer_stop.cancel();
        settle.abort();
        let _ = run_optional(&hooks.on_stop, &name, "on_stop", app.ctx.clone(), timeout).await;
    }

    /// Marks the node leaving and waits (within half the shutdown budget) for ring apps to hand
    /// their partitions to other nodes.
    async fn leave_rings(&self, apps: &[Arc<RegisteredApp>]) {
        let rings: Vec<RingHandle> = apps
            .iter()
            .filter_map(|a| a.ring.as_ref().map(|(_, h)| h.clone()))
            .collect();
        if rings.is_empty() {
            return;
        }
        let Some(session) = self.inner.sessions.current() else {
            return;
        };
        let record = self.member_record(true);
        if let Err(e) = self
            .inner
            .coord
            .update_member(&self.members_ns(), &record, session.lease())
            .await
        {
            tracing::warn!(error = %e, "could not announce leaving; partitions are released instead");
            return;
        }
        let others = self
            .inner
            .members
            .borrow()
            .keys()
            .any(|n| n != &self.inner.node);
        if !others {
            return;
        }
        let budget = self.inner.timing.shutdown_timeout / 2;
        let wait = async {
            for ring in &rings {
                let mut view = ring.view.clone();
                let _ = view.wait_for(|v| v.mine.is_empty()).await;
            }
        };
        let _ = tokio::time::timeout(budget, wait).await;
    }

    /// Per-app roles and partitions, for `/status`.
    pub(crate) fn app_status(&self) -> Vec<serde_json::Value> {
        let apps = self
            .inner
            .apps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        apps.iter()
            .map(|a| {
                let ring = a.ring.as_ref().map(|(_, h)| h.view());
                // A ring app has no role of its own: what it owns is `partitions`.
                let role = ring.is_none().then(|| a.election.role());
                let leader = a.election.leader();
                serde_json::json!({
                    "app": a.app.name.as_str(),
                    "mode": a.app.mode.as_str(),
                    "role": role,
                    "leader": leader.map(|l| serde_json::json!({"node": l.holder, "token": l.token.get()})),
                    "settled": *a.settled.borrow(),
                    "partitions": ring.as_ref().map(|r| r.mine.iter().map(|(p, t)| (p.to_string(), t.get())).collect::<HashMap<_, _>>()),
                    "draining": ring.as_ref().map(|r| r.draining.iter().copied().collect::<Vec<_>>()),
                    "assignment_version": ring.as_ref().map(|r| r.version),
                    "targeted_here": ring.as_ref().map(|r| r.target.iter().filter(|t| t.as_ref() == Some(&self.inner.node)).count()),
                    "unclaimed": ring.as_ref().map(|r| r.owners.iter().filter(|o| o.is_none()).count()),
                })
            })
            .collect()
    }
}
