//! A store that is down gives `Unavailable`, never a hang.

use cluster_core::error::Retryable;
use std::time::Duration;

use cluster_core::coordination::{Expect, KeyPrefix, WatchStart, WatchTarget};
use cluster_core::naming::NamespaceKind;

use super::cases_lease::node;
use super::harness::{CoordHarness, fresh_namespace, key};

/// Every kind of call to a stopped store fails with a retryable error within its deadline.
pub async fn store_down_gives_unavailable<H: CoordHarness>(h: &mut H) {
    let coord = h.client().await;
    let timing = h.timing();
    let ns = fresh_namespace(NamespaceKind::Kv);
    let k = key(&ns, "k");
    let lease = coord.grant_lease(timing.ttl).await.unwrap();
    coord
        .put(&k, b"v".to_vec(), Expect::Any, None)
        .await
        .unwrap();

    h.stop_store().await;
    // Bounds a hang only: the backend's own deadline must end each call well before this.
    let limit = timing.call_timeout * 3 + Duration::from_secs(5);
    macro_rules! unavailable {
        ($what:literal, $call:expr) => {{
            tracing::info!(concat!("store down: ", $what));
            match tokio::time::timeout(limit, $call).await {
                Err(_) => panic!(concat!($what, " hung while the store was down")),
                Ok(Ok(_)) => panic!(concat!($what, " succeeded while the store was down")),
                Ok(Err(e)) => assert!(e.is_retryable(), "{}: {e:?} is not retryable", $what),
            }
        }};
    }
    unavailable!("get", coord.get(&k));
    unavailable!("list", coord.list(&KeyPrefix::all(ns.clone())));
    unavailable!("put", coord.put(&k, b"w".to_vec(), Expect::Any, None));
    unavailable!("delete", coord.delete(&k, Expect::Any));
    unavailable!("grant", coord.grant_lease(timing.ttl));
    unavailable!("renew", coord.renew_lease(&lease.id));
    unavailable!("claim", coord.claim(&key(&ns, "c"), &node("a"), &lease.id));
    unavailable!(
        "watch",
        coord.watch(WatchTarget::Key(k.clone()), WatchStart::Now)
    );
    h.start_store().await;
}
