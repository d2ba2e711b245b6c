//! `ConsumerStore`: a consumer's dedup and order record, in the SQLite file the handler writes to.
//!
//! | table | what |
//! | --- | --- |
//! | `bus_shard_epochs (consumer, scope, epoch)` | highest epoch applied per shard (`p{shard}`; `platform` for platform events) |
//! | `bus_applied (consumer, key, epoch, sequence)` | highest `(epoch, sequence)` applied per key |
//! | `bus_seen (consumer, event_id, seen_at_ms)` | ids of applied events without a key |
//! | `bus_holds (consumer, key, stream_sequence)` | the failing event later ones of a key wait behind |
//!
//! Seen ids are kept at least the retention (24 hours by default), far beyond JetStream's
//! 2-minute duplicate window.

use std::time::UNIX_EPOCH;

use cluster_core::event::EventId;
use cluster_core::event::KeyRecord;
use cluster_core::event::OrderMark;
use cluster_core::ids::FencingToken;
use rusqlite::OptionalExtension;
use rusqlite::Transaction;
use rusqlite::params;

use crate::sqlite::from_sql;
use crate::sqlite::to_sql;

/// Creates the record tables.
pub(crate) fn create_tables(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS bus_applied (
             consumer TEXT NOT NULL, key TEXT NOT NULL, epoch INTEGER NOT NULL, sequence INTEGER NOT NULL,
             PRIMARY KEY (consumer, key));
         CREATE TABLE IF NOT EXISTS bus_seen (
             consumer TEXT NOT NULL, event_id TEXT NOT NULL, seen_at_ms INTEGER NOT NULL,
             PRIMARY KEY (consumer, event_id));
         CREATE INDEX IF NOT EXISTS bus_seen_age ON bus_seen (consumer, seen_at_ms);
         CREATE TABLE IF NOT EXISTS bus_dead_lettered (
             consumer TEXT NOT NULL, event_id TEXT NOT NULL, reason TEXT NOT NULL,
             PRIMARY KEY (consumer, event_id));
         CREATE TABLE IF NOT EXISTS bus_shard_epochs (
             consumer TEXT NOT NULL, scope TEXT NOT NULL, epoch INTEGER NOT NULL,
             PRIMARY KEY (consumer, scope));
         CREATE TABLE IF NOT EXISTS bus_holds (
             consumer TEXT NOT NULL, key TEXT NOT NULL, stream_sequence INTEGER NOT NULL,
             PRIMARY KEY (consumer, key));",
    )
}

