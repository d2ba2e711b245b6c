//! The election port on etcd: the concurrency recipe (candidates at `{name}/{lease hex}`,
//! lowest create revision leads), shared with `etcdctl elect` and `etcdctl lock`.

use async_trait::async_trait;
use cluster_core::coordination::{
    CoordResult, ElectionStore, Key, LeaderInfo, LeaderStream, Leadership, LeaseId, Operation,
    queue_election,
};
use cluster_core::ids::Revision;
use etcd_client::{Compare, CompareOp, Txn, TxnOp};

use crate::EtcdCoordinator;

/// Withdraws a candidacy whose campaign was dropped before it won.
struct Withdraw {
    coord: EtcdCoordinator,
    candidacy: Option<(Key, Revision)>,
}

impl Drop for Withdraw {
    fn drop(&mut self) {
        if let Some((key, created)) = self.candidacy.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            let coord = self.coord.clone();
            handle.spawn(async move {
                let txn = Txn::new()
                    .when([Compare::create_revision(
                        key.path(),
                        CompareOp::Equal,
                        created.0 as i64,
                    )])
                    .and_then([TxnOp::delete(key.path(), None)]);
                let _ = coord.txn(Operation::Election, None, txn).await;
            });
        }
    }
}

#[async_trait]
impl ElectionStore for EtcdCoordinator {
    async fn campaign(
        &self,
        election: &Key,
        holder: &str,
        lease: &LeaseId,
    ) -> CoordResult<Leadership> {
        let (key, created) = queue_election::enter(self, election, holder, lease).await?;
        let mut withdraw = Withdraw {
            coord: self.clone(),
            candidacy: Some((key.clone(), created)),
        };
        let term = queue_election::wait_turn(self, election, holder, lease, key, created).await;
        if term.is_ok() {
            withdraw.candidacy = None;
        }
        term
    }

    async fn resign(&self, leadership: &Leadership) -> CoordResult<()> {
        queue_election::resign(self, leadership).await
    }

    async fn leader(&self, election: &Key) -> CoordResult<Option<LeaderInfo>> {
        queue_election::leader(self, election).await
    }

    async fn observe_leader(&self, election: &Key) -> CoordResult<LeaderStream> {
        queue_election::observe(self, election).await
    }
}
