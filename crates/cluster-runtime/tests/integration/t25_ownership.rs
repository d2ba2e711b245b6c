//! Ownership safety on the in-memory store, under the faults that break it: a lost session
//! cancels every owned partition at once whatever the hooks are doing, a partition in handoff
//! included; shutdown cancels and runs `on_release` before it releases and revokes; a claim or
//! release whose reply or request was lost is reconciled; a leader whose election key is gone
//! ends its term at once, and its writes are fenced out.

use crate::common;

use std::time::Duration;

use cluster_core::coordination::{
    Key, KeyPrefix, KvStore, WatchEvent, WatchStart, WatchStore, WatchTarget,
};
use cluster_core::ids::{AppName, PlatformName};
use cluster_core::naming::{NamespaceKind, namespace};
use cluster_runtime::{ActiveContext, App, OwnContext, Role, WorkError};
use common::{Log, Node, eventually, start_node, start_node_on, start_node_with};
use coord_mem::{LinkMode, MemCoordinator};
use futures::StreamExt;

/// What the ring app under test does in `on_own`.
#[derive(Clone, Copy)]
enum OwnWork {
    /// Nothing but recording.
    Idle,
    /// Starts one item it never finishes, so a drain can only time out.
    Stuck,
}

/// A ring app that records `own`, the moment each ownership's cancellation fires
/// (`cancelled`), and the end of each `on_release` (`release_end`, after `release_delay`).
fn ring_app(log: &Log, node: &str, partitions: u32, work: OwnWork, release_delay: Duration) -> App {
    let (l1, l2) = (log.clone(), log.clone());
    let (n1, n2) = (node.to_owned(), node.to_owned());
    App::builder("jobs")
        .ring(partitions)
        .on_own(move |ctx: OwnContext| {
            let (l, n) = (l1.clone(), n1.clone());
            async move {
                let p = u64::from(ctx.partition.0);
                l.push(&n, "own", p);
                let (cl, cn, cancel) = (l.clone(), n.clone(), ctx.cancel.clone());
                tokio::spawn(async move {
                    cancel.cancelled().await;
                    cl.push(&cn, "cancelled", p);
                });
                if let OwnWork::Stuck = work {
                    let id = format!("stuck-{p}");
                    ctx.work.enqueue(&id, "never finishes").await?;
                    ctx.work.start(&id).await?;
                }
                Ok(())
            }
        })
        .on_release(move |ctx| {
            let (l, n) = (l2.clone(), n2.clone());
            async move {
                tokio::time::sleep(release_delay).await;
                l.push(&n, "release_end", u64::from(ctx.partition.0));
                Ok(())
            }
        })
        .build()
        .unwrap()
}

fn owned(node: &Node) -> usize {
    node.app.ring().unwrap().owned_partitions().len()
}

fn claims_prefix() -> KeyPrefix {
    let ns = namespace(
        &PlatformName::new("test").unwrap(),
        Some(&AppName::new("jobs").unwrap()),
        NamespaceKind::Claims,
    );
    KeyPrefix::new(ns, "p-").unwrap()
}

/// Records every claim deletion the store makes, as `("store", "deleted", partition)`.
async fn record_claim_deletes(store: &MemCoordinator, log: &Log) {
    let observer = store.connect();
    let mut watch = observer
        .watch(WatchTarget::Prefix(claims_prefix()), WatchStart::Now)
        .await
        .unwrap();
    let log = log.clone();
    tokio::spawn(async move {
        let _keep = observer;
        while let Some(Ok(event)) = watch.next().await {
            if let WatchEvent::Delete { key, .. } = event
                && let Some(p) = key.name().strip_prefix("p-").and_then(|p| p.parse().ok())
            {
                log.push("store", "deleted", p);
            }
        }
    });
}