fn now_ms() -> i64 {
    let d = coord_client::wall_now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The record of one consumer, read and written inside the handler's transaction.
#[derive(Debug, Clone)]
pub(crate) struct ConsumerStore {
    consumer: String,
}

impl ConsumerStore {
    pub(crate) fn new(consumer: &str) -> ConsumerStore {
        ConsumerStore {
            consumer: consumer.to_owned(),
        }
    }

    pub(crate) fn key_record(
        &self,
        tx: &Transaction<'_>,
        key: &str,
    ) -> rusqlite::Result<KeyRecord> {
        let applied = tx
            .query_row(
                "SELECT epoch, sequence FROM bus_applied WHERE consumer = ?1 AND key = ?2",
                params![self.consumer, key],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
            )
            .optional()?
            .map(|(e, s)| OrderMark::new(FencingToken::new(from_sql(e)), from_sql(s)));
        let held_at = tx
            .query_row(
                "SELECT stream_sequence FROM bus_holds WHERE consumer = ?1 AND key = ?2",
                params![self.consumer, key],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .map(from_sql);
        Ok(KeyRecord { applied, held_at })
    }

    /// The highest epoch applied in `scope` (a shard, or the platform events), if any.
    pub(crate) fn shard_high_water(
        &self,
        tx: &Transaction<'_>,
        scope: &str,
    ) -> rusqlite::Result<Option<FencingToken>> {
        Ok(tx
            .query_row(
                "SELECT epoch FROM bus_shard_epochs WHERE consumer = ?1 AND scope = ?2",
                params![self.consumer, scope],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .map(|e| FencingToken::new(from_sql(e))))
    }

    /// Raises the high-water epoch of `scope` to `epoch` (never lowers it).
    pub(crate) fn raise_high_water(
        &self,
        tx: &Transaction<'_>,
        scope: &str,
        epoch: FencingToken,
    ) -> rusqlite::Result<()> {
        tx.execute(
            "INSERT INTO bus_shard_epochs (consumer, scope, epoch) VALUES (?1, ?2, ?3)
             ON CONFLICT(consumer, scope) DO UPDATE SET epoch = MAX(epoch, excluded.epoch)",
            params![self.consumer, scope, to_sql(epoch.get())],
        )?;
        Ok(())
    }

    pub(crate) fn record_applied(
        &self,
        tx: &Transaction<'_>,
        key: &str,
        mark: OrderMark,
    ) -> rusqlite::Result<()> {
        tx.execute(
            "INSERT INTO bus_applied (consumer, key, epoch, sequence) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(consumer, key) DO UPDATE SET epoch = excluded.epoch, sequence = excluded.sequence",
            params![self.consumer, key, to_sql(mark.epoch.get()), to_sql(mark.sequence)],
        )?;
        Ok(())
    }

    pub(crate) fn was_seen(&self, tx: &Transaction<'_>, id: EventId) -> rusqlite::Result<bool> {
        Ok(tx
            .query_row(
                "SELECT 1 FROM bus_seen WHERE consumer = ?1 AND event_id = ?2",
                params![self.consumer, id.to_string()],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Records, before the dead letter is published, that `id` is dead-lettered for `reason`:
    /// the decision is final, so neither a redelivery nor a catch-up after a crash applies it.
    /// In the same transaction, the hold the event put on `key` at `stream_sequence` (if any)
    /// ends: it will never be applied, so later events of the key need not wait for the letter
    /// to be published, and no crash or failed publish after this point can leave the hold.
    pub(crate) fn record_dead_lettered(
        &self,
        tx: &Transaction<'_>,
        id: EventId,
        reason: &str,
        key: Option<&str>,
        stream_sequence: u64,
    ) -> rusqlite::Result<()> {
        tx.execute(
            "INSERT OR IGNORE INTO bus_dead_lettered (consumer, event_id, reason) VALUES (?1, ?2, ?3)",
            params![self.consumer, id.to_string(), reason],
        )?;
        if let Some(key) = key {
            self.release(tx, key, stream_sequence)?;
        }
        Ok(())
    }

    /// The reason `id` was dead-lettered, if it was.
    pub(crate) fn dead_lettered(
        &self,
        conn: &rusqlite::Connection,
        id: EventId,
    ) -> rusqlite::Result<Option<String>> {
        conn.query_row(
            "SELECT reason FROM bus_dead_lettered WHERE consumer = ?1 AND event_id = ?2",
            params![self.consumer, id.to_string()],
            |row| row.get(0),
        )
        .optional()
    }

    pub(crate) fn record_seen(&self, tx: &Transaction<'_>, id: EventId) -> rusqlite::Result<()> {
        tx.execute(
            "INSERT OR IGNORE INTO bus_seen (consumer, event_id, seen_at_ms) VALUES (?1, ?2, ?3)",
            params![self.consumer, id.to_string(), now_ms()],
        )?;
        Ok(())
    }

    pub(crate) fn hold(
        &self,
        tx: &Transaction<'_>,
        key: &str,
        stream_sequence: u64,
    ) -> rusqlite::Result<()> {
        tx.execute(
            "INSERT OR IGNORE INTO bus_holds (consumer, key, stream_sequence) VALUES (?1, ?2, ?3)",
            params![self.consumer, key, to_sql(stream_sequence)],
        )?;
        Ok(())
    }

    pub(crate) fn release(
        &self,
        tx: &Transaction<'_>,
        key: &str,
        stream_sequence: u64,
    ) -> rusqlite::Result<()> {
        tx.execute(
            "DELETE FROM bus_holds WHERE consumer = ?1 AND key = ?2 AND stream_sequence = ?3",
            params![self.consumer, key, to_sql(stream_sequence)],
        )?;
        Ok(())
    }

    /// Forgets seen ids older than `retention`; returns how many.
    pub(crate) fn prune_seen(
        &self,
        tx: &Transaction<'_>,
        retention: std::time::Duration,
    ) -> rusqlite::Result<usize> {
        let cutoff =
            now_ms().saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
        tx.execute(
            "DELETE FROM bus_seen WHERE consumer = ?1 AND seen_at_ms < ?2",
            params![self.consumer, cutoff],
        )
    }
}
