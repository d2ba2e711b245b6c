//! `Publisher`: validates, orders and publishes events; degrades to the outbox when NATS is
//! unreachable and drains it in order on recovery.
//!
//! ```text
//!            publish ok                          outbox empty again
//!   Connected ───────────► Connected   Degraded ─────────────────────► Connected
//!       │  retries exhausted             ▲   │    (recoveries_total += 1, degraded = 0)
//!       └────────────────────────────────┘   └─ every new event -> outbox
//!         (outages_total += 1, degraded = 1)
//! ```
//!
//! - `publish` resolves only once JetStream acknowledged the event or the outbox committed it.
//! - At most one unacknowledged publish per ordering key; different keys are pipelined.
//! - An event of a key that still has events in the outbox goes to the outbox behind them, so
//!   the outbox drains in order before new events of that key.
//! - An event whose claim has ended is refused, directly or into the outbox: checked before
//!   every attempt (retries included), no attempt outlives the claim's renew deadline
//!   (`valid_until`), and an acknowledgement after it is not reported as `Acked`. A claim also
//!   ends when the owner says so (`end_claim`, on release), for every event of its epoch.
//! - Sequences come from [`SequenceStore`]: durable, never reused after a restart.

use cluster_core::error::Retryable;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use cluster_core::event::BusError;
use cluster_core::event::BusMessage;
use cluster_core::event::DrainTimeout;
use cluster_core::event::Envelope;
use cluster_core::event::EventBus;
use cluster_core::event::EventId;
use cluster_core::event::OutgoingEvent;
use cluster_core::event::SchemaRegistry;
use cluster_core::event::ShardOutbox;
use cluster_core::event::Subject;
use cluster_core::event::Timestamp;
use cluster_core::ids::FencingToken;
use cluster_core::ids::PartitionId;
use coord_client::mono_now;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::metric_definitions::PublisherMetrics;
use crate::outbox::HeldKey;
use crate::outbox::Outbox;
use crate::outbox::OutboxEntry;
use crate::outbox::OutboxError;
use crate::outbox::StoredEntry;
use crate::publish_error::PublishError;
use crate::publisher_config::PublisherConfig;
use crate::publisher_config::WhenFull;
use crate::sequence_store::SequenceStore;

/// Where an accepted event went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// JetStream stored it (`duplicate`: it already had it).
    Acked {
        /// Its stream sequence.
        stream_sequence: u64,
        /// Whether JetStream had it already.
        duplicate: bool,
    },
    /// The outbox committed it; it is published when NATS is back.
    Outboxed,
}

/// What `publish` returns for an accepted event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishReceipt {
    /// The event's id.
    pub event_id: EventId,
    /// Its sequence for its ordering key (0 without a key).
    pub sequence: u64,
    /// Where it went.
    pub delivered: Delivered,
}

/// Where the publisher stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublisherStatus {
    /// Events go to the outbox.
    pub degraded: bool,
    /// Events waiting in the outbox, those behind held keys included.
    pub outbox_depth: usize,
    /// Keys held behind an outbox entry the bus refused for good: a gap in the key's events
    /// that the app must resolve ([`Publisher::held_keys`], [`Publisher::release_key`]).
    pub held_keys: usize,
}

struct Inner {
    bus: Arc<dyn EventBus>,
    config: PublisherConfig,
    registry: Arc<SchemaRegistry>,
    outbox: Outbox,
    sequences: SequenceStore,
    metrics: PublisherMetrics,
    key_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Per shard, the newest epoch whose claim this node ended (`end_claim`): events of the
    /// shard under it or an older one are refused.
    ended_claims: Mutex<HashMap<u32, FencingToken>>,
    /// Per shard, publishes between their first claim check and their outcome.
    in_flight: Mutex<HashMap<u32, usize>>,
    degraded: Mutex<bool>,
    wake_drainer: Notify,
    changed: Notify,
    cancel: CancellationToken,
}

/// The event publisher over any [`EventBus`]. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("node", &self.inner.config.node_id)
            .field("status", &self.status())
            .finish()
    }
}

/// Opening the publisher's local files failed.
#[derive(Debug, thiserror::Error)]
#[error("opening the publisher's outbox at {path}: {source}")]
pub struct OpenError {
    /// The outbox path.
    pub path: String,
    /// What failed.
    #[source]
    pub source: OutboxError,
}

