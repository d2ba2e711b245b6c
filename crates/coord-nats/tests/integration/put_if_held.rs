//! `put_if_held` within one bucket: one publish conditioned on the fence key's last sequence.
//! Renewals move that sequence without ending the term; a new term refuses the old fence.

use crate::common;

use std::time::Duration;

use cluster_core::coordination::{ClaimStore, CoordError, Expect, Key, KvStore, LeaseStore};
use cluster_core::ids::NodeId;
use cluster_core::lease::LeaseTiming;
use cluster_core::naming::NamespaceKind;
use coord_client::Session;
use std::sync::Arc;
use testkit::NatsServer;

fn node(name: &str) -> NodeId {
    NodeId::new(name).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fenced_writes_in_the_fence_bucket_follow_the_term_across_renewals() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let server = NatsServer::start().await.unwrap();
    let coord = Arc::new(common::connect(&server).await);
    let ns = testkit::coordination::fresh_namespace(NamespaceKind::Claims);
    let resource = Key::new(ns.clone(), "partition-3").unwrap();
    let state = Key::new(ns.clone(), "partition-3.state").unwrap();
    let timing = LeaseTiming {
        ttl: Duration::from_secs(2),
        margin: Duration::from_millis(700),
    };
    let a = Session::open(coord.clone(), node("a"), timing)
        .await
        .unwrap();
    let b = Session::open(coord.clone(), node("b"), timing)
        .await
        .unwrap();

    let old = {
        tracing::info!(
            "a claims; its fenced write commits, also after renewals moved the claim key"
        );
        let old = coord.claim(&resource, &node("a"), a.lease()).await.unwrap();
        coord
            .put_if_held(&state, b"a1".to_vec(), &old.fence())
            .await
            .unwrap();
        let before = coord.get(&resource).await.unwrap().unwrap().revision;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = coord.get(&resource).await.unwrap().unwrap().revision;
        assert!(after > before, "renewals rewrite the claim key");
        coord
            .put_if_held(&state, b"a2".to_vec(), &old.fence())
            .await
            .unwrap();
        assert_eq!(
            coord.owner(&resource).await.unwrap().unwrap().token,
            old.token
        );
        old
    };
    let new = {
        tracing::info!("the claim moves to b: a's fence is refused and changes nothing");
        let new = coord.transfer(&old, &node("b"), b.lease()).await.unwrap();
        let err = coord
            .put_if_held(&state, b"late-a".to_vec(), &old.fence())
            .await
            .unwrap_err();
        match err {
            CoordError::StaleToken {
                presented, current, ..
            } => assert_eq!((presented, current), (old.token, Some(new.token))),
            other => panic!("expected StaleToken, got {other:?}"),
        }
        assert_eq!(coord.get(&state).await.unwrap().unwrap().value, b"a2");
        new
    };
    {
        tracing::info!("b's fence commits; a fence on another bucket is unsupported");
        coord
            .put_if_held(&state, b"b1".to_vec(), &new.fence())
            .await
            .unwrap();
        assert_eq!(coord.get(&state).await.unwrap().unwrap().value, b"b1");
        let elsewhere = common::fresh_key("state");
        let err = coord
            .put_if_held(&elsewhere, b"x".to_vec(), &new.fence())
            .await
            .unwrap_err();
        assert!(matches!(err, CoordError::Unsupported { .. }), "{err:?}");
        assert!(coord.get(&elsewhere).await.unwrap().is_none());
    }
    {
        tracing::info!("released: no fence of the resource passes");
        coord.release(&new).await.unwrap();
        let err = coord
            .put_if_held(&state, b"b2".to_vec(), &new.fence())
            .await
            .unwrap_err();
        assert!(
            matches!(err, CoordError::StaleToken { current: None, .. }),
            "{err:?}"
        );
        coord.delete(&state, Expect::Any).await.unwrap();
    }
    a.close(coord.as_ref()).await.unwrap();
    b.close(coord.as_ref() as &dyn LeaseStore).await.unwrap();
}
