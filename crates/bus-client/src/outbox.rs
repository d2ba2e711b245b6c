//! `Outbox`: the durable local queue events go to while NATS is unreachable.
//!
//! Rows are kept in SQLite in append order (`id`), committed with `synchronous = FULL` before
//! `publish` resolves, and deleted only once JetStream has acknowledged them. The outbox is
//! bounded: past `capacity` rows an append fails with [`OutboxError::Full`] (the publisher
//! then blocks or rejects, never drops). Counts per ordering key and per shard are kept in
//! memory so the publisher can tell, without a query, whether a key still has events waiting.
//!
//! An entry the bus refuses for good is set aside (`bus_outbox_refused`) and holds its key
//! (`bus_outbox_held`): the key's later entries stay queued, not published without it, until
//! the app releases the key ([`Outbox::release_key`]).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use cluster_core::ids::PartitionId;
use rusqlite::Connection;
use rusqlite::params;

use crate::sqlite::from_sql;
use crate::sqlite::open_durable;
use crate::sqlite::to_sql;

/// Why an outbox operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// The outbox holds `capacity` events already.
    #[error("outbox is full ({capacity} events)")]
    Full {
        /// The configured capacity.
        capacity: usize,
    },
    /// SQLite failed.
    #[error("outbox storage failed: {0}")]
    Storage(#[from] rusqlite::Error),
}

impl cluster_core::error::Retryable for OutboxError {
    fn is_retryable(&self) -> bool {
        // A full outbox drains once the bus is back; a storage failure is the disk's.
        matches!(self, OutboxError::Full { .. })
    }

    fn as_metrics_label(&self) -> &'static str {
        match self {
            OutboxError::Full { .. } => "outbox_full",
            OutboxError::Storage(_) => "outbox_storage",
        }
    }
}

/// One message waiting to be published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// The ordering key (or `#{event_id}` for events without one).
    pub key: String,
    /// The shard.
    pub shard: u32,
    /// The subject.
    pub subject: String,
    /// The `Nats-Msg-Id`.
    pub message_id: String,
    /// The encoded envelope.
    pub payload: Vec<u8>,
}

/// An entry as stored, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    /// The append position.
    pub id: i64,
    /// The entry.
    pub entry: OutboxEntry,
}

/// A key whose outbox entries wait behind one the bus refused for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldKey {
    /// The ordering key (`#{event_id}` for an event without one).
    pub key: String,
    /// Its shard.
    pub shard: PartitionId,
    /// The refused entry's position, kept in `bus_outbox_refused`.
    pub refused_id: i64,
    /// The refused entry's `Nats-Msg-Id` (its event id).
    pub message_id: String,
    /// Why the bus refused it.
    pub error: String,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_key: HashMap<String, usize>,
    by_shard: HashMap<u32, usize>,
    held: HashMap<String, HeldKey>,
}

impl Counts {
    fn add(&mut self, key: &str, shard: u32) {
        self.total += 1;
        *self.by_key.entry(key.to_owned()).or_default() += 1;
        *self.by_shard.entry(shard).or_default() += 1;
    }

    fn remove(&mut self, key: &str, shard: u32) {
        self.total = self.total.saturating_sub(1);
        if let Some(n) = self.by_key.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                self.by_key.remove(key);
            }
        }
        if let Some(n) = self.by_shard.get_mut(&shard) {
            *n -= 1;
            if *n == 0 {
                self.by_shard.remove(&shard);
            }
        }
    }
}

/// A bounded, durable, ordered queue of messages in SQLite.
#[derive(Debug)]
pub struct Outbox {
    conn: Mutex<Connection>,
    counts: Mutex<Counts>,
    capacity: usize,
}

