//! The claim an event is published under is checked before every attempt, retries included,
//! and an acknowledgement that comes after the claim ended is not reported as `Acked`.

use crate::fixtures;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bus_client::{Delivered, PublishError, Publisher};
use cluster_core::event::{BusMessage, EventBus};
use cluster_core::ids::{FencingToken, PartitionId};
use coord_client::mono_now;
use fixtures::faulty_bus::{Fault, FaultyBus, unavailable};
use fixtures::*;
use testkit::{NatsOptions, NatsServer};

/// A publisher over `bus`, quick retries, 3 attempts.
fn publisher(
    bus: Arc<dyn EventBus>,
    files: &Files,
    subjects: &cluster_core::event::Subjects,
) -> Publisher {
    Publisher::start(
        bus,
        publisher_config("node-a", subjects, &files.path("outbox.db")),
        registry(),
        TestMetrics::new().publisher(),
    )
    .unwrap()
}

/// Decides each publish by its attempt number (1-based) with `fault`.
fn by_attempt(
    fault: impl Fn(usize) -> Fault + Send + Sync + 'static,
) -> impl Fn(&BusMessage) -> Fault {
    let attempts = AtomicUsize::new(0);
    move |_| fault(attempts.fetch_add(1, Ordering::SeqCst) + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_the_claim_deadline_is_refused_not_acked() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let nats = NatsServer::start_with(NatsOptions::durable())
        .await
        .unwrap();
    let files = Files::new();
    let subjects = subjects();
    let real = bus(&nats.url()).await;
    topology(&subjects).provision(real.as_ref()).await.unwrap();
    let faulty = Arc::new(FaultyBus::new(
        real.clone(),
        by_attempt(|n| {
            if n == 1 {
                Fault::DelayThenFail(Duration::from_secs(1), unavailable())
            } else {
                Fault::Pass
            }
        }),
    ));
    let publisher = publisher(faulty.clone(), &files, &subjects);
    let mut e = event(2, "k", 5, 0);
    e.valid_until = mono_now() + Duration::from_millis(500);
    let result = publisher.publish(e).await;
    assert!(
        matches!(
            result,
            Err(PublishError::ClaimExpired {
                shard: PartitionId(2)
            })
        ),
        "{result:?}"
    );
    assert!(
        faulty.acked_payloads().is_empty(),
        "published after its claim"
    );
    assert_eq!(publisher.status().outbox_depth, 0, "queued after its claim");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_that_would_come_after_the_claim_deadline_is_not_acked() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let nats = NatsServer::start_with(NatsOptions::durable())
        .await
        .unwrap();
    let files = Files::new();
    let subjects = subjects();
    let real = bus(&nats.url()).await;
    topology(&subjects).provision(real.as_ref()).await.unwrap();
    let faulty = Arc::new(FaultyBus::new(real.clone(), |_| {
        Fault::Delay(Duration::from_secs(1))
    }));
    let publisher = publisher(faulty.clone(), &files, &subjects);
    let mut e = event(2, "k", 5, 0);
    e.valid_until = mono_now() + Duration::from_millis(500);
    let result = publisher.publish(e).await;
    assert!(
        matches!(
            result,
            Err(PublishError::ClaimExpired {
                shard: PartitionId(2)
            })
        ),
        "{result:?}"
    );
    assert_eq!(publisher.status().outbox_depth, 0, "queued after its claim");
}

/// After `on_release` of a handoff the runtime ends the claim: a task of the old owner still
/// publishing with its token is refused, the one caught in a retry included, and `end_claim`
/// returns only once that one has settled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_claim_is_ended_the_old_owners_publishes_are_refused() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let nats = NatsServer::start_with(NatsOptions::durable())
        .await
        .unwrap();
    let files = Files::new();
    let subjects = subjects();
    let real = bus(&nats.url()).await;
    topology(&subjects).provision(real.as_ref()).await.unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let faulty = {
        let started = started.clone();
        Arc::new(FaultyBus::new(real.clone(), move |_| {
            if started.fetch_add(1, Ordering::SeqCst) == 0 {
                Fault::DelayThenFail(Duration::from_secs(1), unavailable())
            } else {
                Fault::Pass
            }
        }))
    };
    let publisher = publisher(faulty.clone(), &files, &subjects);
    let in_retry = {
        let publisher = publisher.clone();
        tokio::spawn(async move { publisher.publish(event(2, "k", 5, 0)).await })
    };
    eventually(
        "the first attempt under way",
        Duration::from_secs(10),
        || started.load(Ordering::SeqCst) == 1,
    )
    .await;
    publisher
        .end_claim(
            PartitionId(2),
            FencingToken::new(5),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(
        faulty.finished.load(Ordering::SeqCst),
        1,
        "end_claim returned while a publish of the shard was in flight"
    );
    let result = in_retry.await.unwrap();
    assert!(
        matches!(
            result,
            Err(PublishError::ClaimExpired {
                shard: PartitionId(2)
            })
        ),
        "{result:?}"
    );
    let later = publisher.publish(event(2, "k2", 5, 1)).await;
    assert!(
        matches!(
            later,
            Err(PublishError::ClaimExpired {
                shard: PartitionId(2)
            })
        ),
        "{later:?}"
    );
    assert!(
        faulty.acked_payloads().is_empty(),
        "the old owner published after its claim ended"
    );
    assert_eq!(publisher.status().outbox_depth, 0);
    // A newer claim of the shard, and other shards, publish as usual.
    let newer = publisher.publish(event(2, "k", 6, 2)).await;
    assert!(
        matches!(newer, Ok(r) if matches!(r.delivered, Delivered::Acked { .. })),
        "{newer:?}"
    );
    let other = publisher.publish(event(3, "k3", 5, 3)).await;
    assert!(
        matches!(other, Ok(r) if matches!(r.delivered, Delivered::Acked { .. })),
        "{other:?}"
    );
    assert_eq!(faulty.acked_payloads().len(), 2);
}
