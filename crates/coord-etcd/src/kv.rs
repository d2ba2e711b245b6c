//! The key-value port on etcd: reads by range, conditional writes and deletes as `Txn`s that
//! compare `create_revision == 0` (absent) or `mod_revision == r`, and `put_if_held` comparing
//! the fence key's `mod_revision` with the token.

use async_trait::async_trait;
use cluster_core::coordination::{
    ConflictDetail, CoordError, CoordResult, Expect, Fence, Key, KeyPrefix, KvEntry, KvStore,
    LeaseId, Operation,
};
use cluster_core::ids::{FencingToken, Revision};
use cluster_core::naming::Namespace;
use etcd_client::{
    Compare, CompareOp, DeleteOptions, GetOptions, KeyValue, PutOptions, SortOrder, SortTarget,
    Txn, TxnOp, TxnOpResponse,
};

use crate::EtcdCoordinator;
use crate::lease::{lease_id, lease_number};

pub(crate) fn revision(r: i64) -> Revision {
    Revision(r.max(0) as u64)
}

/// Our entry from an etcd key-value, given the namespace it was read from.
pub(crate) fn entry(ns: &Namespace, kv: &KeyValue) -> Option<KvEntry> {
    let path = std::str::from_utf8(kv.key()).ok()?;
    let name = path.strip_prefix(&ns.key_prefix())?;
    let key = Key::new(ns.clone(), name).ok()?;
    Some(KvEntry {
        key,
        value: kv.value().to_vec(),
        revision: revision(kv.mod_revision()),
        created: Some(revision(kv.create_revision())),
        lease: (kv.lease() != 0).then(|| lease_id(kv.lease())),
    })
}

fn compare(key: &Key, expect: Expect) -> Option<Compare> {
    match expect {
        Expect::Any => None,
        Expect::Absent => Some(Compare::create_revision(key.path(), CompareOp::Equal, 0)),
        Expect::Revision(r) => Some(Compare::mod_revision(
            key.path(),
            CompareOp::Equal,
            r.0 as i64,
        )),
    }
}

/// The conflict for a failed compare, from the `Get` in the transaction's else branch.
fn conflict(key: &Key, expect: Expect, responses: &[TxnOpResponse]) -> CoordError {
    let found = responses.iter().find_map(|r| match r {
        TxnOpResponse::Get(get) => get.kvs().first().map(|kv| revision(kv.mod_revision())),
        _ => None,
    });
    let detail = match (expect, found) {
        (Expect::Absent, Some(revision)) => ConflictDetail::Exists { revision },
        (Expect::Revision(expected), found) => ConflictDetail::RevisionMoved { expected, found },
        (_, found) => ConflictDetail::RevisionMoved {
            expected: Revision(0),
            found,
        },
    };
    CoordError::Conflict {
        key: key.path(),
        detail,
    }
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Revision {
    revision(header.map_or(0, |h| h.revision()))
}

#[async_trait]
impl KvStore for EtcdCoordinator {
    async fn get(&self, key: &Key) -> CoordResult<Option<KvEntry>> {
        let path = key.path();
        let resp = self
            .call(Operation::Read, None, |client| {
                let path = path.clone();
                async move { client.kv_client().get(path, None).await }
            })
            .await?;
        Ok(resp.kvs().first().and_then(|kv| entry(key.namespace(), kv)))
    }

    async fn list(&self, prefix: &KeyPrefix) -> CoordResult<Vec<KvEntry>> {
        let path = prefix.path();
        let resp = self
            .call(Operation::Read, None, |client| {
                let path = path.clone();
                let options = GetOptions::new()
                    .with_prefix()
                    .with_sort(SortTarget::Key, SortOrder::Ascend);
                async move { client.kv_client().get(path, Some(options)).await }
            })
            .await?;
        Ok(resp
            .kvs()
            .iter()
            .filter_map(|kv| entry(prefix.namespace(), kv))
            .collect())
    }

    async fn put(
        &self,
        key: &Key,
        value: Vec<u8>,
        expect: Expect,
        lease: Option<&LeaseId>,
    ) -> CoordResult<Revision> {
        let lease_n = lease.map(lease_number).transpose()?.unwrap_or(0);
        let lease_s = lease.map(LeaseId::as_str);
        let put = TxnOp::put(
            key.path(),
            value,
            Some(PutOptions::new().with_lease(lease_n)),
        );
        let txn = match compare(key, expect) {
            None => Txn::new().and_then([put]),
            Some(c) => Txn::new()
                .when([c])
                .and_then([put])
                .or_else([TxnOp::get(key.path(), None)]),
        };
        let resp = self.txn(Operation::Write, lease_s, txn).await?;
        if !resp.succeeded() {
            return Err(conflict(key, expect, &resp.op_responses()));
        }
        Ok(header_revision(resp.header()))
    }

    async fn delete(&self, key: &Key, expect: Expect) -> CoordResult<bool> {
        let delete = TxnOp::delete(key.path(), Some(DeleteOptions::new()));
        let txn = match compare(key, expect) {
            None => Txn::new().and_then([delete]),
            Some(c) => Txn::new()
                .when([c])
                .and_then([delete])
                .or_else([TxnOp::get(key.path(), None)]),
        };
        let resp = self.txn(Operation::Write, None, txn).await?;
        if !resp.succeeded() {
            return Err(conflict(key, expect, &resp.op_responses()));
        }
        Ok(resp.op_responses().iter().any(|r| match r {
            TxnOpResponse::Delete(d) => d.deleted() > 0,
            _ => false,
        }))
    }

    async fn put_if_held(&self, key: &Key, value: Vec<u8>, fence: &Fence) -> CoordResult<Revision> {
        let txn = Txn::new()
            .when([Compare::mod_revision(
                fence.key.path(),
                CompareOp::Equal,
                fence.token.get() as i64,
            )])
            .and_then([TxnOp::put(key.path(), value, None)])
            .or_else([TxnOp::get(fence.key.path(), None)]);
        let resp = self.txn(Operation::Write, None, txn).await?;
        if resp.succeeded() {
            return Ok(header_revision(resp.header()));
        }
        let current = resp.op_responses().iter().find_map(|r| match r {
            TxnOpResponse::Get(get) => get
                .kvs()
                .first()
                .map(|kv| FencingToken::new(kv.mod_revision().max(0) as u64)),
            _ => None,
        });
        Err(CoordError::StaleToken {
            resource: fence.key.path(),
            presented: fence.token,
            current,
        })
    }
}
