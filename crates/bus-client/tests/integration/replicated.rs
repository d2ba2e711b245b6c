//! Durability by replication: on a 3-member JetStream cluster, streams with 3 replicas keep
//! taking and delivering events while one member is down.

use crate::fixtures;

use std::sync::Arc;
use std::time::Duration;

use bus_client::{Consumer, Durability, Publisher, Topology};
use bus_nats::{NatsBusConfig, NatsEventBus};
use cluster_core::event::EventBus;
use fixtures::*;
use testkit::NatsCluster;

async fn member_bus(url: &str) -> Arc<dyn EventBus> {
    let config = NatsBusConfig {
        call_timeout: Duration::from_secs(2),
        ping_interval: Duration::from_millis(500),
        ignore_discovered_servers: true,
        ..NatsBusConfig::new(url)
    };
    Arc::new(NatsEventBus::connect(config).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_streams_survive_a_member_loss() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let mut cluster = NatsCluster::start(3).await.unwrap();
    let files = Files::new();
    let subjects = subjects();
    let topo = Topology::new(subjects.clone(), Durability::Replicated);
    let bus = member_bus(&cluster.member(0).url()).await;
    {
        tracing::info!("provision with 3 replicas");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        // The meta leader may still be settling right after the cluster reports healthy.
        while let Err(e) = topo.provision(bus.as_ref()).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "provisioning failed: {e}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let publisher = Publisher::start(
        bus.clone(),
        publisher_config("node-a", &subjects, &files.path("outbox.db")),
        registry(),
        TestMetrics::new().publisher(),
    )
    .unwrap();
    // The consumer runs throughout, on the member the publisher uses.
    let db = files.path("consumer.db");
    let mut config = consumer_config("c", &subjects, &db);
    config.stream = topo.events_stream();
    let _consumer = Consumer::start(
        bus.clone(),
        config,
        registry(),
        RecordingHandler::new(),
        TestMetrics::new().consumer("c"),
    )
    .await
    .unwrap();
    let mut ids = Vec::new();
    {
        tracing::info!("publish with all members up");
        for n in 0..30 {
            ids.push(
                publisher
                    .publish(event(1, &format!("k{}", n % 3), 1, n))
                    .await
                    .unwrap()
                    .event_id
                    .to_string(),
            );
        }
    }
    {
        tracing::info!("member 2 killed: a quorum remains, publishing goes on");
        cluster.kill(2);
        for n in 30..60 {
            ids.push(
                publisher
                    .publish(event(1, &format!("k{}", n % 3), 1, n))
                    .await
                    .unwrap()
                    .event_id
                    .to_string(),
            );
        }
    }
    {
        tracing::info!("every event is delivered, in order, once");
        eventually("60 applied", Duration::from_secs(30), || {
            effects(&db).len() == 60
        })
        .await;
        let applied = effects(&db);
        assert_ordered_once(&applied);
        let mut got: Vec<String> = applied.into_iter().map(|e| e.event_id).collect();
        got.sort();
        ids.sort();
        assert_eq!(got, ids);
    }
}