#[async_trait::async_trait]
impl ShardOutbox for Publisher {
    async fn drain_shard(&self, shard: PartitionId, limit: Duration) -> Result<(), DrainTimeout> {
        Publisher::drain_shard(self, shard, limit).await
    }

    async fn end_claim(
        &self,
        shard: PartitionId,
        epoch: FencingToken,
        limit: Duration,
    ) -> Result<(), DrainTimeout> {
        Publisher::end_claim(self, shard, epoch, limit).await
    }
}

impl Publisher {
    /// Opens the outbox and sequences, and starts draining anything left from a previous run.
    pub fn start(
        bus: Arc<dyn EventBus>,
        config: PublisherConfig,
        registry: Arc<SchemaRegistry>,
        metrics: PublisherMetrics,
    ) -> Result<Publisher, OpenError> {
        let open_err = |source| OpenError {
            path: config.outbox_path.display().to_string(),
            source,
        };
        let outbox = Outbox::open(&config.outbox_path, config.outbox_capacity).map_err(open_err)?;
        let sequences = SequenceStore::open(&config.outbox_path, config.sequence_block)
            .map_err(|e| open_err(OutboxError::Storage(e)))?;
        let leftover = outbox.depth();
        metrics.outbox_depth.set(leftover as f64);
        metrics
            .outbox_held_keys
            .set(outbox.held_keys().len() as f64);
        metrics.degraded.set(0.0);
        let inner = Arc::new(Inner {
            bus,
            config,
            registry,
            outbox,
            sequences,
            metrics,
            key_locks: Mutex::new(HashMap::new()),
            ended_claims: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
            degraded: Mutex::new(false),
            wake_drainer: Notify::new(),
            changed: Notify::new(),
            cancel: CancellationToken::new(),
        });
        if leftover > 0 {
            tracing::info!(leftover, "outbox has events from a previous run; draining");
        }
        tokio::spawn(drain_loop(inner.clone()));
        Ok(Publisher { inner })
    }

    /// Publishes one event. Resolves once JetStream acknowledged it or the outbox committed it.
    pub async fn publish(&self, event: OutgoingEvent) -> Result<PublishReceipt, PublishError> {
        let result = self.inner.publish(event).await;
        let m = &self.inner.metrics;
        match &result {
            Ok(PublishReceipt {
                delivered: Delivered::Acked { .. },
                ..
            }) => m.acked.increment(1),
            Ok(PublishReceipt {
                delivered: Delivered::Outboxed,
                ..
            }) => m.outboxed.increment(1),
            Err(PublishError::Bus(_) | PublishError::Outbox(_)) => m.failed.increment(1),
            Err(_) => m.rejected.increment(1),
        }
        result
    }

    /// Whether the publisher is degraded, and how much waits in the outbox.
    pub fn status(&self) -> PublisherStatus {
        PublisherStatus {
            degraded: self.inner.is_degraded(),
            outbox_depth: self.inner.outbox.depth(),
            held_keys: self.inner.outbox.held_keys().len(),
        }
    }

    /// The keys whose outbox entries wait behind one the bus refused for good (too large, no
    /// stream any more…), with the refused entry and the error. The refused event was accepted
    /// (`Delivered::Outboxed`) but will not reach consumers; the key's later events stay queued
    /// so that consumers never apply them without it, until the app decides
    /// ([`Publisher::release_key`]). Counted in `event_bus_outbox_held_keys`.
    pub fn held_keys(&self) -> Vec<HeldKey> {
        self.inner.outbox.held_keys()
    }

    /// Accepts the gap in `key`'s events (the refused entry stays in `bus_outbox_refused`):
    /// its queued events drain again. `false` if the key was not held.
    pub fn release_key(&self, key: &str) -> Result<bool, OutboxError> {
        let released = self.inner.outbox.release_key(key)?;
        if released {
            tracing::info!(key, "held outbox key released by the app");
            self.inner.count_held_keys();
            self.inner.wake_drainer.notify_one();
        }
        Ok(released)
    }

