//! Keys, conditional writes and fenced writes.

use cluster_core::coordination::{ConflictDetail, CoordError, Expect, KeyPrefix};
use cluster_core::ids::Revision;
use cluster_core::naming::NamespaceKind;
use coord_client::Session;

use super::cases_lease::node;
use super::harness::{CoordHarness, fresh_namespace, key};

/// Puts return growing revisions; gets and lists see them; lists are sorted and bounded by
/// their prefix; deletes say whether something was deleted.
pub async fn kv_put_get_list_delete<H: CoordHarness>(h: &mut H) {
    let coord = h.client().await;
    let ns = fresh_namespace(NamespaceKind::Kv);
    let other = fresh_namespace(NamespaceKind::Kv);

    let (r1, r2, r3) = {
        tracing::info!("three puts, revisions only grow");
        let r1 = coord
            .put(&key(&ns, "b"), b"2".to_vec(), Expect::Any, None)
            .await
            .unwrap();
        let r2 = coord
            .put(&key(&ns, "a"), b"1".to_vec(), Expect::Any, None)
            .await
            .unwrap();
        let r3 = coord
            .put(&key(&ns, "b"), b"3".to_vec(), Expect::Any, None)
            .await
            .unwrap();
        coord
            .put(&key(&other, "a"), b"x".to_vec(), Expect::Any, None)
            .await
            .unwrap();
        assert!(r1 < r2 && r2 < r3, "{r1} {r2} {r3}");
        (r1, r2, r3)
    };
    {
        tracing::info!("get returns the latest value and its revision");
        let b = coord.get(&key(&ns, "b")).await.unwrap().unwrap();
        assert_eq!(b.value, b"3");
        assert_eq!(b.revision, r3);
        assert!(coord.get(&key(&ns, "missing")).await.unwrap().is_none());
        let _ = r1;
    }
    {
        tracing::info!("list is sorted and stays inside its namespace");
        let all = coord.list(&KeyPrefix::all(ns.clone())).await.unwrap();
        let names: Vec<&str> = all.iter().map(|e| e.key.name()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(all[0].revision, r2);
        let only_b = coord
            .list(&KeyPrefix::new(ns.clone(), "b").unwrap())
            .await
            .unwrap();
        assert_eq!(only_b.len(), 1);
    }
    {
        tracing::info!("delete reports whether it deleted");
        assert!(coord.delete(&key(&ns, "a"), Expect::Any).await.unwrap());
        assert!(!coord.delete(&key(&ns, "a"), Expect::Any).await.unwrap());
        assert!(coord.get(&key(&ns, "a")).await.unwrap().is_none());
    }
}

/// Create-if-absent and compare-and-set conflicts change nothing and say what they found.
pub async fn kv_conditional_writes<H: CoordHarness>(h: &mut H) {
    let coord = h.client().await;
    let ns = fresh_namespace(NamespaceKind::Kv);
    let k = key(&ns, "cas");

    let created = coord
        .put(&k, b"1".to_vec(), Expect::Absent, None)
        .await
        .unwrap();
    {
        tracing::info!("a second create conflicts");
        let err = coord
            .put(&k, b"2".to_vec(), Expect::Absent, None)
            .await
            .unwrap_err();
        match err {
            CoordError::Conflict {
                detail: ConflictDetail::Exists { revision },
                ..
            } => assert_eq!(revision, created),
            other => panic!("expected Exists, got {other:?}"),
        }
    }
    let updated = {
        tracing::info!("CAS with a wrong revision conflicts; with the right one it writes");
        let wrong = Revision(created.0 + 1000);
        let err = coord
            .put(&k, b"2".to_vec(), Expect::Revision(wrong), None)
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            CoordError::Conflict {
                detail: ConflictDetail::RevisionMoved { .. },
                ..
            }
        ));
        assert_eq!(coord.get(&k).await.unwrap().unwrap().value, b"1");
        let updated = coord
            .put(&k, b"2".to_vec(), Expect::Revision(created), None)
            .await
            .unwrap();
        assert!(updated > created);
        updated
    };
    {
        tracing::info!("a conditional delete with a stale revision conflicts");
        let err = coord
            .delete(&k, Expect::Revision(created))
            .await
            .unwrap_err();
        assert!(matches!(err, CoordError::Conflict { .. }), "{err:?}");
        assert!(coord.delete(&k, Expect::Revision(updated)).await.unwrap());
        let err = coord
            .put(&k, b"3".to_vec(), Expect::Revision(updated), None)
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            CoordError::Conflict {
                detail: ConflictDetail::RevisionMoved { found: None, .. },
                ..
            }
        ));
    }
}

/// A write fenced by a superseded claim is refused by the store itself.
pub async fn put_if_held_refuses_superseded_claim<H: CoordHarness>(h: &mut H) {
    let coord = h.client().await;
    let timing = h.timing();
    let claims = fresh_namespace(NamespaceKind::Claims);
    let data = fresh_namespace(NamespaceKind::Kv);
    let resource = key(&claims, "partition-1");
    let target = key(&data, "state");
    let a = Session::open(coord.clone(), node("a"), timing.lease_timing())
        .await
        .unwrap();
    let b = Session::open(coord.clone(), node("b"), timing.lease_timing())
        .await
        .unwrap();

    let old = coord.claim(&resource, &node("a"), a.lease()).await.unwrap();
    assert!(coord.fence_holds(&old.fence()).await.unwrap());
    if !coord.capabilities().put_if_held {
        tracing::info!("backend declares put_if_held unsupported: it must say so");
        let err = coord
            .put_if_held(&target, b"x".to_vec(), &old.fence())
            .await
            .unwrap_err();
        assert!(matches!(err, CoordError::Unsupported { .. }), "{err:?}");
        tracing::info!("fence_holds still tells a superseded fence from the current one");
        coord.release(&old).await.unwrap();
        let new = coord.claim(&resource, &node("b"), b.lease()).await.unwrap();
        assert!(!coord.fence_holds(&old.fence()).await.unwrap());
        assert!(coord.fence_holds(&new.fence()).await.unwrap());
        return;
    }
    {
        tracing::info!("the current owner's fenced write commits");
        coord
            .put_if_held(&target, b"from-a".to_vec(), &old.fence())
            .await
            .unwrap();
    }
    let new = {
        tracing::info!("ownership moves to b");
        coord.release(&old).await.unwrap();
        let new = coord.claim(&resource, &node("b"), b.lease()).await.unwrap();
        assert!(new.token > old.token);
        assert!(!coord.fence_holds(&old.fence()).await.unwrap());
        assert!(coord.fence_holds(&new.fence()).await.unwrap());
        new
    };
    {
        tracing::info!("a's fenced write is refused and changes nothing; b's commits");
        let err = coord
            .put_if_held(&target, b"late-a".to_vec(), &old.fence())
            .await
            .unwrap_err();
        match err {
            CoordError::StaleToken {
                presented, current, ..
            } => {
                assert_eq!(presented, old.token);
                assert_eq!(current, Some(new.token));
            }
            other => panic!("expected StaleToken, got {other:?}"),
        }
        assert_eq!(coord.get(&target).await.unwrap().unwrap().value, b"from-a");
        coord
            .put_if_held(&target, b"from-b".to_vec(), &new.fence())
            .await
            .unwrap();
        assert_eq!(coord.get(&target).await.unwrap().unwrap().value, b"from-b");
    }
    a.close(coord.as_ref()).await.unwrap();
    b.close(coord.as_ref()).await.unwrap();
}
