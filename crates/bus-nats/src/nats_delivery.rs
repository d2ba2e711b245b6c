//! Deliveries of a JetStream pull consumer, as the port's `DeliveryStream`.

use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::PullConsumer;
use async_trait::async_trait;
use cluster_core::event::BusError;
use cluster_core::event::BusOperation;
use cluster_core::event::Delivery;
use cluster_core::event::DeliveryAck;
use cluster_core::event::DeliveryStream;
use futures::StreamExt;

/// The priority group of exclusive consumers.
pub(crate) const PRIORITY_GROUP: &str = "owner";

/// A pull consumer's messages; the pull is reopened after any error.
pub(crate) struct NatsDeliveryStream {
    consumer: PullConsumer,
    batch: usize,
    heartbeat: Duration,
    expires: Duration,
    exclusive: bool,
    messages: Option<jetstream::consumer::pull::Stream>,
}

impl NatsDeliveryStream {
    pub(crate) fn new(
        consumer: PullConsumer,
        max_ack_pending: u32,
        call_timeout: Duration,
        exclusive: Option<Duration>,
    ) -> Self {
        let heartbeat = call_timeout.clamp(Duration::from_millis(500), Duration::from_secs(5));
        // A pinned client keeps its pin only while it pulls: expire pulls well within the pin
        // timeout.
        let expires = match exclusive {
            Some(pin) => (pin / 3).clamp(Duration::from_millis(1000), heartbeat * 4),
            None => heartbeat * 4,
        };
        NatsDeliveryStream {
            consumer,
            batch: usize::try_from(max_ack_pending.clamp(1, 256)).unwrap_or(256),
            heartbeat: heartbeat.min(expires / 2),
            expires,
            exclusive: exclusive.is_some(),
            messages: None,
        }
    }
}

#[async_trait]
impl DeliveryStream for NatsDeliveryStream {
    async fn next(&mut self) -> Option<Result<Delivery, BusError>> {
        let messages = match &mut self.messages {
            Some(m) => m,
            None => {
                let mut builder = self
                    .consumer
                    .stream()
                    .max_messages_per_batch(self.batch)
                    .heartbeat(self.heartbeat)
                    .expires(self.expires);
                if self.exclusive {
                    builder = builder.group(PRIORITY_GROUP);
                }
                let opened = builder.messages().await;
                match opened {
                    Ok(m) => self.messages.insert(m),
                    Err(e) => return Some(Err(BusError::unavailable(BusOperation::Receive, e))),
                }
            }
        };
        match messages.next().await {
            Some(Ok(message)) => Some(into_delivery(message)),
            Some(Err(e)) => {
                self.messages = None;
                Some(Err(BusError::unavailable(BusOperation::Receive, e)))
            }
            None => {
                self.messages = None;
                Some(Err(BusError::Closed))
            }
        }
    }
}

fn into_delivery(message: jetstream::Message) -> Result<Delivery, BusError> {
    let (stream_sequence, delivered, pending) = match message.info() {
        Ok(info) => (
            info.stream_sequence,
            u32::try_from(info.delivered.max(1)).unwrap_or(u32::MAX),
            info.pending,
        ),
        Err(e) => {
            return Err(BusError::Unavailable {
                operation: BusOperation::Receive,
                source: std::sync::Arc::from(e),
            });
        }
    };
    let (message, acker) = message.split();
    Ok(Delivery {
        subject: message.subject.to_string(),
        payload: message.payload.to_vec(),
        stream_sequence,
        delivered,
        pending,
        ack: Box::new(NatsAck(acker)),
    })
}

struct NatsAck(jetstream::message::Acker);

impl NatsAck {
    async fn send(&self, kind: AckKind) -> Result<(), BusError> {
        self.0
            .ack_with(kind)
            .await
            .map_err(|e| BusError::Unavailable {
                operation: BusOperation::Ack,
                source: std::sync::Arc::from(e),
            })
    }
}

#[async_trait]
impl DeliveryAck for NatsAck {
    async fn ack(&self) -> Result<(), BusError> {
        self.send(AckKind::Ack).await
    }

    async fn nak(&self, delay: Duration) -> Result<(), BusError> {
        self.send(AckKind::Nak(Some(delay))).await
    }

    async fn term(&self) -> Result<(), BusError> {
        self.send(AckKind::Term).await
    }

    async fn in_progress(&self) -> Result<(), BusError> {
        self.send(AckKind::Progress).await
    }
}
