//! `SequenceStore`: per-key sequences that survive restarts without a write per event.
//!
//! Sequences are handed out from blocks reserved in SQLite: before the first sequence of a
//! block is used, the block's end is committed durably. After a crash the store resumes past
//! the last reserved end, so a sequence is never reused (it may skip numbers: consumers order
//! by `(epoch, sequence)` and accept gaps).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::Connection;
use rusqlite::OptionalExtension;

use crate::sqlite::from_sql;
use crate::sqlite::open_durable;
use crate::sqlite::to_sql;

#[derive(Debug, Clone, Copy)]
struct Block {
    next: u64,
    end: u64,
}

/// Durable per-key sequence counters.
#[derive(Debug)]
pub struct SequenceStore {
    conn: Mutex<Connection>,
    blocks: Mutex<HashMap<String, Block>>,
    block_size: u64,
}

impl SequenceStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path, block_size: u64) -> rusqlite::Result<SequenceStore> {
        let conn = open_durable(path)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS bus_sequences (key TEXT PRIMARY KEY, reserved INTEGER NOT NULL);",
        )?;
        Ok(SequenceStore {
            conn: Mutex::new(conn),
            blocks: Mutex::new(HashMap::new()),
            block_size: block_size.max(1),
        })
    }

    /// The next sequence of `key` if its block has room (no I/O).
    pub fn next_cached(&self, key: &str) -> Option<u64> {
        let mut blocks = self.blocks.lock().unwrap_or_else(|p| p.into_inner());
        let block = blocks.get_mut(key)?;
        if block.next > block.end {
            return None;
        }
        let n = block.next;
        block.next += 1;
        Some(n)
    }

    /// The next sequence of `key`, reserving a new block durably when needed (blocking I/O).
    pub fn next(&self, key: &str) -> rusqlite::Result<u64> {
        if let Some(n) = self.next_cached(key) {
            return Ok(n);
        }
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let reserved: u64 = conn
            .query_row(
                "SELECT reserved FROM bus_sequences WHERE key = ?1",
                [key],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .map(from_sql)
            .unwrap_or(0);
        let end = reserved + self.block_size;
        conn.execute(
            "INSERT INTO bus_sequences (key, reserved) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET reserved = excluded.reserved",
            rusqlite::params![key, to_sql(end)],
        )?;
        let mut blocks = self.blocks.lock().unwrap_or_else(|p| p.into_inner());
        blocks.insert(
            key.to_owned(),
            Block {
                next: reserved + 2,
                end,
            },
        );
        Ok(reserved + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_grow_and_never_repeat_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seq.db");
        let store = SequenceStore::open(&path, 10).unwrap();
        let first: Vec<u64> = (0..12).map(|_| store.next("k").unwrap()).collect();
        assert_eq!(first, (1..=12).collect::<Vec<_>>());
        assert_eq!(store.next("other").unwrap(), 1);
        drop(store);
        let store = SequenceStore::open(&path, 10).unwrap();
        assert_eq!(
            store.next("k").unwrap(),
            21,
            "resumes past the reserved block"
        );
        assert_eq!(store.next_cached("k"), Some(22));
    }
}
