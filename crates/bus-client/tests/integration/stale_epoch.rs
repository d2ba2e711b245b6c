//! An owner partitioned from NATS keeps publishing into its outbox while its claim is valid;
//! the partition moves to a new owner with a larger epoch; when the old owner heals, its outbox
//! drains and every one of its stale events is dead-lettered as `stale_epoch`, none applied.

use crate::fixtures;

use std::collections::HashSet;
use std::time::Duration;

use bus_client::{Consumer, Delivered, PublishError, Publisher};
use cluster_core::event::DeadLetterReason;
use cluster_core::ids::PartitionId;
use coord_client::mono_now;
use fixtures::*;
use testkit::{FaultProxy, Mode, NatsOptions, NatsServer};

const SHARD: u32 = 5;
const KEYS: [&str; 3] = ["wf-1", "wf-2", "wf-3"];
const OLD_EPOCH: u64 = 5;
const NEW_EPOCH: u64 = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_owner_stale_events_are_dead_lettered_after_the_move() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let nats = NatsServer::start_with(NatsOptions::durable())
        .await
        .unwrap();
    let proxy = FaultProxy::start(nats.client_addr()).unwrap();
    let files = Files::new();
    let subjects = subjects();
    let topo = topology(&subjects);
    let direct = bus(&nats.url()).await;
    topo.provision(direct.as_ref()).await.unwrap();
    let old_metrics = TestMetrics::new();
    let old_owner = Publisher::start(
        bus(&proxy.url("nats")).await,
        publisher_config("node-old", &subjects, &files.path("old.db")),
        registry(),
        old_metrics.publisher(),
    )
    .unwrap();
    let new_owner = Publisher::start(
        direct.clone(),
        publisher_config("node-new", &subjects, &files.path("new.db")),
        registry(),
        TestMetrics::new().publisher(),
    )
    .unwrap();
    let db = files.path("consumer.db");
    let metrics = TestMetrics::new();
    let _consumer = Consumer::start(
        direct.clone(),
        consumer_config("c", &subjects, &db),
        registry(),
        RecordingHandler::new(),
        metrics.consumer("c"),
    )
    .await
    .unwrap();
    // The old owner's claim: valid for 20 s from now (its renew deadline).
    let claim_deadline = mono_now() + Duration::from_secs(20);
    let old_event = |key: &str, n: u64| {
        let mut e = event(SHARD, key, OLD_EPOCH, n);
        e.valid_until = claim_deadline;
        e
    };

    {
        tracing::info!("the old owner publishes while connected");
        for n in 0..3 {
            for key in KEYS {
                let r = old_owner.publish(old_event(key, n)).await.unwrap();
                assert!(matches!(r.delivered, Delivered::Acked { .. }));
            }
        }
        eventually("9 applied", Duration::from_secs(10), || {
            effects(&db).len() == 9
        })
        .await;
    }
    let stale_ids: HashSet<String> = {
        tracing::info!("partitioned from NATS, it goes on publishing into its outbox");
        proxy.set_mode(Mode::Blackhole);
        let mut ids = HashSet::new();
        for n in 3..6 {
            for key in KEYS {
                let r = old_owner.publish(old_event(key, n)).await.unwrap();
                assert_eq!(r.delivered, Delivered::Outboxed);
                ids.insert(r.event_id.to_string());
            }
        }
        assert_eq!(old_owner.status().outbox_depth, 9);
        ids
    };
    {
        tracing::info!("past its claim's renew deadline, the outbox refuses more");
        let mut late = old_event("wf-1", 99);
        late.valid_until = mono_now();
        assert!(matches!(
            old_owner.publish(late).await,
            Err(PublishError::ClaimExpired {
                shard: PartitionId(SHARD)
            })
        ));
        assert_eq!(old_owner.status().outbox_depth, 9);
    }
    {
        tracing::info!("the shard moves: the new owner publishes with a larger epoch");
        for n in 0..2 {
            for key in KEYS {
                new_owner
                    .publish(event(SHARD, key, NEW_EPOCH, 100 + n))
                    .await
                    .unwrap();
            }
        }
        eventually("15 applied", Duration::from_secs(10), || {
            effects(&db).len() == 15
        })
        .await;
    }
    {
        tracing::info!("the old owner heals: its outbox drains to NATS");
        proxy.heal();
        old_owner
            .drain_shard(PartitionId(SHARD), Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(old_metrics.counter("event_bus_outages_total", &[]), 1);
    }
    {
        tracing::info!("the consumer dead-letters every stale event and applies none");
        eventually("9 stale dead letters", Duration::from_secs(20), || {
            metrics.counter(
                "event_bus_dead_letters_total",
                &[("consumer", "c"), ("reason", "stale_epoch")],
            ) == 9
        })
        .await;
        let applied = effects(&db);
        assert_eq!(applied.len(), 15);
        assert_ordered_once(&applied);
        assert!(applied.iter().all(|e| !stale_ids.contains(&e.event_id)));
        let letters = dead_letters(direct.as_ref(), &topo).await;
        assert_eq!(letters.len(), 9);
        let lettered: HashSet<String> = letters
            .iter()
            .map(|l| {
                assert_eq!(l.reason, DeadLetterReason::StaleEpoch);
                let e = l.envelope.as_ref().unwrap();
                assert_eq!(e.epoch.get(), OLD_EPOCH);
                assert!(l.detail.contains("older than applied"), "{}", l.detail);
                e.event_id.to_string()
            })
            .collect();
        assert_eq!(lettered, stale_ids);
    }
}

