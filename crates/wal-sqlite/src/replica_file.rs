//! `ReplicaFile`: applies page sets to a live replica so that readers only ever see a
//! transaction boundary, and a crash mid-apply is rolled back by SQLite itself.
//!
//! The replica is an ordinary SQLite database in rollback-journal mode. An apply takes SQLite's
//! EXCLUSIVE lock through a connection of its own (readers finish first; new readers wait in
//! their busy handler), writes the original images of every page it will overwrite to
//! `<replica>-journal` in SQLite's rollback-journal format and syncs it, writes the new pages,
//! sets the file size and the header (change counter, size, rollback-mode version bytes),
//! syncs, deletes the journal (the commit point) and releases the lock. If the process dies in
//! between, the journal is hot: the next connection to open the replica rolls it back before
//! reading, exactly as after a crashed SQLite writer.

use std::fs::File;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

use crate::error::{ReplicationError, ReplicationResult};
use crate::page_set::PageSet;

const JOURNAL_MAGIC: [u8; 8] = [0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7];
const SECTOR: usize = 512;

/// A replica being kept up to date.
pub(crate) struct ReplicaFile {
    // Declared before `file`: the connection (and its locks) goes first on drop. Closing any
    // descriptor of the file drops the process's POSIX locks on it, so `file` stays open for
    // as long as the connection may hold one.
    conn: Connection,
    file: File,
    path: PathBuf,
    journal: PathBuf,
    page_size: u32,
}

impl std::fmt::Debug for ReplicaFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaFile")
            .field("path", &self.path)
            .finish()
    }
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => File::open(".")?.sync_all(),
    }
}

/// Reads the page size from a database header.
pub(crate) fn page_size_of(header: &[u8]) -> Option<u32> {
    let raw = u16::from_be_bytes([*header.get(16)?, *header.get(17)?]);
    match raw {
        1 => Some(65536),
        n if n >= 512 && n.is_power_of_two() => Some(u32::from(n)),
        _ => None,
    }
}

/// Sets the header fields SQLite checks in rollback mode: version bytes 1/1 (not WAL), the
/// change counter (so other connections drop their caches), the in-header size, and the
/// version-valid-for number that makes that size trusted.
pub(crate) fn patch_header(page1: &mut [u8], counter: u32, db_pages: u32) {
    page1[18] = 1;
    page1[19] = 1;
    page1[24..28].copy_from_slice(&counter.to_be_bytes());
    page1[28..32].copy_from_slice(&db_pages.to_be_bytes());
    page1[92..96].copy_from_slice(&counter.to_be_bytes());
}

fn journal_checksum(nonce: u32, page: &[u8]) -> u32 {
    let mut sum = nonce;
    let mut i = page.len() as isize - 200;
    while i > 0 {
        sum = sum.wrapping_add(u32::from(page[i as usize]));
        i -= 200;
    }
    sum
}

/// Writes pages and the size to `file` (no journal, no locks): for files nobody has open.
pub(crate) fn write_pages(file: &File, page_size: u32, set: &PageSet) -> std::io::Result<()> {
    let ps = u64::from(page_size);
    for (pgno, image) in &set.pages {
        file.write_all_at(image, u64::from(pgno - 1) * ps)?;
    }
    file.set_len(u64::from(set.db_pages) * ps)
}

/// Bumps the change counter and sets the rollback-mode header of a database nobody has open.
pub(crate) fn finish_header(file: &File) -> std::io::Result<()> {
    let mut page1 = [0u8; 100];
    file.read_exact_at(&mut page1, 0)?;
    let page_size = page_size_of(&page1).unwrap_or(4096);
    let db_pages = (file.metadata()?.len() / u64::from(page_size)) as u32;
    let counter = u32::from_be_bytes([page1[24], page1[25], page1[26], page1[27]]).wrapping_add(1);
    patch_header(&mut page1, counter, db_pages);
    file.write_all_at(&page1, 0)
}

