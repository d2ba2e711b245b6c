//! Deliveries of an in-memory durable consumer.
// Redelivery after an ack wait is a timer on tokio's clock, which it sleeps on and paused-time tests drive.
#![allow(clippy::disallowed_methods)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cluster_core::event::BusError;
use cluster_core::event::BusOperation;
use cluster_core::event::Delivery;
use cluster_core::event::DeliveryAck;
use cluster_core::event::DeliveryStream;
use tokio::time::Instant;

use crate::mem_event_bus::Shared;
use crate::mem_event_bus::Unreachable;
use crate::mem_stream::Ready;

pub(crate) struct MemDeliveryStream {
    pub(crate) shared: Arc<Shared>,
    pub(crate) stream: String,
    pub(crate) consumer: String,
    /// This subscriber's identity, for exclusive consumers' pins.
    pub(crate) holder: u64,
}

/// How long a waiting subscriber sleeps at most: it pulls again, which keeps its pin.
const MAX_WAIT: Duration = Duration::from_millis(250);

impl Drop for MemDeliveryStream {
    fn drop(&mut self) {
        // A dropped subscriber releases its pin at once.
        let mut state = self.shared.lock();
        if let Some(consumer) = state
            .get_mut(&self.stream)
            .and_then(|s| s.consumers.get_mut(&self.consumer))
            && consumer.pin.is_some_and(|p| p.holder == self.holder)
        {
            consumer.pin = None;
        }
        drop(state);
        self.shared.changed.notify_waiters();
    }
}

#[async_trait]
impl DeliveryStream for MemDeliveryStream {
    async fn next(&mut self) -> Option<Result<Delivery, BusError>> {
        loop {
            let notified = self.shared.changed.notified();
            let ready = if self.shared.is_down() {
                Ready::WaitUntil(None)
            } else {
                let mut state = self.shared.lock();
                match state.get_mut(&self.stream) {
                    Some(stream) => stream.next_for(&self.consumer, self.holder, Instant::now()),
                    None => return Some(Err(BusError::Closed)),
                }
            };
            match ready {
                Ready::Deliver {
                    message,
                    delivered,
                    lag,
                } => {
                    return Some(Ok(Delivery {
                        subject: message.subject,
                        payload: message.payload,
                        stream_sequence: message.sequence,
                        delivered,
                        pending: lag,
                        ack: Box::new(MemAck {
                            shared: self.shared.clone(),
                            stream: self.stream.clone(),
                            consumer: self.consumer.clone(),
                            sequence: message.sequence,
                        }),
                    }));
                }
                Ready::WaitUntil(Some(at)) => {
                    let at = at.min(Instant::now() + MAX_WAIT);
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                Ready::WaitUntil(None) => {
                    // Also wake now and then: `set_down(false)` notifies, but be robust.
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep(MAX_WAIT) => {}
                    }
                }
            }
        }
    }
}

struct MemAck {
    shared: Arc<Shared>,
    stream: String,
    consumer: String,
    sequence: u64,
}

enum Settle {
    Done,
    RetryAt(Instant),
    Extend,
}

impl MemAck {
    fn settle(&self, how: Settle) -> Result<(), BusError> {
        if self.shared.is_down() {
            return Err(BusError::unavailable(BusOperation::Ack, Unreachable));
        }
        let mut state = self.shared.lock();
        let consumer = state
            .get_mut(&self.stream)
            .and_then(|s| s.consumers.get_mut(&self.consumer));
        if let Some(consumer) = consumer {
            match how {
                Settle::Done => {
                    consumer.pending.remove(&self.sequence);
                }
                Settle::RetryAt(at) => {
                    if let Some(p) = consumer.pending.get_mut(&self.sequence) {
                        p.due = at;
                    }
                }
                Settle::Extend => {
                    let ack_wait = consumer.spec.ack_wait;
                    if let Some(p) = consumer.pending.get_mut(&self.sequence) {
                        p.due = Instant::now() + ack_wait;
                    }
                }
            }
        }
        drop(state);
        self.shared.changed.notify_waiters();
        Ok(())
    }
}

#[async_trait]
impl DeliveryAck for MemAck {
    async fn ack(&self) -> Result<(), BusError> {
        self.settle(Settle::Done)
    }

    async fn nak(&self, delay: Duration) -> Result<(), BusError> {
        self.settle(Settle::RetryAt(Instant::now() + delay))
    }

    async fn term(&self) -> Result<(), BusError> {
        self.settle(Settle::Done)
    }

    async fn in_progress(&self) -> Result<(), BusError> {
        self.settle(Settle::Extend)
    }
}
