//! Membership and ownership claims.

use std::collections::BTreeMap;
use std::time::Duration;

use cluster_core::coordination::{ConflictDetail, CoordError, MemberInfo, MembershipEvent};
use cluster_core::ids::NodeId;
use cluster_core::naming::NamespaceKind;
use coord_client::Session;
use futures::StreamExt;

use super::cases_lease::node;
use super::harness::{CoordHarness, fresh_namespace, key};

fn member(name: &str, zone: &str) -> MemberInfo {
    MemberInfo {
        node: node(name),
        address: format!("127.0.0.1:{}", 7000 + name.len()),
        labels: BTreeMap::from([("zone".to_owned(), zone.to_owned())]),
        metadata: BTreeMap::new(),
    }
}

/// A node id held by a live lease cannot be registered again until that lease ends.
pub async fn membership_duplicate_id_refused_until_lease_ends<H: CoordHarness>(h: &mut H) {
    let coord = h.client().await;
    let ns = fresh_namespace(NamespaceKind::Members);
    let ttl = h.timing().ttl;
    let first = coord.grant_lease(ttl).await.unwrap();
    let second = coord.grant_lease(ttl).await.unwrap();

    coord
        .register(&ns, &member("n1", "a"), &first.id)
        .await
        .unwrap();
    {
        tracing::info!("same id, another lease: refused");
        let err = coord
            .register(&ns, &member("n1", "b"), &second.id)
            .await
            .unwrap_err();
        assert!(
            matches!(err, CoordError::NodeIdInUse { ref node } if node.as_str() == "n1"),
            "{err:?}"
        );
        let members = coord.members(&ns).await.unwrap();
        assert_eq!(members.len(), 1);
        assert_eq!(members[0].labels["zone"], "a");
    }
    {
        tracing::info!("the other lease cannot update or remove the record either");
        let err = coord
            .update_member(&ns, &member("n1", "b"), &second.id)
            .await
            .unwrap_err();
        assert!(matches!(err, CoordError::LeaseLost { .. }), "{err:?}");
        coord
            .deregister(&ns, &node("n1"), &second.id)
            .await
            .unwrap();
        assert_eq!(coord.members(&ns).await.unwrap().len(), 1);
    }
    {
        tracing::info!("once the first lease ends, the id is free");
        coord.revoke_lease(&first.id).await.unwrap();
        coord
            .register(&ns, &member("n1", "b"), &second.id)
            .await
            .unwrap();
        assert_eq!(coord.members(&ns).await.unwrap()[0].labels["zone"], "b");
    }
}

async fn next_event(
    stream: &mut cluster_core::coordination::MembershipStream,
    limit: Duration,
) -> MembershipEvent {
    tokio::time::timeout(limit, stream.next())
        .await
        .expect("a membership event in time")
        .expect("stream open")
        .expect("no error")
}

/// Watchers see joins, updates and leaves (including lease expiry) in order.
pub async fn membership_watch_joins_updates_leaves<H: CoordHarness>(h: &mut H) {
    let coord = h.client().await;
    let ns = fresh_namespace(NamespaceKind::Members);
    let timing = h.timing();
    let limit = timing.max_expiry();
    let a = coord.grant_lease(timing.ttl).await.unwrap();
    let b = Session::open(coord.clone(), node("b"), timing.lease_timing())
        .await
        .unwrap();

    let mut events = coord.watch_members(&ns).await.unwrap();
    assert_eq!(
        next_event(&mut events, limit).await,
        MembershipEvent::Snapshot(vec![])
    );
    {
        // Each change is awaited before the next is made: backends that deliver only the latest
        // value may merge changes made in a burst, which the contract allows.
        tracing::info!("join, join, update, leave, in that order");
        coord
            .register(&ns, &member("a", "z1"), &a.id)
            .await
            .unwrap();
        assert_eq!(
            next_event(&mut events, limit).await,
            MembershipEvent::Joined(member("a", "z1"))
        );
        coord
            .register(&ns, &member("b", "z1"), b.lease())
            .await
            .unwrap();
        assert_eq!(
            next_event(&mut events, limit).await,
            MembershipEvent::Joined(member("b", "z1"))
        );
        coord
            .update_member(&ns, &member("b", "z2"), b.lease())
            .await
            .unwrap();
        assert_eq!(
            next_event(&mut events, limit).await,
            MembershipEvent::Updated(member("b", "z2"))
        );
        coord.deregister(&ns, &node("b"), b.lease()).await.unwrap();
        assert_eq!(
            next_event(&mut events, limit).await,
            MembershipEvent::Left(node("b"))
        );
    }
    {
        tracing::info!("a's lease is never renewed: it leaves by expiry");
        assert_eq!(
            next_event(&mut events, limit).await,
            MembershipEvent::Left(node("a"))
        );
    }
}

