//! Audit events: what the platform did, published on the event bus and kept in memory.
//!
//! Publishing never blocks the runtime: events go through a bounded queue to a background task
//! that publishes them on the bus's audit subject (`{prefix}.audit.{event}`). When the queue is
//! full the event is still logged and kept in the in-memory tail, and the loss from the bus is
//! counted in `cluster_audit_dropped_total`, never silent.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use cluster_core::event::{BusMessage, EventBus, SubjectToken, Subjects};
use cluster_core::ids::{FencingToken, PartitionId};
use serde::Serialize;
use tokio::sync::mpsc;

/// What happened. Names are the platform documents' audit names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    /// This node became leader.
    LeaderAcquired,
    /// This node lost leadership without choosing to (lease lost, store outage).
    LeaderLost,
    /// The leader of an election changed (seen by any node).
    LeaderChanged,
    /// This node gave leadership up (step-down, shutdown, failed `on_active`).
    LeaderReleased,
    /// A step-down was requested.
    StepDownInitiated,
    /// This node claimed a partition.
    PartitionOwned,
    /// This node released or lost a partition.
    PartitionReleased,
    /// A node joined.
    MemberJoined,
    /// A node left.
    MemberLeft,
    /// A standby began promoting its replica to primary.
    PromotionStarted,
    /// The promoting standby began applying the last shipped segments.
    WalCatchupStarted,
    /// The promoting standby applied every shipped segment.
    WalCatchupCompleted,
    /// The promoted database passed its integrity check.
    DatabaseVerified,
    /// The replica is the primary now, in a new generation.
    PromotionCompleted,
    /// A promotion was refused: a segment between the replica and the head of its generation
    /// is missing, and promoting would lose acknowledged commits.
    PromotionRefused,
    /// A stepping-down primary could not ship the end of its WAL before its term ended; the
    /// local database is kept aside, not deleted.
    WalTailLost,
    /// The app's service started and its critical checks passed (detail: the time it took).
    BackendStarted,
    /// The app's service stopped (detail: the time it took).
    BackendStopped,
    /// A step of taking a term failed, and the steps before it were undone in reverse (detail:
    /// the step).
    FailoverRolledBack,
}

impl AuditKind {
    /// The snake_case name used in subjects and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::LeaderAcquired => "leader_acquired",
            AuditKind::LeaderLost => "leader_lost",
            AuditKind::LeaderChanged => "leader_changed",
            AuditKind::LeaderReleased => "leader_released",
            AuditKind::StepDownInitiated => "step_down_initiated",
            AuditKind::PartitionOwned => "partition_owned",
            AuditKind::PartitionReleased => "partition_released",
            AuditKind::MemberJoined => "member_joined",
            AuditKind::MemberLeft => "member_left",
            AuditKind::PromotionStarted => "promotion_started",
            AuditKind::WalCatchupStarted => "wal_catchup_started",
            AuditKind::WalCatchupCompleted => "wal_catchup_completed",
            AuditKind::DatabaseVerified => "database_verified",
            AuditKind::PromotionCompleted => "promotion_completed",
            AuditKind::PromotionRefused => "promotion_refused",
            AuditKind::WalTailLost => "wal_tail_lost",
            AuditKind::BackendStarted => "backend_started",
            AuditKind::BackendStopped => "backend_stopped",
            AuditKind::FailoverRolledBack => "failover_rolled_back",
        }
    }
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEvent {
    /// What happened.
    pub kind: AuditKind,
    /// The platform.
    pub platform: String,
    /// The app, if the event concerns one.
    pub app: Option<String>,
    /// The node that reports it.
    pub node: String,
    /// The fencing token involved, if any.
    pub token: Option<u64>,
    /// The partition involved, if any.
    pub partition: Option<u32>,
    /// Free-form detail (reason, other node).
    pub detail: Option<String>,
    /// When, by the wall clock, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

const TAIL: usize = 256;
const QUEUE: usize = 1024;

/// The audit sink shared by a platform's components.
#[derive(Clone)]
pub(crate) struct Audit {
    platform: String,
    node: String,
    tail: Arc<Mutex<VecDeque<AuditEvent>>>,
    queue: Option<mpsc::Sender<AuditEvent>>,
    clock: Arc<dyn cluster_core::clock::Clock>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("platform", &self.platform)
            .finish_non_exhaustive()
    }
}

