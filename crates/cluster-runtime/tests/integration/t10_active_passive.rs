//! Active-passive on the in-memory store: election, hooks order, step-down, partition, outage.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_core::coordination::CoordError;
use cluster_core::node_health::HealthState;
use cluster_runtime::{App, Role, RuntimeError};
use common::{Log, Node, eventually, start_node};
use coord_mem::{LinkMode, MemCoordinator};
use tokio_util::sync::CancellationToken;

/// Every term's cancellation token, so a new term can check that every earlier one had already
/// been cancelled when it began (the invariant, checked synchronously inside `on_active`).
type Terms = Arc<Mutex<Vec<(u64, CancellationToken)>>>;

fn app(log: &Log, node: &str) -> App {
    app_with_terms(log, node, &Terms::default())
}

fn app_with_terms(log: &Log, node: &str, terms: &Terms) -> App {
    let terms = terms.clone();
    let (l1, l2, l3, l4) = (log.clone(), log.clone(), log.clone(), log.clone());
    let (n1, n2, n3, n4) = (
        node.to_owned(),
        node.to_owned(),
        node.to_owned(),
        node.to_owned(),
    );
    App::builder("orders")
        .active_passive()
        .on_start(move |_| {
            let (l, n) = (l1.clone(), n1.clone());
            async move {
                l.push(&n, "start", 0);
                Ok(())
            }
        })
        .on_active(move |ctx| {
            let (l, n, terms) = (l2.clone(), n2.clone(), terms.clone());
            async move {
                l.push(&n, "active", ctx.token.get());
                {
                    let mut terms = terms.lock().unwrap();
                    for (token, cancel) in terms.iter() {
                        if *token < ctx.token.get() && !cancel.is_cancelled() {
                            l.push(&n, "overlap", *token);
                        }
                    }
                    terms.push((ctx.token.get(), ctx.cancel.clone()));
                }
                // Leader-scoped work: record when its cancellation fires.
                let (lc, nc, cancel, token) =
                    (l.clone(), n.clone(), ctx.cancel.clone(), ctx.token.get());
                tokio::spawn(async move {
                    cancel.cancelled().await;
                    lc.push(&nc, "cancelled", token);
                });
                ctx.fenced_kv()
                    .expect("fenced")
                    .put("leader", n.as_bytes().to_vec())
                    .await?;
                Ok(())
            }
        })
        .on_passive(move |_| {
            let (l, n) = (l3.clone(), n3.clone());
            async move {
                l.push(&n, "passive", 0);
                Ok(())
            }
        })
        .on_stop(move |_| {
            let (l, n) = (l4.clone(), n4.clone());
            async move {
                l.push(&n, "stop", 0);
                Ok(())
            }
        })
        .build()
        .unwrap()
}

fn leaders(nodes: &[Node]) -> Vec<String> {
    nodes
        .iter()
        .filter(|n| n.app.election().is_leader())
        .map(|n| n.name.clone())
        .collect()
}

async fn three_nodes(store: &MemCoordinator, log: &Log) -> Vec<Node> {
    let terms = Terms::default();
    let mut nodes = Vec::new();
    for name in ["n1", "n2", "n3"] {
        nodes.push(start_node(store, name, app_with_terms(log, name, &terms)).await);
    }
    nodes
}

