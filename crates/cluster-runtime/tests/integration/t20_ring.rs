//! Ring mode on the in-memory store: assignment, rebalance on join and graceful leave, owned
//! work handed over, re-run once after a failure, and never two owners of a partition.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_core::coordination::CoordError;
use cluster_runtime::{App, OwnContext, ReleaseReason, WorkError};
use common::{Log, Node, eventually, start_node};
use coord_mem::{LinkMode, MemCoordinator};

const PARTITIONS: u32 = 12;

/// Every run of a work item: (partition, item id, token).
type Runs = Arc<Mutex<Vec<(u32, String, u64)>>>;

/// Per (partition, token): the cancellation token of that ownership, to check no overlap.
type Owners = Arc<Mutex<BTreeMap<u32, Vec<(u64, tokio_util::sync::CancellationToken)>>>>;

/// A ring app that, on taking a partition, checks every earlier owner was cancelled, then runs
/// the partition's unfinished work once and records it.
fn ring_app(log: &Log, node: &str, owners: &Owners, ran: &Runs) -> App {
    let (l1, l2) = (log.clone(), log.clone());
    let (n1, n2) = (node.to_owned(), node.to_owned());
    let (owners, ran) = (owners.clone(), ran.clone());
    App::builder("jobs")
        .ring(PARTITIONS)
        .on_own(move |ctx: OwnContext| {
            let (l, n, owners, ran) = (l1.clone(), n1.clone(), owners.clone(), ran.clone());
            async move {
                let p = ctx.partition.0;
                {
                    let mut owners = owners.lock().unwrap();
                    let history = owners.entry(p).or_default();
                    for (token, cancel) in history.iter() {
                        if *token >= ctx.token.get() || !cancel.is_cancelled() {
                            l.push(&n, "overlap", u64::from(p));
                        }
                    }
                    history.push((ctx.token.get(), ctx.cancel.clone()));
                }
                l.push(&n, "own", u64::from(p));
                for item in ctx.work.unfinished().await? {
                    ctx.work.start(&item.id).await?;
                    ran.lock()
                        .unwrap()
                        .push((p, item.id.clone(), ctx.token.get()));
                    ctx.work.complete(&item.id).await?;
                }
                Ok(())
            }
        })
        .on_release(move |ctx| {
            let (l, n) = (l2.clone(), n2.clone());
            async move {
                let event = match ctx.reason {
                    ReleaseReason::Handoff => "handoff",
                    ReleaseReason::Lost => "lost",
                    ReleaseReason::Shutdown => "shutdown",
                };
                l.push(&n, event, u64::from(ctx.partition.0));
                Ok(())
            }
        })
        .build()
        .unwrap()
}

/// Every partition is owned by exactly one of `nodes`, and each owns exactly its target share.
fn settled(nodes: &[&Node]) -> bool {
    let mut owned: BTreeMap<u32, usize> = BTreeMap::new();
    for n in nodes {
        let ring = n.app.ring().unwrap();
        let view = ring.view();
        if !view.draining.is_empty() {
            return false;
        }
        let wanted: BTreeSet<u32> = view
            .target
            .iter()
            .enumerate()
            .filter(|(_, t)| t.as_ref().map(|t| t.as_str()) == Some(n.name.as_str()))
            .map(|(p, _)| p as u32)
            .collect();
        if wanted != view.mine.keys().map(|p| p.0).collect() {
            return false;
        }
        for p in view.mine.keys() {
            *owned.entry(p.0).or_default() += 1;
        }
    }
    owned.len() == PARTITIONS as usize && owned.values().all(|c| *c == 1)
}

/// Settled, with every node owning `each` partitions (the planner has caught up with the
/// membership).
fn settled_evenly(nodes: &[&Node], each: usize) -> bool {
    settled(nodes)
        && nodes
            .iter()
            .all(|n| n.app.ring().unwrap().owned_partitions().len() == each)
}