/// Runs `PRAGMA integrity_check` on the database at `path`.
pub(crate) fn integrity_check(path: &Path) -> ReplicationResult<()> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    let result: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if result == "ok" {
        Ok(())
    } else {
        Err(ReplicationError::Verification {
            path: path.to_owned(),
            detail: result,
        })
    }
}

impl ReplicaFile {
    /// Opens an existing replica (created by a restore) for applying.
    pub(crate) fn open(path: &Path) -> ReplicationResult<ReplicaFile> {
        let io = |e| ReplicationError::io(path, e);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io)?;
        let mut header = [0u8; 100];
        file.read_exact_at(&mut header, 0).map_err(io)?;
        let page_size = page_size_of(&header).ok_or_else(|| ReplicationError::Verification {
            path: path.to_owned(),
            detail: "not a SQLite database header".into(),
        })?;
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(30))?;
        // A journal left by a crashed apply is rolled back here, before anything else.
        conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))?;
        let mut journal = path.as_os_str().to_owned();
        journal.push("-journal");
        Ok(ReplicaFile {
            conn,
            file,
            path: path.to_owned(),
            journal: PathBuf::from(journal),
            page_size,
        })
    }

    /// Applies `set` atomically with respect to every SQLite reader of the replica.
    pub(crate) fn apply(&mut self, set: &PageSet) -> ReplicationResult<()> {
        self.conn.execute_batch("BEGIN EXCLUSIVE")?;
        let result = self.apply_locked(set, true);
        // Releasing the lock after a failure is still right: the journal, if any, is hot and
        // the next reader rolls it back.
        let _ = self.conn.execute_batch("COMMIT");
        result
    }

    fn apply_locked(&mut self, set: &PageSet, commit: bool) -> ReplicationResult<()> {
        let io = |e| ReplicationError::io(&self.path, e);
        let ps = self.page_size as usize;
        let old_pages = (self.file.metadata().map_err(io)?.len() / ps as u64) as u32;
        // Originals of every page that will change and that rollback must restore.
        let mut originals: Vec<u32> = set
            .pages
            .keys()
            .copied()
            .filter(|p| *p <= old_pages)
            .collect();
        if !set.pages.contains_key(&1) {
            originals.insert(0, 1);
        }
        if set.db_pages < old_pages {
            originals.extend((set.db_pages + 1..=old_pages).filter(|p| !set.pages.contains_key(p)));
        }
        originals.sort_unstable();
        originals.dedup();

        let nonce = fastrand::u32(..);
        let mut journal = Vec::with_capacity(SECTOR + originals.len() * (ps + 8));
        journal.extend_from_slice(&JOURNAL_MAGIC);
        journal.extend_from_slice(&(originals.len() as u32).to_be_bytes());
        journal.extend_from_slice(&nonce.to_be_bytes());
        journal.extend_from_slice(&old_pages.to_be_bytes());
        journal.extend_from_slice(&(SECTOR as u32).to_be_bytes());
        journal.extend_from_slice(&self.page_size.to_be_bytes());
        journal.resize(SECTOR, 0);
        let mut page = vec![0u8; ps];
        let mut page1_now = vec![0u8; ps];
        for pgno in &originals {
            self.file
                .read_exact_at(&mut page, u64::from(pgno - 1) * ps as u64)
                .map_err(io)?;
            if *pgno == 1 {
                page1_now.copy_from_slice(&page);
            }
            journal.extend_from_slice(&pgno.to_be_bytes());
            journal.extend_from_slice(&page);
            journal.extend_from_slice(&journal_checksum(nonce, &page).to_be_bytes());
        }
        {
            let jio = |e| ReplicationError::io(&self.journal, e);
            let jf = File::create(&self.journal).map_err(jio)?;
            jf.write_all_at(&journal, 0).map_err(jio)?;
            jf.sync_all().map_err(jio)?;
            sync_parent(&self.journal).map_err(jio)?;
        }
        let counter =
            u32::from_be_bytes([page1_now[24], page1_now[25], page1_now[26], page1_now[27]])
                .wrapping_add(1);
        let mut page1 = set.pages.get(&1).cloned().unwrap_or(page1_now);
        patch_header(&mut page1, counter, set.db_pages);
        for (pgno, image) in &set.pages {
            if *pgno != 1 {
                self.file
                    .write_all_at(image, u64::from(pgno - 1) * ps as u64)
                    .map_err(io)?;
            }
        }
        self.file.write_all_at(&page1, 0).map_err(io)?;
        self.file
            .set_len(u64::from(set.db_pages) * ps as u64)
            .map_err(io)?;
        self.file.sync_all().map_err(io)?;
        if !commit {
            return Ok(());
        }
        std::fs::remove_file(&self.journal).map_err(|e| ReplicationError::io(&self.journal, e))?;
        sync_parent(&self.journal).map_err(|e| ReplicationError::io(&self.journal, e))?;
        Ok(())
    }

    /// Writes the journal and the pages but stops before the commit point, as a crash would.
    #[cfg(test)]
    pub(crate) fn apply_without_commit(&mut self, set: &PageSet) -> ReplicationResult<()> {
        self.conn.execute_batch("BEGIN EXCLUSIVE")?;
        let result = self.apply_locked(set, false);
        let _ = self.conn.execute_batch("COMMIT");
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal_scan;

    /// A primary in WAL mode, a copy of it as the replica, and a WAL-captured change.
    fn primary_and_replica(dir: &Path) -> (Connection, PathBuf) {
        let primary = Connection::open(dir.join("p.db")).unwrap();
        primary.pragma_update(None, "journal_mode", "wal").unwrap();
        primary
            .execute_batch(
                "CREATE TABLE ledger(id INTEGER PRIMARY KEY, amount INTEGER);
                 INSERT INTO ledger(amount) VALUES (100), (-100);",
            )
            .unwrap();
        primary
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        let replica = dir.join("r.db");
        std::fs::copy(dir.join("p.db"), &replica).unwrap();
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&replica)
            .unwrap();
        finish_header(&f).unwrap();
        (primary, replica)
    }

    fn capture(dir: &Path) -> PageSet {
        let wal = dir.join("p.db-wal");
        let header = wal_scan::read_header(&wal).unwrap().unwrap();
        wal_scan::scan(&wal, &header, &wal_scan::start_of(&header), usize::MAX)
            .unwrap()
            .unwrap()
            .pages
    }

    #[test]
    fn applied_pages_show_to_an_open_reader_and_a_crash_rolls_back() {
        let dir = tempfile::tempdir().unwrap();
        let (primary, replica) = primary_and_replica(dir.path());
        let reader = Connection::open(&replica).unwrap();
        reader.busy_timeout(Duration::from_secs(5)).unwrap();
        let count = |c: &Connection| -> i64 {
            c.query_row("SELECT count(*) FROM ledger", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(count(&reader), 2);
        primary
            .execute_batch("INSERT INTO ledger(amount) SELECT 1 FROM ledger; CREATE INDEX i ON ledger(amount);")
            .unwrap();
        let set = capture(dir.path());
        let mut file = ReplicaFile::open(&replica).unwrap();
        {
            tracing::info!("an apply is seen by a reader that was open all along");
            file.apply(&set).unwrap();
            assert_eq!(count(&reader), 4);
            integrity_check(&replica).unwrap();
        }
        {
            tracing::info!("a journal left by a crash is rolled back by the next reader");
            primary
                .execute_batch("DELETE FROM ledger WHERE amount = 1; DROP INDEX i;")
                .unwrap();
            let later = capture(dir.path());
            file.apply_without_commit(&later).unwrap();
            drop(file);
            assert!(dir.path().join("r.db-journal").exists());
            assert_eq!(count(&reader), 4, "the hot journal was rolled back");
            integrity_check(&replica).unwrap();
            assert!(!dir.path().join("r.db-journal").exists());
        }
        {
            tracing::info!("applying again after the rollback lands");
            let mut file = ReplicaFile::open(&replica).unwrap();
            file.apply(&capture(dir.path())).unwrap();
            assert_eq!(count(&reader), 2);
            integrity_check(&replica).unwrap();
        }
    }
}