    /// Waits until the outbox holds no event of `shard` (before releasing it in a handoff).
    pub async fn drain_shard(
        &self,
        shard: PartitionId,
        limit: Duration,
    ) -> Result<(), DrainTimeout> {
        let started = coord_client::instant_now();
        loop {
            let changed = self.inner.changed.notified();
            let remaining = self.inner.outbox.shard_depth(shard.0);
            if remaining == 0 {
                return Ok(());
            }
            self.inner.wake_drainer.notify_one();
            let left = limit.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(DrainTimeout {
                    shard,
                    remaining,
                    waited: limit,
                });
            }
            let _ = tokio::time::timeout(left.min(Duration::from_millis(200)), changed).await;
        }
    }

    /// Ends this node's claim on `shard` at `epoch` (after the partition's work stopped, before
    /// the claim is released in the store): from now on an event of `shard` under `epoch` or an
    /// older one is refused with `ClaimExpired`, before its next attempt, retries included, and
    /// before it could enter the outbox. Returns once no publish of `shard` is in flight, so
    /// nothing of this owner reaches the stream after the next owner's first event; or
    /// `DrainTimeout` (with the publishes still in flight) after `limit`.
    ///
    /// Events of `shard` already in the outbox stay there (drain them first with
    /// [`Publisher::drain_shard`]); a later claim of the shard, with a larger epoch, publishes
    /// as usual.
    pub async fn end_claim(
        &self,
        shard: PartitionId,
        epoch: FencingToken,
        limit: Duration,
    ) -> Result<(), DrainTimeout> {
        {
            let mut ended = self
                .inner
                .ended_claims
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let fence = ended.entry(shard.0).or_insert(epoch);
            *fence = (*fence).max(epoch);
        }
        // Publishes waiting for room in the outbox look again, and see the claim ended.
        self.inner.changed.notify_waiters();
        let started = coord_client::instant_now();
        loop {
            let changed = self.inner.changed.notified();
            let in_flight = self.inner.in_flight(shard.0);
            if in_flight == 0 {
                return Ok(());
            }
            let left = limit.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(DrainTimeout {
                    shard,
                    remaining: in_flight,
                    waited: limit,
                });
            }
            let _ = tokio::time::timeout(left.min(Duration::from_millis(200)), changed).await;
        }
    }

    /// Stops the drainer; events left in the outbox are drained by the next start.
    pub fn close(&self) {
        self.inner.cancel.cancel();
    }
}

impl Inner {
    fn is_degraded(&self) -> bool {
        *self.degraded.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn enter_degraded(&self, cause: &BusError) {
        let mut d = self.degraded.lock().unwrap_or_else(|p| p.into_inner());
        if !*d {
            *d = true;
            self.metrics.degraded.set(1.0);
            self.metrics.outages.increment(1);
            tracing::warn!(error = %cause, "NATS unreachable: degraded mode, events go to the outbox");
        }
    }

    fn count_held_keys(&self) {
        self.metrics
            .outbox_held_keys
            .set(self.outbox.held_keys().len() as f64);
    }

    /// Leaves degraded mode once nothing is left to drain (entries behind a held key wait for
    /// the app, not for NATS).
    fn leave_degraded_if_drained(&self) {
        let mut d = self.degraded.lock().unwrap_or_else(|p| p.into_inner());
        if *d && self.outbox.drainable_depth() == 0 {
            *d = false;
            self.metrics.degraded.set(0.0);
            self.metrics.recoveries.increment(1);
            tracing::info!("outbox drained: left degraded mode");
        }
    }

    /// Whether `event` may still be published: its claim's renew deadline has not passed and
    /// this node has not ended its claim on the shard at the event's epoch.
    fn claim_valid(&self, event: &OutgoingEvent) -> Result<(), PublishError> {
        let ended = self
            .ended_claims
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&event.shard.0)
            .is_some_and(|fence| event.epoch <= *fence);
        if ended || mono_now() >= event.valid_until {
            Err(PublishError::ClaimExpired { shard: event.shard })
        } else {
            Ok(())
        }
    }

