//! The election part of the port: one leader per election name, with a fencing token per term.

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::coordination::error::CoordResult;
use crate::coordination::fence::Fence;
use crate::coordination::key::Key;
use crate::coordination::lease_store::LeaseId;
use crate::ids::FencingToken;

/// This process's term as leader of an election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leadership {
    /// The election.
    pub election: Key,
    /// Who leads, as written in the candidacy (a node id for our nodes).
    pub holder: String,
    /// The key of this candidacy.
    pub candidate_key: Key,
    /// The term's fencing token, from the store's revisions: larger than every earlier term's.
    pub token: FencingToken,
    /// The lease the candidacy is bound to; the term ends when it does.
    pub lease: LeaseId,
}

impl Leadership {
    /// The fence that proves this term still stands.
    pub fn fence(&self) -> Fence {
        Fence {
            key: self.candidate_key.clone(),
            token: self.token,
        }
    }
}

/// The current leader of an election, as any observer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderInfo {
    /// Who leads, as written in the candidacy.
    pub holder: String,
    /// The leader's term token.
    pub token: FencingToken,
    /// The leader's candidacy key.
    pub key: Key,
}

/// A stream of leader changes: the current leader (or none) first, then every change.
pub type LeaderStream = BoxStream<'static, CoordResult<Option<LeaderInfo>>>;

/// Leader election.
///
/// Contract:
/// - At most one candidacy leads at any revision of the store. `campaign` returns only once
///   this candidacy leads.
/// - A term's token is larger than the token of every earlier term of the same election, so a
///   fence taken from an old term never passes a check made against a newer one.
/// - A term ends when the holder resigns or its lease ends; the next candidate in line leads
///   then, with a larger token.
/// - Dropping a `campaign` future withdraws the candidacy (the adapter deletes it in the
///   background; it is bound to the lease in any case).
/// - `resign` of a term that already ended succeeds and changes nothing.
#[async_trait]
pub trait ElectionStore: Send + Sync {
    /// Campaigns for `election` as `holder` under `lease`; resolves when this candidacy leads.
    async fn campaign(
        &self,
        election: &Key,
        holder: &str,
        lease: &LeaseId,
    ) -> CoordResult<Leadership>;

    /// Ends the term, handing leadership to the next candidate in line.
    async fn resign(&self, leadership: &Leadership) -> CoordResult<()>;

    /// The current leader, if any.
    async fn leader(&self, election: &Key) -> CoordResult<Option<LeaderInfo>>;

    /// The current leader, then every change of leader.
    async fn observe_leader(&self, election: &Key) -> CoordResult<LeaderStream>;
}
