//! `Capture`: the SQLite side of the primary. It holds a read transaction so no connection can
//! restart or truncate the WAL past frames not yet read, reads committed frames from the WAL
//! file, and checkpoints only after reading everything.
//!
//! Two connections of its own, both with automatic checkpoints off:
//! - `read`: keeps a read transaction open at a known WAL position `M`. While it does, SQLite
//!   cannot restart the WAL past unread frames: a reader on a WAL read mark blocks restarts
//!   outright, and a reader on mark 0 (everything was checkpointed when it began) blocks
//!   backfilling, so a restart can only happen while the WAL still ends at `M`. Either way a
//!   WAL found restarted while the read transaction is held continues the history without a gap.
//! - `lock`: takes the write lock (`BEGIN IMMEDIATE`) for the few milliseconds it takes to read
//!   to the WAL's end and move the read transaction there, so `M` is exactly known. The same
//!   lock window runs capture's PASSIVE checkpoint and starts snapshot readers.
//!
//! The application's PASSIVE and FULL checkpoints are fine; RESTART and TRUNCATE wait for the
//! read transaction (they return busy rather than lose frames).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

use crate::error::{ReplicationError, ReplicationResult};
use crate::wal_scan::{self, Scanned, WalPosition, WalState};

/// What a poll found.
#[derive(Debug)]
pub(crate) enum Polled {
    /// New committed transactions.
    Frames(Scanned),
    /// Nothing new.
    Nothing,
    /// The WAL was restarted or rewritten without capture holding it: frames may be lost, so
    /// the history cannot continue in this generation.
    Gap {
        /// What was found.
        reason: String,
    },
}

/// A read transaction at a known position, for a snapshot (backup) taken off the capture path.
pub(crate) struct SnapshotReader {
    conn: Connection,
}

impl SnapshotReader {
    /// Copies the database as of the reader's position into a new file at `dest`.
    pub(crate) fn backup_to(self, dest: &Path) -> ReplicationResult<()> {
        let _ = std::fs::remove_file(dest);
        let mut out = Connection::open(dest)?;
        {
            let backup = rusqlite::backup::Backup::new(&self.conn, &mut out)?;
            // One step: the source's read transaction is the reader's own, held throughout.
            loop {
                match backup.step(-1)? {
                    rusqlite::backup::StepResult::Done => break,
                    rusqlite::backup::StepResult::More => continue,
                    rusqlite::backup::StepResult::Busy | rusqlite::backup::StepResult::Locked => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    _ => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        }
        out.close().map_err(|(_, e)| e)?;
        let _ = self.conn.execute_batch("ROLLBACK");
        Ok(())
    }
}

/// The primary database as capture sees it.
pub(crate) struct Capture {
    db: PathBuf,
    wal: PathBuf,
    lock: Connection,
    read: Connection,
    /// The read transaction is open.
    reading: bool,
    /// Where the next scan starts; `None`: at the start of the next WAL (nothing unread).
    cursor: Option<WalPosition>,
    page_size: u32,
    max_segment_bytes: usize,
    /// The next WAL found continues the history (set at a start under the write lock).
    trust_next_wal: bool,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("db", &self.db)
            .field("reading", &self.reading)
            .field("cursor", &self.cursor)
            .finish()
    }
}

fn open_conn(db: &Path) -> ReplicationResult<Connection> {
    let conn = Connection::open(db)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    Ok(conn)
}

impl Capture {
    /// Opens the database, switching it to WAL mode if needed.
    pub(crate) fn open(db: &Path, max_segment_bytes: usize) -> ReplicationResult<Capture> {
        let lock = open_conn(db)?;
        let mode: String = lock.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(ReplicationError::NotWal {
                path: db.to_owned(),
                mode,
            });
        }
        let page_size: u32 = lock.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let read = open_conn(db)?;
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        Ok(Capture {
            db: db.to_owned(),
            wal: PathBuf::from(wal),
            lock,
            read,
            reading: false,
            cursor: None,
            page_size,
            max_segment_bytes,
            trust_next_wal: false,
        })
    }

    /// The page size.
    pub(crate) fn page_size(&self) -> u32 {
        self.page_size
    }

    /// Bytes of the WAL in use up to the capture position: what a checkpoint would copy
    /// back. (The file itself keeps its size after SQLite restarts it from the start.)
    pub(crate) fn wal_in_use(&self) -> u64 {
        self.cursor.map_or(0, |c| {
            crate::wal_format::WAL_HEADER_LEN
                + u64::from(c.frame)
                    * (crate::wal_format::FRAME_HEADER_LEN + u64::from(self.page_size))
        })
    }

    /// The WAL file's size in bytes (0 if absent).
    pub(crate) fn wal_size(&self) -> u64 {
        std::fs::metadata(&self.wal).map_or(0, |m| m.len())
    }

    fn io(&self, e: std::io::Error) -> ReplicationError {
        ReplicationError::io(&self.wal, e)
    }