impl Outbox {
    /// Opens (or creates) the outbox at `path`, loading the counts of what is waiting.
    pub fn open(path: &Path, capacity: usize) -> Result<Outbox, OutboxError> {
        let conn = open_durable(path)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS bus_outbox (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 key TEXT NOT NULL,
                 shard INTEGER NOT NULL,
                 subject TEXT NOT NULL,
                 message_id TEXT NOT NULL,
                 payload BLOB NOT NULL
             );
             CREATE TABLE IF NOT EXISTS bus_outbox_refused (
                 id INTEGER PRIMARY KEY,
                 key TEXT NOT NULL,
                 shard INTEGER NOT NULL,
                 subject TEXT NOT NULL,
                 message_id TEXT NOT NULL,
                 payload BLOB NOT NULL,
                 error TEXT NOT NULL
             );
             CREATE TABLE IF NOT EXISTS bus_outbox_held (
                 key TEXT PRIMARY KEY,
                 shard INTEGER NOT NULL,
                 refused_id INTEGER NOT NULL,
                 message_id TEXT NOT NULL,
                 error TEXT NOT NULL
             );",
        )?;
        let mut counts = Counts::default();
        {
            let mut stmt = conn.prepare("SELECT key, shard FROM bus_outbox")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            for row in rows {
                let (key, shard) = row?;
                counts.add(&key, u32::try_from(shard).unwrap_or(0));
            }
            let mut stmt = conn.prepare(
                "SELECT key, shard, refused_id, message_id, error FROM bus_outbox_held ORDER BY refused_id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(HeldKey {
                    key: r.get(0)?,
                    shard: PartitionId(u32::try_from(r.get::<_, i64>(1)?).unwrap_or(0)),
                    refused_id: r.get(2)?,
                    message_id: r.get(3)?,
                    error: r.get(4)?,
                })
            })?;
            for row in rows {
                let held = row?;
                counts.held.insert(held.key.clone(), held);
            }
        }
        Ok(Outbox {
            conn: Mutex::new(conn),
            counts: Mutex::new(counts),
            capacity,
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `entries` in one transaction, durable when this returns.
    pub fn append(&self, entries: &[OutboxEntry]) -> Result<(), OutboxError> {
        let mut conn = self.conn();
        if self.counts().total + entries.len() > self.capacity {
            return Err(OutboxError::Full {
                capacity: self.capacity,
            });
        }
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO bus_outbox (key, shard, subject, message_id, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for e in entries {
                stmt.execute(params![e.key, e.shard, e.subject, e.message_id, e.payload])?;
            }
        }
        tx.commit()?;
        let mut counts = self.counts();
        for e in entries {
            counts.add(&e.key, e.shard);
        }
        Ok(())
    }

    /// Up to `limit` entries in append order, leaving out those of held keys.
    pub fn peek(&self, limit: usize) -> Result<Vec<StoredEntry>, OutboxError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, key, shard, subject, message_id, payload FROM bus_outbox
             WHERE key NOT IN (SELECT key FROM bus_outbox_held) ORDER BY id LIMIT ?1",
        )?;
        let rows = stmt.query_map([to_sql(limit as u64)], |r| {
            Ok(StoredEntry {
                id: r.get(0)?,
                entry: OutboxEntry {
                    key: r.get(1)?,
                    shard: u32::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                    subject: r.get(3)?,
                    message_id: r.get(4)?,
                    payload: r.get(5)?,
                },
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Deletes published entries.
    pub fn remove(&self, done: &[StoredEntry]) -> Result<(), OutboxError> {
        if done.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached("DELETE FROM bus_outbox WHERE id = ?1")?;
            for e in done {
                stmt.execute([e.id])?;
            }
        }
        tx.commit()?;
        let mut counts = self.counts();
        for e in done {
            counts.remove(&e.entry.key, e.entry.shard);
        }
        Ok(())
    }

    /// Moves an entry the bus refused for good to the refused table, keeping it for people,
    /// and holds its key: the key's later entries stay queued until [`Outbox::release_key`].
    pub fn set_aside(&self, entry: &StoredEntry, error: &str) -> Result<(), OutboxError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT OR REPLACE INTO bus_outbox_refused (id, key, shard, subject, message_id, payload, error)
             SELECT id, key, shard, subject, message_id, payload, ?2 FROM bus_outbox WHERE id = ?1",
            params![entry.id, error],
        )?;
        tx.execute("DELETE FROM bus_outbox WHERE id = ?1", [entry.id])?;
        let held = HeldKey {
            key: entry.entry.key.clone(),
            shard: PartitionId(entry.entry.shard),
            refused_id: entry.id,
            message_id: entry.entry.message_id.clone(),
            error: error.to_owned(),
        };
        // A key already held keeps its first gap: nothing of it was drained since.
        tx.execute(
            "INSERT OR IGNORE INTO bus_outbox_held (key, shard, refused_id, message_id, error)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                held.key,
                held.shard.0,
                held.refused_id,
                held.message_id,
                held.error
            ],
        )?;
        tx.commit()?;
        let mut counts = self.counts();
        counts.remove(&entry.entry.key, entry.entry.shard);
        counts.held.entry(held.key.clone()).or_insert(held);
        Ok(())
    }

    /// Ends the hold on `key` (the app has dealt with its refused entry): its queued entries
    /// drain again. `false` if the key was not held.
    pub fn release_key(&self, key: &str) -> Result<bool, OutboxError> {
        let conn = self.conn();
        let n = conn.execute("DELETE FROM bus_outbox_held WHERE key = ?1", [key])?;
        let was_held = self.counts().held.remove(key).is_some();
        Ok(n > 0 || was_held)
    }

    /// The keys held behind a refused entry, oldest refusal first.
    pub fn held_keys(&self) -> Vec<HeldKey> {
        let mut held: Vec<HeldKey> = self.counts().held.values().cloned().collect();
        held.sort_by_key(|h| h.refused_id);
        held
    }

    /// Entries waiting that the drainer may publish now (not behind a held key).
    pub fn drainable_depth(&self) -> usize {
        let counts = self.counts();
        let behind: usize = counts
            .held
            .keys()
            .filter_map(|k| counts.by_key.get(k))
            .sum();
        counts.total.saturating_sub(behind)
    }

    /// Events waiting.
    pub fn depth(&self) -> usize {
        self.counts().total
    }

    /// Whether events of `key` are waiting, or the key is held behind a refused entry: a new
    /// event of the key must queue behind them.
    pub fn has_key(&self, key: &str) -> bool {
        let counts = self.counts();
        counts.by_key.contains_key(key) || counts.held.contains_key(key)
    }

    /// Events of `shard` waiting.
    pub fn shard_depth(&self, shard: u32) -> usize {
        self.counts().by_shard.get(&shard).copied().unwrap_or(0)
    }

    /// Entries refused by the bus and set aside.
    pub fn refused_count(&self) -> Result<u64, OutboxError> {
        let conn = self.conn();
        let n: i64 = conn.query_row("SELECT COUNT(*) FROM bus_outbox_refused", [], |r| r.get(0))?;
        Ok(from_sql(n))
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, shard: u32, n: u8) -> OutboxEntry {
        OutboxEntry {
            key: key.into(),
            shard,
            subject: "p.v1.lifecycle.task.p1.x".into(),
            message_id: format!("m{n}"),
            payload: vec![n],
        }
    }

    #[test]
    fn keeps_order_counts_and_capacity_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.db");
        {
            let outbox = Outbox::open(&path, 3).unwrap();
            outbox
                .append(&[entry("a", 1, 1), entry("b", 2, 2)])
                .unwrap();
            outbox.append(&[entry("a", 1, 3)]).unwrap();
            assert!(matches!(
                outbox.append(&[entry("c", 1, 4)]),
                Err(OutboxError::Full { capacity: 3 })
            ));
            assert_eq!(outbox.depth(), 3);
        }
        let outbox = Outbox::open(&path, 3).unwrap();
        assert_eq!(outbox.depth(), 3);
        assert!(outbox.has_key("a"));
        assert_eq!(outbox.shard_depth(1), 2);
        let all = outbox.peek(10).unwrap();
        let order: Vec<u8> = all.iter().map(|e| e.entry.payload[0]).collect();
        assert_eq!(order, vec![1, 2, 3]);
        outbox.remove(&all[..2]).unwrap();
        assert!(!outbox.has_key("b"));
        assert!(outbox.has_key("a"));
        outbox.set_aside(&all[2], "refused").unwrap();
        assert_eq!(outbox.depth(), 0);
        assert_eq!(outbox.refused_count().unwrap(), 1);
        assert_eq!(outbox.shard_depth(1), 0);
    }

    #[test]
    fn a_refused_entry_holds_its_key_across_reopen_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.db");
        {
            let outbox = Outbox::open(&path, 10).unwrap();
            outbox
                .append(&[entry("a", 1, 1), entry("a", 1, 2), entry("b", 2, 3)])
                .unwrap();
            let all = outbox.peek(10).unwrap();
            outbox.set_aside(&all[0], "too large").unwrap();
            let left: Vec<u8> = outbox
                .peek(10)
                .unwrap()
                .iter()
                .map(|e| e.entry.payload[0])
                .collect();
            assert_eq!(left, vec![3], "a's later entry waits");
            assert!(outbox.has_key("a"));
            assert_eq!((outbox.depth(), outbox.drainable_depth()), (2, 1));
        }
        let outbox = Outbox::open(&path, 10).unwrap();
        let held = outbox.held_keys();
        assert_eq!(held.len(), 1);
        assert_eq!(
            (held[0].key.as_str(), held[0].error.as_str()),
            ("a", "too large")
        );
        assert_eq!(outbox.peek(10).unwrap().len(), 1);
        assert!(outbox.release_key("a").unwrap());
        assert!(!outbox.release_key("a").unwrap());
        assert_eq!(outbox.peek(10).unwrap().len(), 2);
        assert_eq!(outbox.drainable_depth(), 2);
        assert!(outbox.held_keys().is_empty());
    }
}
