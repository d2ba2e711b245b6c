//! What hooks and handles see of their app: names, the store, the app's key space, locks.

use std::sync::Arc;

use cluster_core::coordination::{Coordinator, Fence, Key, LeaderInfo, LockHold, MemberInfo};
use cluster_core::ids::{AppName, FencingToken, NodeId, PartitionId, PlatformName};
use cluster_core::naming::{NamespaceKind, namespace};
use tokio_util::sync::CancellationToken;

use crate::audit::Audit;
use crate::error::RuntimeError;
use crate::health::HealthStatus;
use crate::kv::{AppKv, FencedKv};
use crate::owned_work::PartitionWork;
use crate::sessions::SessionSlot;

/// The term (or slot claim) an app holds on this node: what `is_leader` checks.
#[derive(Debug, Clone)]
pub(crate) struct TermAuthority {
    /// The session lease the term was won under.
    pub(crate) lease: cluster_core::coordination::LeaseId,
    /// The term's cancellation.
    pub(crate) cancel: CancellationToken,
    /// The term's token.
    pub(crate) token: FencingToken,
    /// The term's fence (writes under it are refused once another term holds the key).
    pub(crate) fence: Fence,
}

impl TermAuthority {
    /// Whether the term is still this node's: not ended, and won under the live session.
    pub(crate) fn holds(&self, sessions: &SessionSlot) -> bool {
        // The session first: reading its clock past the deadline fires the term's cancellation.
        sessions.current().is_some_and(|s| s.lease() == &self.lease) && !self.cancel.is_cancelled()
    }
}

pub(crate) struct AppShared {
    pub(crate) platform: PlatformName,
    pub(crate) app: AppName,
    pub(crate) node: NodeId,
    pub(crate) coord: Arc<dyn Coordinator>,
    pub(crate) kv: AppKv,
    pub(crate) audit: Audit,
    pub(crate) sessions: SessionSlot,
    /// The term this node holds now, if any.
    pub(crate) term: std::sync::Mutex<Option<TermAuthority>>,
}

impl AppShared {
    pub(crate) fn set_term(&self, term: Option<TermAuthority>) {
        *self.term.lock().unwrap_or_else(|e| e.into_inner()) = term;
    }

    pub(crate) fn term(&self) -> Option<TermAuthority> {
        self.term.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// An app as its hooks see it.
#[derive(Clone)]
pub struct AppContext {
    pub(crate) shared: Arc<AppShared>,
}

impl std::fmt::Debug for AppContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppContext")
            .field("app", &self.shared.app)
            .field("node", &self.shared.node)
            .finish()
    }
}

impl AppContext {
    /// The platform.
    pub fn platform(&self) -> &PlatformName {
        &self.shared.platform
    }

    /// The app.
    pub fn app(&self) -> &AppName {
        &self.shared.app
    }

    /// This node.
    pub fn node(&self) -> &NodeId {
        &self.shared.node
    }

    /// The app's key-value space (unfenced).
    pub fn kv(&self) -> &AppKv {
        &self.shared.kv
    }

    /// The coordination store.
    pub fn coordinator(&self) -> &Arc<dyn Coordinator> {
        &self.shared.coord
    }

    /// Takes the app lock `name` under this node's session; waits while another node holds it.
    pub async fn lock(&self, name: &str) -> Result<LockHold, RuntimeError> {
        let ns = namespace(
            &self.shared.platform,
            Some(&self.shared.app),
            NamespaceKind::Locks,
        );
        lock_in(
            &self.shared.coord,
            &self.shared.sessions,
            Key::new(ns, name)?,
            &self.shared.node,
        )
        .await
    }

    /// Releases a lock taken with [`lock`](Self::lock).
    pub async fn unlock(&self, hold: &LockHold) -> Result<(), RuntimeError> {
        Ok(self.shared.coord.unlock(hold).await?)
    }
}

