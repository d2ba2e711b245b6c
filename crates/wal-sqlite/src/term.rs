//! `ReplicationTerm`: the primary's right to write, as replication sees it.

use std::sync::Arc;

use cluster_core::coordination::Fence;
use cluster_core::ids::FencingToken;

/// The last moment the primary may act (its lease's safe deadline), or `None` once lost.
pub type SafeDeadline = Arc<dyn Fn() -> Option<tokio::time::Instant> + Send + Sync>;

/// The term a primary writes under: its token (stamped on every segment), its fence (new
/// generations start only while it stands) and its lease's safe deadline (no segment is put,
/// and no `sync()` succeeds, past it).
#[derive(Clone)]
pub struct ReplicationTerm {
    /// The term's fencing token.
    pub token: FencingToken,
    /// The term's fence; `None` for a single primary without an election.
    pub fence: Option<Fence>,
    /// The lease's safe deadline; `None` for no lease.
    pub safe_until: Option<SafeDeadline>,
}

impl std::fmt::Debug for ReplicationTerm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationTerm")
            .field("token", &self.token)
            .field("fence", &self.fence)
            .field("leased", &self.safe_until.is_some())
            .finish()
    }
}

impl ReplicationTerm {
    /// A single primary: no election, no lease.
    pub fn unfenced(token: FencingToken) -> ReplicationTerm {
        ReplicationTerm {
            token,
            fence: None,
            safe_until: None,
        }
    }

    /// A term of an election won under `session`, with its fence.
    pub fn from_session(
        token: FencingToken,
        fence: Fence,
        session: coord_client::Session,
    ) -> ReplicationTerm {
        ReplicationTerm {
            token,
            fence: Some(fence),
            safe_until: Some(Arc::new(move || {
                session.safe_until().map(coord_client::to_instant)
            })),
        }
    }

    /// Whether the term may still act at `now`.
    pub(crate) fn valid_at(&self, now: tokio::time::Instant) -> bool {
        match &self.safe_until {
            None => true,
            Some(f) => f().is_some_and(|deadline| now < deadline),
        }
    }
}
