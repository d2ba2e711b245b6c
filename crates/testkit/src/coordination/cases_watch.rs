//! Watches: snapshot, order, full history, compaction, restarts.

use cluster_core::error::Retryable;
use std::time::Duration;

use cluster_core::coordination::{
    CoordError, Expect, KeyPrefix, WatchEvent, WatchHistory, WatchStart, WatchStream, WatchTarget,
};
use cluster_core::naming::NamespaceKind;
use futures::StreamExt;

use super::harness::{CoordHarness, fresh_namespace, key};

async fn next(watch: &mut WatchStream, limit: Duration) -> WatchEvent {
    tokio::time::timeout(limit, watch.next())
        .await
        .expect("a watch event in time")
        .expect("the watch stream is open")
        .expect("no watch error")
}

/// The next event that is not a snapshot repeating what is known (backends without full
/// history may resend a snapshot after a reconnect).
async fn next_change(watch: &mut WatchStream, limit: Duration) -> WatchEvent {
    loop {
        match next(watch, limit).await {
            WatchEvent::Snapshot { .. } => continue,
            change => return change,
        }
    }
}

/// A watch starts with a snapshot, then delivers puts and deletes in revision order.
pub async fn watch_snapshot_then_changes_in_order<H: CoordHarness>(h: &mut H) {
    let coord = h.client().await;
    let limit = h.timing().call_timeout * 5;
    let ns = fresh_namespace(NamespaceKind::Kv);
    coord
        .put(&key(&ns, "before"), b"0".to_vec(), Expect::Any, None)
        .await
        .unwrap();

    let mut watch = coord
        .watch(
            WatchTarget::Prefix(KeyPrefix::all(ns.clone())),
            WatchStart::Now,
        )
        .await
        .unwrap();
    let snapshot_rev = {
        tracing::info!("snapshot holds the key written before the watch");
        match next(&mut watch, limit).await {
            WatchEvent::Snapshot { entries, revision } => {
                assert_eq!(entries.len(), 1);
                assert_eq!(entries[0].key.name(), "before");
                revision
            }
            other => panic!("expected a snapshot first, got {other:?}"),
        }
    };
    {
        tracing::info!("changes arrive in revision order, deletes included");
        // Full-history backends get the writes as a burst and must deliver every one; backends
        // that deliver only the latest value may merge a burst, so each write is awaited there.
        let burst = coord.capabilities().watch_history == WatchHistory::FullHistory;
        let mut written = Vec::new();
        let mut seen: Vec<WatchEvent> = Vec::new();
        let mut last = snapshot_rev;
        let mut take = |event: WatchEvent, seen: &mut Vec<WatchEvent>| {
            assert!(
                event.revision() > last,
                "revision went back: {} after {last}",
                event.revision()
            );
            last = event.revision();
            seen.push(event);
        };
        for i in 0..5u8 {
            let rev = coord
                .put(&key(&ns, &format!("k{i}")), vec![i], Expect::Any, None)
                .await
                .unwrap();
            written.push(rev);
            if !burst {
                let event = next_change(&mut watch, limit).await;
                take(event, &mut seen);
            }
        }
        coord.delete(&key(&ns, "k1"), Expect::Any).await.unwrap();
        while seen.len() < 6 {
            let event = next_change(&mut watch, limit).await;
            take(event, &mut seen);
        }
        for (i, event) in seen.iter().enumerate() {
            match event {
                WatchEvent::Put(e) if i < 5 => {
                    assert_eq!(e.revision, written[i], "puts arrive in order");
                    assert_eq!(e.key.name(), format!("k{i}"));
                }
                WatchEvent::Delete { key, .. } if i == 5 => assert_eq!(key.name(), "k1"),
                other => panic!("unexpected event {i}: {other:?}"),
            }
        }
    }
}

