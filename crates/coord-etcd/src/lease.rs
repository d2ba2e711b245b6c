//! The lease port on etcd: `LeaseGrant`, one `LeaseKeepAlive` round trip per renewal on a
//! stream kept open between renewals, `LeaseRevoke`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use cluster_core::coordination::{
    CoordError, CoordResult, LeaseGrant, LeaseId, LeaseStore, Operation,
};
use cluster_core::error::Retryable;

use crate::EtcdCoordinator;
use crate::error;

/// etcd's lease id from ours (lowercase hex, as etcd's recipes write it into keys).
pub(crate) fn lease_number(lease: &LeaseId) -> CoordResult<i64> {
    u64::from_str_radix(lease.as_str(), 16)
        .map(|n| n as i64)
        .map_err(|_| CoordError::bad_request(format!("{lease} is not an etcd lease id")))
}

pub(crate) fn lease_id(n: i64) -> LeaseId {
    LeaseId::new(format!("{:x}", n as u64))
}

#[async_trait]
impl LeaseStore for EtcdCoordinator {
    async fn grant_lease(&self, ttl: Duration) -> CoordResult<LeaseGrant> {
        let secs = ttl.as_secs_f64().ceil().max(1.0) as i64;
        let resp = self
            .call(Operation::GrantLease, None, |client| async move {
                client.lease_client().grant(secs, None).await
            })
            .await?;
        if !resp.error().is_empty() {
            return Err(CoordError::bad_request(format!(
                "lease grant: {}",
                resp.error()
            )));
        }
        Ok(LeaseGrant {
            id: lease_id(resp.id()),
            ttl: Duration::from_secs(resp.ttl().max(0) as u64),
        })
    }

    async fn renew_lease(&self, lease: &LeaseId) -> CoordResult<Duration> {
        let id = lease_number(lease)?;
        let slot = {
            let mut map = self.keep_alives.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(id).or_default().clone()
        };
        let mut stream = slot.lock().await;
        let index = self.current.load(Ordering::Relaxed) % self.clients.len();
        let outcome = tokio::time::timeout(self.config.call_timeout, async {
            if stream.is_none() {
                let mut client = self.clients[index].lease_client();
                *stream = Some(client.keep_alive(id).await?);
            }
            let Some((keeper, responses)) = stream.as_mut() else {
                return Err(etcd_client::Error::LeaseKeepAliveError("no stream".into()));
            };
            keeper.keep_alive().await?;
            match responses.message().await? {
                Some(resp) => Ok(resp.ttl()),
                None => Err(etcd_client::Error::LeaseKeepAliveError(
                    "keep-alive stream closed".into(),
                )),
            }
        })
        .await;
        match outcome {
            Ok(Ok(ttl)) if ttl > 0 => Ok(Duration::from_secs(ttl as u64)),
            Ok(Ok(_)) => {
                // TTL 0: etcd no longer knows the lease.
                *stream = None;
                self.forget(id);
                Err(CoordError::LeaseLost {
                    lease: lease.clone(),
                })
            }
            Ok(Err(e)) => {
                *stream = None;
                let e = error::map(Operation::RenewLease, Some(lease.as_str()), e);
                if e.is_retryable() {
                    self.rotate(index);
                }
                Err(e)
            }
            Err(_) => {
                // The stream may hold a late answer; start a fresh one, elsewhere, next time.
                *stream = None;
                self.rotate(index);
                Err(CoordError::timed_out(
                    Operation::RenewLease,
                    self.config.call_timeout,
                ))
            }
        }
    }

    async fn revoke_lease(&self, lease: &LeaseId) -> CoordResult<()> {
        let id = lease_number(lease)?;
        self.forget(id);
        match self
            .call(
                Operation::RevokeLease,
                Some(lease.as_str()),
                |client| async move { client.lease_client().revoke(id).await },
            )
            .await
        {
            Ok(_) | Err(CoordError::LeaseLost { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl EtcdCoordinator {
    fn forget(&self, id: i64) {
        self.keep_alives
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }
}
