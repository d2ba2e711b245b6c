//! Every namespace of one app shares a bucket: a write to the app's key-value space fenced by
//! its election key or a partition claim is one conditioned publish, refused once the term or
//! the claim moved; kinds stay apart in reads, lists and watches.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use cluster_core::coordination::{
    ClaimStore, CoordError, ElectionStore, Expect, Key, KeyPrefix, KvStore, LeaseStore, WatchEvent,
    WatchStart, WatchStore, WatchTarget,
};
use cluster_core::ids::{AppName, NodeId, PlatformName};
use cluster_core::naming::{NamespaceKind, namespace};
use futures::StreamExt;
use testkit::NatsServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apps_writes_are_fenced_by_its_election_and_claims_and_kinds_stay_apart() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let server = NatsServer::start().await.unwrap();
    let coord = Arc::new(common::connect(&server).await);
    let platform = PlatformName::new(format!("appbucket-{}", std::process::id())).unwrap();
    let app = AppName::new("ledger").unwrap();
    let ns = |kind| namespace(&platform, Some(&app), kind);
    let election = Key::new(ns(NamespaceKind::Election), "leader").unwrap();
    let data = Key::new(ns(NamespaceKind::Kv), "balance").unwrap();
    let lease = coord.grant_lease(Duration::from_secs(10)).await.unwrap().id;
    let other = coord.grant_lease(Duration::from_secs(10)).await.unwrap().id;
    {
        tracing::info!(
            "a leader's fenced write to the app's data commits; after its term it is refused"
        );
        let term = coord.campaign(&election, "a", &lease).await.unwrap();
        coord
            .put_if_held(&data, b"1".to_vec(), &term.fence())
            .await
            .expect("one bucket: a fenced write is supported");
        coord.resign(&term).await.unwrap();
        let next = coord.campaign(&election, "b", &other).await.unwrap();
        let err = coord
            .put_if_held(&data, b"2".to_vec(), &term.fence())
            .await
            .unwrap_err();
        assert!(matches!(err, CoordError::StaleToken { .. }), "{err:?}");
        coord
            .put_if_held(&data, b"3".to_vec(), &next.fence())
            .await
            .unwrap();
        assert_eq!(coord.get(&data).await.unwrap().unwrap().value, b"3");
    }
    {
        tracing::info!("a claim fences the app's data too");
        let claim = coord
            .claim(
                &Key::new(ns(NamespaceKind::Claims), "p-1").unwrap(),
                &NodeId::new("a").unwrap(),
                &lease,
            )
            .await
            .unwrap();
        let state = Key::new(ns(NamespaceKind::Kv), "p-1.state").unwrap();
        coord
            .put_if_held(&state, b"x".to_vec(), &claim.fence())
            .await
            .unwrap();
        coord.release(&claim).await.unwrap();
        let err = coord
            .put_if_held(&state, b"y".to_vec(), &claim.fence())
            .await
            .unwrap_err();
        assert!(matches!(err, CoordError::StaleToken { .. }), "{err:?}");
    }
    {
        tracing::info!(
            "the same name in two kinds: two keys; lists and watches see only their kind"
        );
        let in_kv = Key::new(ns(NamespaceKind::Kv), "p-1").unwrap();
        coord
            .put(&in_kv, b"kv".to_vec(), Expect::Any, None)
            .await
            .unwrap();
        let claims = coord
            .list(&KeyPrefix::all(ns(NamespaceKind::Claims)))
            .await
            .unwrap();
        assert!(claims.is_empty(), "{claims:?}");
        let kv: Vec<String> = coord
            .list(&KeyPrefix::all(ns(NamespaceKind::Kv)))
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.key.name().to_owned())
            .collect();
        assert_eq!(kv, ["balance", "p-1", "p-1.state"]);
        let mut watch = coord
            .watch(
                WatchTarget::Prefix(KeyPrefix::all(ns(NamespaceKind::Claims))),
                WatchStart::Now,
            )
            .await
            .unwrap();
        match watch.next().await {
            Some(Ok(WatchEvent::Snapshot { entries, .. })) => {
                assert!(entries.is_empty(), "{entries:?}")
            }
            other => panic!("{other:?}"),
        }
        coord
            .put(
                &Key::new(ns(NamespaceKind::Kv), "noise").unwrap(),
                b"n".to_vec(),
                Expect::Any,
                None,
            )
            .await
            .unwrap();
        let claim = coord
            .claim(
                &Key::new(ns(NamespaceKind::Claims), "p-2").unwrap(),
                &NodeId::new("a").unwrap(),
                &lease,
            )
            .await
            .unwrap();
        match watch.next().await {
            Some(Ok(WatchEvent::Put(e))) => {
                assert_eq!(e.key, claim.resource, "a put of another kind was reported")
            }
            other => panic!("{other:?}"),
        }
    }
}

/// M5: the ring planner's target sits next to its election key, so its write is fenced by its
/// term on NATS KV too. A planner that read the target, lost its term and resumed after the next
/// planner published cannot overwrite the newer target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planner_that_lost_its_term_cannot_overwrite_the_next_planners_target() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let server = NatsServer::start().await.unwrap();
    let coord = Arc::new(common::connect(&server).await);
    let platform = PlatformName::new(format!("planner-{}", std::process::id())).unwrap();
    let app = AppName::new("jobs").unwrap();
    let election = namespace(&platform, Some(&app), NamespaceKind::Election);
    let planner = Key::new(election.clone(), "ring-planner").unwrap();
    let target = Key::new(election, "ring-assignment").unwrap();
    let lease_a = coord.grant_lease(Duration::from_secs(10)).await.unwrap().id;
    let lease_b = coord.grant_lease(Duration::from_secs(10)).await.unwrap().id;

    let term_a = coord.campaign(&planner, "a", &lease_a).await.unwrap();
    coord
        .put_if_held(&target, b"target of a".to_vec(), &term_a.fence())
        .await
        .expect("the planner's target is fenced by its term");
    tracing::info!("a reads the target, then pauses; its lease ends and b plans");
    let read_by_a = coord.get(&target).await.unwrap().unwrap();
    coord.revoke_lease(&lease_a).await.unwrap();
    let term_b = coord.campaign(&planner, "b", &lease_b).await.unwrap();
    coord
        .put_if_held(&target, b"target of b".to_vec(), &term_b.fence())
        .await
        .unwrap();
    tracing::info!("a resumes with what it read: its write is refused, b's target stays");
    let err = coord
        .put_if_held(&target, b"stale target of a".to_vec(), &term_a.fence())
        .await
        .unwrap_err();
    assert!(matches!(err, CoordError::StaleToken { .. }), "{err:?}");
    let stored = coord.get(&target).await.unwrap().unwrap();
    assert_eq!(stored.value, b"target of b");
    assert_ne!(stored.revision, read_by_a.revision);
}