pub(crate) async fn lock_in(
    coord: &Arc<dyn Coordinator>,
    sessions: &SessionSlot,
    key: Key,
    node: &NodeId,
) -> Result<LockHold, RuntimeError> {
    let session = sessions.current().ok_or(RuntimeError::NotRunning)?;
    tokio::select! {
        hold = coord.lock(&key, node.as_str(), session.lease()) => Ok(hold?),
        _ = session.lost() => Err(RuntimeError::Coord(cluster_core::coordination::CoordError::LeaseLost {
            lease: session.lease().clone(),
        })),
    }
}

/// The context of `on_active`: the term's token, its fence, and a cancellation token that
/// fires the moment the role is lost.
#[derive(Debug, Clone)]
pub struct ActiveContext {
    /// The app.
    pub app: AppContext,
    /// The term's fencing token (zero in pool mode, which has no terms).
    pub token: FencingToken,
    /// The fence of the term or slot claim (none in pool mode).
    pub fence: Option<Fence>,
    /// Fires when this node stops being active.
    pub cancel: CancellationToken,
    /// The replica slot held, in replicas mode.
    pub slot: Option<u32>,
}

impl ActiveContext {
    /// Whether this node may still act in this role now: the session it was won under is alive
    /// (its deadline read from the clock) and the role has not ended. Call it right before a
    /// side effect the store cannot fence; `false` is final. In pool mode, which holds nothing
    /// in the store, it is whether the node is still running the app.
    pub fn still_valid(&self) -> bool {
        if self.fence.is_none() {
            return !self.cancel.is_cancelled();
        }
        self.app.shared.sessions.current().is_some() && !self.cancel.is_cancelled()
    }

    /// The app's key space with writes fenced by this term (none in pool mode).
    pub fn fenced_kv(&self) -> Option<FencedKv> {
        self.fence.clone().map(|f| self.app.kv().fenced(f))
    }
}

/// The context of `on_leader_change`.
#[derive(Debug, Clone)]
pub struct LeaderChange {
    /// The app.
    pub app: AppContext,
    /// The new leader, if any.
    pub leader: Option<LeaderInfo>,
}

/// The context of `on_own`: a partition this node now owns.
#[derive(Debug, Clone)]
pub struct OwnContext {
    /// The app.
    pub app: AppContext,
    /// The partition.
    pub partition: PartitionId,
    /// The claim's fencing token.
    pub token: FencingToken,
    /// The claim's fence, for fenced writes.
    pub fence: Fence,
    /// Fires when ownership ends (handoff, loss, shutdown).
    pub cancel: CancellationToken,
    /// The partition's durable work queue, written under this claim.
    pub work: PartitionWork,
}

impl OwnContext {
    /// Whether this node may still act for the partition now: its session is alive (the
    /// deadline read from the clock) and the ownership has not ended (handoff, loss, shutdown).
    /// Call it right before a side effect the store cannot fence; `false` is final.
    pub fn still_valid(&self) -> bool {
        self.app.shared.sessions.current().is_some() && !self.cancel.is_cancelled()
    }

    /// The app's key space with writes fenced by this claim.
    pub fn fenced_kv(&self) -> FencedKv {
        self.app.kv().fenced(self.fence.clone())
    }
}

/// Why a partition was released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseReason {
    /// Handed to another node by a rebalance.
    Handoff,
    /// The lease was lost (store outage, pause): ownership ended without a release.
    Lost,
    /// The node is shutting down.
    Shutdown,
}

/// The context of `on_release`.
#[derive(Debug, Clone)]
pub struct ReleaseContext {
    /// The app.
    pub app: AppContext,
    /// The partition.
    pub partition: PartitionId,
    /// The token of the ownership that ended.
    pub token: FencingToken,
    /// Why.
    pub reason: ReleaseReason,
}

/// The context of `on_member_join` / `on_member_leave`.
#[derive(Debug, Clone)]
pub struct MemberChange {
    /// The app.
    pub app: AppContext,
    /// The node that joined (its record) or left (its last known record).
    pub member: MemberInfo,
}

/// The context of `on_health_change`.
#[derive(Debug, Clone)]
pub struct HealthChange {
    /// The app.
    pub app: AppContext,
    /// The node's new overall health.
    pub status: HealthStatus,
}
