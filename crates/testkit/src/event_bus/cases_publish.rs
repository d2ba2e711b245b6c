//! Publishing: round trip, dedup, order, filters, limits, specs.

use cluster_core::error::Retryable;
use std::time::Duration;

use cluster_core::event::BusError;
use cluster_core::event::StreamSpec;
use cluster_core::event::SubscriptionSpec;

use super::harness::{BusHarness, expect_nothing, fixture, message, recv};

const WAIT: Duration = Duration::from_secs(10);

/// A published message arrives intact, with the sequence its ack named, delivered once.
pub async fn publish_then_consume_round_trip<H: BusHarness>(h: &mut H) {
    let bus = h.bus().await;
    let f = fixture(bus.as_ref()).await;
    let subject = f.subject("orders");
    let ack = {
        tracing::info!("publish resolves with a stream sequence");
        let ack = bus
            .publish(message(&subject, "m-1", "hello"))
            .await
            .unwrap();
        assert_eq!(ack.stream, f.stream.name);
        assert!(!ack.duplicate);
        ack
    };
    {
        tracing::info!("a durable consumer receives it intact");
        let spec = SubscriptionSpec::new(&f.stream.name, "reader", vec![]);
        let mut deliveries = bus.subscribe(&spec).await.unwrap();
        let d = recv(&mut deliveries, "the published message", WAIT).await;
        assert_eq!(d.subject, subject.as_str());
        assert_eq!(d.payload, b"hello");
        assert_eq!(d.stream_sequence, ack.sequence);
        assert_eq!(d.delivered, 1);
        d.ack.ack().await.unwrap();
        expect_nothing(&mut deliveries, "acked once", Duration::from_millis(500)).await;
    }
}

/// A message id seen within the duplicate window is not stored again.
pub async fn duplicate_message_id_is_stored_once<H: BusHarness>(h: &mut H) {
    let bus = h.bus().await;
    let f = fixture(bus.as_ref()).await;
    let subject = f.subject("orders");
    let first = bus
        .publish(message(&subject, "same-id", "one"))
        .await
        .unwrap();
    {
        tracing::info!("re-sending the id is acknowledged as a duplicate of the first");
        let again = bus
            .publish(message(&subject, "same-id", "two"))
            .await
            .unwrap();
        assert!(again.duplicate);
        assert_eq!(again.sequence, first.sequence);
    }
    {
        tracing::info!("only the first is delivered");
        let other = bus
            .publish(message(&subject, "other-id", "three"))
            .await
            .unwrap();
        let spec = SubscriptionSpec::new(&f.stream.name, "reader", vec![]);
        let mut deliveries = bus.subscribe(&spec).await.unwrap();
        let a = recv(&mut deliveries, "first", WAIT).await;
        let b = recv(&mut deliveries, "next distinct", WAIT).await;
        assert_eq!(a.payload, b"one");
        assert_eq!(b.stream_sequence, other.sequence);
        assert_eq!(b.payload, b"three");
    }
}

/// Messages of each subject arrive in the order each sequential publisher sent them, however
/// the publishers interleave.
pub async fn per_subject_order_under_concurrent_publishers<H: BusHarness>(h: &mut H) {
    let bus = h.bus().await;
    let f = fixture(bus.as_ref()).await;
    const PUBLISHERS: usize = 4;
    const EACH: usize = 50;
    {
        tracing::info!("{PUBLISHERS} publishers, {EACH} messages each, concurrently");
        let tasks: Vec<_> = (0..PUBLISHERS)
            .map(|p| {
                let bus = bus.clone();
                let subject = f.subject(&format!("k{p}"));
                tokio::spawn(async move {
                    for i in 0..EACH {
                        let m = message(&subject, &format!("p{p}-{i}"), &i.to_string());
                        bus.publish(m).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    }
    {
        tracing::info!("each subject's messages arrive in order");
        let spec = SubscriptionSpec::new(&f.stream.name, "reader", vec![]);
        let mut deliveries = bus.subscribe(&spec).await.unwrap();
        let mut next = [0usize; PUBLISHERS];
        let mut last_seq = 0;
        for _ in 0..PUBLISHERS * EACH {
            let d = recv(&mut deliveries, "all messages", WAIT).await;
            assert!(d.stream_sequence > last_seq, "stream order");
            last_seq = d.stream_sequence;
            let p: usize = d.subject.rsplit('.').next().unwrap()[1..].parse().unwrap();
            let i: usize = String::from_utf8(d.payload.clone())
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(i, next[p], "publisher {p} out of order");
            next[p] += 1;
            d.ack.ack().await.unwrap();
        }
    }
}

/// A consumer receives only the subjects its filters match.
pub async fn filters_select_subjects<H: BusHarness>(h: &mut H) {
    let bus = h.bus().await;
    let f = fixture(bus.as_ref()).await;
    for (i, name) in ["a", "b", "a", "c"].iter().enumerate() {
        bus.publish(message(&f.subject(name), &format!("m{i}"), name))
            .await
            .unwrap();
    }
    tracing::info!("a consumer of subject a sees only a");
    let spec = SubscriptionSpec::new(&f.stream.name, "only-a", vec![f.subject("a").into()]);
    let mut deliveries = bus.subscribe(&spec).await.unwrap();
    for _ in 0..2 {
        let d = recv(&mut deliveries, "subject a", WAIT).await;
        assert_eq!(d.payload, b"a");
        d.ack.ack().await.unwrap();
    }
    expect_nothing(
        &mut deliveries,
        "other subjects",
        Duration::from_millis(500),
    )
    .await;
}

/// A message larger than the bus accepts is refused with both sizes, not retried.
pub async fn oversized_message_is_refused<H: BusHarness>(h: &mut H) {
    let bus = h.bus().await;
    let f = fixture(bus.as_ref()).await;
    let max = bus.max_payload();
    let big = "x".repeat(max + 1);
    let err = bus
        .publish(message(&f.subject("big"), "big", &big))
        .await
        .unwrap_err();
    assert!(
        matches!(err, BusError::PayloadTooLarge { size, max: m } if size == max + 1 && m == max),
        "{err:?}"
    );
    assert!(!err.is_retryable());
}

/// Specs with bad names or limits are refused before anything is created.
pub async fn invalid_specs_are_refused<H: BusHarness>(h: &mut H) {
    let bus = h.bus().await;
    let f = fixture(bus.as_ref()).await;
    let bad_stream = StreamSpec::new("has.dot", vec![f.subjects.all_audit()]);
    assert!(matches!(
        bus.ensure_stream(&bad_stream).await,
        Err(BusError::InvalidSpec {
            field: "stream.name",
            ..
        })
    ));
    let no_subjects = StreamSpec::new("EMPTY", vec![]);
    assert!(matches!(
        bus.ensure_stream(&no_subjects).await,
        Err(BusError::InvalidSpec {
            field: "stream.subjects",
            ..
        })
    ));
    let mut spec = SubscriptionSpec::new(&f.stream.name, "bad name", vec![]);
    assert!(matches!(
        bus.subscribe(&spec).await.err(),
        Some(BusError::InvalidSpec {
            field: "subscription.durable",
            ..
        })
    ));
    spec.durable = "ok".into();
    spec.max_deliver = 1;
    assert!(matches!(
        bus.subscribe(&spec).await.err(),
        Some(BusError::InvalidSpec {
            field: "subscription.max_deliver",
            ..
        })
    ));
}
