//! One in-memory stream: its messages, dedup ids and durable consumers.

use std::collections::BTreeMap;
use std::collections::HashMap;

use cluster_core::event::StreamSpec;
use cluster_core::event::SubjectFilter;
use cluster_core::event::SubscriptionSpec;
use tokio::time::Instant;

/// A stored message.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) sequence: u64,
    pub(crate) subject: String,
    pub(crate) payload: Vec<u8>,
}

/// A delivery waiting for its ack.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pending {
    pub(crate) delivered: u32,
    /// When it is delivered again if not acknowledged.
    pub(crate) due: Instant,
}

/// Which subscriber of an exclusive consumer gets deliveries, and when it last pulled.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pin {
    pub(crate) holder: u64,
    pub(crate) last_pull: Instant,
}

/// A durable consumer's position.
#[derive(Debug)]
pub(crate) struct ConsumerState {
    pub(crate) spec: SubscriptionSpec,
    /// The next stream sequence not yet delivered.
    pub(crate) next: u64,
    pub(crate) pending: BTreeMap<u64, Pending>,
    pub(crate) pin: Option<Pin>,
}

/// What the next delivery of a consumer is, if any is ready.
pub(crate) enum Ready {
    Deliver {
        message: Stored,
        delivered: u32,
        lag: u64,
    },
    /// Nothing now; look again at this instant (or when notified).
    WaitUntil(Option<Instant>),
}

/// One stream.
#[derive(Debug)]
pub(crate) struct MemStream {
    pub(crate) spec: StreamSpec,
    pub(crate) messages: Vec<Stored>,
    pub(crate) ids: HashMap<String, (u64, Instant)>,
    pub(crate) consumers: HashMap<String, ConsumerState>,
}

fn matches(filters: &[SubjectFilter], subject: &str) -> bool {
    filters.is_empty() || filters.iter().any(|f| f.matches(subject))
}

impl MemStream {
    pub(crate) fn new(spec: StreamSpec) -> MemStream {
        MemStream {
            spec,
            messages: Vec::new(),
            ids: HashMap::new(),
            consumers: HashMap::new(),
        }
    }

    /// Stores a message unless its id is in the window; returns (sequence, duplicate).
    pub(crate) fn store(
        &mut self,
        subject: &str,
        id: &str,
        payload: Vec<u8>,
        now: Instant,
    ) -> (u64, bool) {
        let window = self.spec.duplicate_window;
        self.ids
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < window);
        if let Some((sequence, _)) = self.ids.get(id) {
            return (*sequence, true);
        }
        let sequence = self.messages.last().map_or(1, |m| m.sequence + 1);
        self.messages.push(Stored {
            sequence,
            subject: subject.to_owned(),
            payload,
        });
        self.ids.insert(id.to_owned(), (sequence, now));
        (sequence, false)
    }

    fn message(&self, sequence: u64) -> Option<&Stored> {
        // Sequences are dense from 1.
        self.messages
            .get(usize::try_from(sequence.checked_sub(1)?).ok()?)
    }

    /// The next delivery of `consumer` for subscriber `holder`: a due redelivery first, then
    /// the next new message; nothing for a standby subscriber of an exclusive consumer.
    pub(crate) fn next_for(&mut self, consumer: &str, holder: u64, now: Instant) -> Ready {
        let Some(state) = self.consumers.get_mut(consumer) else {
            return Ready::WaitUntil(None);
        };
        if let Some(timeout) = state.spec.exclusive {
            match &mut state.pin {
                Some(pin) if pin.holder == holder => pin.last_pull = now,
                Some(pin) if now.saturating_duration_since(pin.last_pull) < timeout => {
                    return Ready::WaitUntil(Some(pin.last_pull + timeout));
                }
                _ => {
                    state.pin = Some(Pin {
                        holder,
                        last_pull: now,
                    })
                }
            }
        }
        // Redeliveries, lowest sequence first; past max_deliver JetStream stops delivering.
        let max_deliver = state.spec.max_deliver;
        state
            .pending
            .retain(|_, p| !(p.due <= now && p.delivered >= max_deliver));
        let due = state
            .pending
            .iter()
            .find(|(_, p)| p.due <= now)
            .map(|(s, _)| *s);
        if let Some(sequence) = due {
            let ack_wait = state.spec.ack_wait;
            let Some(message) = self
                .messages
                .get(usize::try_from(sequence - 1).unwrap_or(usize::MAX))
                .cloned()
            else {
                state.pending.remove(&sequence);
                return Ready::WaitUntil(Some(now));
            };
            let Some(p) = state.pending.get_mut(&sequence) else {
                return Ready::WaitUntil(Some(now));
            };
            p.delivered += 1;
            p.due = now + ack_wait;
            let delivered = p.delivered;
            let lag = self.lag(consumer);
            return Ready::Deliver {
                message,
                delivered,
                lag,
            };
        }
        let earliest_due = state.pending.values().map(|p| p.due).min();
        if state.pending.len() >= state.spec.max_ack_pending as usize {
            return Ready::WaitUntil(earliest_due);
        }
        let filters = state.spec.filters.clone();
        let mut sequence = state.next;
        while let Some(m) = self.message(sequence) {
            if matches(&filters, &m.subject) {
                let message = m.clone();
                let Some(state) = self.consumers.get_mut(consumer) else {
                    return Ready::WaitUntil(None);
                };
                state.next = sequence + 1;
                state.pending.insert(
                    sequence,
                    Pending {
                        delivered: 1,
                        due: now + state.spec.ack_wait,
                    },
                );
                let lag = self.lag(consumer);
                return Ready::Deliver {
                    message,
                    delivered: 1,
                    lag,
                };
            }
            sequence += 1;
        }
        if let Some(state) = self.consumers.get_mut(consumer) {
            state.next = sequence;
        }
        Ready::WaitUntil(earliest_due)
    }

    /// Matching messages not yet delivered to `consumer`.
    fn lag(&self, consumer: &str) -> u64 {
        let Some(state) = self.consumers.get(consumer) else {
            return 0;
        };
        let start = usize::try_from(state.next.saturating_sub(1)).unwrap_or(usize::MAX);
        self.messages.get(start..).map_or(0, |rest| {
            rest.iter()
                .filter(|m| matches(&state.spec.filters, &m.subject))
                .count() as u64
        })
    }
}