    fn in_flight(&self, shard: u32) -> usize {
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&shard)
            .copied()
            .unwrap_or(0)
    }

    fn key_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.key_locks.lock().unwrap_or_else(|p| p.into_inner());
        // Forget locks nobody holds or waits on, so the map does not grow with every key.
        if locks.len() > 4096 {
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        locks.entry(key.to_owned()).or_default().clone()
    }

    async fn next_sequence(self: &Arc<Self>, key: &str) -> Result<u64, PublishError> {
        if let Some(n) = self.sequences.next_cached(key) {
            return Ok(n);
        }
        let this = self.clone();
        let key = key.to_owned();
        tokio::task::spawn_blocking(move || this.sequences.next(&key))
            .await
            .map_err(|_| PublishError::Closed)?
            .map_err(|e| PublishError::Outbox(OutboxError::Storage(e)))
    }

    async fn publish(
        self: &Arc<Self>,
        event: OutgoingEvent,
    ) -> Result<PublishReceipt, PublishError> {
        if self.cancel.is_cancelled() {
            return Err(PublishError::Closed);
        }
        let _in_flight = InFlight::enter(self, event.shard.0);
        self.claim_valid(&event)?;
        self.registry.route(
            &event.event_type,
            event.schema_version.major,
            &event.payload,
        )?;
        if let Some((version, payload)) = &event.also_as {
            self.registry
                .route(&event.event_type, version.major, payload)?;
        }
        let event_id = EventId::from_bytes(*uuid::Uuid::now_v7().as_bytes());
        let key = match &event.ordering_key {
            Some(k) => k.clone(),
            None => format!("#{event_id}"),
        };
        let lock = self.key_lock(&key);
        let _held = lock.lock().await;
        self.claim_valid(&event)?;
        let sequence = match event.ordering_key {
            Some(_) => self.next_sequence(&key).await?,
            None => 0,
        };
        let messages = self.encode(&event, event_id, sequence)?;

        let mut first_ack = None;
        let mut rest = messages.as_slice();
        if !self.is_degraded() && !self.outbox.has_key(&key) {
            while let Some((message, tail)) = rest.split_first() {
                match self.publish_direct(message, &event).await {
                    Ok(ack) => {
                        first_ack.get_or_insert(ack);
                        rest = tail;
                    }
                    Err(Attempt::ClaimEnded) => {
                        return Err(PublishError::ClaimExpired { shard: event.shard });
                    }
                    Err(Attempt::Bus(e)) if e.is_retryable() => {
                        self.enter_degraded(&e);
                        break;
                    }
                    Err(Attempt::Bus(BusError::PayloadTooLarge { size, max })) => {
                        return Err(PublishError::TooLarge { size, max });
                    }
                    Err(Attempt::Bus(e)) => return Err(PublishError::Bus(e)),
                }
            }
        }
        if rest.is_empty() {
            let (stream_sequence, duplicate) = first_ack.unwrap_or((0, false));
            return Ok(PublishReceipt {
                event_id,
                sequence,
                delivered: Delivered::Acked {
                    stream_sequence,
                    duplicate,
                },
            });
        }
        self.claim_valid(&event)?;
        let entries: Vec<OutboxEntry> = rest
            .iter()
            .map(|m| OutboxEntry {
                key: key.clone(),
                shard: event.shard.0,
                subject: m.subject.as_str().to_owned(),
                message_id: m.message_id.clone(),
                payload: m.payload.clone(),
            })
            .collect();
        self.append_outbox(entries, &event).await?;
        Ok(PublishReceipt {
            event_id,
            sequence,
            delivered: Delivered::Outboxed,
        })
    }

    fn encode(
        &self,
        event: &OutgoingEvent,
        event_id: EventId,
        sequence: u64,
    ) -> Result<Vec<BusMessage>, PublishError> {
        let mut envelope = Envelope {
            event_id,
            event_type: event.event_type.clone(),
            schema_version: event.schema_version,
            occurred_at: Timestamp::from_system_time(coord_client::wall_now()),
            node_id: self.config.node_id.clone(),
            shard: event.shard,
            ordering_key: event.ordering_key.clone(),
            sequence,
            epoch: event.epoch,
            causation_id: event.causation_id,
            correlation_id: event.correlation_id,
            payload: event.payload.clone(),
        };
        envelope.check()?;
        let dual = event.also_as.is_some();
        let max = self.bus.max_payload();
        let mut out = Vec::with_capacity(1 + usize::from(dual));
        let mut push = |envelope: &Envelope| -> Result<(), PublishError> {
            let payload = envelope.encode()?;
            if payload.len() > max {
                return Err(PublishError::TooLarge {
                    size: payload.len(),
                    max,
                });
            }
            out.push(BusMessage {
                subject: envelope.subject(&self.config.subjects),
                message_id: envelope.message_id(dual),
                payload,
            });
            Ok(())
        };
        push(&envelope)?;
        if let Some((version, payload)) = &event.also_as {
            envelope.schema_version = *version;
            envelope.payload = payload.clone();
            push(&envelope)?;
        }
        Ok(out)
    }

    /// One message of `event`, retried with backoff while the publisher is not degraded.
    ///
    /// The claim is checked before every attempt, and no attempt outlives it: an attempt still
    /// unanswered at the claim's renew deadline is abandoned, and an acknowledgement that comes
    /// after the claim ended is not taken as a success (`ClaimEnded`; the message may be in the
    /// stream, where consumers dead-letter it as stale once the next owner has published).
    async fn publish_direct(
        &self,
        message: &BusMessage,
        event: &OutgoingEvent,
    ) -> Result<(u64, bool), Attempt> {
        let deadline = coord_client::to_instant(event.valid_until);
        let mut attempt = 1;
        loop {
            self.claim_valid(event).map_err(|_| Attempt::ClaimEnded)?;
            let result = tokio::time::timeout_at(deadline, self.bus.publish(message.clone()))
                .await
                .map_err(|_| Attempt::ClaimEnded)?;
            match result {
                Ok(ack) => {
                    self.claim_valid(event).map_err(|_| Attempt::ClaimEnded)?;
                    return Ok((ack.sequence, ack.duplicate));
                }
                Err(e)
                    if e.is_retryable()
                        && attempt < self.config.attempts
                        && !self.is_degraded() =>
                {
                    self.metrics.retries.increment(1);
                    tracing::debug!(attempt, error = %e, subject = %message.subject, "publish retry");
                    tokio::time::sleep(self.config.backoff(attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(Attempt::Bus(e)),
            }
        }
    }

    /// Commits `entries` of `event` to the outbox. While the outbox is full and the policy is to
    /// block, it waits for room, but never past the event's claim: an event whose claim has
    /// ended by the time there is room is refused (`ClaimExpired`), not committed.
    async fn append_outbox(
        self: &Arc<Self>,
        entries: Vec<OutboxEntry>,
        event: &OutgoingEvent,
    ) -> Result<(), PublishError> {
        let started = coord_client::instant_now();
        loop {
            self.claim_valid(event)?;
            let changed = self.changed.notified();
            let this = self.clone();
            let batch = entries.clone();
            let result = tokio::task::spawn_blocking(move || this.outbox.append(&batch))
                .await
                .map_err(|_| PublishError::Closed)?;
            match result {
                Ok(()) => {
                    self.metrics.outbox_depth.set(self.outbox.depth() as f64);
                    self.wake_drainer.notify_one();
                    return Ok(());
                }
                Err(OutboxError::Full { capacity }) => match self.config.when_full {
                    WhenFull::Reject => return Err(PublishError::OutboxFull { capacity }),
                    WhenFull::Block(limit) => {
                        let left = limit.saturating_sub(started.elapsed());
                        if left.is_zero() {
                            return Err(PublishError::OutboxFull { capacity });
                        }
                        let claim_left = coord_client::to_instant(event.valid_until)
                            .saturating_duration_since(coord_client::instant_now());
                        let _ = tokio::time::timeout(left.min(claim_left), changed).await;
                    }
                },
                Err(e) => return Err(PublishError::Outbox(e)),
            }
        }
    }
}

/// Why a direct publish of one message stopped.
enum Attempt {
    /// The bus failed (after the retries, for a retryable failure).
    Bus(BusError),
    /// The claim ended before an attempt or before its acknowledgement.
    ClaimEnded,
}

/// Counts a publish of a shard as in flight until dropped (`end_claim` waits for none).
struct InFlight<'a> {
    inner: &'a Inner,
    shard: u32,
}

impl<'a> InFlight<'a> {
    fn enter(inner: &'a Inner, shard: u32) -> InFlight<'a> {
        *inner
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(shard)
            .or_default() += 1;
        InFlight { inner, shard }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut in_flight = self
            .inner
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = in_flight.get_mut(&self.shard) {
            *n -= 1;
            if *n == 0 {
                in_flight.remove(&self.shard);
            }
        }
        drop(in_flight);
        self.inner.changed.notify_waiters();
    }
}

/// Publishes outbox entries in order: keys in parallel, one unacknowledged entry per key.
async fn drain_loop(inner: Arc<Inner>) {
    loop {
        if inner.outbox.drainable_depth() == 0 {
            inner.leave_degraded_if_drained();
            tokio::select! {
                _ = inner.cancel.cancelled() => return,
                _ = inner.wake_drainer.notified() => continue,
                // Also look now and then, in case a wake-up raced with a check.
                _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
            }
        }
        let this = inner.clone();
        let limit = inner.config.drain_batch;
        let batch = match tokio::task::spawn_blocking(move || this.outbox.peek(limit)).await {
            Ok(Ok(batch)) => batch,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "reading the outbox failed");
                if pause(&inner, inner.config.drain_retry).await {
                    return;
                }
                continue;
            }
            Err(_) => return,
        };
        let mut groups: Vec<(String, Vec<StoredEntry>)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for entry in batch {
            let i = *index.entry(entry.entry.key.clone()).or_insert_with(|| {
                groups.push((entry.entry.key.clone(), Vec::new()));
                groups.len() - 1
            });
            groups[i].1.push(entry);
        }
        let results = futures::future::join_all(
            groups
                .into_iter()
                .map(|(_, entries)| drain_key(inner.clone(), entries)),
        )
        .await;
        let mut done = Vec::new();
        let mut stalled = false;
        for (acked, blocked) in results {
            done.extend(acked);
            stalled |= blocked;
        }
        let this = inner.clone();
        let removed = tokio::task::spawn_blocking(move || this.outbox.remove(&done)).await;
        if let Ok(Err(e)) = removed {
            tracing::error!(error = %e, "deleting drained outbox entries failed");
        }
        inner.metrics.outbox_depth.set(inner.outbox.depth() as f64);
        inner.changed.notify_waiters();
        if stalled && pause(&inner, inner.config.drain_retry).await {
            return;
        }
    }
}