/// The epoch is the shard's fencing token, not the key's: once an epoch-10 event of shard 3 was
/// applied, an epoch-9 event of shard 3 is stale whatever its key, and with no key at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_epoch_of_the_shard_is_stale_for_every_key_and_for_unkeyed_events() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let nats = NatsServer::start_with(NatsOptions::durable())
        .await
        .unwrap();
    let files = Files::new();
    let subjects = subjects();
    let topo = topology(&subjects);
    let direct = bus(&nats.url()).await;
    topo.provision(direct.as_ref()).await.unwrap();
    let publisher = Publisher::start(
        direct.clone(),
        publisher_config("node-a", &subjects, &files.path("outbox.db")),
        registry(),
        TestMetrics::new().publisher(),
    )
    .unwrap();
    let new_owner = publisher.publish(event(3, "A", 10, 1)).await.unwrap();
    let other_key = publisher.publish(event(3, "B", 9, 2)).await.unwrap();
    let mut unkeyed = event(3, "unkeyed", 9, 3);
    unkeyed.ordering_key = None;
    let unkeyed = publisher.publish(unkeyed).await.unwrap();
    // Another shard has its own epochs: epoch 9 there is fine.
    let other_shard = publisher.publish(event(4, "C", 9, 4)).await.unwrap();

    let db = files.path("consumer.db");
    let metrics = TestMetrics::new();
    let _consumer = Consumer::start(
        direct.clone(),
        consumer_config("c", &subjects, &db),
        registry(),
        RecordingHandler::new(),
        metrics.consumer("c"),
    )
    .await
    .unwrap();
    let stale = || {
        metrics.counter(
            "event_bus_dead_letters_total",
            &[("consumer", "c"), ("reason", "stale_epoch")],
        )
    };
    eventually("all four settled", Duration::from_secs(20), || {
        effects(&db).len() as u64 + stale() == 4
    })
    .await;
    let applied: HashSet<String> = effects(&db).into_iter().map(|e| e.event_id).collect();
    let expected: HashSet<String> = [new_owner.event_id, other_shard.event_id]
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        applied, expected,
        "only the epoch-10 event of shard 3 and the event of shard 4 may be applied"
    );
    assert_eq!(stale(), 2);
    let lettered: HashSet<String> = dead_letters(direct.as_ref(), &topo)
        .await
        .iter()
        .map(|l| {
            assert_eq!(l.reason, DeadLetterReason::StaleEpoch);
            l.envelope.as_ref().unwrap().event_id.to_string()
        })
        .collect();
    let expected: HashSet<String> = [other_key.event_id, unkeyed.event_id]
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(lettered, expected);
}
