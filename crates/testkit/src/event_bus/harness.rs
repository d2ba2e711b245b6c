//! What an adapter provides to run the suite, and the helpers the cases share.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use cluster_core::event::BusMessage;
use cluster_core::event::Delivery;
use cluster_core::event::DeliveryStream;
use cluster_core::event::EventBus;
use cluster_core::event::StreamSpec;
use cluster_core::event::Subject;
use cluster_core::event::SubjectToken;
use cluster_core::event::Subjects;

/// A fresh bus under test.
#[async_trait]
pub trait BusHarness: Send + Sync {
    /// A new client of the bus.
    async fn bus(&self) -> Arc<dyn EventBus>;

    /// Makes the bus unreachable to every client (stops the server), keeping its data.
    async fn stop_bus(&mut self);

    /// Brings the bus back with its data.
    async fn start_bus(&mut self);

    /// The adapter's per-call deadline: a call to an unreachable bus fails within it.
    fn call_timeout(&self) -> Duration;
}

/// A stream and subject prefix no other case uses.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// The subject builder for this case.
    pub subjects: Subjects,
    /// The stream storing every subject under the prefix.
    pub stream: StreamSpec,
}

impl Fixture {
    /// A subject under the fixture's prefix: `{prefix}.audit.{name}`.
    pub fn subject(&self, name: &str) -> Subject {
        let token = SubjectToken::new(name).unwrap_or_else(|e| panic!("subject {name:?}: {e}"));
        self.subjects.audit(&token)
    }
}

/// A fresh fixture; its stream is created on `bus`.
pub async fn fixture(bus: &dyn EventBus) -> Fixture {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let prefix = format!("ct{}x{n}", std::process::id());
    let subjects = Subjects::new(prefix.clone()).unwrap_or_else(|e| panic!("{e}"));
    let stream = StreamSpec::new(
        format!("CT_{}", prefix.to_uppercase()),
        vec![subjects.all_audit()],
    );
    bus.ensure_stream(&stream)
        .await
        .unwrap_or_else(|e| panic!("creating stream {}: {e}", stream.name));
    Fixture { subjects, stream }
}

/// A message on `subject` with id and payload `body`.
pub fn message(subject: &Subject, id: &str, body: &str) -> BusMessage {
    BusMessage {
        subject: subject.clone(),
        message_id: id.to_owned(),
        payload: body.as_bytes().to_vec(),
    }
}

/// The next delivery; panics naming `what` if none comes within `limit` (a hang bound).
pub async fn recv(stream: &mut Box<dyn DeliveryStream>, what: &str, limit: Duration) -> Delivery {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, stream.next()).await {
            Err(_) => panic!("no delivery within {limit:?}: {what}"),
            Ok(None) => panic!("delivery stream closed: {what}"),
            Ok(Some(Ok(d))) => return d,
            // Transient receive errors are the adapter's to recover from; keep waiting.
            Ok(Some(Err(e))) => tracing::debug!(error = %e, "receive error while waiting"),
        }
    }
}

/// Asserts nothing is delivered for `wait`.
pub async fn expect_nothing(stream: &mut Box<dyn DeliveryStream>, what: &str, wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return;
        }
        match tokio::time::timeout(left, stream.next()).await {
            Err(_) | Ok(None) => return,
            Ok(Some(Ok(d))) => panic!("{what}: unexpected delivery {d:?}"),
            Ok(Some(Err(_))) => {}
        }
    }
}
