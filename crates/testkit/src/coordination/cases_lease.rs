//! Leases and sessions.

use cluster_core::coordination::{CoordError, Expect, WatchEvent, WatchStart, WatchTarget};
use cluster_core::ids::NodeId;
use cluster_core::naming::NamespaceKind;
use coord_client::{LostReason, Session, mono_now};
use futures::StreamExt;

use super::harness::{CoordHarness, fresh_namespace, key};

pub(super) fn node(name: &str) -> NodeId {
    NodeId::new(name).unwrap_or_else(|e| panic!("{e}"))
}

/// Grant gives at least the TTL asked; renew answers; revoke deletes bound keys; a revoked
/// lease cannot be renewed.
pub async fn lease_grant_renew_revoke<H: CoordHarness>(h: &mut H) {
    let coord = h.client().await;
    let ttl = h.timing().ttl;
    let ns = fresh_namespace(NamespaceKind::Kv);

    let grant = {
        tracing::info!("grant");
        let grant = coord.grant_lease(ttl).await.unwrap();
        assert!(grant.ttl >= ttl, "granted {:?} < asked {ttl:?}", grant.ttl);
        grant
    };
    {
        tracing::info!("renew answers with the lease's ttl");
        let renewed = coord.renew_lease(&grant.id).await.unwrap();
        assert!(renewed >= ttl);
    }
    {
        tracing::info!("revoke deletes the bound key at once");
        let k = key(&ns, "bound");
        coord
            .put(&k, b"v".to_vec(), Expect::Any, Some(&grant.id))
            .await
            .unwrap();
        assert!(coord.get(&k).await.unwrap().is_some());
        coord.revoke_lease(&grant.id).await.unwrap();
        assert!(coord.get(&k).await.unwrap().is_none());
    }
    {
        tracing::info!("a revoked lease stays dead");
        let err = coord.renew_lease(&grant.id).await.unwrap_err();
        assert!(matches!(err, CoordError::LeaseLost { .. }), "{err:?}");
        let err = coord
            .put(
                &key(&ns, "late"),
                b"v".to_vec(),
                Expect::Any,
                Some(&grant.id),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, CoordError::LeaseLost { .. }), "{err:?}");
    }
}

/// An unrenewed lease expires at the store, its keys are deleted, and watchers see the delete.
pub async fn lease_expiry_deletes_bound_keys<H: CoordHarness>(h: &mut H) {
    let coord = h.client().await;
    let timing = h.timing();
    let ns = fresh_namespace(NamespaceKind::Kv);
    let k = key(&ns, "ephemeral");

    let grant = coord.grant_lease(timing.ttl).await.unwrap();
    coord
        .put(&k, b"v".to_vec(), Expect::Absent, Some(&grant.id))
        .await
        .unwrap();
    let mut watch = coord
        .watch(WatchTarget::Key(k.clone()), WatchStart::Now)
        .await
        .unwrap();
    {
        tracing::info!("the watch starts with the key present");
        match watch.next().await.unwrap().unwrap() {
            WatchEvent::Snapshot { entries, .. } => assert_eq!(entries.len(), 1),
            other => panic!("expected a snapshot, got {other:?}"),
        }
    }
    {
        tracing::info!("without renewals the key is deleted, and the watch says so");
        let event = tokio::time::timeout(timing.max_expiry(), watch.next())
            .await
            .expect("expiry seen by the watch")
            .unwrap()
            .unwrap();
        assert!(matches!(event, WatchEvent::Delete { .. }), "{event:?}");
        assert!(coord.get(&k).await.unwrap().is_none());
        let err = coord.renew_lease(&grant.id).await.unwrap_err();
        assert!(matches!(err, CoordError::LeaseLost { .. }), "{err:?}");
    }
}

/// A session keeps its lease (and the keys bound to it) alive well past one TTL.
pub async fn session_outlives_its_ttl_by_renewing<H: CoordHarness>(h: &mut H) {
    let coord = h.client().await;
    let timing = h.timing();
    let ns = fresh_namespace(NamespaceKind::Kv);
    let k = key(&ns, "kept");

    let session = Session::open(coord.clone(), node("n1"), timing.lease_timing())
        .await
        .unwrap();
    coord
        .put(&k, b"v".to_vec(), Expect::Absent, Some(session.lease()))
        .await
        .unwrap();
    let claim = coord
        .claim(&key(&ns, "claimed"), &node("n1"), session.lease())
        .await
        .unwrap();
    tokio::time::sleep(timing.ttl * 3).await;
    assert!(
        session.is_alive(),
        "session died while the store was reachable"
    );
    assert!(coord.get(&k).await.unwrap().is_some(), "bound key expired");
    assert!(
        coord.fence_holds(&claim.fence()).await.unwrap(),
        "renewals must not end the claim's fence"
    );
    session.close(coord.as_ref()).await.unwrap();
    assert!(
        coord.get(&k).await.unwrap().is_none(),
        "close did not revoke"
    );
    assert_eq!(session.lost().await, LostReason::Closed);
}

/// Cut off from the store, a session declares itself lost before the store expires the lease:
/// the lost signal comes before any other client can see the bound key go.
pub async fn session_lost_fires_before_store_expiry<H: CoordHarness>(h: &mut H) {
    let observer = h.client().await;
    let (coord, fault) = h.faultable_client().await;
    let timing = h.timing();
    let ns = fresh_namespace(NamespaceKind::Kv);
    let k = key(&ns, "held");

    let session = Session::open(coord.clone(), node("n1"), timing.lease_timing())
        .await
        .unwrap();
    coord
        .put(&k, b"v".to_vec(), Expect::Absent, Some(session.lease()))
        .await
        .unwrap();
    let mut watch = observer
        .watch(WatchTarget::Key(k.clone()), WatchStart::Now)
        .await
        .unwrap();
    let _snapshot = watch.next().await;

    tracing::info!("cut the holder off; wait for its lost signal and the observer's delete");
    fault.blackhole();
    let lost_at = {
        let session = session.clone();
        tokio::spawn(async move {
            let reason = session.lost().await;
            (reason, mono_now())
        })
    };
    let deleted_at = tokio::time::timeout(timing.max_expiry() * 2, async {
        loop {
            match watch.next().await {
                Some(Ok(WatchEvent::Delete { .. })) => return mono_now(),
                Some(Ok(WatchEvent::Snapshot { entries, .. })) if entries.is_empty() => {
                    return mono_now();
                }
                Some(_) => {}
                None => panic!("observer watch ended"),
            }
        }
    })
    .await
    .expect("the store expires the unrenewed lease");
    let (reason, lost_at) = lost_at.await.unwrap();
    fault.heal();
    assert_eq!(reason, LostReason::Expired);
    assert!(
        lost_at < deleted_at,
        "lost signal ({lost_at}) came after the store expiry was visible ({deleted_at})"
    );
    assert!(!session.is_alive());
}
