//! The other app modes and the app's own store API, on the in-memory store: pool apps run on
//! every node and through a store outage, `replicas(n)` holds n fenced slots and refills a freed
//! one with a larger token, app locks exclude, and the key-value API's conditional writes.

use crate::common;

use std::time::Duration;

use cluster_core::coordination::{CoordError, WatchEvent};
use cluster_runtime::{App, Role};
use common::{eventually, start_node};
use coord_mem::{LinkMode, MemCoordinator};
use futures::StreamExt;

fn active_token(role: Role) -> Option<u64> {
    match role {
        Role::Active { token } => Some(token.get()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_apps_run_on_every_node_and_through_a_store_outage() {
    testkit::init_tracing();
    let store = MemCoordinator::new();
    let app = || App::builder("web").pool().build().unwrap();
    let a = start_node(&store, "a", app()).await;
    let b = start_node(&store, "b", app()).await;
    eventually(
        "both nodes run the pool app",
        Duration::from_secs(10),
        || {
            [&a, &b]
                .iter()
                .all(|n| active_token(n.app.election().role()).is_some())
        },
    )
    .await;
    {
        tracing::info!(
            "a is cut off from the store past its TTL: its session ends, its pool work does not"
        );
        a.coord.link().set_mode(LinkMode::Down);
        eventually("a is not ready", Duration::from_secs(10), || {
            !a.platform.is_ready()
        })
        .await;
        tokio::time::sleep(common::TTL).await;
        assert!(
            active_token(a.app.election().role()).is_some(),
            "pool work stopped in an outage"
        );
        a.coord.link().set_mode(LinkMode::Pass);
        eventually("a is ready again", Duration::from_secs(10), || {
            a.platform.is_ready()
        })
        .await;
        assert!(active_token(a.app.election().role()).is_some());
    }
    b.stop().await.unwrap();
    a.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_hold_n_fenced_slots_and_refill_a_freed_one_with_a_larger_token() {
    testkit::init_tracing();
    let store = MemCoordinator::new();
    let app = || App::builder("workers").replicas(2).build().unwrap();
    let nodes = vec![
        start_node(&store, "a", app()).await,
        start_node(&store, "b", app()).await,
        start_node(&store, "c", app()).await,
    ];
    let tokens = |nodes: &[common::Node]| -> Vec<(String, u64)> {
        nodes
            .iter()
            .filter_map(|n| active_token(n.app.election().role()).map(|t| (n.name.clone(), t)))
            .collect()
    };
    eventually("two of three nodes active", Duration::from_secs(10), || {
        tokens(&nodes).len() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = tokens(&nodes);
    assert_eq!(before.len(), 2, "never more than n active: {before:?}");
    assert_ne!(before[0].1, before[1].1, "each slot has its own token");
    let mut nodes = nodes;
    {
        tracing::info!("an active node stops: the standby takes its slot with a larger token");
        let leaving = nodes.iter().position(|n| n.name == before[0].0).unwrap();
        nodes.remove(leaving).stop().await.unwrap();
        eventually("two active again", Duration::from_secs(10), || {
            tokens(&nodes).len() == 2
        })
        .await;
        let after = tokens(&nodes);
        let newcomer = after
            .iter()
            .find(|(name, _)| !before.iter().any(|(b, _)| b == name))
            .expect("the standby became active");
        let max_before = before.iter().map(|(_, t)| *t).max().unwrap();
        assert!(newcomer.1 > max_before, "{newcomer:?} after {before:?}");
    }
    for n in nodes {
        n.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_locks_exclude_and_the_app_store_writes_conditionally() {
    testkit::init_tracing();
    let store = MemCoordinator::new();
    let app = || App::builder("ledger").active_passive().build().unwrap();
    let a = start_node(&store, "a", app()).await;
    let b = start_node(&store, "b", app()).await;
    eventually("both joined", Duration::from_secs(10), || {
        a.platform.is_ready() && b.platform.is_ready()
    })
    .await;
    {
        tracing::info!(
            "a holds the lock; b waits until a unlocks, then holds it with a larger token"
        );
        let held = a.app.lock("nightly").await.unwrap();
        let waiter = {
            let ctx = b.app.context().clone();
            tokio::spawn(async move { ctx.lock("nightly").await })
        };
        testkit::stays_true_for("b took a lock a holds", Duration::from_millis(300), || {
            !waiter.is_finished()
        })
        .await;
        a.app.context().unlock(&held).await.unwrap();
        let next = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("b gets the lock")
            .unwrap()
            .unwrap();
        assert!(next.token() > held.token());
        b.app.context().unlock(&next).await.unwrap();
    }
    {
        tracing::info!("create, conditional update, keys, watch, delete");
        let kv = a.app.kv();
        let mut watch = kv.watch("cfg/").await.unwrap();
        let r1 = kv.create("cfg/limit", "10").await.unwrap();
        assert!(matches!(
            kv.create("cfg/limit", "11").await,
            Err(CoordError::Conflict { .. })
        ));
        let entry = kv.get_entry("cfg/limit").await.unwrap().unwrap();
        assert_eq!(entry.revision, r1);
        let r2 = kv.update("cfg/limit", "12", r1).await.unwrap();
        assert!(r2 > r1);
        assert!(matches!(
            kv.update("cfg/limit", "13", r1).await,
            Err(CoordError::Conflict { .. })
        ));
        assert_eq!(kv.get("cfg/limit").await.unwrap().unwrap(), b"12");
        kv.put("cfg/mode", "fast").await.unwrap();
        assert_eq!(
            kv.keys("cfg/").await.unwrap(),
            vec!["cfg/limit", "cfg/mode"]
        );
        assert!(kv.delete("cfg/mode").await.unwrap());
        assert!(!kv.delete("cfg/mode").await.unwrap());
        let mut seen = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(event) = watch.next().await {
                match event.unwrap() {
                    WatchEvent::Put(e) => seen.push(format!("put {}", e.key.name())),
                    WatchEvent::Delete { key, .. } => seen.push(format!("delete {}", key.name())),
                    _ => {}
                }
                if seen.last().is_some_and(|s| s == "delete cfg/mode") {
                    break;
                }
            }
        })
        .await
        .expect("the watch sees every change");
        assert_eq!(
            seen,
            [
                "put cfg/limit",
                "put cfg/limit",
                "put cfg/mode",
                "delete cfg/mode"
            ]
        );
        assert!(
            b.app.kv().get("cfg/limit").await.unwrap().is_some(),
            "the app's space is shared by its nodes"
        );
    }
    b.stop().await.unwrap();
    a.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_see_members_and_leaders_and_a_slow_on_active_steps_the_node_down() {
    testkit::init_tracing();
    let store = MemCoordinator::new();
    let log = common::Log::default();
    let app = |node: &str| {
        let (l1, l2, l3, l4) = (log.clone(), log.clone(), log.clone(), log.clone());
        let (n1, n2, n3, n4) = (
            node.to_owned(),
            node.to_owned(),
            node.to_owned(),
            node.to_owned(),
        );
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        App::builder("ledger")
            .active_passive()
            .hook_timeout(Duration::from_millis(300))
            .on_active(move |ctx| {
                let (l, n, calls) = (l1.clone(), n1.clone(), calls.clone());
                async move {
                    // The first term's on_active outlives its timeout.
                    if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                        l.push(&n, "slow_active", ctx.token.get());
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                    l.push(&n, "active", ctx.token.get());
                    Ok(())
                }
            })
            .on_member_join(move |c| {
                let (l, n) = (l2.clone(), n2.clone());
                async move {
                    l.push(&n, &format!("joined {}", c.member.node), 0);
                    Ok(())
                }
            })
            .on_member_leave(move |c| {
                let (l, n) = (l3.clone(), n3.clone());
                async move {
                    l.push(&n, &format!("left {}", c.member.node), 0);
                    Ok(())
                }
            })
            .on_leader_change(move |c| {
                let (l, n) = (l4.clone(), n4.clone());
                async move {
                    let leader = c.leader.map(|i| i.holder).unwrap_or_default();
                    l.push(&n, &format!("leader {leader}"), 0);
                    Ok(())
                }
            })
            .build()
            .unwrap()
    };
    let a = start_node(&store, "a", app("a")).await;
    {
        tracing::info!("a's first on_active times out: a steps down, then leads again");
        eventually(
            "a leads after a fast on_active",
            Duration::from_secs(20),
            || log.events_of("a").iter().any(|e| e == "active"),
        )
        .await;
        let events = log.events_of("a");
        let slow = events.iter().position(|e| e == "slow_active").unwrap();
        let active = events.iter().position(|e| e == "active").unwrap();
        assert!(slow < active);
        assert!(
            a.platform
                .audit()
                .iter()
                .any(|e| e.kind == cluster_runtime::AuditKind::StepDownInitiated
                    && e.detail.as_deref() == Some("on_active failed")),
            "the timed-out on_active stepped the node down"
        );
        assert!(a.app.election().is_leader());
    }
    let b = start_node(&store, "b", app("b")).await;
    {
        tracing::info!("b joins: a's on_member_join sees it, b's on_leader_change sees a");
        eventually("hooks ran", Duration::from_secs(10), || {
            log.events_of("a").iter().any(|e| e == "joined b")
                && log.events_of("b").iter().any(|e| e == "leader a")
        })
        .await;
    }
    b.stop().await.unwrap();
    eventually("a saw b leave", Duration::from_secs(10), || {
        log.events_of("a").iter().any(|e| e == "left b")
    })
    .await;
    a.stop().await.unwrap();
}