/// Full-history backends replay every revision after a given one; compacted history is an
/// explicit error. Other backends refuse `After` with `Unsupported`.
pub async fn watch_full_history_and_compaction<H: CoordHarness>(h: &mut H) {
    let coord = h.client().await;
    let limit = h.timing().call_timeout * 5;
    let ns = fresh_namespace(NamespaceKind::Kv);
    let k = key(&ns, "history");
    let target = WatchTarget::Key(k.clone());

    let first = coord
        .put(&k, b"0".to_vec(), Expect::Any, None)
        .await
        .unwrap();
    let mut revisions = vec![first];
    for i in 1..5u8 {
        revisions.push(coord.put(&k, vec![i], Expect::Any, None).await.unwrap());
    }
    if coord.capabilities().watch_history != WatchHistory::FullHistory {
        tracing::info!("latest-value backend: After is refused");
        let err = coord.watch(target, WatchStart::After(first)).await.err();
        assert!(
            matches!(err, Some(CoordError::Unsupported { .. })),
            "{err:?}"
        );
        return;
    }
    {
        tracing::info!("every revision after the first is replayed, in order, values intact");
        let mut watch = coord
            .watch(target.clone(), WatchStart::After(first))
            .await
            .unwrap();
        for (i, want) in revisions.iter().enumerate().skip(1) {
            match next(&mut watch, limit).await {
                WatchEvent::Put(e) => {
                    assert_eq!(e.revision, *want);
                    assert_eq!(e.value, vec![i as u8]);
                }
                other => panic!("expected put {want}, got {other:?}"),
            }
        }
    }
    {
        tracing::info!("after compaction, asking for older history is an explicit error");
        let last = *revisions.last().unwrap_or(&first);
        if !h.compact(last).await {
            return;
        }
        let outcome = match coord.watch(target, WatchStart::After(first)).await {
            Err(e) => Err(e),
            Ok(mut watch) => match tokio::time::timeout(limit, watch.next()).await {
                Ok(Some(Err(e))) => Err(e),
                other => Ok(format!("{other:?}")),
            },
        };
        match outcome {
            Err(CoordError::Compacted { compacted, .. }) => assert!(compacted >= first),
            other => panic!("expected Compacted, got {other:?}"),
        }
    }
}

/// A watch keeps delivering after the store restarts.
pub async fn watch_survives_store_restart<H: CoordHarness>(h: &mut H) {
    let coord = h.client().await;
    let timing = h.timing();
    let ns = fresh_namespace(NamespaceKind::Kv);
    let k = key(&ns, "survivor");
    coord
        .put(&k, b"before".to_vec(), Expect::Any, None)
        .await
        .unwrap();
    let mut watch = coord
        .watch(WatchTarget::Key(k.clone()), WatchStart::Now)
        .await
        .unwrap();
    let _snapshot = next(&mut watch, timing.call_timeout * 5).await;

    {
        tracing::info!("restart the store");
        h.stop_store().await;
        h.start_store().await;
    }
    {
        tracing::info!("a write after the restart reaches the same watch");
        let writer = h.client().await;
        let mut written = None;
        for _ in 0..100 {
            match writer.put(&k, b"after".to_vec(), Expect::Any, None).await {
                Ok(rev) => {
                    written = Some(rev);
                    break;
                }
                Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(e) => panic!("{e}"),
            }
        }
        let written = written.expect("store accepts writes after restart");
        let limit = timing.call_timeout * 10 + Duration::from_secs(10);
        loop {
            match next(&mut watch, limit).await {
                WatchEvent::Put(e) if e.revision == written => {
                    assert_eq!(e.value, b"after");
                    break;
                }
                WatchEvent::Snapshot { entries, .. }
                    if entries.iter().any(|e| e.revision == written) =>
                {
                    break;
                }
                _ => {}
            }
        }
    }
}

/// When a lease with several keys ends, a prefix watch gets a delete for every key, even though
/// the store may delete them all at one revision.
pub async fn watch_sees_every_delete_of_one_expiry<H: CoordHarness>(h: &mut H) {
    let coord = h.client().await;
    let timing = h.timing();
    let ns = fresh_namespace(NamespaceKind::Kv);
    let lease = coord.grant_lease(timing.ttl).await.unwrap();
    for i in 0..8 {
        coord
            .put(
                &key(&ns, &format!("k{i}")),
                vec![i],
                Expect::Any,
                Some(&lease.id),
            )
            .await
            .unwrap();
    }
    let mut watch = coord
        .watch(
            WatchTarget::Prefix(KeyPrefix::all(ns.clone())),
            WatchStart::Now,
        )
        .await
        .unwrap();
    let mut present: std::collections::BTreeSet<String> =
        match next(&mut watch, timing.call_timeout * 5).await {
            WatchEvent::Snapshot { entries, .. } => {
                entries.iter().map(|e| e.key.name().to_owned()).collect()
            }
            other => panic!("expected a snapshot, got {other:?}"),
        };
    assert_eq!(present.len(), 8);
    tracing::info!("revoke the lease: all eight keys go at once");
    coord.revoke_lease(&lease.id).await.unwrap();
    while !present.is_empty() {
        match next(&mut watch, timing.max_expiry()).await {
            WatchEvent::Delete { key, .. } => {
                present.remove(key.name());
            }
            WatchEvent::Snapshot { entries, .. } => {
                present = entries.iter().map(|e| e.key.name().to_owned()).collect();
            }
            WatchEvent::Put(e) => panic!("unexpected put {e:?}"),
        }
    }
}
