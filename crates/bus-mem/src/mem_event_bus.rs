//! `MemEventBus`: the EventBus port in process memory.
// Redelivery after an ack wait is a timer on tokio's clock, which it sleeps on and paused-time tests drive.
#![allow(clippy::disallowed_methods)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::MutexGuard;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use cluster_core::event::BusAck;
use cluster_core::event::BusError;
use cluster_core::event::BusMessage;
use cluster_core::event::BusOperation;
use cluster_core::event::ConsumerPosition;
use cluster_core::event::DeliveryStream;
use cluster_core::event::EventBus;
use cluster_core::event::StoredMessage;
use cluster_core::event::StreamSpec;
use cluster_core::event::SubscriptionSpec;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::mem_delivery::MemDeliveryStream;
use crate::mem_stream::ConsumerState;
use crate::mem_stream::MemStream;

/// The largest message accepted, as nats-server's default `max_payload`.
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;

/// The bus is switched off with [`MemEventBus::set_down`].
#[derive(Debug, thiserror::Error)]
#[error("in-memory bus is down")]
pub(crate) struct Unreachable;

pub(crate) struct Shared {
    streams: Mutex<HashMap<String, MemStream>>,
    pub(crate) changed: Notify,
    down: AtomicBool,
    max_payload: usize,
    next_holder: AtomicU64,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, HashMap<String, MemStream>> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn is_down(&self) -> bool {
        self.down.load(Ordering::SeqCst)
    }
}

/// An in-process bus. Clones are clients of the same bus.
#[derive(Clone)]
pub struct MemEventBus {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MemEventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemEventBus")
            .field("streams", &self.shared.lock().len())
            .field("down", &self.shared.is_down())
            .finish()
    }
}

impl Default for MemEventBus {
    fn default() -> Self {
        MemEventBus::new()
    }
}

impl MemEventBus {
    /// An empty bus accepting messages up to [`DEFAULT_MAX_PAYLOAD`] bytes.
    pub fn new() -> MemEventBus {
        MemEventBus::with_max_payload(DEFAULT_MAX_PAYLOAD)
    }

    /// An empty bus accepting messages up to `max_payload` bytes.
    pub fn with_max_payload(max_payload: usize) -> MemEventBus {
        MemEventBus {
            shared: Arc::new(Shared {
                streams: Mutex::new(HashMap::new()),
                changed: Notify::new(),
                down: AtomicBool::new(false),
                max_payload,
                next_holder: AtomicU64::new(1),
            }),
        }
    }

    /// Makes the bus unreachable (`true`) or reachable again, keeping everything stored.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
        self.shared.changed.notify_waiters();
    }

    fn check_up(&self, operation: BusOperation) -> Result<(), BusError> {
        if self.shared.is_down() {
            Err(BusError::unavailable(operation, Unreachable))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl EventBus for MemEventBus {
    async fn ensure_stream(&self, spec: &StreamSpec) -> Result<(), BusError> {
        spec.validate()?;
        self.check_up(BusOperation::Provision)?;
        let mut streams = self.shared.lock();
        match streams.get_mut(&spec.name) {
            Some(stream) => stream.spec = spec.clone(),
            None => {
                streams.insert(spec.name.clone(), MemStream::new(spec.clone()));
            }
        }
        Ok(())
    }

    async fn publish(&self, message: BusMessage) -> Result<BusAck, BusError> {
        let max = self.shared.max_payload;
        if message.payload.len() > max {
            return Err(BusError::PayloadTooLarge {
                size: message.payload.len(),
                max,
            });
        }
        self.check_up(BusOperation::Publish)?;
        let subject = message.subject.as_str();
        let ack = {
            let mut streams = self.shared.lock();
            let stream = streams
                .values_mut()
                .find(|s| s.spec.subjects.iter().any(|f| f.matches(subject)))
                .ok_or_else(|| BusError::NoStream {
                    subject: subject.to_owned(),
                })?;
            let (sequence, duplicate) = stream.store(
                subject,
                &message.message_id,
                message.payload,
                Instant::now(),
            );
            BusAck {
                stream: stream.spec.name.clone(),
                sequence,
                duplicate,
            }
        };
        self.shared.changed.notify_waiters();
        Ok(ack)
    }

    async fn subscribe(
        &self,
        spec: &SubscriptionSpec,
    ) -> Result<Box<dyn DeliveryStream>, BusError> {
        spec.validate()?;
        self.check_up(BusOperation::Subscribe)?;
        let mut streams = self.shared.lock();
        let stream = streams
            .get_mut(&spec.stream)
            .ok_or_else(|| BusError::Refused {
                operation: BusOperation::Subscribe,
                code: 10059,
                description: format!("stream {} not found", spec.stream),
            })?;
        match stream.consumers.get_mut(&spec.durable) {
            // Resuming keeps the position; the new settings apply from now on.
            Some(existing) => existing.spec = spec.clone(),
            None => {
                stream.consumers.insert(
                    spec.durable.clone(),
                    ConsumerState {
                        spec: spec.clone(),
                        next: 1,
                        pending: Default::default(),
                        pin: None,
                    },
                );
            }
        }
        Ok(Box::new(MemDeliveryStream {
            shared: self.shared.clone(),
            stream: spec.stream.clone(),
            consumer: spec.durable.clone(),
            holder: self.shared.next_holder.fetch_add(1, Ordering::Relaxed),
        }))
    }

    async fn consumer_position(
        &self,
        stream: &str,
        durable: &str,
    ) -> Result<ConsumerPosition, BusError> {
        self.check_up(BusOperation::Receive)?;
        let streams = self.shared.lock();
        let consumer = streams
            .get(stream)
            .and_then(|s| s.consumers.get(durable))
            .ok_or_else(|| BusError::Refused {
                operation: BusOperation::Receive,
                code: 10014,
                description: format!("consumer {durable} of stream {stream} not found"),
            })?;
        let delivered = consumer.next.saturating_sub(1);
        // Everything below the lowest unacknowledged delivery is acknowledged.
        let ack_floor = consumer
            .pending
            .keys()
            .next()
            .map_or(delivered, |lowest| lowest - 1);
        Ok(ConsumerPosition {
            ack_floor,
            delivered,
        })
    }

    async fn read(&self, stream: &str, sequence: u64) -> Result<Option<StoredMessage>, BusError> {
        self.check_up(BusOperation::Receive)?;
        let streams = self.shared.lock();
        Ok(streams.get(stream).and_then(|s| {
            let index = usize::try_from(sequence.checked_sub(1)?).ok()?;
            s.messages.get(index).map(|m| StoredMessage {
                subject: m.subject.clone(),
                payload: m.payload.clone(),
                sequence: m.sequence,
            })
        }))
    }

    fn max_payload(&self) -> usize {
        self.shared.max_payload
    }
}