/// Position of `node`'s `event` for partition `p`, failing the test if it never happened.
fn at(log: &Log, node: &str, event: &str, p: u64) -> usize {
    log.position(node, event, p).unwrap_or_else(|| {
        panic!(
            "{node} never recorded {event} for partition {p}: {:?}",
            log.entries()
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_session_cancels_every_partition_at_once_whatever_on_release_does() {
    testkit::init_tracing();
    let store = MemCoordinator::new();
    let log = Log::default();
    let slow = Duration::from_millis(500);
    let a = start_node(&store, "a", ring_app(&log, "a", 16, OwnWork::Idle, slow)).await;
    eventually("a owns all 16 partitions", Duration::from_secs(10), || {
        owned(&a) == 16
    })
    .await;
    {
        tracing::info!("a is cut off; b takes every partition once a's lease has expired");
        a.coord.link().set_mode(LinkMode::Blackhole);
        let b = start_node(
            &store,
            "b",
            ring_app(&log, "b", 16, OwnWork::Idle, Duration::ZERO),
        )
        .await;
        eventually("b owns all 16 partitions", Duration::from_secs(20), || {
            owned(&b) == 16
        })
        .await;
        eventually(
            "a recorded 16 cancellations",
            Duration::from_secs(20),
            || {
                log.events_of("a")
                    .iter()
                    .filter(|e| *e == "cancelled")
                    .count()
                    == 16
            },
        )
        .await;
        b.stop().await.unwrap();
    }
    {
        tracing::info!("every cancellation came before any on_release ended and before b's on_own");
        let first_release = log.position_of("a", "release_end");
        for p in 0..16 {
            let cancelled = at(&log, "a", "cancelled", p);
            assert!(
                first_release.is_none_or(|r| cancelled < r),
                "partition {p} was cancelled only after an on_release had run: {:?}",
                log.entries()
            );
            assert!(
                cancelled < at(&log, "b", "own", p),
                "b owned partition {p} before a's work on it was cancelled"
            );
        }
    }
    a.coord.link().set_mode(LinkMode::Pass);
    a.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_in_handoff_is_cancelled_when_the_session_is_lost() {
    testkit::init_tracing();
    let store = MemCoordinator::new();
    let log = Log::default();
    let long_drain = |b: cluster_runtime::PlatformBuilder| {
        b.drain_timeout(Duration::from_secs(30))
            .shutdown_timeout(Duration::from_secs(40))
    };
    let a = start_node_with(
        &store,
        "a",
        ring_app(&log, "a", 4, OwnWork::Stuck, Duration::ZERO),
        long_drain,
    )
    .await;
    eventually("a owns all 4 partitions", Duration::from_secs(10), || {
        owned(&a) == 4
    })
    .await;
    let b = start_node(
        &store,
        "b",
        ring_app(&log, "b", 4, OwnWork::Idle, Duration::ZERO),
    )
    .await;
    let draining = {
        tracing::info!("b joins: a starts handing partitions off; their drains cannot finish");
        eventually("a is handing off", Duration::from_secs(10), || {
            !a.app.ring().unwrap().view().draining.is_empty()
        })
        .await;
        let draining = a.app.ring().unwrap().view().draining;
        a.coord.link().set_mode(LinkMode::Blackhole);
        draining
    };
    {
        tracing::info!("a's session is lost mid-handoff: b takes over after a's lease expired");
        eventually("b owns all 4 partitions", Duration::from_secs(20), || {
            owned(&b) == 4
        })
        .await;
        for p in draining {
            let p = u64::from(p.0);
            assert!(
                at(&log, "a", "cancelled", p) < at(&log, "b", "own", p),
                "b owned partition {p} while a's on_own work for it was still running"
            );
        }
    }
    b.stop().await.unwrap();
    // a stops while the store still refuses it: a link that passed again would let a rejoin
    // and own the partitions b left, whose stuck work then drains for the whole drain timeout.
    a.coord.link().set_mode(LinkMode::Down);
    a.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cancels_and_runs_on_release_before_each_release_and_the_lease_revoke() {
    testkit::init_tracing();
    let store = MemCoordinator::new();
    let log = Log::default();
    let a = start_node_with(
        &store,
        "a",
        ring_app(&log, "a", 8, OwnWork::Stuck, Duration::from_millis(200)),
        |b| {
            b.drain_timeout(Duration::from_secs(5))
                .shutdown_timeout(Duration::from_secs(6))
        },
    )
    .await;
    eventually("a owns all 8 partitions", Duration::from_secs(10), || {
        owned(&a) == 8
    })
    .await;
    record_claim_deletes(&store, &log).await;
    {
        tracing::info!("a shuts down with 8 partitions whose drains cannot finish");
        a.stop().await.unwrap();
        eventually("every claim is gone", Duration::from_secs(10), || {
            (0..8).all(|p| log.position("store", "deleted", p).is_some())
        })
        .await;
    }
    {
        tracing::info!("per partition: cancelled, then on_release, then the claim deleted");
        for p in 0..8 {
            let cancelled = at(&log, "a", "cancelled", p);
            let released = at(&log, "a", "release_end", p);
            let deleted = at(&log, "store", "deleted", p);
            assert!(
                cancelled < released && released < deleted,
                "partition {p}: cancelled at {cancelled}, on_release ended at {released}, claim deleted at {deleted}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_applied_whose_reply_was_lost_is_adopted() {
    testkit::init_tracing();
    let store = MemCoordinator::new();
    let log = Log::default();
    let coord = store.connect();
    coord.link().drop_replies_on("/p-2", 1);
    let a = start_node_on(
        coord,
        "a",
        ring_app(&log, "a", 4, OwnWork::Idle, Duration::ZERO),
        |b| b,
    )
    .await;
    tracing::info!(
        "a's claim of partition 2 landed unanswered: a finds it under its lease and serves it"
    );
    eventually("a owns all 4 partitions", Duration::from_secs(10), || {
        owned(&a) == 4
    })
    .await;
    assert!(log.position("a", "own", 2).is_some());
    a.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_lost_on_the_way_is_retried_so_the_partition_moves() {
    testkit::init_tracing();
    let store = MemCoordinator::new();
    let log = Log::default();
    let a = start_node(
        &store,
        "a",
        ring_app(&log, "a", 4, OwnWork::Idle, Duration::ZERO),
    )
    .await;
    eventually("a owns all 4 partitions", Duration::from_secs(10), || {
        owned(&a) == 4
    })
    .await;
    {
        tracing::info!("the first release a sends is lost; b joins and must still get its share");
        a.coord.link().drop_requests_on("/p-", 1);
        let b = start_node(
            &store,
            "b",
            ring_app(&log, "b", 4, OwnWork::Idle, Duration::ZERO),
        )
        .await;
        eventually(
            "a and b own 2 partitions each",
            Duration::from_secs(15),
            || owned(&a) == 2 && owned(&b) == 2,
        )
        .await;
        b.stop().await.unwrap();
    }
    a.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_items_are_not_started_during_a_drain_and_a_completed_id_is_not_queued_again() {
    testkit::init_tracing();
    let store = MemCoordinator::new();
    let log = Log::default();
    let a = start_node_with(
        &store,
        "a",
        ring_app(&log, "a", 2, OwnWork::Stuck, Duration::ZERO),
        |b| {
            b.drain_timeout(Duration::from_secs(5))
                .shutdown_timeout(Duration::from_secs(10))
        },
    )
    .await;
    eventually("a owns both partitions", Duration::from_secs(10), || {
        owned(&a) == 2
    })
    .await;
    let ring = a.app.ring().unwrap().clone();
    let works: Vec<_> = (0..2)
        .map(|p| ring.work(cluster_core::ids::PartitionId(p)).unwrap())
        .collect();
    let work = works[0].clone();
    {
        tracing::info!("a completed id is not queued again");
        work.enqueue("once", "x").await.unwrap();
        work.start("once").await.unwrap();
        work.complete("once").await.unwrap();
        work.enqueue("once", "x").await.unwrap();
        let ids: Vec<String> = work
            .unfinished()
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.id)
            .collect();
        assert!(
            !ids.contains(&"once".to_owned()),
            "a completed item was queued again: {ids:?}"
        );
    }
    {
        tracing::info!(
            "completing an item this handle never started leaves the in-flight count alone"
        );
        work.enqueue("other", "x").await.unwrap();
        assert_eq!(work.in_flight(), 1, "the stuck item");
        let _ = work.complete("other").await;
        assert_eq!(
            work.in_flight(),
            1,
            "completing an unstarted item must not count as finishing one"
        );
    }
    for work in &works {
        for i in 0..5 {
            work.enqueue(&format!("queued-{i}"), "x").await.unwrap();
        }
    }
    let b = start_node(
        &store,
        "b",
        ring_app(&log, "b", 2, OwnWork::Idle, Duration::ZERO),
    )
    .await;
    {
        tracing::info!("b joins; a drains one partition; a queued item of it cannot start now");
        eventually("a is handing off", Duration::from_secs(10), || {
            !ring.view().draining.is_empty()
        })
        .await;
        let p = *ring.view().draining.iter().next().unwrap();
        let err = works[p.0 as usize].start("queued-0").await.unwrap_err();
        assert!(matches!(err, WorkError::IntakeClosed(_)), "{err:?}");
    }
    b.stop().await.unwrap();
    a.stop().await.unwrap();
}

/// An active-passive app recording `active`, `cancelled` (when the term's cancellation fires)
/// and `passive`.
/// The fenced key space of the last term a node's `on_active` saw.
type TermKv = std::sync::Arc<std::sync::Mutex<Option<cluster_runtime::FencedKv>>>;

/// An active-passive app that records `active`, the moment each term's cancellation fires
/// (`cancelled`), `passive`, and keeps the term's fenced key space in `term_kv`.
fn leader_app(log: &Log, node: &str, term_kv: &TermKv) -> App {
    let (l1, l2) = (log.clone(), log.clone());
    let (n1, n2) = (node.to_owned(), node.to_owned());
    let term_kv = term_kv.clone();
    App::builder("svc")
        .on_active(move |ctx: ActiveContext| {
            let (l, n, term_kv) = (l1.clone(), n1.clone(), term_kv.clone());
            async move {
                l.push(&n, "active", ctx.token.get());
                *term_kv.lock().unwrap() = ctx.fenced_kv();
                let (cl, cn, cancel, token) =
                    (l.clone(), n.clone(), ctx.cancel.clone(), ctx.token.get());
                tokio::spawn(async move {
                    cancel.cancelled().await;
                    cl.push(&cn, "cancelled", token);
                });
                Ok(())
            }
        })
        .on_passive(move |_ctx| {
            let (l, n) = (l2.clone(), n2.clone());
            async move {
                l.push(&n, "passive", 0);
                Ok(())
            }
        })
        .build()
        .unwrap()
}

/// C8: a leader watches its own election key, so a key the store dropped while the lease lives
/// on ends the term at once, through the watch, not at the next renewal or the lease's end.
///
/// What this does not assert is that a's term ends before b's begins: both nodes learn of the
/// deletion from their own watches of the same store at the same moment, and no runtime can
/// order two nodes' reactions to one event (on a real store they are different machines). What
/// keeps b's term safe from a's late work is the fence: from b's first claim on, every write
/// under a's term is refused by the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_election_key_is_gone_ends_its_term_at_once_and_is_fenced_out() {
    testkit::init_tracing();
    let store = MemCoordinator::new();
    let log = Log::default();
    let (a_kv, b_kv) = (TermKv::default(), TermKv::default());
    let a = start_node(&store, "a", leader_app(&log, "a", &a_kv)).await;
    let a_token = a
        .app
        .election()
        .wait_for_leadership(Duration::from_secs(10))
        .await
        .unwrap();
    let b = start_node(&store, "b", leader_app(&log, "b", &b_kv)).await;
    eventually("b is a candidate", Duration::from_secs(10), || {
        matches!(b.app.election().role(), Role::Passive)
    })
    .await;
    let a_term = a_kv.lock().unwrap().clone().expect("a's term is fenced");
    a_term
        .put("owner", "a")
        .await
        .expect("a writes under its term while its key stands");
    {
        tracing::info!("a's election key disappears while its lease lives on (early expiry)");
        let ns = namespace(
            &PlatformName::new("test").unwrap(),
            Some(&AppName::new("svc").unwrap()),
            NamespaceKind::Election,
        );
        let raw = store.connect();
        let mine: Vec<Key> = raw
            .list(&KeyPrefix::all(ns))
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.value == b"a")
            .map(|e| e.key)
            .collect();
        assert!(!mine.is_empty(), "a's candidacy key not found");
        for key in mine {
            raw.delete(&key, cluster_core::coordination::Expect::Any)
                .await
                .unwrap();
        }
    }
    {
        tracing::info!("a's term ends through its key watch; b leads with a larger token");
        eventually("a's term is cancelled", Duration::from_secs(10), || {
            log.position("a", "cancelled", a_token.get()).is_some()
        })
        .await;
        assert!(!a.app.election().is_leader());
        // The audit record follows the cancellation (leader-scoped work stops first).
        eventually("a audits the term's loss", Duration::from_secs(10), || {
            a.platform.audit().iter().any(|e| {
                e.kind == cluster_runtime::AuditKind::LeaderLost && e.token == Some(a_token.get())
            })
        })
        .await;
        let lost = a.platform.audit().into_iter().find(|e| {
            e.kind == cluster_runtime::AuditKind::LeaderLost && e.token == Some(a_token.get())
        });
        assert_eq!(
            lost.and_then(|e| e.detail).as_deref(),
            Some("election key gone"),
            "a's term was ended by its key watch while its session was alive"
        );
        let b_token = b
            .app
            .election()
            .wait_for_leadership(Duration::from_secs(10))
            .await
            .unwrap();
        assert!(b_token > a_token);
        eventually("b's on_active ran", Duration::from_secs(10), || {
            b_kv.lock().unwrap().is_some()
        })
        .await;
        let b_term = b_kv.lock().unwrap().clone().unwrap();
        b_term
            .put("owner", "b")
            .await
            .expect("b writes under its term");
        let late = a_term.put("owner", "a, late").await;
        assert!(
            matches!(
                late,
                Err(cluster_core::coordination::CoordError::StaleToken { .. })
            ),
            "a write under a's ended term is refused: {late:?}"
        );
        assert_eq!(
            b_term.get("owner").await.unwrap().as_deref(),
            Some(&b"b"[..])
        );
    }
    b.stop().await.unwrap();
    a.stop().await.unwrap();
}

/// An outbox that records when a claim is ended in it.
struct RecordingOutbox {
    log: Log,
    node: String,
}

#[async_trait::async_trait]
impl cluster_core::event::ShardOutbox for RecordingOutbox {
    async fn drain_shard(
        &self,
        _shard: cluster_core::ids::PartitionId,
        _limit: Duration,
    ) -> Result<(), cluster_core::event::DrainTimeout> {
        Ok(())
    }

    async fn end_claim(
        &self,
        shard: cluster_core::ids::PartitionId,
        epoch: cluster_core::ids::FencingToken,
        _limit: Duration,
    ) -> Result<(), cluster_core::event::DrainTimeout> {
        self.log.push(
            &self.node,
            &format!("end_claim {}", epoch.get()),
            u64::from(shard.0),
        );
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handoff_ends_the_claim_in_the_outbox_before_the_next_owner_owns_it() {
    testkit::init_tracing();
    let store = MemCoordinator::new();
    let log = Log::default();
    let outbox = std::sync::Arc::new(RecordingOutbox {
        log: log.clone(),
        node: "a".into(),
    });
    let l = log.clone();
    let app_a = App::builder("jobs")
        .ring(4)
        .on_own(move |ctx: OwnContext| {
            let l = l.clone();
            async move {
                l.push(
                    "a",
                    &format!("own {}", ctx.token.get()),
                    u64::from(ctx.partition.0),
                );
                Ok(())
            }
        })
        .drain_outbox_on_handoff(outbox)
        .build()
        .unwrap();
    let a = start_node(&store, "a", app_a).await;
    eventually("a owns all 4 partitions", Duration::from_secs(10), || {
        owned(&a) == 4
    })
    .await;
    let tokens = a.app.ring().unwrap().owned_partitions();
    let b = start_node(
        &store,
        "b",
        ring_app(&log, "b", 4, OwnWork::Idle, Duration::ZERO),
    )
    .await;
    eventually("b owns two partitions", Duration::from_secs(15), || {
        owned(&b) == 2
    })
    .await;
    tracing::info!("each moved partition's claim ended in a's outbox before b owned it");
    for (p, _) in b.app.ring().unwrap().owned_partitions() {
        let token = tokens[&p].get();
        let ended = log
            .position("a", &format!("end_claim {token}"), u64::from(p.0))
            .unwrap_or_else(|| panic!("a never ended its claim on {p:?} in the outbox"));
        assert!(ended < at(&log, "b", "own", u64::from(p.0)));
    }
    b.stop().await.unwrap();
    a.stop().await.unwrap();
}
