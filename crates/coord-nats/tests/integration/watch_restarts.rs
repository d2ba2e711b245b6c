//! A watch outlives twenty server restarts and leaves no consumer behind on the server.

use crate::common;
use cluster_core::error::Retryable;

use std::time::{Duration, Instant};

use cluster_core::coordination::{
    Expect, KvStore, WatchEvent, WatchStart, WatchStore, WatchTarget,
};
use futures::StreamExt;
use testkit::NatsServer;

async fn consumers(server: &NatsServer) -> u64 {
    server.consumer_count().await.expect("/jsz answers")
}

/// Polls the server's consumer count until it is `want`; panics after `limit` (a hang bound).
async fn until_consumers(server: &NatsServer, want: u64, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let now = consumers(server).await;
        if now == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "server has {now} consumers, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_after_twenty_restarts_without_leaking_consumers() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let mut server = NatsServer::start().await.unwrap();
    let coord = common::connect(&server).await;
    let writer = common::connect(&server).await;
    let key = common::fresh_key("watched");
    coord
        .put(&key, b"v0".to_vec(), Expect::Any, None)
        .await
        .unwrap();

    let mut watch = {
        tracing::info!("one watch: one consumer on the server");
        let mut watch = coord
            .watch(WatchTarget::Key(key.clone()), WatchStart::Now)
            .await
            .unwrap();
        match watch.next().await {
            Some(Ok(WatchEvent::Snapshot { entries, .. })) => assert_eq!(entries[0].value, b"v0"),
            other => panic!("expected a snapshot, got {other:?}"),
        }
        until_consumers(&server, 1, Duration::from_secs(10)).await;
        watch
    };
    {
        tracing::info!("twenty restarts, a write after each reaches the same watch");
        for i in 1..=20 {
            server.restart().await.unwrap();
            let healthy_at = Instant::now();
            let value = format!("v{i}").into_bytes();
            let mut written = false;
            for _ in 0..100 {
                match writer.put(&key, value.clone(), Expect::Any, None).await {
                    Ok(_) => {
                        written = true;
                        break;
                    }
                    Err(e) if e.is_retryable() => {
                        tokio::time::sleep(Duration::from_millis(50)).await
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            assert!(written, "the store takes writes after restart {i}");
            common::until_value(&mut watch, &key, &value, Duration::from_secs(30)).await;
            tracing::info!(restart = i, resumed_after = ?healthy_at.elapsed(), "watch delivered the write");
        }
    }
    {
        tracing::info!("still exactly one consumer: every replaced one was deleted");
        until_consumers(&server, 1, Duration::from_secs(10)).await;
    }
    {
        tracing::info!("dropping the watch deletes its consumer");
        drop(watch);
        until_consumers(&server, 0, Duration::from_secs(10)).await;
    }
}
