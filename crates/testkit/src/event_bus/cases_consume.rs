//! Consuming: redelivery, termination, ack wait, durable resume.

use std::time::Duration;

use cluster_core::event::SubscriptionSpec;

use super::harness::{BusHarness, expect_nothing, fixture, message, recv};

const WAIT: Duration = Duration::from_secs(10);

/// A nak'ed delivery comes again after its delay, counted.
pub async fn nak_redelivers_with_a_higher_count<H: BusHarness>(h: &mut H) {
    let bus = h.bus().await;
    let f = fixture(bus.as_ref()).await;
    bus.publish(message(&f.subject("x"), "m", "v"))
        .await
        .unwrap();
    let spec = SubscriptionSpec::new(&f.stream.name, "reader", vec![]);
    let mut deliveries = bus.subscribe(&spec).await.unwrap();
    let first = recv(&mut deliveries, "first delivery", WAIT).await;
    assert_eq!(first.delivered, 1);
    tracing::info!("nak with a delay");
    first.ack.nak(Duration::from_millis(300)).await.unwrap();
    let second = recv(&mut deliveries, "redelivery", WAIT).await;
    assert_eq!(second.stream_sequence, first.stream_sequence);
    assert_eq!(second.delivered, 2);
    second.ack.ack().await.unwrap();
    expect_nothing(&mut deliveries, "acked", Duration::from_millis(500)).await;
}

/// A terminated delivery is never delivered again, and later messages still flow.
pub async fn term_stops_redelivery<H: BusHarness>(h: &mut H) {
    let bus = h.bus().await;
    let f = fixture(bus.as_ref()).await;
    bus.publish(message(&f.subject("x"), "m1", "poison"))
        .await
        .unwrap();
    let mut spec = SubscriptionSpec::new(&f.stream.name, "reader", vec![]);
    spec.ack_wait = Duration::from_secs(1);
    let mut deliveries = bus.subscribe(&spec).await.unwrap();
    let d = recv(&mut deliveries, "poison", WAIT).await;
    d.ack.term().await.unwrap();
    bus.publish(message(&f.subject("x"), "m2", "next"))
        .await
        .unwrap();
    let next = recv(&mut deliveries, "the next message", WAIT).await;
    assert_eq!(next.payload, b"next");
    next.ack.ack().await.unwrap();
    expect_nothing(
        &mut deliveries,
        "terminated stays gone",
        Duration::from_millis(1500),
    )
    .await;
}

/// A delivery neither acked nor nak'ed comes back once its ack wait has passed.
pub async fn unacked_delivery_comes_back_after_ack_wait<H: BusHarness>(h: &mut H) {
    let bus = h.bus().await;
    let f = fixture(bus.as_ref()).await;
    bus.publish(message(&f.subject("x"), "m", "v"))
        .await
        .unwrap();
    let mut spec = SubscriptionSpec::new(&f.stream.name, "reader", vec![]);
    spec.ack_wait = Duration::from_secs(1);
    let mut deliveries = bus.subscribe(&spec).await.unwrap();
    let first = recv(&mut deliveries, "first", WAIT).await;
    tracing::info!("leave it unacknowledged");
    drop(first);
    let again = recv(&mut deliveries, "after ack wait", WAIT).await;
    assert_eq!(again.delivered, 2);
    again.ack.ack().await.unwrap();
}

/// Resubscribing with the same durable name resumes after the last acknowledged message.
pub async fn durable_consumer_resumes_after_its_last_ack<H: BusHarness>(h: &mut H) {
    let bus = h.bus().await;
    let f = fixture(bus.as_ref()).await;
    for i in 0..6 {
        bus.publish(message(&f.subject("x"), &format!("m{i}"), &i.to_string()))
            .await
            .unwrap();
    }
    let mut spec = SubscriptionSpec::new(&f.stream.name, "durable", vec![]);
    // Deliveries prefetched by the first client come back to the next after the ack wait.
    spec.ack_wait = Duration::from_secs(1);
    {
        tracing::info!("ack the first three, then go away");
        let mut deliveries = bus.subscribe(&spec).await.unwrap();
        for i in 0..3 {
            let d = recv(&mut deliveries, "first three", WAIT).await;
            assert_eq!(d.payload, i.to_string().as_bytes());
            d.ack.ack().await.unwrap();
        }
    }
    {
        tracing::info!("a new client with the same name continues at the fourth");
        let other = h.bus().await;
        let mut deliveries = other.subscribe(&spec).await.unwrap();
        let d = recv(&mut deliveries, "the fourth", WAIT).await;
        assert_eq!(d.payload, b"3");
    }
}

