//! A store that goes away: calls fail as retryable within the deadline, data survives.

use super::harness::{ObjectStoreHarness, name, pattern};
use cluster_core::error::Retryable;

/// With the store down every call gives a retryable error in bounded time; once it is back,
/// everything stored before is still there and writes work again.
pub async fn store_down_gives_unavailable_and_keeps_objects<H: ObjectStoreHarness>(h: &mut H) {
    let store = h.store().await;
    let kept = pattern(400_000, 7);
    store.put(&name("kept"), kept.clone()).await.unwrap();
    if !h.stop_store().await {
        tracing::info!("this store cannot go down; nothing more to check");
        return;
    }
    {
        tracing::info!("calls fail as unavailable, each within the call timeout (plus slack)");
        let bound = h.call_timeout() * 4 + std::time::Duration::from_secs(2);
        let put = tokio::time::timeout(bound, store.put(&name("new"), vec![1, 2, 3]))
            .await
            .expect("put must not hang");
        assert!(put.expect_err("put while down").is_retryable());
        let get = tokio::time::timeout(bound, store.get(&name("kept")))
            .await
            .expect("get must not hang");
        assert!(get.expect_err("get while down").is_retryable());
        let list = tokio::time::timeout(bound, store.list(""))
            .await
            .expect("list must not hang");
        assert!(list.expect_err("list while down").is_retryable());
    }
    h.start_store().await;
    {
        tracing::info!("after recovery the old object is intact and puts work");
        let mut attempt = 0;
        let object = loop {
            match store.get(&name("kept")).await {
                Ok(o) => break o,
                Err(e) if e.is_retryable() && attempt < 50 => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                Err(e) => panic!("get after recovery: {e}"),
            }
        };
        assert_eq!(object.map(|o| o.data), Some(kept));
        store.put(&name("after"), vec![4]).await.unwrap();
        assert_eq!(
            store.get(&name("after")).await.unwrap().map(|o| o.data),
            Some(vec![4])
        );
    }
}
