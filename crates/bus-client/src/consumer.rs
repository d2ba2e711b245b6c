//! `Consumer`: a durable consumer that applies each event exactly once, in order per key.
//!
//! For each delivery, in stream order:
//!
//! 1. decode the envelope (else dead-letter `malformed`), route it by type and major (else
//!    `unknown_type` / `unknown_major`) and validate the payload (else `schema_invalid`);
//! 2. in one SQLite transaction: read the key's record, [`decide`], run the handler, write the
//!    record, commit;
//! 3. acknowledge; or, for a stale epoch, dead-letter `stale_epoch` and terminate; or, after a
//!    handler error, hold the key (later events of it wait) and ask for redelivery with backoff,
//!    dead-lettering `handler_failed` before JetStream's `max_deliver` is reached.
//!
//! A dead letter is published before the original is terminated; if the bus refuses the dead
//! letter, the original is redelivered later instead. Nothing is dropped silently.
//!
//! Catch-up: deliveries outstanding when a consumer crashed (or that a broken pull lost in
//! transit) come back only after their ack wait, behind newer messages. Applying the newer ones
//! first would make the older ones look like duplicates and lose them. So before the first
//! delivery after a start or a receive error, the consumer reads its outstanding range (ack
//! floor to last delivered) straight from the stream and applies it in stream order; the late
//! redeliveries are then duplicates.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use cluster_core::event::ApplyDecision;
use cluster_core::event::BusError;
use cluster_core::event::BusMessage;
use cluster_core::event::DeadLetter;
use cluster_core::event::DeadLetterReason;
use cluster_core::event::Delivery;
use cluster_core::event::DeliveryStream;
use cluster_core::event::Envelope;
use cluster_core::event::EventBus;
use cluster_core::event::EventFamily;
use cluster_core::event::EventPosition;
use cluster_core::event::OrderMark;
use cluster_core::event::RetryDecision;
use cluster_core::event::RouteError;
use cluster_core::event::SchemaRegistry;
use cluster_core::event::StoredMessage;
use cluster_core::event::SubjectFilter;
use cluster_core::event::SubscriptionSpec;
use cluster_core::event::decide;
use cluster_core::event::decide_unkeyed;
use futures::FutureExt;
use rusqlite::Connection;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::consumer_config::ConsumerConfig;
use crate::consumer_store::ConsumerStore;
use crate::consumer_store::create_tables;
use crate::event_handler::EventHandler;
use crate::event_handler::HandlerError;
use crate::metric_definitions::ConsumerMetrics;
use crate::sqlite::open_durable;

/// Why a consumer could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumerError {
    /// The database could not be opened or prepared.
    #[error("consumer database {path}: {source}")]
    Database {
        /// Its path.
        path: String,
        /// What failed.
        #[source]
        source: rusqlite::Error,
    },
    /// The durable consumer could not be created.
    #[error("subscribing: {0}")]
    Bus(#[from] BusError),
}

impl cluster_core::error::Retryable for ConsumerError {
    fn is_retryable(&self) -> bool {
        match self {
            ConsumerError::Database { .. } => false,
            ConsumerError::Bus(e) => e.is_retryable(),
        }
    }

    fn as_metrics_label(&self) -> &'static str {
        match self {
            ConsumerError::Database { .. } => "database",
            ConsumerError::Bus(e) => e.as_metrics_label(),
        }
    }
}

/// The most deliveries applied in one transaction.
const MAX_BATCH: usize = 64;