/// The position shows what is acknowledged and what was delivered; `read` returns stored
/// messages by sequence, and nothing past the end.
pub async fn position_and_read_show_outstanding_deliveries<H: BusHarness>(h: &mut H) {
    let bus = h.bus().await;
    let f = fixture(bus.as_ref()).await;
    let mut acks = Vec::new();
    for i in 0..4 {
        let ack = bus
            .publish(message(&f.subject("x"), &format!("m{i}"), &i.to_string()))
            .await
            .unwrap();
        acks.push(ack.sequence);
    }
    let spec = SubscriptionSpec::new(&f.stream.name, "reader", vec![]);
    let mut deliveries = bus.subscribe(&spec).await.unwrap();
    {
        tracing::info!("three delivered, only the first acknowledged");
        let first = recv(&mut deliveries, "first", WAIT).await;
        recv(&mut deliveries, "second", WAIT).await;
        recv(&mut deliveries, "third", WAIT).await;
        first.ack.ack().await.unwrap();
    }
    {
        tracing::info!("the position: ack floor at the first, delivered at least the third");
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let p = bus
                .consumer_position(&f.stream.name, "reader")
                .await
                .unwrap();
            if p.ack_floor == acks[0] && p.delivered >= acks[2] {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "position never showed it: {p:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    {
        tracing::info!("read by sequence");
        let second = bus.read(&f.stream.name, acks[1]).await.unwrap().unwrap();
        assert_eq!(second.payload, b"1");
        assert_eq!(second.subject, f.subject("x").as_str());
        assert_eq!(second.sequence, acks[1]);
        assert!(
            bus.read(&f.stream.name, acks[3] + 100)
                .await
                .unwrap()
                .is_none()
        );
    }
}

/// An exclusive consumer delivers to one subscriber at a time; a standby takes over once the
/// holder is gone.
pub async fn exclusive_consumer_delivers_to_one_subscriber_at_a_time<H: BusHarness>(h: &mut H) {
    let bus = h.bus().await;
    let other = h.bus().await;
    let f = fixture(bus.as_ref()).await;
    let mut spec = SubscriptionSpec::new(&f.stream.name, "owner", vec![]);
    spec.exclusive = Some(Duration::from_secs(2));
    spec.ack_wait = Duration::from_secs(1);
    let mut holder = bus.subscribe(&spec).await.unwrap();
    bus.publish(message(&f.subject("x"), "m0", "0"))
        .await
        .unwrap();
    {
        tracing::info!("the first subscriber takes the pin");
        let d = recv(&mut holder, "first", WAIT).await;
        d.ack.ack().await.unwrap();
    }
    // The standby pulls all along; what it gets comes out of this channel.
    let (tx, mut standby) = tokio::sync::mpsc::unbounded_channel();
    let standby_task = {
        let mut deliveries = other.subscribe(&spec).await.unwrap();
        tokio::spawn(async move {
            while let Some(next) = deliveries.next().await {
                if let Ok(d) = next {
                    let payload = d.payload.clone();
                    let _ = d.ack.ack().await;
                    if tx.send(payload).is_err() {
                        return;
                    }
                }
            }
        })
    };
    {
        tracing::info!("while the holder pulls, the standby gets nothing");
        for i in 1..4 {
            bus.publish(message(&f.subject("x"), &format!("m{i}"), &i.to_string()))
                .await
                .unwrap();
            let d = recv(&mut holder, "holder keeps receiving", WAIT).await;
            assert_eq!(d.payload, i.to_string().as_bytes());
            d.ack.ack().await.unwrap();
        }
        assert!(
            standby.try_recv().is_err(),
            "the standby received while pinned elsewhere"
        );
    }
    {
        tracing::info!("the holder goes away: the standby takes over");
        drop(holder);
        bus.publish(message(&f.subject("x"), "m4", "4"))
            .await
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(20), standby.recv())
            .await
            .expect("standby never took over");
        assert_eq!(got.as_deref(), Some(&b"4"[..]));
    }
    standby_task.abort();
}

/// `read_next_matching` finds the next message of a filter within a range, however many
/// messages of other subjects lie between (a consumer's catch-up over a shared stream), and
/// answers `None` when the range holds no match.
pub async fn read_next_matching_skips_other_subjects<H: BusHarness>(h: &mut H) {
    let bus = h.bus().await;
    let f = fixture(bus.as_ref()).await;
    let publish = |name: &'static str, id: String| {
        let bus = bus.clone();
        let subject = f.subject(name);
        async move {
            bus.publish(message(&subject, &id, name))
                .await
                .unwrap()
                .sequence
        }
    };
    let first_a = publish("a", "a0".into()).await;
    let mut last_b = 0;
    for i in 0..300 {
        last_b = publish("b", format!("b{i}")).await;
    }
    let second_a = publish("a", "a1".into()).await;
    let only_a: cluster_core::event::SubjectFilter = f.subject("a").into();

    tracing::info!("the first match at or after from");
    let m = bus
        .read_next_matching(&f.stream.name, first_a, second_a, &only_a)
        .await
        .unwrap()
        .expect("the first a");
    assert_eq!((m.sequence, m.payload.as_slice()), (first_a, &b"a"[..]));

    tracing::info!("300 other messages skipped to the next match");
    let m = bus
        .read_next_matching(&f.stream.name, first_a + 1, second_a, &only_a)
        .await
        .unwrap()
        .expect("the second a");
    assert_eq!(m.sequence, second_a);
    assert_eq!(m.subject, f.subject("a").as_str());

    tracing::info!("a range with no match, and a range past the end");
    assert!(
        bus.read_next_matching(&f.stream.name, first_a + 1, last_b, &only_a)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        bus.read_next_matching(&f.stream.name, second_a + 1, second_a + 50, &only_a)
            .await
            .unwrap()
            .is_none()
    );
}
