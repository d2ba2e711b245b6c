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

use cluster_core::coordination::{Coordinator, Key, LockHold, MemberInfo};
use cluster_core::event::{EventBus, Topology};
use cluster_core::ids::{NodeId, PlatformName};
use cluster_core::naming::{NamespaceKind, namespace};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::app::{App, AppMode};
use crate::audit::Audit;
use crate::context::{AppContext, AppShared, lock_in};
use crate::election::{ElectionHandle, Role};
use crate::error::RuntimeError;
use crate::health::HealthRegistry;
use crate::kv::AppKv;
use crate::metric_definitions;
use crate::ring::{self, RingHandle};
use crate::sessions::SessionSlot;
use crate::timing::Timing;

mod builder;
mod driver;
mod membership;

pub use builder::PlatformBuilder;

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
    pub(crate) ring: Option<(ring::RingViewSender, RingHandle)>,
    pub(crate) settled: watch::Sender<bool>,
    pub(crate) sqlite: std::sync::OnceLock<Arc<crate::sqlite::SqliteRole>>,
    pub(crate) service: Option<Arc<crate::service::ServiceRole>>,
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
    pub(crate) admin_token: Option<String>,
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
    /// Where the runtime's health breakers and audit stamps read time.
    pub(crate) clock: Arc<dyn cluster_core::clock::Clock>,
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
    #[cfg(feature = "sqlite")]
    pub fn db(&self) -> Option<wal_sqlite::Replicator> {
        self.registered.sqlite.get().and_then(|s| s.replicator())
    }

    /// The app's snapshots (`create()` needs this node to lead), once the app runs.
    #[cfg(feature = "sqlite")]
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

impl Inner {
    /// The apps registered so far, as a snapshot taken under the registry's lock (held only for
    /// the copy, never across an await).
    pub(crate) fn registered_apps(&self) -> Vec<Arc<RegisteredApp>> {
        self.apps.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Platform {
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
                .registered_apps()
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
        let service = app.service.as_ref().map(|s| {
            Arc::new(crate::service::ServiceRole::new(
                s.backend.clone(),
                s.options.clone(),
                self.inner.health.clone(),
            ))
        });
        let registered = Arc::new(RegisteredApp {
            service,
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
        let audit = Audit::new(
            self.inner.name.as_str(),
            self.inner.node.as_str(),
            bus,
            self.inner.clock.clone(),
        );
        *slot = Some(audit.clone());
        audit
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
        let apps = inner.registered_apps();
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
        metrics::gauge!(metric_definitions::SESSION_ALIVE).set(0.0);
        Ok(())
    }

    /// The admin API's token, if set.
    pub(crate) fn admin_token(&self) -> Option<&str> {
        self.inner.admin_token.as_deref()
    }

    /// Per-app roles and partitions, for `/status`.
    pub(crate) fn app_status(&self) -> Vec<serde_json::Value> {
        let apps = self.inner.registered_apps();
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
                    "partitions": ring.as_ref().map(|r| r.mine.iter().map(|(p, t)| (p.0.to_string(), t.get())).collect::<HashMap<_, _>>()),
                    "draining": ring.as_ref().map(|r| r.draining.iter().copied().collect::<Vec<_>>()),
                    "assignment_version": ring.as_ref().map(|r| r.version),
                    "targeted_here": ring.as_ref().map(|r| r.target.iter().filter(|t| t.as_ref() == Some(&self.inner.node)).count()),
                    "unclaimed": ring.as_ref().map(|r| r.owners.iter().filter(|o| o.is_none()).count()),
                    "backend": a.service.as_ref().map(|s| s.status()),
                })
            })
            .collect()
    }
}