/// A running consumer. Dropping it stops it.
#[derive(Debug)]
pub struct Consumer {
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Consumer {
    /// Opens the database, creates or resumes the durable consumer and starts applying.
    pub async fn start(
        bus: Arc<dyn EventBus>,
        config: ConsumerConfig,
        registry: Arc<SchemaRegistry>,
        handler: Arc<dyn EventHandler>,
        metrics: ConsumerMetrics,
    ) -> Result<Consumer, ConsumerError> {
        let db_err = |source| ConsumerError::Database {
            path: config.database.display().to_string(),
            source,
        };
        let conn = open_durable(&config.database).map_err(db_err)?;
        create_tables(&conn).map_err(db_err)?;
        let store = ConsumerStore::new(&config.name);
        let mut conn = conn;
        {
            let tx = conn.transaction().map_err(db_err)?;
            let pruned = store
                .prune_seen(&tx, config.seen_retention)
                .map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            tracing::debug!(consumer = %config.name, pruned, "pruned seen ids");
        }
        // A shadow consumer acknowledges everything it reads: on the real durable it would move
        // the real consumer past events it never applied. It reads through its own durable.
        let durable = if config.shadow {
            format!("{}-shadow", config.name)
        } else {
            config.name.clone()
        };
        let mut spec = SubscriptionSpec::new(&config.stream, &durable, config.filters.clone());
        spec.ack_wait = config.ack_wait;
        spec.max_deliver = config.retry.max_deliver;
        spec.max_ack_pending = config.max_ack_pending;
        spec.exclusive = config.exclusive;
        let deliveries = bus.subscribe(&spec).await?;
        let cancel = CancellationToken::new();
        let worker = Worker {
            bus,
            config,
            registry,
            handler,
            metrics,
            store,
            conn: Arc::new(Mutex::new(conn)),
        };
        let task = tokio::spawn(worker.run(deliveries, cancel.clone()));
        Ok(Consumer {
            cancel,
            task: Some(task),
        })
    }

    /// Stops after the delivery in progress; unacknowledged ones are redelivered later.
    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// What the transaction decided.
enum Applied {
    Done,
    Duplicate,
    /// Older than what was applied (said how, for the dead letter's detail).
    Stale(String),
    Held,
    Failed(HandlerError),
    Shadow,
    /// Dead-lettered by an earlier delivery: final, never applied.
    DeadLetteredBefore(DeadLetterReason),
}

struct Worker {
    bus: Arc<dyn EventBus>,
    config: ConsumerConfig,
    registry: Arc<SchemaRegistry>,
    handler: Arc<dyn EventHandler>,
    metrics: ConsumerMetrics,
    store: ConsumerStore,
    conn: Arc<Mutex<Connection>>,
}

impl Worker {
    async fn run(self, mut deliveries: Box<dyn DeliveryStream>, cancel: CancellationToken) {
        let mut failures = 0u32;
        let mut needs_catch_up = true;
        let mut last_prune = coord_client::instant_now();
        loop {
            let next = tokio::select! {
                _ = cancel.cancelled() => return,
                next = deliveries.next() => next,
            };
            match next {
                None => return,
                Some(Err(e)) => {
                    needs_catch_up = true;
                    failures += 1;
                    let wait = Duration::from_millis(100 * u64::from(failures.min(20)));
                    tracing::debug!(consumer = %self.config.name, error = %e, ?wait, "receive failed");
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
                Some(Ok(delivery)) => {
                    failures = 0;
                    if needs_catch_up {
                        needs_catch_up = !self.catch_up().await;
                    }
                    // Take what is already here too: one transaction (one fsync) for the lot.
                    let mut batch = vec![delivery];
                    while batch.len() < MAX_BATCH {
                        match deliveries.next().now_or_never() {
                            Some(Some(Ok(d))) => batch.push(d),
                            Some(Some(Err(_))) => {
                                needs_catch_up = true;
                                break;
                            }
                            Some(None) | None => break,
                        }
                    }
                    if let Some(last) = batch.last() {
                        self.metrics.lag.set(last.pending as f64);
                    }
                    self.process(batch).await;
                    if last_prune.elapsed() > Duration::from_secs(3600) {
                        last_prune = coord_client::instant_now();
                        self.prune().await;
                    }
                }
            }
        }
    }

    /// Applies the outstanding range in stream order; `false` if the bus could not be asked.
    ///
    /// The whole range, however many stream sequences it spans: the range is counted in the
    /// sequences of a stream that other shards and kinds share, and an outstanding delivery
    /// left out would come back behind newer events of its key and be taken for a duplicate.
    /// Each filter's next matching message is found by the bus ([`EventBus::read_next_matching`]),
    /// so the cost follows the consumer's own messages, not the stream's.
    async fn catch_up(&self) -> bool {
        let stream = self.config.stream.as_str();
        let position = match self.bus.consumer_position(stream, &self.config.name).await {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(consumer = %self.config.name, error = %e, "catch-up postponed");
                return false;
            }
        };
        let first = position.ack_floor + 1;
        let last = position.delivered;
        let mut replayed = 0u32;
        let mut outstanding = OutstandingRange::new(&self.config.filters, first, last);
        loop {
            let message = match outstanding.next(self.bus.as_ref(), stream).await {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(consumer = %self.config.name, error = %e, "catch-up interrupted");
                    return false;
                }
            };
            let sequence = message.sequence;
            // Only keyed events that apply cleanly matter for order; everything else is left to
            // its redelivery (dead letters, failures, duplicates).
            let Ok(envelope) = Envelope::decode_from(&message.subject, &message.payload) else {
                continue;
            };
            if envelope.ordering_key.is_none()
                || self.dead_lettered_before(&envelope).await.is_some()
                || self
                    .registry
                    .route(
                        &envelope.event_type,
                        envelope.schema_version.major,
                        &envelope.payload,
                    )
                    .is_err()
            {
                continue;
            }
            match self
                .apply(vec![(envelope, sequence)])
                .await
                .map(|mut o| o.pop())
            {
                Ok(Some((Applied::Done, _))) => {
                    replayed += 1;
                    self.metrics.applied.increment(1);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(consumer = %self.config.name, error = %e, "catch-up failed");
                    return false;
                }
            }
        }
        if replayed > 0 {
            tracing::info!(consumer = %self.config.name, replayed, "caught up on outstanding deliveries");
        }
        true
    }

    async fn prune(&self) {
        let conn = self.conn.clone();
        let store = self.store.clone();
        let retention = self.config.seen_retention;
        let _ = tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            let tx = conn.transaction()?;
            store.prune_seen(&tx, retention)?;
            tx.commit()
        })
        .await;
    }

    async fn process(&self, batch: Vec<Delivery>) {
        let mut good = Vec::with_capacity(batch.len());
        for delivery in batch {
            let envelope = match Envelope::decode_from(&delivery.subject, &delivery.payload) {
                Ok(e) => e,
                Err(e) => {
                    let detail = e.to_string();
                    self.dead_letter(&delivery, DeadLetterReason::Malformed, detail, None)
                        .await;
                    continue;
                }
            };
            if let Err(e) = self.registry.route(
                &envelope.event_type,
                envelope.schema_version.major,
                &envelope.payload,
            ) {
                let reason = match e {
                    RouteError::UnknownMajor { .. } => DeadLetterReason::UnknownMajor,
                    RouteError::UnknownType { .. } => DeadLetterReason::UnknownType,
                    _ => DeadLetterReason::SchemaInvalid,
                };
                self.dead_letter(&delivery, reason, e.to_string(), Some(envelope))
                    .await;
                continue;
            }
            good.push((delivery, envelope));
        }
        if good.is_empty() {
            return;
        }
        let (deliveries, envelopes): (Vec<Delivery>, Vec<Envelope>) = good.into_iter().unzip();
        let items = envelopes
            .into_iter()
            .zip(deliveries.iter().map(|d| d.stream_sequence))
            .collect();
        let outcomes = match self.apply(items).await {
            Ok(r) => r,
            Err(e) => {
                // The database failed, not the events: try them again later.
                tracing::error!(consumer = %self.config.name, error = %e, "consumer database failed");
                for delivery in &deliveries {
                    self.retry(delivery, self.config.retry.delay(delivery.delivered))
                        .await;
                }
                return;
            }
        };
        for (delivery, (applied, envelope)) in deliveries.into_iter().zip(outcomes) {
            self.settle_outcome(delivery, applied, envelope).await;
        }
    }

    async fn settle_outcome(&self, delivery: Delivery, applied: Applied, envelope: Envelope) {
        match applied {
            Applied::Done => {
                self.metrics.applied.increment(1);
                self.settle(delivery.ack.ack().await);
            }
            Applied::Duplicate => {
                self.metrics.duplicate.increment(1);
                self.settle(delivery.ack.ack().await);
            }
            Applied::Shadow => {
                self.metrics.shadow.increment(1);
                self.settle(delivery.ack.ack().await);
            }
            Applied::DeadLetteredBefore(reason) => {
                let detail = "dead-lettered before".to_owned();
                self.dead_letter(&delivery, reason, detail, Some(envelope))
                    .await;
            }
            Applied::Stale(applied) => {
                let detail = format!(
                    "event {} of key {:?} at {} on shard {} is older than {applied}",
                    envelope.event_id,
                    envelope.ordering_key,
                    OrderMark::new(envelope.epoch, envelope.sequence),
                    envelope.shard,
                );
                self.dead_letter(
                    &delivery,
                    DeadLetterReason::StaleEpoch,
                    detail,
                    Some(envelope),
                )
                .await;
            }
            Applied::Held => {
                self.metrics.held.increment(1);
                match self.config.retry.while_held(delivery.delivered) {
                    RetryDecision::RetryAfter(d) => self.retry(&delivery, d).await,
                    RetryDecision::DeadLetter(reason) => {
                        let detail = format!(
                            "held behind a failing event of its key for {} deliveries",
                            delivery.delivered
                        );
                        self.dead_letter(&delivery, reason, detail, Some(envelope))
                            .await;
                    }
                }
            }
            Applied::Failed(error) => {
                tracing::warn!(consumer = %self.config.name, event = %envelope.event_id, delivered = delivery.delivered, %error, "handler failed");
                match self.config.retry.after_failure(delivery.delivered) {
                    RetryDecision::RetryAfter(d) => {
                        self.metrics.retried.increment(1);
                        self.retry(&delivery, d).await;
                    }
                    RetryDecision::DeadLetter(reason) => {
                        // Recording the decision ends the key's hold (`dead_letter`).
                        let detail =
                            format!("handler failed {} times: {error}", delivery.delivered);
                        self.dead_letter(&delivery, reason, detail, Some(envelope))
                            .await;
                    }
                }
            }
        }
    }

    fn settle(&self, result: Result<(), BusError>) {
        if let Err(e) = result {
            // Redelivered later; the record makes it a duplicate then.
            tracing::debug!(consumer = %self.config.name, error = %e, "ack failed");
        }
    }

    async fn retry(&self, delivery: &Delivery, delay: Duration) {
        self.settle(delivery.ack.nak(delay).await);
    }

    /// Runs decide + handler + record for each event, all in one transaction on a blocking
    /// thread; returns each event's outcome, in order.
    async fn apply(
        &self,
        items: Vec<(Envelope, u64)>,
    ) -> Result<Vec<(Applied, Envelope)>, ApplyFailed> {
        let conn = self.conn.clone();
        let store = self.store.clone();
        let handler = self.handler.clone();
        let shadow = self.config.shadow;
        let joined = tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            let outcomes = apply_in_tx(&mut conn, &store, handler.as_ref(), &items, shadow)
                .map_err(ApplyFailed::Database)?;
            Ok(outcomes
                .into_iter()
                .zip(items.into_iter().map(|(e, _)| e))
                .collect())
        })
        .await;
        joined.unwrap_or(Err(ApplyFailed::Stopped))
    }

    /// The reason this event was dead-lettered before, if it was (a database error counts as not
    /// known, and the delivery is processed normally).
    async fn dead_lettered_before(&self, envelope: &Envelope) -> Option<DeadLetterReason> {
        let (conn, store, id) = (self.conn.clone(), self.store.clone(), envelope.event_id);
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            store.dead_lettered(&conn, id).ok().flatten()
        })
        .await
        .ok()
        .flatten()
        .and_then(|r| DeadLetterReason::parse(&r))
    }

    /// Publishes a dead letter, then terminates the delivery; `true` if it was dead-lettered.
    async fn dead_letter(
        &self,
        delivery: &Delivery,
        reason: DeadLetterReason,
        detail: String,
        envelope: Option<Envelope>,
    ) -> bool {
        if self.config.shadow {
            self.metrics.shadow.increment(1);
            self.settle(delivery.ack.ack().await);
            return false;
        }
        let raw = envelope
            .is_none()
            .then(|| String::from_utf8_lossy(&delivery.payload).into_owned());
        let letter = DeadLetter {
            reason,
            detail,
            consumer: self.config.name.clone(),
            subject: delivery.subject.clone(),
            stream_sequence: delivery.stream_sequence,
            delivered: delivery.delivered,
            envelope,
            raw,
        };
        let payload = match serde_json::to_vec(&letter) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "encoding a dead letter failed");
                self.retry(delivery, self.config.retry.max_delay).await;
                return false;
            }
        };
        let message = BusMessage {
            subject: self.config.subjects.dead_letter(reason),
            message_id: letter.message_id(),
            payload,
        };
        // The decision is recorded first: after a crash, a redelivery republishes the same
        // dead letter (same message id, deduplicated) instead of applying the event.
        if let Some(envelope) = &letter.envelope {
            let (conn, store, id) = (self.conn.clone(), self.store.clone(), envelope.event_id);
            let key = envelope.ordering_key.clone();
            let stream_sequence = delivery.stream_sequence;
            let recorded = tokio::task::spawn_blocking(move || {
                let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
                let tx = conn.transaction()?;
                store.record_dead_lettered(
                    &tx,
                    id,
                    reason.as_str(),
                    key.as_deref(),
                    stream_sequence,
                )?;
                tx.commit()
            })
            .await;
            if !matches!(recorded, Ok(Ok(()))) {
                tracing::warn!(consumer = %self.config.name, "recording a dead letter failed; will retry");
                self.retry(delivery, self.config.retry.delay(delivery.delivered))
                    .await;
                return false;
            }
        }
        match self.bus.publish(message).await {
            Ok(_) => {
                tracing::info!(consumer = %self.config.name, %reason, stream_sequence = delivery.stream_sequence, "dead-lettered");
                self.metrics.dead_letter(reason);
                self.settle(delivery.ack.term().await);
                true
            }
            Err(e) => {
                tracing::warn!(consumer = %self.config.name, error = %e, "publishing a dead letter failed; will retry");
                self.retry(delivery, self.config.retry.delay(delivery.delivered))
                    .await;
                false
            }
        }
    }
}