/// Claim, conflict, stale transfer and release, good transfer and release.
pub async fn claims_conflict_transfer_release<H: CoordHarness>(h: &mut H) {
    let coord = h.client().await;
    let timing = h.timing();
    let resource = key(&fresh_namespace(NamespaceKind::Claims), "p-7");
    let a = Session::open(coord.clone(), node("a"), timing.lease_timing())
        .await
        .unwrap();
    let b = Session::open(coord.clone(), node("b"), timing.lease_timing())
        .await
        .unwrap();

    let claim_a = coord.claim(&resource, &node("a"), a.lease()).await.unwrap();
    {
        tracing::info!("a second claim conflicts and names the holder");
        let err = coord
            .claim(&resource, &node("b"), b.lease())
            .await
            .unwrap_err();
        match err {
            CoordError::Conflict {
                detail: ConflictDetail::HeldBy { holder },
                ..
            } => assert_eq!(holder, "a"),
            other => panic!("expected HeldBy, got {other:?}"),
        }
        let owner = coord.owner(&resource).await.unwrap().unwrap();
        assert_eq!((owner.owner.as_str(), owner.token), ("a", claim_a.token));
    }
    let claim_b = {
        tracing::info!("transfer to b: larger token; the old claim is now stale");
        let claim_b = coord
            .transfer(&claim_a, &node("b"), b.lease())
            .await
            .unwrap();
        assert!(claim_b.token > claim_a.token);
        let err = coord
            .transfer(&claim_a, &node("a"), a.lease())
            .await
            .unwrap_err();
        assert!(
            matches!(err, CoordError::StaleToken { current: Some(t), .. } if t == claim_b.token),
            "{err:?}"
        );
        let err = coord.release(&claim_a).await.unwrap_err();
        assert!(matches!(err, CoordError::StaleToken { .. }), "{err:?}");
        assert_eq!(
            coord
                .owner(&resource)
                .await
                .unwrap()
                .unwrap()
                .owner
                .as_str(),
            "b"
        );
        claim_b
    };
    {
        tracing::info!("release with the current token frees the resource");
        coord.release(&claim_b).await.unwrap();
        assert!(coord.owner(&resource).await.unwrap().is_none());
        let err = coord.release(&claim_b).await.unwrap_err();
        assert!(
            matches!(err, CoordError::StaleToken { current: None, .. }),
            "{err:?}"
        );
    }
}

/// Over 100 alternating claims and releases, every token is larger than the one before.
pub async fn claims_tokens_increase_over_alternating_claims<H: CoordHarness>(h: &mut H) {
    let coord = h.client().await;
    let timing = h.timing();
    let resource = key(&fresh_namespace(NamespaceKind::Claims), "hot");
    let owners: Vec<(NodeId, Session)> = futures::future::join_all(["a", "b"].map(|n| {
        let coord = coord.clone();
        async move {
            let s = Session::open(coord, node(n), timing.lease_timing())
                .await
                .unwrap();
            (node(n), s)
        }
    }))
    .await;
    let mut last = None;
    for i in 0..100 {
        let (owner, session) = &owners[i % 2];
        let claim = coord
            .claim(&resource, owner, session.lease())
            .await
            .unwrap();
        if let Some(prev) = last {
            assert!(
                claim.token > prev,
                "claim {i}: token {} not above {prev}",
                claim.token
            );
        }
        last = Some(claim.token);
        coord.release(&claim).await.unwrap();
    }
}

/// A claim ends with its lease: the resource is free once the owner's lease expires.
pub async fn claim_vanishes_with_its_lease<H: CoordHarness>(h: &mut H) {
    let coord = h.client().await;
    let timing = h.timing();
    let resource = key(&fresh_namespace(NamespaceKind::Claims), "p-1");
    let a = coord.grant_lease(timing.ttl).await.unwrap();
    let b = Session::open(coord.clone(), node("b"), timing.lease_timing())
        .await
        .unwrap();
    let claim_a = coord.claim(&resource, &node("a"), &a.id).await.unwrap();
    tokio::time::sleep(timing.max_expiry()).await;
    assert!(
        coord.owner(&resource).await.unwrap().is_none(),
        "claim outlived its lease"
    );
    let claim_b = coord.claim(&resource, &node("b"), b.lease()).await.unwrap();
    assert!(claim_b.token > claim_a.token);
}