/// Sleeps unless cancelled; `true` when cancelled.
async fn pause(inner: &Inner, d: Duration) -> bool {
    tokio::select! {
        _ = inner.cancel.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

/// Publishes one key's entries in order; returns the acknowledged ones and whether it stopped
/// early because the bus is unreachable. An entry refused for good stops the key: its later
/// entries stay queued behind the hold.
async fn drain_key(inner: Arc<Inner>, entries: Vec<StoredEntry>) -> (Vec<StoredEntry>, bool) {
    let mut acked = Vec::with_capacity(entries.len());
    for entry in entries {
        let Ok(subject) = Subject::parse(&entry.entry.subject) else {
            set_aside(&inner, &entry, "subject no longer valid").await;
            return (acked, false);
        };
        let message = BusMessage {
            subject,
            message_id: entry.entry.message_id.clone(),
            payload: entry.entry.payload.clone(),
        };
        match inner.bus.publish(message).await {
            Ok(_) => acked.push(entry),
            Err(e) if e.is_retryable() => {
                inner.enter_degraded(&e);
                return (acked, true);
            }
            Err(e) => {
                set_aside(&inner, &entry, &e.to_string()).await;
                return (acked, false);
            }
        }
    }
    (acked, false)
}

/// Keeps an entry the bus refused for good out of the way, recorded, never dropped silently,
/// and holds its key so that its later entries are not published without it.
async fn set_aside(inner: &Arc<Inner>, entry: &StoredEntry, error: &str) {
    tracing::error!(message_id = %entry.entry.message_id, key = %entry.entry.key, error, "bus refused an outbox entry; set aside, its key held");
    inner.metrics.failed.increment(1);
    let this = inner.clone();
    let entry = entry.clone();
    let error = error.to_owned();
    if let Ok(Err(e)) =
        tokio::task::spawn_blocking(move || this.outbox.set_aside(&entry, &error)).await
    {
        tracing::error!(error = %e, "setting aside an outbox entry failed");
    }
    inner.count_held_keys();
}
