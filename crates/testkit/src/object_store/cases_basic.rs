//! Puts, gets, overwrites, listing and deletes.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;

use super::harness::{ObjectStoreHarness, name, pattern};

/// A put object comes back with the same bytes and a matching description.
pub async fn put_then_get_round_trip<H: ObjectStoreHarness>(h: &mut H) {
    let store = h.store().await;
    let n = name("seg/0001");
    let data = pattern(5000, 1);
    {
        tracing::info!("put returns the stored size");
        let info = store.put(&n, data.clone()).await.unwrap();
        assert_eq!(info.name, n);
        assert_eq!(info.size, 5000);
    }
    {
        tracing::info!("get and head agree with the put");
        let object = store.get(&n).await.unwrap().expect("object exists");
        assert_eq!(object.data, data);
        assert_eq!(object.info.size, 5000);
        let head = store.head(&n).await.unwrap().expect("head exists");
        assert_eq!(head.name, n);
        assert_eq!(head.size, 5000);
    }
}

/// An object never put is absent, not an error.
pub async fn missing_object_is_none<H: ObjectStoreHarness>(h: &mut H) {
    let store = h.store().await;
    assert!(store.get(&name("nope")).await.unwrap().is_none());
    assert!(store.head(&name("nope")).await.unwrap().is_none());
    assert!(store.list("nope").await.unwrap().is_empty());
}

/// A second put under a name replaces the first entirely, even when shorter.
pub async fn overwrite_replaces_the_whole_object<H: ObjectStoreHarness>(h: &mut H) {
    let store = h.store().await;
    let n = name("meta/head");
    store.put(&n, pattern(300_000, 2)).await.unwrap();
    {
        tracing::info!("a shorter second version replaces the first in full");
        let second = pattern(1000, 3);
        store.put(&n, second.clone()).await.unwrap();
        let object = store.get(&n).await.unwrap().expect("object exists");
        assert_eq!(object.data, second);
        assert_eq!(store.head(&n).await.unwrap().map(|i| i.size), Some(1000));
        assert_eq!(store.list("meta/").await.unwrap().len(), 1);
    }
}

/// Zero bytes and several megabytes (many chunks on chunked stores) keep their exact bytes.
pub async fn empty_and_large_objects_keep_their_bytes<H: ObjectStoreHarness>(h: &mut H) {
    let store = h.store().await;
    {
        tracing::info!("an empty object exists and is empty");
        store.put(&name("empty"), Vec::new()).await.unwrap();
        let object = store.get(&name("empty")).await.unwrap().expect("exists");
        assert!(object.data.is_empty());
        assert_eq!(object.info.size, 0);
    }
    {
        tracing::info!("a 5 MiB object comes back byte for byte");
        let big = pattern(5 * 1024 * 1024 + 17, 4);
        store.put(&name("big"), big.clone()).await.unwrap();
        let object = store.get(&name("big")).await.unwrap().expect("exists");
        assert_eq!(object.data.len(), big.len());
        assert!(object.data == big, "large object bytes differ");
    }
}

