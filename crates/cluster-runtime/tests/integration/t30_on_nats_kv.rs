//! The runtime on a real nats-server (JetStream KV as the coordination store): election,
//! failover of a leader cut off from NATS, and a ring that settles and rebalances.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use cluster_core::coordination::Coordinator;
use cluster_runtime::{App, AppHandle, Platform};
use coord_nats::{NatsConfig, NatsCoordinator};
use testkit::{FaultProxy, Mode, NatsServer};

struct Node {
    name: String,
    app: AppHandle,
    ring: AppHandle,
    running: common::Running,
    proxy: FaultProxy,
}

async fn start(nats: &NatsServer, name: &str) -> Node {
    let proxy = FaultProxy::start(nats.client_addr()).unwrap();
    let config = NatsConfig {
        call_timeout: Duration::from_millis(500),
        ..NatsConfig::new([proxy.url("nats")])
    };
    let coord: Arc<dyn Coordinator> = Arc::new(NatsCoordinator::connect(config).await.unwrap());
    let platform = Platform::builder("natskv", name)
        .coordinator(coord)
        .lease_ttl(Duration::from_secs(2))
        .lease_margin(Duration::from_millis(700))
        .shutdown_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let app = platform
        .register(App::builder("ledger").active_passive().build().unwrap())
        .unwrap();
    let ring = platform
        .register(App::builder("jobs").ring(8).build().unwrap())
        .unwrap();
    Node {
        name: name.to_owned(),
        running: common::Running::spawn(&platform),
        app,
        ring,
        proxy,
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn leaders(nodes: &[Node]) -> Vec<&Node> {
    nodes
        .iter()
        .filter(|n| n.app.election().is_leader())
        .collect()
}

fn ring_counts(nodes: &[Node]) -> Vec<usize> {
    nodes
        .iter()
        .map(|n| n.ring.ring().unwrap().owned_partitions().len())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_on_nats_kv_fails_over_and_rebalances() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let nats = NatsServer::start().await.unwrap();
    let mut nodes = Vec::new();
    for name in ["a", "b", "c"] {
        nodes.push(start(&nats, name).await);
    }
    {
        tracing::info!("one leader; the ring splits 8 partitions over three nodes");
        eventually("one leader", || leaders(&nodes).len() == 1).await;
        eventually("ring settled", || {
            let c = ring_counts(&nodes);
            c.iter().sum::<usize>() == 8 && c.iter().all(|n| (2..=3).contains(n))
        })
        .await;
    }
    {
        tracing::info!("cut the leader off from NATS: another node leads with a larger token");
        let leader = leaders(&nodes)[0];
        let (old, token) = (
            leader.name.clone(),
            leader.app.election().fencing_token().unwrap(),
        );
        leader.proxy.set_mode(Mode::Blackhole);
        eventually("a new leader", || {
            nodes
                .iter()
                .any(|n| n.name != old && n.app.election().is_leader())
        })
        .await;
        let new = nodes.iter().find(|n| n.app.election().is_leader()).unwrap();
        assert!(new.app.election().fencing_token().unwrap() > token);
        let old_node = nodes.iter().find(|n| n.name == old).unwrap();
        assert!(!old_node.app.election().is_leader());
        eventually("the cut-off node's partitions move", || {
            let others: usize = nodes
                .iter()
                .filter(|n| n.name != old)
                .map(|n| n.ring.ring().unwrap().owned_partitions().len())
                .sum();
            others == 8
        })
        .await;
        old_node.proxy.heal();
    }
    {
        tracing::info!("healed, the node rejoins as a standby and the ring rebalances over three");
        eventually("ring over three again", || {
            let c = ring_counts(&nodes);
            c.iter().sum::<usize>() == 8 && c.iter().all(|n| (2..=3).contains(n))
        })
        .await;
        assert_eq!(leaders(&nodes).len(), 1);
    }
    for n in nodes {
        n.running.stop().await.unwrap();
    }
}

/// The runtime's audit events land in the stream the topology names (`{PREFIX}_AUDIT`), the
/// one publishers, consumers and operators provision and read, not in a second stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_events_land_in_the_stream_the_topology_names() {
    use cluster_core::event::{Durability, EventBus, Subjects, Topology};
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let nats = NatsServer::start().await.unwrap();
    let bus: Arc<dyn EventBus> = Arc::new(
        bus_nats::NatsEventBus::connect(bus_nats::NatsBusConfig::new(nats.url()))
            .await
            .unwrap(),
    );
    let store = coord_mem::MemCoordinator::new();
    let platform = Platform::builder("audit-check", "n1")
        .coordinator(Arc::new(store.connect()) as Arc<dyn Coordinator>)
        .event_bus(bus.clone())
        .subject_prefix("auditp")
        .lease_ttl(Duration::from_secs(2))
        .lease_margin(Duration::from_millis(700))
        .build()
        .unwrap();
    let app = platform
        .register(App::builder("ledger").active_passive().build().unwrap())
        .unwrap();
    let running = common::Running::spawn(&platform);
    eventually("n1 leads", || app.election().is_leader()).await;

    let topology = Topology::new(Subjects::new("auditp").unwrap(), Durability::SingleServer);
    assert_eq!(topology.audit_stream(), "AUDITP_AUDIT");
    // The leader_acquired record reaches the stream (the sink is asynchronous).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let first = loop {
        if let Ok(Some(m)) = bus.read(&topology.audit_stream(), 1).await {
            break m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no audit event in {}",
            topology.audit_stream()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        first.subject.starts_with("auditp.audit."),
        "audit event on {}",
        first.subject
    );
    let mut subjects = Vec::new();
    let mut seq = 1;
    while let Ok(Some(m)) = bus.read(&topology.audit_stream(), seq).await {
        subjects.push(m.subject);
        seq += 1;
    }
    assert!(
        subjects.iter().any(|s| s == "auditp.audit.leader_acquired"),
        "no leader_acquired among {subjects:?}"
    );
    // No second audit stream under the platform's name.
    assert!(
        bus.read("audit_check_audit", 1).await.is_err(),
        "a second audit stream exists"
    );
    running.stop().await.unwrap();
}

/// M4: on NATS KV every renewal rewrites a slot's claim key, so its revision moves while the
/// slot's token (the claim's creation) stays. A replicas node whose `on_active` outlasts several
/// renewals keeps its slot: the role stays active with one token, through renewals and through
/// a reconnect that restarts the claim's watch with a fresh snapshot, and `on_active` runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicas_slot_outlives_its_renewals_and_a_watch_restart() {
    use cluster_runtime::Role;
    use std::sync::atomic::{AtomicUsize, Ordering};
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let nats = NatsServer::start().await.unwrap();
    let proxy = FaultProxy::start(nats.client_addr()).unwrap();
    let config = NatsConfig {
        call_timeout: Duration::from_millis(500),
        ..NatsConfig::new([proxy.url("nats")])
    };
    let coord: Arc<dyn Coordinator> = Arc::new(NatsCoordinator::connect(config).await.unwrap());
    let platform = Platform::builder("natsrep", "a")
        .coordinator(coord)
        .lease_ttl(Duration::from_secs(2))
        .lease_margin(Duration::from_millis(700))
        .hook_timeout(Duration::from_secs(10))
        .shutdown_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let actives = Arc::new(AtomicUsize::new(0));
    let counter = actives.clone();
    let app = platform
        .register(
            App::builder("workers")
                .replicas(2)
                .on_active(move |_ctx| {
                    let counter = counter.clone();
                    async move {
                        counter.fetch_add(1, Ordering::SeqCst);
                        // Longer than several renewals (every (2 s - 0.7 s) / 3).
                        tokio::time::sleep(Duration::from_secs(3)).await;
                        Ok(())
                    }
                })
                .build()
                .unwrap(),
        )
        .unwrap();
    let running = common::Running::spawn(&platform);
    let token = |app: &AppHandle| match app.election().role() {
        Role::Active { token } => Some(token),
        _ => None,
    };
    eventually("the node holds a slot", || token(&app).is_some()).await;
    let held = token(&app).unwrap();
    let watch = |what: &'static str, until: Duration| {
        let app = app.clone();
        async move {
            let end = std::time::Instant::now() + until;
            while std::time::Instant::now() < end {
                assert_eq!(
                    token(&app),
                    Some(held),
                    "{what}: the slot must stay held with its token"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    tracing::info!("renewals move the claim's revision; the slot stays");
    watch("through renewals", Duration::from_secs(4)).await;
    tracing::info!("the node's connection is cut: the claim's watch restarts with a snapshot");
    let before = proxy.accepted_connections();
    proxy.cut();
    eventually("the node reconnected", || {
        proxy.accepted_connections() > before
    })
    .await;
    watch("after the watch restarted", Duration::from_secs(3)).await;
    assert_eq!(actives.load(Ordering::SeqCst), 1, "on_active ran once");
    running.stop().await.unwrap();
}
