//! A bus that is down gives `Unavailable` within the call timeout, and keeps what it acked.

use cluster_core::error::Retryable;
use std::time::Duration;

use cluster_core::event::SubscriptionSpec;

use super::harness::{BusHarness, fixture, message, recv};

/// Publishing to a stopped bus fails retryably (never hangs); after it comes back, messages
/// acknowledged before the outage are all there and publishing works again. A publish that
/// failed as unavailable has an unknown outcome (it may have been stored): callers re-send it
/// with the same message id.
pub async fn bus_down_gives_unavailable_and_keeps_acked_messages<H: BusHarness>(h: &mut H) {
    let bus = h.bus().await;
    let f = fixture(bus.as_ref()).await;
    for i in 0..5 {
        bus.publish(message(&f.subject("x"), &format!("m{i}"), &i.to_string()))
            .await
            .unwrap();
    }
    h.stop_bus().await;
    {
        tracing::info!("bus down: publish fails as unavailable");
        let limit = h.call_timeout() * 3 + Duration::from_secs(5);
        match tokio::time::timeout(limit, bus.publish(message(&f.subject("x"), "down", "d"))).await
        {
            Err(_) => panic!("publish hung while the bus was down"),
            Ok(Ok(ack)) => panic!("publish succeeded while the bus was down: {ack:?}"),
            Ok(Err(e)) => assert!(e.is_retryable(), "{e:?} is not retryable"),
        }
    }
    h.start_bus().await;
    {
        tracing::info!("bus back: the same client publishes again");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            match bus.publish(message(&f.subject("x"), "after", "5")).await {
                Ok(_) => break,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "not yet");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("bus did not come back: {e}"),
            }
        }
    }
    {
        tracing::info!("everything acknowledged is delivered, in order");
        let spec = SubscriptionSpec::new(&f.stream.name, "after-outage", vec![]);
        let mut deliveries = bus.subscribe(&spec).await.unwrap();
        let mut got = Vec::new();
        while got.last().map(String::as_str) != Some("5") {
            let d = recv(
                &mut deliveries,
                "acked before and after",
                Duration::from_secs(10),
            )
            .await;
            got.push(String::from_utf8_lossy(&d.payload).into_owned());
            d.ack.ack().await.unwrap();
        }
        // The failed publish's outcome is unknown: the client may have sent it on reconnect.
        got.retain(|p| p != "d");
        assert_eq!(got, ["0", "1", "2", "3", "4", "5"]);
    }
}