/// `list` returns exactly the names under the prefix, sorted, each once.
pub async fn list_filters_by_prefix_in_name_order<H: ObjectStoreHarness>(h: &mut H) {
    let store = h.store().await;
    for n in [
        "wal/0002",
        "wal/0001",
        "snap/0001",
        "wal/0010",
        "walrus",
        "wal/0001",
    ] {
        store.put(&name(n), n.as_bytes().to_vec()).await.unwrap();
    }
    let names = |list: Vec<cluster_core::object_store::ObjectInfo>| {
        list.into_iter()
            .map(|i| i.name.as_str().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(store.list("wal/").await.unwrap()),
        ["wal/0001", "wal/0002", "wal/0010"]
    );
    assert_eq!(
        names(store.list("wal").await.unwrap()),
        ["wal/0001", "wal/0002", "wal/0010", "walrus"]
    );
    assert_eq!(names(store.list("").await.unwrap()).len(), 5);
    let sizes: Vec<u64> = store
        .list("wal/")
        .await
        .unwrap()
        .iter()
        .map(|i| i.size)
        .collect();
    assert_eq!(sizes, [8, 8, 8]);
}

/// Delete reports whether the object existed and removes it from every read.
pub async fn delete_is_idempotent_and_hides_the_object<H: ObjectStoreHarness>(h: &mut H) {
    let store = h.store().await;
    let n = name("gone/1");
    store.put(&n, pattern(200_000, 5)).await.unwrap();
    store.put(&name("gone/2"), vec![1]).await.unwrap();
    assert!(store.delete(&n).await.unwrap());
    assert!(!store.delete(&n).await.unwrap());
    assert!(!store.delete(&name("never")).await.unwrap());
    assert!(store.get(&n).await.unwrap().is_none());
    assert!(store.head(&n).await.unwrap().is_none());
    let listed: Vec<String> = store
        .list("gone/")
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.name.as_str().to_owned())
        .collect();
    assert_eq!(listed, ["gone/2"]);
    {
        tracing::info!("a deleted name can be written again");
        store.put(&n, vec![9, 9]).await.unwrap();
        assert_eq!(
            store.get(&n).await.unwrap().map(|o| o.data),
            Some(vec![9, 9])
        );
    }
}

/// What one client put, a separate client reads at once (read-after-write across clients).
pub async fn another_client_reads_what_one_wrote<H: ObjectStoreHarness>(h: &mut H) {
    let writer = h.store().await;
    let reader = h.store().await;
    for i in 0..20u8 {
        let n = name(&format!("x/{i:04}"));
        writer.put(&n, vec![i; 100]).await.unwrap();
        let seen = reader
            .get(&n)
            .await
            .unwrap()
            .expect("visible to another client");
        assert_eq!(seen.data, vec![i; 100]);
        assert_eq!(reader.list("x/").await.unwrap().len(), usize::from(i) + 1);
    }
}

/// Puts of distinct names from concurrent tasks all land intact.
pub async fn concurrent_puts_of_distinct_names_all_land<H: ObjectStoreHarness>(h: &mut H) {
    let store = h.store().await;
    let mut tasks = Vec::new();
    for t in 0..4u8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10u8 {
                let n = name(&format!("c/{t}/{i:02}"));
                store.put(&n, pattern(3000, t * 16 + i)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let listed = store.list("c/").await.unwrap();
    assert_eq!(listed.len(), 40);
    for t in 0..4u8 {
        for i in 0..10u8 {
            let n = name(&format!("c/{t}/{i:02}"));
            let object = store.get(&n).await.unwrap().expect("landed");
            assert_eq!(object.data, pattern(3000, t * 16 + i));
        }
    }
}

/// While one client overwrites an object, another only ever reads a whole version.
pub async fn readers_never_see_a_partial_overwrite<H: ObjectStoreHarness>(h: &mut H) {
    let writer = h.store().await;
    let reader = h.store().await;
    let n = name("flip");
    let versions: Vec<Vec<u8>> = (0..4u8).map(|s| pattern(600_000, s + 10)).collect();
    writer.put(&n, versions[0].clone()).await.unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let reads = {
        let done = done.clone();
        let versions = versions.clone();
        let n = n.clone();
        tokio::spawn(async move {
            let mut reads = 0u32;
            while !done.load(Ordering::Acquire) || reads == 0 {
                let object = reader.get(&n).await.unwrap().expect("never absent");
                assert!(
                    versions.contains(&object.data),
                    "read a version that was never written ({} bytes)",
                    object.data.len()
                );
                reads += 1;
            }
            reads
        })
    };
    for round in 0..12 {
        writer.put(&n, versions[round % 4].clone()).await.unwrap();
    }
    done.store(true, Ordering::Release);
    let reads = reads.await.unwrap();
    tracing::info!(reads, "whole versions only");
}
