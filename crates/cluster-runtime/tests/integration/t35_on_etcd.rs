//! The runtime on a real etcd: three nodes, each reaching etcd through its own fault proxy, run
//! an active-passive app and a ring app. The leader is cut off: its term's work is cancelled
//! before another node's term begins, its late fenced write is refused by etcd, and after healing
//! the ring settles over three nodes again. Audit, metrics, readiness and the HTTP endpoints are
//! checked on the same nodes.

use crate::common;
use cluster_core::error::Retryable;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_core::coordination::{CoordError, Coordinator};
use cluster_runtime::{App, AppHandle, AuditKind, FencedKv, Platform, Role};
use common::{Log, eventually};
use coord_etcd::{EtcdConfig, EtcdCoordinator};
use testkit::{EtcdServer, FaultProxy, Mode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const PARTITIONS: u32 = 8;
/// Bounds every wait; only a hang reaches it.
const LIMIT: Duration = Duration::from_secs(40);

/// Every term's cancellation token, so a new term can check that every earlier one had already
/// been cancelled when it began (checked synchronously inside `on_active`).
type Terms = Arc<Mutex<Vec<(u64, CancellationToken)>>>;
/// Each term's fenced key space as `on_active` got it, by node and token.
type FencedByTerm = Arc<Mutex<HashMap<(String, u64), FencedKv>>>;

struct Node {
    name: String,
    platform: Platform,
    ledger: AppHandle,
    jobs: AppHandle,
    running: common::Running,
    proxy: FaultProxy,
}

/// What every node's `on_active` shares.
#[derive(Clone, Default)]
struct Shared {
    log: Log,
    terms: Terms,
    fenced: FencedByTerm,
}

fn ledger(shared: &Shared, node: &str) -> App {
    let (shared, node) = (shared.clone(), node.to_owned());
    App::builder("ledger")
        .active_passive()
        .on_active(move |ctx| {
            let (shared, node) = (shared.clone(), node.clone());
            async move {
                let token = ctx.token.get();
                shared.log.push(&node, "active", token);
                {
                    let mut terms = shared.terms.lock().unwrap();
                    for (earlier, cancel) in terms.iter() {
                        if *earlier < token && !cancel.is_cancelled() {
                            shared.log.push(&node, "overlap", *earlier);
                        }
                    }
                    terms.push((token, ctx.cancel.clone()));
                }
                let fenced = ctx.fenced_kv().expect("active-passive terms are fenced");
                shared
                    .fenced
                    .lock()
                    .unwrap()
                    .insert((node.clone(), token), fenced.clone());
                // Leader-scoped work: record when its cancellation fires.
                let (log, n, cancel) = (shared.log.clone(), node.clone(), ctx.cancel.clone());
                tokio::spawn(async move {
                    cancel.cancelled().await;
                    log.push(&n, "cancelled", token);
                });
                fenced.put("leader", node.as_bytes().to_vec()).await?;
                Ok(())
            }
        })
        .build()
        .unwrap()
}

async fn start(etcd: &EtcdServer, shared: &Shared, name: &str) -> Node {
    start_with(etcd, shared, name, |_| {}).await
}

/// Starts a node whose proxy `arm` may set up a fault on before the node first connects.
async fn start_with(
    etcd: &EtcdServer,
    shared: &Shared,
    name: &str,
    arm: impl FnOnce(&FaultProxy),
) -> Node {
    let proxy = FaultProxy::start(etcd.client_addr()).unwrap();
    arm(&proxy);
    let config = EtcdConfig {
        call_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_secs(1),
        keep_alive_interval: Duration::from_millis(500),
        keep_alive_timeout: Duration::from_secs(1),
        ..EtcdConfig::new([proxy.url("http")])
    };
    let coord: Arc<dyn Coordinator> = Arc::new(EtcdCoordinator::connect(config).await.unwrap());
    let platform = Platform::builder("etcdrt", name)
        .coordinator(coord)
        .lease_ttl(Duration::from_secs(2))
        .lease_margin(Duration::from_millis(700))
        .hook_timeout(Duration::from_secs(2))
        .shutdown_timeout(Duration::from_secs(10))
        .drain_timeout(Duration::from_secs(2))
        .http_addr(SocketAddr::from(([127, 0, 0, 1], 0)))
        .build()
        .unwrap();
    let ledger = platform.register(ledger(shared, name)).unwrap();
    let jobs = platform
        .register(App::builder("jobs").ring(PARTITIONS).build().unwrap())
        .unwrap();
    Node {
        name: name.to_owned(),
        running: common::Running::spawn(&platform),
        platform,
        ledger,
        jobs,
        proxy,
    }
}

fn leaders(nodes: &[Node]) -> Vec<&Node> {
    nodes
        .iter()
        .filter(|n| n.ledger.election().is_leader())
        .collect()
}

fn node<'a>(nodes: &'a [Node], name: &str) -> &'a Node {
    nodes.iter().find(|n| n.name == name).unwrap()
}