/// The messages of a consumer's filters in a range of stream sequences, in stream order.
struct OutstandingRange<'a> {
    /// Per filter (one `None` for no filter: every subject), its next match, once read.
    heads: Vec<(Option<&'a SubjectFilter>, Option<StoredMessage>, bool)>,
    next: u64,
    last: u64,
}

impl<'a> OutstandingRange<'a> {
    fn new(filters: &'a [SubjectFilter], first: u64, last: u64) -> OutstandingRange<'a> {
        let heads = if filters.is_empty() {
            vec![(None, None, false)]
        } else {
            filters.iter().map(|f| (Some(f), None, false)).collect()
        };
        OutstandingRange {
            heads,
            next: first,
            last,
        }
    }

    /// The next message matching any filter, or `None` past the end of the range.
    async fn next(
        &mut self,
        bus: &dyn EventBus,
        stream: &str,
    ) -> Result<Option<StoredMessage>, BusError> {
        if self.next > self.last {
            return Ok(None);
        }
        for (filter, head, done) in &mut self.heads {
            if *done || head.as_ref().is_some_and(|m| m.sequence >= self.next) {
                continue;
            }
            *head = match filter {
                Some(f) => {
                    bus.read_next_matching(stream, self.next, self.last, f)
                        .await?
                }
                None => next_stored(bus, stream, self.next, self.last).await?,
            };
            *done = head.is_none();
        }
        let Some(sequence) = self
            .heads
            .iter()
            .filter_map(|(_, head, _)| head.as_ref().map(|m| m.sequence))
            .min()
        else {
            self.next = self.last + 1;
            return Ok(None);
        };
        self.next = sequence + 1;
        // A message two filters match is taken once.
        let mut taken = None;
        for (_, head, _) in &mut self.heads {
            if head.as_ref().is_some_and(|m| m.sequence == sequence) {
                taken = head.take();
            }
        }
        Ok(taken)
    }
}

/// The first stored message in `from..=to` (sequences can be deleted).
async fn next_stored(
    bus: &dyn EventBus,
    stream: &str,
    from: u64,
    to: u64,
) -> Result<Option<StoredMessage>, BusError> {
    for sequence in from..=to {
        if let Some(m) = bus.read(stream, sequence).await? {
            return Ok(Some(m));
        }
    }
    Ok(None)
}

/// Why a transaction did not run to a decision.
#[derive(Debug, thiserror::Error)]
enum ApplyFailed {
    #[error("consumer database: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("the blocking task was stopped")]
    Stopped,
}

/// A handler panicked while applying an event.
#[derive(Debug, thiserror::Error)]
#[error("handler panicked")]
struct HandlerPanicked;

/// The scope of an event's epoch: its shard for a lifecycle event; one scope for the platform
/// events, whose shard field names no partition.
fn epoch_scope(envelope: &Envelope) -> String {
    match envelope.event_type.family() {
        EventFamily::Lifecycle(_) => format!("p{}", envelope.shard.0),
        EventFamily::Platform => "platform".to_owned(),
    }
}

fn apply_in_tx(
    conn: &mut Connection,
    store: &ConsumerStore,
    handler: &dyn EventHandler,
    items: &[(Envelope, u64)],
    shadow: bool,
) -> Result<Vec<Applied>, rusqlite::Error> {
    let tx = conn.transaction()?;
    let mut outcomes = Vec::with_capacity(items.len());
    for (envelope, stream_sequence) in items {
        let stream_sequence = *stream_sequence;
        // A dead-letter decision is final: a redelivery publishes the same letter again.
        if let Some(reason) = store
            .dead_lettered(&tx, envelope.event_id)?
            .and_then(|r| DeadLetterReason::parse(&r))
        {
            // A record written before holds ended with it may have left its hold behind.
            if let Some(key) = &envelope.ordering_key {
                store.release(&tx, key, stream_sequence)?;
            }
            outcomes.push(Applied::DeadLetteredBefore(reason));
            continue;
        }
        let mark = OrderMark::new(envelope.epoch, envelope.sequence);
        let scope = epoch_scope(envelope);
        // Reads see the writes of earlier events of the batch: same transaction.
        let high_water = store.shard_high_water(&tx, &scope)?;
        let decision = match &envelope.ordering_key {
            Some(key) => {
                let record = store.key_record(&tx, key)?;
                decide(
                    high_water,
                    &record,
                    &EventPosition {
                        mark,
                        stream_sequence,
                    },
                )
            }
            None => decide_unkeyed(
                high_water,
                envelope.epoch,
                store.was_seen(&tx, envelope.event_id)?,
            ),
        };
        match decision {
            ApplyDecision::Duplicate => {
                outcomes.push(Applied::Duplicate);
                continue;
            }
            ApplyDecision::StaleEpoch { applied } => {
                outcomes.push(Applied::Stale(format!("applied {applied} of its key")));
                continue;
            }
            ApplyDecision::StaleShardEpoch { high_water } => {
                outcomes.push(Applied::Stale(format!(
                    "applied epoch {high_water} of its shard"
                )));
                continue;
            }
            ApplyDecision::HeldBehind { .. } => {
                outcomes.push(Applied::Held);
                continue;
            }
            ApplyDecision::Apply => {}
        }
        // A savepoint per event: a failing handler undoes only its own writes.
        tx.execute_batch("SAVEPOINT bus_event")?;
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            handler.handle(&tx, envelope)
        }))
        .unwrap_or_else(|_| Err(HandlerError::new(HandlerPanicked)));
        match outcome {
            Ok(()) if shadow => {
                tx.execute_batch("ROLLBACK TO bus_event; RELEASE bus_event")?;
                outcomes.push(Applied::Shadow);
            }
            Ok(()) => {
                store.raise_high_water(&tx, &scope, envelope.epoch)?;
                match &envelope.ordering_key {
                    Some(key) => {
                        store.record_applied(&tx, key, mark)?;
                        store.release(&tx, key, stream_sequence)?;
                    }
                    None => store.record_seen(&tx, envelope.event_id)?,
                }
                tx.execute_batch("RELEASE bus_event")?;
                outcomes.push(Applied::Done);
            }
            Err(error) => {
                tx.execute_batch("ROLLBACK TO bus_event; RELEASE bus_event")?;
                if let (Some(key), false) = (&envelope.ordering_key, shadow) {
                    store.hold(&tx, key, stream_sequence)?;
                }
                outcomes.push(Applied::Failed(error));
            }
        }
    }
    if shadow {
        drop(tx); // read-only: roll back everything
    } else {
        tx.commit()?;
    }
    Ok(outcomes)
}
