//! A bound key lost behind the lease's back ends the lease; a key this process let go of does
//! not. (An election key the server expires early, on a clock that runs ahead, must not leave its
//! leader leading while another node campaigns on the vacant key.)

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use cluster_core::coordination::{
    ClaimStore, CoordError, ElectionStore, Expect, Key, KvStore, LeaseStore,
};
use cluster_core::ids::NodeId;
use cluster_core::naming::NamespaceKind;
use testkit::NatsServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_key_deleted_elsewhere_ends_the_lease_and_one_released_here_does_not() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let server = NatsServer::start().await.unwrap();
    let coord = Arc::new(common::connect(&server).await);
    let other = common::connect(&server).await;
    let ns = testkit::coordination::fresh_namespace(NamespaceKind::Claims);
    let node = NodeId::new("a").unwrap();
    {
        tracing::info!("a claim released by its holder: the lease renews on");
        let lease = coord.grant_lease(Duration::from_secs(5)).await.unwrap().id;
        let claim = coord
            .claim(&Key::new(ns.clone(), "p-1").unwrap(), &node, &lease)
            .await
            .unwrap();
        coord.release(&claim).await.unwrap();
        coord.renew_lease(&lease).await.unwrap();
        coord.renew_lease(&lease).await.unwrap();
    }
    {
        tracing::info!(
            "the election key deleted by someone else (an early expiry): the renewal says LeaseLost"
        );
        let lease = coord.grant_lease(Duration::from_secs(5)).await.unwrap().id;
        let election = Key::new(
            testkit::coordination::fresh_namespace(NamespaceKind::Election),
            "leader",
        )
        .unwrap();
        let term = coord.campaign(&election, "a", &lease).await.unwrap();
        coord.renew_lease(&lease).await.unwrap();
        other
            .delete(&term.candidate_key, Expect::Any)
            .await
            .unwrap();
        let err = coord.renew_lease(&lease).await.unwrap_err();
        assert!(matches!(err, CoordError::LeaseLost { .. }), "{err:?}");
        let err = coord.renew_lease(&lease).await.unwrap_err();
        assert!(
            matches!(err, CoordError::LeaseLost { .. }),
            "lost is final: {err:?}"
        );
    }
}

/// One key claimed and released in turn under two leases of this process, before either renews:
/// each lease's renewal finds the key gone and must know that this process let it go. (A record
/// of let-go keys shared by every lease was consumed by the first renewal, and the second lease
/// was then declared lost: seen in a gate as `claims_tokens_increase_over_alternating_claims`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_released_under_two_leases_in_turn_ends_neither() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let server = NatsServer::start().await.unwrap();
    let coord = Arc::new(common::connect(&server).await);
    let ns = testkit::coordination::fresh_namespace(NamespaceKind::Claims);
    let resource = Key::new(ns, "hot").unwrap();
    let a = coord.grant_lease(Duration::from_secs(5)).await.unwrap().id;
    let b = coord.grant_lease(Duration::from_secs(5)).await.unwrap().id;
    for (node, lease) in [("a", &a), ("b", &b)] {
        let claim = coord
            .claim(&resource, &NodeId::new(node).unwrap(), lease)
            .await
            .unwrap();
        coord.release(&claim).await.unwrap();
    }
    coord.renew_lease(&a).await.unwrap();
    coord.renew_lease(&b).await.unwrap();
    coord.renew_lease(&a).await.unwrap();
    coord.renew_lease(&b).await.unwrap();
}