fn no_overlap(log: &Log) {
    let overlaps: Vec<_> = log
        .entries()
        .into_iter()
        .filter(|e| e.event == "overlap")
        .collect();
    assert!(
        overlaps.is_empty(),
        "a partition had two valid owners: {overlaps:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_rebalances_on_join_and_graceful_leave_and_hands_work_over() {
    testkit::init_tracing();
    let store = MemCoordinator::new();
    let log = Log::default();
    let owners = Owners::default();
    let ran = Runs::default();
    let mut nodes = Vec::new();
    for name in ["n1", "n2", "n3"] {
        nodes.push(start_node(&store, name, ring_app(&log, name, &owners, &ran)).await);
    }

    {
        tracing::info!("three nodes split 12 partitions, 4 each");
        let all: Vec<&Node> = nodes.iter().collect();
        eventually("ring settled over 3 nodes", Duration::from_secs(20), || {
            settled_evenly(&all, 4)
        })
        .await;
        for n in &nodes {
            assert_eq!(
                n.app.ring().unwrap().owned_partitions().len(),
                4,
                "{}",
                n.name
            );
        }
    }
    {
        tracing::info!("a fourth node joins: partitions move to it, 3 each");
        nodes.push(start_node(&store, "n4", ring_app(&log, "n4", &owners, &ran)).await);
        let all: Vec<&Node> = nodes.iter().collect();
        eventually("ring settled over 4 nodes", Duration::from_secs(30), || {
            settled_evenly(&all, 3)
        })
        .await;
        for n in &nodes {
            assert_eq!(
                n.app.ring().unwrap().owned_partitions().len(),
                3,
                "{}",
                n.name
            );
        }
        assert!(log.events_of("n4").iter().filter(|e| *e == "own").count() == 3);
    }
    {
        tracing::info!("n1 leaves gracefully: its partitions are handed off, none lost");
        let n1 = nodes.remove(0);
        n1.stop().await.unwrap();
        let handed: usize = log
            .events_of("n1")
            .iter()
            .filter(|e| *e == "handoff")
            .count();
        assert!(handed >= 3, "n1 handed off {handed} partitions");
        let all: Vec<&Node> = nodes.iter().collect();
        eventually(
            "ring settled over 3 nodes again",
            Duration::from_secs(30),
            || settled_evenly(&all, 4),
        )
        .await;
    }
    no_overlap(&log);
    for n in nodes {
        n.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_is_handed_over_on_failure_and_rerun_once_and_stale_completions_refused() {
    testkit::init_tracing();
    let store = MemCoordinator::new();
    let log = Log::default();
    let owners = Owners::default();
    let ran = Runs::default();
    let a = start_node(&store, "a", ring_app(&log, "a", &owners, &ran)).await;
    let b = start_node(&store, "b", ring_app(&log, "b", &owners, &ran)).await;
    eventually("ring settled over 2 nodes", Duration::from_secs(20), || {
        settled_evenly(&[&a, &b], 6)
    })
    .await;

    let (victim_partition, stale_work) = {
        tracing::info!("a queues one item per owned partition and starts one it never finishes");
        let held = a.app.ring().unwrap().owned_partitions();
        let (p, _) = held.iter().next().map(|(p, t)| (*p, *t)).unwrap();
        let work = owned_work(&a, p).await;
        work.enqueue("queued-1", "payload").await.unwrap();
        work.enqueue("inflight-1", "payload").await.unwrap();
        work.enqueue("queued-1", "duplicate").await.unwrap();
        work.start("inflight-1").await.unwrap();
        (p.0, work)
    };
    {
        tracing::info!(
            "a is cut off from the store: its partitions move to b after its lease ends"
        );
        a.coord.link().set_mode(LinkMode::Blackhole);
        eventually("b owns every partition", Duration::from_secs(30), || {
            b.app.ring().unwrap().owned_partitions().len() == PARTITIONS as usize
        })
        .await;
        no_overlap(&log);
    }
    {
        tracing::info!("b re-ran each unfinished item of the moved partition exactly once");
        let runs: Vec<(u32, String, u64)> = ran
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _, _)| *p == victim_partition)
            .cloned()
            .collect();
        let ids: Vec<&str> = runs.iter().map(|(_, id, _)| id.as_str()).collect();
        assert_eq!(
            ids,
            ["inflight-1", "queued-1"],
            "each unfinished item runs once, queued item once despite the duplicate enqueue"
        );
    }
    {
        tracing::info!("a heals; its late completion under the old token is refused");
        a.coord.link().set_mode(LinkMode::Pass);
        let err = stale_work.complete("inflight-1").await.unwrap_err();
        assert!(
            matches!(err, WorkError::Store(CoordError::StaleToken { .. })),
            "{err:?}"
        );
    }
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

/// The partition work handle of `node` for `p`, fenced by its current claim.
async fn owned_work(
    node: &Node,
    p: cluster_core::ids::PartitionId,
) -> cluster_runtime::PartitionWork {
    node.app.ring().unwrap().work(p).expect("owned partition")
}

/// An outbox that holds every shard's events until `flush`.
#[derive(Default)]
struct HeldOutbox {
    flushed: tokio::sync::Notify,
    done: std::sync::atomic::AtomicBool,
}

impl HeldOutbox {
    fn flush(&self) {
        self.done.store(true, std::sync::atomic::Ordering::SeqCst);
        self.flushed.notify_waiters();
    }
}

#[async_trait::async_trait]
impl cluster_core::event::ShardOutbox for HeldOutbox {
    async fn drain_shard(
        &self,
        shard: cluster_core::ids::PartitionId,
        limit: Duration,
    ) -> Result<(), cluster_core::event::DrainTimeout> {
        let flushed = self.flushed.notified();
        if self.done.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        tokio::time::timeout(limit, flushed)
            .await
            .map_err(|_| cluster_core::event::DrainTimeout {
                shard,
                remaining: 1,
                waited: limit,
            })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handoff_releases_a_partition_only_once_its_outbox_is_drained() {
    testkit::init_tracing();
    let store = MemCoordinator::new();
    let log = Log::default();
    let outbox = Arc::new(HeldOutbox::default());
    let app = |node: &str, outbox: Option<Arc<HeldOutbox>>| {
        let l = log.clone();
        let n = node.to_owned();
        let builder = App::builder("jobs").ring(4).on_own(move |ctx: OwnContext| {
            let (l, n) = (l.clone(), n.clone());
            async move {
                l.push(&n, "own", u64::from(ctx.partition.0));
                Ok(())
            }
        });
        match outbox {
            Some(o) => builder.drain_outbox_on_handoff(o),
            None => builder,
        }
        .build()
        .unwrap()
    };
    let a = start_node(&store, "a", app("a", Some(outbox.clone()))).await;
    eventually("a owns the ring", Duration::from_secs(10), || {
        a.app.ring().unwrap().owned_partitions().len() == 4
    })
    .await;
    let b = start_node(&store, "b", app("b", None)).await;
    {
        tracing::info!("b joins: a's handoffs wait on the outbox, b owns nothing yet");
        eventually("a starts handing off", Duration::from_secs(10), || {
            !a.app.ring().unwrap().view().draining.is_empty()
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            log.events_of("b").is_empty(),
            "b took a partition before a's outbox drained"
        );
        log.push("test", "flushed", 0);
        outbox.flush();
    }
    {
        tracing::info!("flushed: the handoffs complete and b owns its share, after the flush");
        eventually("b owns two partitions", Duration::from_secs(10), || {
            b.app.ring().unwrap().owned_partitions().len() == 2
        })
        .await;
        let flushed = log.position("test", "flushed", 0).unwrap();
        let entries = log.entries();
        assert!(
            entries
                .iter()
                .enumerate()
                .filter(|(_, e)| e.node == "b" && e.event == "own")
                .all(|(i, _)| i > flushed)
        );
    }
    b.stop().await.unwrap();
    a.stop().await.unwrap();
}