    fn begin_read(conn: &Connection) -> ReplicationResult<()> {
        conn.execute_batch("BEGIN")?;
        conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))?;
        Ok(())
    }

    fn end_read(&mut self) {
        if self.reading {
            let _ = self.read.execute_batch("ROLLBACK");
            self.reading = false;
        }
    }

    /// Under the write lock: reads everything after the cursor (restarted WALs included only
    /// when continuity holds), runs `during` (the WAL cannot change meanwhile), moves the read
    /// transaction to the end, and returns what was read.
    fn at_end<T>(
        &mut self,
        during: impl FnOnce(&mut Capture) -> ReplicationResult<T>,
    ) -> ReplicationResult<(Polled, T)> {
        self.lock.execute_batch("BEGIN IMMEDIATE")?;
        let result = (|| {
            let mut all: Option<Scanned> = None;
            let polled = loop {
                match self.poll_once(usize::MAX)? {
                    Polled::Frames(s) => match &mut all {
                        Some(acc) => {
                            acc.pages.merge(s.pages);
                            acc.end = s.end;
                            acc.transactions += s.transactions;
                        }
                        None => all = Some(s),
                    },
                    Polled::Nothing => break all.map_or(Polled::Nothing, Polled::Frames),
                    gap @ Polled::Gap { .. } => break gap,
                }
            };
            let out = during(self)?;
            self.end_read();
            Capture::begin_read(&self.read)?;
            self.reading = true;
            Ok((polled, out))
        })();
        let _ = self.lock.execute_batch("ROLLBACK");
        result
    }

    /// Starts capture afresh: everything in the database now is the base (a snapshot taken
    /// with the returned reader holds exactly it), and capture continues from here.
    pub(crate) fn start_fresh(&mut self) -> ReplicationResult<SnapshotReader> {
        self.cursor = None;
        self.end_read();
        // Skip whatever is in the WAL: the snapshot includes it.
        self.lock.execute_batch("BEGIN IMMEDIATE")?;
        let result = (|| {
            self.cursor = match wal_scan::read_header(&self.wal).map_err(|e| self.io(e))? {
                None => None,
                Some(h) => {
                    let mut at = wal_scan::start_of(&h);
                    while let Some(s) =
                        wal_scan::scan(&self.wal, &h, &at, usize::MAX).map_err(|e| self.io(e))?
                    {
                        at = s.end;
                    }
                    Some(at)
                }
            };
            let snapshot = open_conn(&self.db)?;
            Capture::begin_read(&snapshot)?;
            Capture::begin_read(&self.read)?;
            self.reading = true;
            Ok(SnapshotReader { conn: snapshot })
        })();
        let _ = self.lock.execute_batch("ROLLBACK");
        result
    }

    /// Starts capture at the start of an empty database's WAL (after a promotion: the
    /// database is exactly the parent generation's end).
    pub(crate) fn start_empty(&mut self) -> ReplicationResult<Polled> {
        self.cursor = None;
        self.end_read();
        self.trust_next_wal = true;
        let result = self.at_end(|_| Ok(()));
        self.trust_next_wal = false;
        Ok(result?.0)
    }

    /// Reads newly committed transactions (at most about one segment's worth).
    pub(crate) fn poll(&mut self) -> ReplicationResult<Polled> {
        self.poll_once(self.max_segment_bytes)
    }

    fn poll_once(&mut self, max_bytes: usize) -> ReplicationResult<Polled> {
        let header = match self.cursor {
            Some(at) => match wal_scan::wal_state(&self.wal, &at).map_err(|e| self.io(e))? {
                WalState::Empty => {
                    if self.reading {
                        // Truncated while held: only possible with everything read.
                        self.cursor = None;
                    }
                    return Ok(Polled::Nothing);
                }
                WalState::Same(h) => {
                    if !self.reading
                        && !wal_scan::still_matches(&self.wal, &h, &at).map_err(|e| self.io(e))?
                    {
                        return Ok(Polled::Gap {
                            reason: "the WAL was rewritten under the capture position".into(),
                        });
                    }
                    h
                }
                WalState::Restarted(h) => {
                    if !self.reading {
                        return Ok(Polled::Gap {
                            reason: format!(
                                "the WAL was restarted (checkpoint sequence {} -> {}) while capture did not hold it",
                                at.checkpoint_seq, h.checkpoint_seq
                            ),
                        });
                    }
                    self.cursor = Some(wal_scan::start_of(&h));
                    h
                }
            },
            None => match wal_scan::read_header(&self.wal).map_err(|e| self.io(e))? {
                None => return Ok(Polled::Nothing),
                Some(h) => {
                    if !self.reading && !self.trust_next_wal {
                        return Ok(Polled::Gap {
                            reason: "a new WAL appeared while capture did not hold the database"
                                .into(),
                        });
                    }
                    self.cursor = Some(wal_scan::start_of(&h));
                    h
                }
            },
        };
        let Some(from) = self.cursor else {
            return Ok(Polled::Nothing);
        };
        match wal_scan::scan(&self.wal, &header, &from, max_bytes).map_err(|e| self.io(e))? {
            Some(s) => {
                self.cursor = Some(s.end);
                Ok(Polled::Frames(s))
            }
            None => Ok(Polled::Nothing),
        }
    }

    /// Reads to the end and checkpoints (PASSIVE) under the write lock, then holds the read
    /// transaction at the new end. Returns what was read; the caller ships it before anything
    /// read later.
    pub(crate) fn checkpoint(&mut self) -> ReplicationResult<Polled> {
        let (polled, ()) = self.at_end(|c| {
            c.end_read();
            c.read
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
            Ok(())
        })?;
        Ok(polled)
    }

    /// Reads to the end and starts a snapshot reader there; returns what was read (ship it
    /// first: the snapshot includes it).
    pub(crate) fn snapshot_reader(&mut self) -> ReplicationResult<(Polled, SnapshotReader)> {
        let db = self.db.clone();
        self.at_end(move |_| {
            let conn = open_conn(&db)?;
            Capture::begin_read(&conn)?;
            Ok(SnapshotReader { conn })
        })
    }

    /// Lets go of the WAL (the store is down and the WAL has grown past its limit): the
    /// application may checkpoint and restart it; capture continues only if it did not.
    pub(crate) fn release(&mut self) {
        self.end_read();
    }

    /// Takes the read transaction again after a release, reading to the end first.
    pub(crate) fn reacquire(&mut self) -> ReplicationResult<Polled> {
        let (polled, ()) = self.at_end(|_| Ok(()))?;
        Ok(polled)
    }
}