/// Every partition is owned by exactly one of `nodes`, each holds its fair share, and every
/// node's view agrees: each partition's claim is its owner's and its target (no move pending).
fn ring_settled(nodes: &[&Node]) -> bool {
    let share = PARTITIONS as usize / nodes.len()..=(PARTITIONS as usize).div_ceil(nodes.len());
    let mut owner_of = BTreeMap::new();
    for n in nodes {
        let view = n.jobs.ring().unwrap().view();
        if !share.contains(&view.mine.len()) || !view.draining.is_empty() {
            return false;
        }
        for (p, token) in view.mine {
            if owner_of.insert(p.0, (n.name.clone(), token)).is_some() {
                return false;
            }
        }
    }
    if !owner_of.keys().copied().eq(0..PARTITIONS) {
        return false;
    }
    nodes.iter().all(|viewer| {
        let view = viewer.jobs.ring().unwrap().view();
        view.owners.len() == PARTITIONS as usize
            && view.target.len() == PARTITIONS as usize
            && (0..PARTITIONS).all(|p| {
                let (holder, token) = &owner_of[&p];
                let claim = view.owners[p as usize].as_ref();
                let target = view.target[p as usize].as_ref();
                claim.is_some_and(|(n, t)| n.as_str() == holder && t == token)
                    && target.is_some_and(|n| n.as_str() == holder)
            })
    })
}

fn audit_has(n: &Node, kind: AuditKind, app: Option<&str>, token: Option<u64>) -> bool {
    n.platform.audit().iter().any(|e| {
        e.kind == kind
            && (app.is_none() || e.app.as_deref() == app)
            && (token.is_none() || e.token == token)
    })
}

/// A GET over a raw HTTP/1.0 connection; returns the status code and the body.
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        String::from_utf8(response).unwrap()
    };
    let response = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .unwrap_or_else(|_| panic!("GET {path} on {addr} hung"));
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {response:?}"));
    let code = head
        .lines()
        .next()
        .and_then(|status| status.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    (code, body.to_owned())
}

async fn http_addr(n: &Node) -> SocketAddr {
    eventually("the HTTP endpoint is bound", LIMIT, || {
        n.platform.http_addr().is_some()
    })
    .await;
    n.platform.http_addr().unwrap()
}

/// `/status` as JSON, and the entry of app `app` in it.
async fn status_of(n: &Node, app: &str) -> (serde_json::Value, serde_json::Value) {
    let (code, body) = http_get(http_addr(n).await, "/status").await;
    assert_eq!(code, 200, "/status on {}: {body}", n.name);
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["node"], n.name.as_str(), "{status}");
    let entry = status["apps"]
        .as_array()
        .unwrap_or_else(|| panic!("no apps in {status}"))
        .iter()
        .find(|a| a["app"] == app)
        .unwrap_or_else(|| panic!("/status on {} does not name {app}: {status}", n.name))
        .clone();
    (status, entry)
}

/// Checks that `/status` names the ledger with this node's role, and the ring's partitions.
async fn assert_status(n: &Node) {
    let (_, ledger) = status_of(n, "ledger").await;
    assert_eq!(ledger["mode"], "active_passive", "{ledger}");
    match n.ledger.election().role() {
        Role::Active { token } => {
            assert_eq!(
                ledger["role"]["role"], "active",
                "{} leads: {ledger}",
                n.name
            );
            assert_eq!(ledger["role"]["token"], token.get(), "{ledger}");
        }
        Role::Passive => {
            assert_eq!(
                ledger["role"]["role"], "passive",
                "{} is standby: {ledger}",
                n.name
            );
        }
        other => panic!("{} is {other:?}", n.name),
    }
    let (_, jobs) = status_of(n, "jobs").await;
    assert_eq!(jobs["mode"], "ring", "{jobs}");
    let shown: BTreeMap<String, u64> = jobs["partitions"]
        .as_object()
        .unwrap_or_else(|| panic!("no partitions in {jobs}"))
        .iter()
        .map(|(p, t)| (p.clone(), t.as_u64().unwrap()))
        .collect();
    let owned: BTreeMap<String, u64> = n
        .jobs
        .ring()
        .unwrap()
        .owned_partitions()
        .iter()
        .map(|(p, t)| (p.0.to_string(), t.get()))
        .collect();
    assert!(!shown.is_empty(), "{jobs}");
    assert_eq!(shown, owned, "{jobs}");
}

