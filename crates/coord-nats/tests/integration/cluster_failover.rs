//! R3 buckets on a 3-node cluster lose the server that leads their stream: the holder's
//! session, term, claim and fenced writes carry on once a new stream leader is elected, and a
//! watch of the election follows the next hand-over.

use crate::common;
use cluster_core::error::Retryable;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster_core::coordination::{
    ClaimStore, CoordResult, ElectionStore, Key, KvStore, LeaderInfo, LeaderStream,
};
use cluster_core::ids::NodeId;
use cluster_core::lease::LeaseTiming;
use cluster_core::naming::NamespaceKind;
use coord_client::Session;
use coord_nats::{NatsConfig, NatsCoordinator};
use futures::StreamExt;
use testkit::NatsCluster;

fn node(name: &str) -> NodeId {
    NodeId::new(name).unwrap()
}

/// Three servers on two cores: calls and watch heartbeats get more room than on one server.
fn config(cluster: &NatsCluster) -> NatsConfig {
    NatsConfig {
        servers: (0..3).map(|i| cluster.member(i).url()).collect(),
        replicas: Some(3),
        call_timeout: Duration::from_secs(3),
        watch_heartbeat: Duration::from_secs(1),
        ..common::config(String::new())
    }
}

/// Retries `call` while the store says "try again" (a stream electing its leader); panics after
/// `limit`, which only bounds a hang.
async fn retrying<T, F, Fut>(what: &str, limit: Duration, mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = CoordResult<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match call().await {
            Ok(v) => return v,
            Err(e) if e.is_retryable() && Instant::now() < deadline => {
                tracing::debug!(what, error = %e, "retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

/// The index of the server leading the bucket's stream.
async fn stream_leader(coord: &NatsCoordinator, bucket: &str) -> usize {
    let js = async_nats::jetstream::new(coord.client().clone());
    let stream = js.get_stream(format!("KV_{bucket}")).await.unwrap();
    let leader = stream
        .cached_info()
        .cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .expect("the stream has a leader");
    leader.trim_start_matches('n').parse().unwrap()
}

async fn next_leader(leaders: &mut LeaderStream) -> Option<LeaderInfo> {
    tokio::time::timeout(Duration::from_secs(60), leaders.next())
        .await
        .expect("a leader change in time")
        .expect("stream open")
        .expect("no error")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holder_keeps_its_term_when_the_stream_leader_dies() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let mut cluster = NatsCluster::start(3).await.unwrap();
    let coord = Arc::new(NatsCoordinator::connect(config(&cluster)).await.unwrap());
    let observer = NatsCoordinator::connect(config(&cluster)).await.unwrap();
    // Longer than a stream leader election (a raft election timeout, several seconds).
    let timing = LeaseTiming {
        ttl: Duration::from_secs(20),
        margin: Duration::from_secs(5),
    };
    let ns = testkit::coordination::fresh_namespace(NamespaceKind::Election);
    let election = Key::new(ns.clone(), "leader").unwrap();
    let state = Key::new(ns.clone(), "leader.state").unwrap();
    let resource = testkit::coordination::key(
        &testkit::coordination::fresh_namespace(NamespaceKind::Claims),
        "p-1",
    );

    let (a, b, term_a, claim) = {
        tracing::info!("a leads and owns a claim, in R3 buckets made with all servers up");
        let a = retrying("session a", Duration::from_secs(30), || {
            Session::open(coord.clone(), node("a"), timing)
        })
        .await;
        let b = retrying("session b", Duration::from_secs(30), || {
            Session::open(coord.clone(), node("b"), timing)
        })
        .await;
        let term_a = coord.campaign(&election, "a", a.lease()).await.unwrap();
        // The claim's first call creates its R3 bucket; on two busy cores placing the stream
        // and electing its leader has taken longer than `create_timeout` (20 s). Creation is
        // idempotent and no claim is written before the bucket has a leader, so the call is
        // retried while the store says "try again".
        let holder = node("a");
        let claim = retrying("claim", Duration::from_secs(60), || {
            coord.claim(&resource, &holder, a.lease())
        })
        .await;
        coord
            .put_if_held(&state, b"before".to_vec(), &term_a.fence())
            .await
            .unwrap();
        (a, b, term_a, claim)
    };
    let mut leaders = retrying("observe", Duration::from_secs(30), || {
        observer.observe_leader(&election)
    })
    .await;
    assert_eq!(
        next_leader(&mut leaders).await.map(|l| l.token),
        Some(term_a.token)
    );
    {
        tracing::info!("kill the server leading the election bucket's stream");
        let victim = stream_leader(&coord, &ns.bucket()).await;
        cluster.kill(victim);
        tracing::info!(victim, "killed");
    }
    {
        tracing::info!("a's fenced write commits once the stream has a new leader");
        let fence = term_a.fence();
        retrying("fenced write", Duration::from_secs(60), || {
            coord.put_if_held(&state, b"after".to_vec(), &fence)
        })
        .await;
        assert_eq!(coord.get(&state).await.unwrap().unwrap().value, b"after");
    }
    {
        tracing::info!("a's session outlives another TTL: renewals reach the new leaders");
        tokio::time::sleep(timing.ttl).await;
        assert!(a.is_alive(), "a's session was lost");
        let leader = retrying("leader", Duration::from_secs(30), || {
            observer.leader(&election)
        })
        .await
        .unwrap();
        assert_eq!((leader.holder.as_str(), leader.token), ("a", term_a.token));
        let owner = retrying("owner", Duration::from_secs(30), || {
            observer.owner(&resource)
        })
        .await
        .unwrap();
        assert_eq!(owner.token, claim.token, "renewals kept the claim's token");
    }
    {
        tracing::info!("a resigns: the watch sees the vacancy, then b with a larger token");
        retrying("resign", Duration::from_secs(30), || coord.resign(&term_a)).await;
        let mut seen = next_leader(&mut leaders).await;
        if seen.is_some() {
            seen = next_leader(&mut leaders).await;
        }
        assert_eq!(seen, None);
        let term_b = coord.campaign(&election, "b", b.lease()).await.unwrap();
        assert!(term_b.token > term_a.token);
        let seen = next_leader(&mut leaders).await.unwrap();
        assert_eq!((seen.holder.as_str(), seen.token), ("b", term_b.token));
    }
    a.close(coord.as_ref()).await.unwrap();
    b.close(coord.as_ref()).await.unwrap();
}