fn no_overlap(log: &Log) {
    let overlaps: Vec<_> = log
        .entries()
        .into_iter()
        .filter(|e| e.event == "overlap")
        .collect();
    assert!(
        overlaps.is_empty(),
        "a term began before an earlier one was cancelled: {overlaps:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_then_step_down_hands_over_with_larger_token() {
    testkit::init_tracing();
    let store = MemCoordinator::new();
    let log = Log::default();
    let nodes = three_nodes(&store, &log).await;

    let (first, token) = {
        tracing::info!("exactly one of three leads");
        eventually("a leader", Duration::from_secs(10), || {
            leaders(&nodes).len() == 1
        })
        .await;
        let first = leaders(&nodes)[0].clone();
        let leader = nodes.iter().find(|n| n.name == first).unwrap();
        let token = leader.app.election().fencing_token().unwrap();
        for n in &nodes {
            eventually("everyone sees the leader", Duration::from_secs(5), || {
                n.app
                    .election()
                    .leader()
                    .is_some_and(|l| l.holder == first && l.token == token)
            })
            .await;
        }
        (first, token)
    };
    {
        tracing::info!("step down: another node leads with a larger token");
        let leader = nodes.iter().find(|n| n.name == first).unwrap();
        leader.app.election().step_down().await.unwrap();
        eventually("a new leader", Duration::from_secs(10), || {
            let l = leaders(&nodes);
            l.len() == 1 && l[0] != first
        })
        .await;
        let second = nodes.iter().find(|n| n.app.election().is_leader()).unwrap();
        let new_token = second.app.election().fencing_token().unwrap();
        assert!(new_token > token);
        // The role is active from the term's start; its on_active writes the key after that.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while second.app.kv().get("leader").await.unwrap() != Some(second.name.as_bytes().to_vec())
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the new leader's on_active never wrote its fenced key"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        no_overlap(&log);
    }
    {
        tracing::info!("hooks ran in order, never twice for one transition");
        for n in nodes {
            let name = n.name.clone();
            n.stop().await.unwrap();
            // Hooks only: the "cancelled" records come from the apps' own tasks.
            let events: Vec<String> = log
                .events_of(&name)
                .into_iter()
                .filter(|e| ["start", "active", "passive", "stop"].contains(&e.as_str()))
                .collect();
            assert_eq!(events.first().map(String::as_str), Some("start"));
            assert_eq!(events.last().map(String::as_str), Some("stop"));
            let roles: Vec<&String> = events
                .iter()
                .filter(|e| *e == "active" || *e == "passive")
                .collect();
            assert_eq!(
                roles.first().map(|s| s.as_str()),
                Some("passive"),
                "{name} starts as standby"
            );
            for pair in roles.windows(2) {
                assert_ne!(pair[0], pair[1], "{name}: {events:?}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_leader_is_cancelled_before_successor_and_its_writes_are_refused() {
    testkit::init_tracing();
    let store = MemCoordinator::new();
    let log = Log::default();
    let nodes = three_nodes(&store, &log).await;
    eventually("a leader", Duration::from_secs(10), || {
        leaders(&nodes).len() == 1
    })
    .await;
    let old = nodes.iter().find(|n| n.app.election().is_leader()).unwrap();
    let old_token = old.app.election().fencing_token().unwrap();
    let old_fenced = {
        let ctx = old.app.context().clone();
        let key = cluster_core::coordination::Key::new(
            cluster_core::naming::namespace(
                ctx.platform(),
                Some(ctx.app()),
                cluster_core::naming::NamespaceKind::Election,
            ),
            "leader",
        )
        .unwrap();
        let leader = ctx.coordinator().leader(&key).await.unwrap().unwrap();
        ctx.kv().fenced(cluster_core::coordination::Fence {
            key: leader.key,
            token: leader.token,
        })
    };

    tracing::info!("cut the leader off from the store");
    old.coord.link().set_mode(LinkMode::Blackhole);
    eventually("a new leader", Duration::from_secs(15), || {
        nodes
            .iter()
            .any(|n| n.name != old.name && n.app.election().is_leader())
    })
    .await;
    let new = nodes
        .iter()
        .find(|n| n.name != old.name && n.app.election().is_leader())
        .unwrap();
    let new_token = new.app.election().fencing_token().unwrap();
    assert!(new_token > old_token);
    assert!(
        !old.app.election().is_leader(),
        "the partitioned node still thinks it leads"
    );
    no_overlap(&log);
    eventually("old term's work cancelled", Duration::from_secs(5), || {
        log.position(&old.name, "cancelled", old_token.get())
            .is_some()
    })
    .await;

    tracing::info!("heal: the old leader's write under its old term is refused by the store");
    old.coord.link().set_mode(LinkMode::Pass);
    let err = old_fenced
        .put("leader", b"stale".to_vec())
        .await
        .unwrap_err();
    assert!(matches!(err, CoordError::StaleToken { .. }), "{err:?}");
    assert_eq!(
        new.app.kv().get("leader").await.unwrap(),
        Some(new.name.as_bytes().to_vec())
    );
    eventually(
        "old leader back as standby",
        Duration::from_secs(10),
        || old.app.election().role() == Role::Passive && old.platform.is_ready(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_on_active_steps_the_node_down() {
    testkit::init_tracing();
    let store = MemCoordinator::new();
    let log = Log::default();
    let failing = App::builder("orders")
        .on_active(|_| async { Err("cannot start".into()) })
        .build()
        .unwrap();
    let bad = start_node(&store, "bad", failing).await;
    eventually(
        "bad's on_active failed and stepped it down",
        Duration::from_secs(10),
        || {
            bad.platform.audit().iter().any(|e| {
                e.kind == cluster_runtime::AuditKind::StepDownInitiated
                    && e.detail.as_deref() == Some("on_active failed")
            })
        },
    )
    .await;
    let good = start_node(&store, "good", app(&log, "good")).await;
    eventually("the healthy node leads", Duration::from_secs(15), || {
        good.app.election().is_leader()
    })
    .await;
    assert!(!bad.app.election().is_leader());
    bad.stop().await.unwrap();
    good.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_node_id_is_refused() {
    testkit::init_tracing();
    let store = MemCoordinator::new();
    let log = Log::default();
    let first = start_node(&store, "same", app(&log, "same")).await;
    eventually("first node joined", Duration::from_secs(5), || {
        first.platform.is_ready()
    })
    .await;
    let second = start_node(&store, "same", app(&log, "same")).await;
    let outcome = second.running.task.await.unwrap();
    assert!(
        matches!(
            outcome,
            Err(RuntimeError::Coord(CoordError::NodeIdInUse { .. }))
        ),
        "{outcome:?}"
    );
    first.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_outage_stops_every_leader_and_one_leads_again_after() {
    testkit::init_tracing();
    let store = MemCoordinator::new();
    let log = Log::default();
    let nodes = three_nodes(&store, &log).await;
    eventually("a leader", Duration::from_secs(10), || {
        leaders(&nodes).len() == 1
    })
    .await;
    // Every node joined and alive before the outage (a node that never joined is `joining`,
    // not `dead`: it never had a session to lose).
    eventually("all joined and alive", Duration::from_secs(10), || {
        nodes
            .iter()
            .all(|n| n.platform.is_ready() && n.platform.node_health() == HealthState::Alive)
    })
    .await;
    let token = nodes
        .iter()
        .find_map(|n| n.app.election().fencing_token())
        .unwrap();

    tracing::info!("store down for 3 x ttl: nobody acts as leader, nobody is ready");
    store.set_store_down(true);
    eventually("every leader stepped down", Duration::from_secs(10), || {
        leaders(&nodes).is_empty() && nodes.iter().all(|n| !n.platform.is_ready())
    })
    .await;
    testkit::stays_true_for(
        "nobody leads while the store is down",
        common::TTL * 3,
        || leaders(&nodes).is_empty(),
    )
    .await;
    for n in &nodes {
        assert_eq!(
            n.platform.node_health(),
            HealthState::Dead,
            "{} judges itself dead for its lost session",
            n.name
        );
    }

    tracing::info!("store back: exactly one leads, with a larger token");
    store.set_store_down(false);
    eventually("a leader again", Duration::from_secs(20), || {
        leaders(&nodes).len() == 1
    })
    .await;
    let new_token = nodes
        .iter()
        .find_map(|n| n.app.election().fencing_token())
        .unwrap();
    assert!(new_token > token);
    eventually("all ready again", Duration::from_secs(20), || {
        nodes.iter().all(|n| n.platform.is_ready())
    })
    .await;
    eventually("all alive again", Duration::from_secs(20), || {
        nodes
            .iter()
            .all(|n| n.platform.node_health() == HealthState::Alive)
    })
    .await;
}