/// M18 on a real etcd: partition 2's claim reaches etcd and is applied, then its reply is lost
/// and the node's connection reset, so the node's call fails although etcd holds the claim
/// under the node's lease. The node must find that claim (its watch shows it) and serve the
/// partition, not leave it held by nobody at work until the lease ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_applied_on_etcd_whose_reply_was_lost_is_adopted() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let etcd = EtcdServer::start().await.unwrap();
    let shared = Shared::default();
    let name = "reply-lost";
    let node = start_with(&etcd, &shared, name, |proxy| {
        proxy.lose_reply_after(&[b"/p-2", name.as_bytes()], Duration::from_millis(300));
    })
    .await;
    eventually(
        "the claim of partition 2 was applied unanswered",
        LIMIT,
        || node.proxy.replies_lost() == 1,
    )
    .await;
    eventually("the node serves all 8 partitions", LIMIT, || {
        ring_settled(&[&node])
    })
    .await;
    let view = node.jobs.ring().unwrap().view();
    let (holder, token) = view.owners[2].clone().expect("partition 2 is claimed");
    assert_eq!(holder.as_str(), name);
    assert_eq!(
        view.mine.get(&cluster_core::ids::PartitionId(2)),
        Some(&token),
        "the node serves partition 2 under the claim etcd holds"
    );
    node.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_on_etcd_fails_over_fences_and_rebalances() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let etcd = EtcdServer::start().await.unwrap();
    let shared = Shared::default();
    let mut nodes = Vec::new();
    for name in ["a", "b", "c"] {
        nodes.push(start(&etcd, &shared, name).await);
    }
    let all: Vec<&Node> = nodes.iter().collect();

    let (old, old_token) = {
        tracing::info!("one leader; each of the 8 partitions has exactly one owner");
        eventually("one leader", LIMIT, || leaders(&nodes).len() == 1).await;
        eventually("ring settled over three", LIMIT, || ring_settled(&all)).await;
        eventually("every node ready", LIMIT, || {
            nodes.iter().all(|n| n.platform.is_ready())
        })
        .await;
        let leader = leaders(&nodes)[0];
        let token = leader.ledger.election().fencing_token().unwrap();
        let old_token = token.get();
        for n in &nodes {
            eventually("everyone sees the leader", LIMIT, || {
                n.ledger
                    .election()
                    .leader()
                    .is_some_and(|l| l.holder == leader.name && l.token == token)
            })
            .await;
            let (code, body) = http_get(http_addr(n).await, "/ready").await;
            assert_eq!(code, 200, "/ready on {}: {body}", n.name);
            assert_status(n).await;
        }
        assert_eq!(
            leader.ledger.kv().get("leader").await.unwrap(),
            Some(leader.name.as_bytes().to_vec())
        );
        (leader.name.clone(), old_token)
    };

    let new = {
        tracing::info!("cut the leader off from etcd");
        let cut = node(&nodes, &old);
        cut.proxy.set_mode(Mode::Blackhole);
        eventually("the cut-off leader's work is cancelled", LIMIT, || {
            shared.log.position(&old, "cancelled", old_token).is_some()
        })
        .await;
        assert!(!cut.ledger.election().is_leader());
        eventually("the cut-off node is not ready", LIMIT, || {
            !cut.platform.is_ready()
        })
        .await;
        eventually("another node leads", LIMIT, || {
            nodes
                .iter()
                .any(|n| n.name != old && n.ledger.election().is_leader())
        })
        .await;
        let new = leaders(&nodes).into_iter().find(|n| n.name != old).unwrap();
        let new_token = new.ledger.election().fencing_token().unwrap();
        assert!(new_token.get() > old_token, "{new_token} after {old_token}");
        eventually("the new leader's on_active ran", LIMIT, || {
            shared
                .log
                .position(&new.name, "active", new_token.get())
                .is_some()
        })
        .await;
        let cancelled = shared.log.position(&old, "cancelled", old_token).unwrap();
        let began = shared
            .log
            .position(&new.name, "active", new_token.get())
            .unwrap();
        assert!(
            cancelled < began,
            "the new term began before the old one was cancelled: {:?}",
            shared.log.entries()
        );
        let overlaps: Vec<_> = shared
            .log
            .entries()
            .into_iter()
            .filter(|e| e.event == "overlap")
            .collect();
        assert!(overlaps.is_empty(), "terms overlapped: {overlaps:?}");
        assert_eq!(leaders(&nodes).len(), 1);
        let others: Vec<&Node> = nodes.iter().filter(|n| n.name != old).collect();
        eventually("the other two own every partition", LIMIT, || {
            ring_settled(&others)
        })
        .await;
        assert!(
            cut.jobs.ring().unwrap().owned_partitions().is_empty(),
            "the cut-off node still claims partitions"
        );

        tracing::info!("the cut-off leader writes under its cancelled term");
        let stale = shared
            .fenced
            .lock()
            .unwrap()
            .get(&(old.clone(), old_token))
            .cloned()
            .expect("the old term's fenced key space");
        assert_eq!(stale.fence().token.get(), old_token);
        // Cut off, the write cannot be acknowledged; its bytes may still reach etcd on heal.
        let unacknowledged = stale.put("leader", b"stale".to_vec()).await;
        assert!(unacknowledged.is_err(), "{unacknowledged:?}");
        assert!(!cut.platform.is_ready());
        let (code, body) = http_get(http_addr(cut).await, "/ready").await;
        assert_eq!(code, 503, "/ready on the cut-off node: {body}");
        let (status, ledger) = status_of(cut, "ledger").await;
        assert_eq!(status["ready"], false, "{status}");
        assert_eq!(ledger["role"]["role"], "passive", "{ledger}");

        tracing::info!("heal: the old term's write is refused by etcd");
        cut.proxy.heal();
        let refused = tokio::time::timeout(LIMIT, async {
            loop {
                match stale.put("leader", b"stale".to_vec()).await {
                    Err(e) if e.is_retryable() => {
                        tokio::time::sleep(Duration::from_millis(50)).await
                    }
                    other => break other,
                }
            }
        })
        .await
        .expect("etcd never answered the old term's write");
        assert!(
            matches!(refused, Err(CoordError::StaleToken { .. })),
            "{refused:?}"
        );
        assert_eq!(
            new.ledger.kv().get("leader").await.unwrap(),
            Some(new.name.as_bytes().to_vec()),
            "a write of the old term reached the store"
        );
        new.name.clone()
    };

    {
        tracing::info!("healed: the ring settles over three again, with exactly one leader");
        let cut = node(&nodes, &old);
        eventually("the healed node is ready again", LIMIT, || {
            cut.platform.is_ready()
        })
        .await;
        eventually("ring settled over three again", LIMIT, || {
            ring_settled(&all)
        })
        .await;
        assert_eq!(cut.ledger.election().role(), Role::Passive);
        let leader = leaders(&nodes);
        assert_eq!(leader.len(), 1, "leaders after healing");
        let (holder, token) = (
            leader[0].name.clone(),
            leader[0].ledger.election().fencing_token().unwrap(),
        );
        assert_ne!(holder, old, "the healed node came back as a standby");
        for n in &nodes {
            eventually("everyone sees the same leader", LIMIT, || {
                n.ledger
                    .election()
                    .leader()
                    .is_some_and(|l| l.holder == holder && l.token == token)
            })
            .await;
        }
    }

    {
        tracing::info!("observability on the same nodes");
        let cut = node(&nodes, &old);
        let successor = node(&nodes, &new);
        assert!(audit_has(
            cut,
            AuditKind::LeaderAcquired,
            Some("ledger"),
            Some(old_token)
        ));
        assert!(
            audit_has(cut, AuditKind::LeaderLost, Some("ledger"), Some(old_token)),
            "{:?}",
            cut.platform.audit()
        );
        assert!(audit_has(
            successor,
            AuditKind::LeaderAcquired,
            Some("ledger"),
            None
        ));
        for n in &nodes {
            assert!(audit_has(n, AuditKind::PartitionOwned, Some("jobs"), None));
            let joined: BTreeSet<String> = n
                .platform
                .audit()
                .into_iter()
                .filter(|e| e.kind == AuditKind::MemberJoined)
                .filter_map(|e| e.detail)
                .collect();
            assert_eq!(
                joined,
                ["a", "b", "c"].map(String::from).into(),
                "members {} saw join",
                n.name
            );
        }
        {
            // The others saw the cut-off node leave when its lease expired, and join again.
            let events = successor.platform.audit();
            let left = events.iter().position(|e| {
                e.kind == AuditKind::MemberLeft && e.detail.as_deref() == Some(old.as_str())
            });
            let rejoined = events.iter().rposition(|e| {
                e.kind == AuditKind::MemberJoined && e.detail.as_deref() == Some(old.as_str())
            });
            assert!(
                matches!((left, rejoined), (Some(l), Some(j)) if l < j),
                "{events:?}"
            );
        }
        let metrics = successor.platform.metrics();
        for name in [
            "cluster_leader_changes_total",
            "cluster_election_epoch",
            "cluster_owned_partitions",
            "cluster_hook_duration_seconds",
            "cluster_session_alive",
        ] {
            assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
        }
        for n in &nodes {
            assert!(n.platform.is_ready(), "{} not ready after healing", n.name);
            let (code, body) = http_get(http_addr(n).await, "/ready").await;
            assert_eq!(code, 200, "/ready on {}: {body}", n.name);
            let (code, body) = http_get(http_addr(n).await, "/metrics").await;
            assert_eq!(code, 200, "/metrics on {}", n.name);
            assert!(body.contains("cluster_election_epoch"), "{body}");
            assert_status(n).await;
        }
    }

    for n in nodes {
        n.running.stop().await.unwrap();
    }
}
