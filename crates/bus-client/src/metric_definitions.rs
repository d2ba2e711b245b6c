//! Every metric this crate records, by its exact name, and the handles that record them.
//!
//! | name | type | labels | what |
//! | --- | --- | --- | --- |
//! | `event_bus_publish_total` | counter | `status` = `acked`, `outboxed`, `rejected`, `failed` | publish calls by outcome |
//! | `event_bus_publish_retries_total` | counter | | publish attempts after the first |
//! | `event_bus_degraded` | gauge | | 1 while events go to the outbox, else 0 |
//! | `event_bus_outages_total` | counter | | entries into degraded mode |
//! | `event_bus_recoveries_total` | counter | | outbox drained, degraded mode left |
//! | `event_bus_outbox_depth` | gauge | | events waiting in the outbox |
//! | `event_bus_outbox_held_keys` | gauge | | keys whose outbox entries wait behind one the bus refused for good (a gap the app must resolve) |
//! | `event_bus_consumer_lag` | gauge | `consumer` | messages not yet delivered to the consumer |
//! | `event_bus_consumed_total` | counter | `consumer`, `outcome` = `applied`, `duplicate`, `held`, `retried`, `dead_lettered`, `shadow` | deliveries by outcome |
//! | `event_bus_dead_letters_total` | counter | `consumer`, `reason` (see `DeadLetterReason`) | events dead-lettered |
//!
//! Handles are registered once, with whatever recorder is current when `register` runs: the
//! global one in production, a local one in tests (`metrics::with_local_recorder`).

use cluster_core::event::DeadLetterReason;
use metrics::Counter;
use metrics::Gauge;

/// `event_bus_publish_total{status}`.
pub const PUBLISH_TOTAL: &str = "event_bus_publish_total";
/// `event_bus_publish_retries_total`.
pub const PUBLISH_RETRIES_TOTAL: &str = "event_bus_publish_retries_total";
/// `event_bus_degraded`.
pub const DEGRADED: &str = "event_bus_degraded";
/// `event_bus_outages_total`.
pub const OUTAGES_TOTAL: &str = "event_bus_outages_total";
/// `event_bus_recoveries_total`.
pub const RECOVERIES_TOTAL: &str = "event_bus_recoveries_total";
/// `event_bus_outbox_depth`.
pub const OUTBOX_DEPTH: &str = "event_bus_outbox_depth";
/// `event_bus_outbox_held_keys`.
pub const OUTBOX_HELD_KEYS: &str = "event_bus_outbox_held_keys";
/// `event_bus_consumer_lag{consumer}`.
pub const CONSUMER_LAG: &str = "event_bus_consumer_lag";
/// `event_bus_consumed_total{consumer,outcome}`.
pub const CONSUMED_TOTAL: &str = "event_bus_consumed_total";
/// `event_bus_dead_letters_total{consumer,reason}`.
pub const DEAD_LETTERS_TOTAL: &str = "event_bus_dead_letters_total";

/// The publisher's metric handles.
#[derive(Clone)]
pub struct PublisherMetrics {
    pub(crate) acked: Counter,
    pub(crate) outboxed: Counter,
    pub(crate) rejected: Counter,
    pub(crate) failed: Counter,
    pub(crate) retries: Counter,
    pub(crate) degraded: Gauge,
    pub(crate) outages: Counter,
    pub(crate) recoveries: Counter,
    pub(crate) outbox_depth: Gauge,
    pub(crate) outbox_held_keys: Gauge,
}

impl PublisherMetrics {
    /// Registers the handles with the current recorder.
    pub fn register() -> PublisherMetrics {
        PublisherMetrics {
            acked: metrics::counter!(PUBLISH_TOTAL, "status" => "acked"),
            outboxed: metrics::counter!(PUBLISH_TOTAL, "status" => "outboxed"),
            rejected: metrics::counter!(PUBLISH_TOTAL, "status" => "rejected"),
            failed: metrics::counter!(PUBLISH_TOTAL, "status" => "failed"),
            retries: metrics::counter!(PUBLISH_RETRIES_TOTAL),
            degraded: metrics::gauge!(DEGRADED),
            outages: metrics::counter!(OUTAGES_TOTAL),
            recoveries: metrics::counter!(RECOVERIES_TOTAL),
            outbox_depth: metrics::gauge!(OUTBOX_DEPTH),
            outbox_held_keys: metrics::gauge!(OUTBOX_HELD_KEYS),
        }
    }
}

impl std::fmt::Debug for PublisherMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PublisherMetrics")
    }
}

/// One consumer's metric handles.
#[derive(Clone)]
pub struct ConsumerMetrics {
    pub(crate) lag: Gauge,
    pub(crate) applied: Counter,
    pub(crate) duplicate: Counter,
    pub(crate) held: Counter,
    pub(crate) retried: Counter,
    pub(crate) dead_lettered: Counter,
    pub(crate) shadow: Counter,
    dead_letters: Vec<(DeadLetterReason, Counter)>,
}

impl ConsumerMetrics {
    /// Registers the handles of consumer `name` with the current recorder.
    pub fn register(name: &str) -> ConsumerMetrics {
        let consumer = name.to_owned();
        let outcome = |o: &'static str| metrics::counter!(CONSUMED_TOTAL, "consumer" => consumer.clone(), "outcome" => o);
        ConsumerMetrics {
            lag: metrics::gauge!(CONSUMER_LAG, "consumer" => consumer.clone()),
            applied: outcome("applied"),
            duplicate: outcome("duplicate"),
            held: outcome("held"),
            retried: outcome("retried"),
            dead_lettered: outcome("dead_lettered"),
            shadow: outcome("shadow"),
            dead_letters: DeadLetterReason::ALL
                .into_iter()
                .map(|r| {
                    let c = metrics::counter!(DEAD_LETTERS_TOTAL, "consumer" => consumer.clone(), "reason" => r.as_str());
                    (r, c)
                })
                .collect(),
        }
    }

    pub(crate) fn dead_letter(&self, reason: DeadLetterReason) {
        if let Some((_, c)) = self.dead_letters.iter().find(|(r, _)| *r == reason) {
            c.increment(1);
        }
        self.dead_lettered.increment(1);
    }
}

impl std::fmt::Debug for ConsumerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConsumerMetrics")
    }
}