/// One audit event to record: its kind and whatever it concerns.
///
/// ```ignore
/// audit.record(AuditRecord::new(AuditKind::PartitionOwned).app(&app).token(t).partition(p));
/// ```
#[derive(Debug, Clone)]
pub(crate) struct AuditRecord {
    kind: AuditKind,
    app: Option<String>,
    token: Option<u64>,
    partition: Option<PartitionId>,
    detail: Option<String>,
}

impl AuditRecord {
    /// An event of `kind` about nothing in particular (yet).
    pub(crate) fn new(kind: AuditKind) -> Self {
        AuditRecord {
            kind,
            app: None,
            token: None,
            partition: None,
            detail: None,
        }
    }

    /// The app it concerns.
    pub(crate) fn app(mut self, app: &str) -> Self {
        self.app = Some(app.to_owned());
        self
    }

    /// The fencing token involved.
    pub(crate) fn token(mut self, token: FencingToken) -> Self {
        self.token = Some(token.get());
        self
    }

    /// The fencing token involved, if any.
    pub(crate) fn maybe_token(mut self, token: Option<FencingToken>) -> Self {
        self.token = token.map(FencingToken::get);
        self
    }

    /// The partition involved.
    pub(crate) fn partition(mut self, partition: PartitionId) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Free-form detail (a reason, another node).
    pub(crate) fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Free-form detail, if any.
    pub(crate) fn maybe_detail(mut self, detail: Option<String>) -> Self {
        self.detail = detail;
        self
    }
}

impl Audit {
    /// A sink for `platform`/`node`; publishes to `bus` if given. Must run inside a runtime when
    /// a bus is given (it spawns the publisher).
    pub(crate) fn new(
        platform: &str,
        node: &str,
        bus: Option<(Arc<dyn EventBus>, Subjects)>,
        clock: Arc<dyn cluster_core::clock::Clock>,
    ) -> Self {
        let queue = bus.map(|(bus, subjects)| {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(publish(bus, subjects, rx));
            tx
        });
        Audit {
            platform: platform.to_owned(),
            node: node.to_owned(),
            tail: Arc::default(),
            queue,
            clock,
        }
    }

    /// Records an event.
    pub(crate) fn record(&self, record: AuditRecord) {
        let AuditRecord {
            kind,
            app,
            token,
            partition,
            detail,
        } = record;
        let partition = partition.map(|p| p.0);
        let at_ms = self
            .clock
            .wall()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let event = AuditEvent {
            kind,
            platform: self.platform.clone(),
            app,
            node: self.node.clone(),
            token,
            partition,
            detail,
            at_ms,
        };
        tracing::info!(
            audit = kind.as_str(),
            app = event.app.as_deref(),
            token,
            partition,
            detail = event.detail.as_deref(),
            "audit"
        );
        {
            let mut tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
            if tail.len() == TAIL {
                tail.pop_front();
            }
            tail.push_back(event.clone());
        }
        if let Some(queue) = &self.queue
            && queue.try_send(event).is_err()
        {
            metrics::counter!(crate::metric_definitions::AUDIT_DROPPED).increment(1);
        }
    }

    /// The most recent events, oldest first.
    pub(crate) fn recent(&self) -> Vec<AuditEvent> {
        self.tail
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

async fn publish(bus: Arc<dyn EventBus>, subjects: Subjects, mut rx: mpsc::Receiver<AuditEvent>) {
    let mut sequence: u64 = 0;
    while let Some(event) = rx.recv().await {
        sequence += 1;
        let Ok(token) = SubjectToken::new(event.kind.as_str()) else {
            continue;
        };
        let Ok(payload) = serde_json::to_vec(&event) else {
            continue;
        };
        let message = BusMessage {
            subject: subjects.audit(&token),
            message_id: format!(
                "audit-{}-{}-{}-{sequence}",
                event.node,
                event.at_ms,
                event.kind.as_str()
            ),
            payload,
        };
        if let Err(e) = bus.publish(message).await {
            tracing::warn!(error = %e, kind = event.kind.as_str(), "audit event not published");
        }
    }
}
