//! `WalCursor`: reads committed transactions from a WAL file, from where the last read ended.
//!
//! Frames are read in order and checked (salts, chained checksum). A transaction counts only
//! once its commit frame has been read; frames after the last commit frame (a transaction
//! being written, or leftovers) stay unread until a later scan. A scan can stop early at a
//! commit boundary once it holds `max_bytes` of pages, so a segment has a bounded size unless a
//! single transaction is larger.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::page_set::PageSet;
use crate::wal_format::{Checksum, FRAME_HEADER_LEN, WAL_HEADER_LEN, WalHeader};

/// Where a WAL has been read up to: the WAL (by its salts) and the last frame consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalPosition {
    /// Salt-1 of the WAL.
    pub salt1: u32,
    /// Salt-2 of the WAL.
    pub salt2: u32,
    /// The WAL's checkpoint sequence.
    pub checkpoint_seq: u32,
    /// The last frame read (0: none yet).
    pub frame: u32,
    /// The cumulative checksum after that frame.
    pub checksum: Checksum,
}

/// The state of the WAL file when a scan began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WalState {
    /// No WAL file, or one without a complete header (after a TRUNCATE checkpoint).
    Empty,
    /// A WAL whose salts match the cursor's.
    Same(WalHeader),
    /// A WAL with other salts: it was restarted since the cursor's position.
    Restarted(WalHeader),
}

/// Committed transactions read by one scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scanned {
    /// Their pages, merged.
    pub(crate) pages: PageSet,
    /// First frame read.
    pub(crate) first_frame: u32,
    /// The position after the last commit frame read.
    pub(crate) end: WalPosition,
    /// How many transactions.
    pub(crate) transactions: u32,
}

/// Reads the WAL header of `wal`, or `None` if there is no complete valid one.
pub(crate) fn read_header(wal: &Path) -> std::io::Result<Option<WalHeader>> {
    let file = match File::open(wal) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut buf = [0u8; WAL_HEADER_LEN as usize];
    match file.read_exact_at(&mut buf, 0) {
        Ok(()) => Ok(WalHeader::parse(&buf)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

/// Compares the WAL on disk with a position.
pub(crate) fn wal_state(wal: &Path, at: &WalPosition) -> std::io::Result<WalState> {
    Ok(match read_header(wal)? {
        None => WalState::Empty,
        Some(h) if h.salt1 == at.salt1 && h.salt2 == at.salt2 => WalState::Same(h),
        Some(h) => WalState::Restarted(h),
    })
}

/// The position at the start of a WAL: nothing read yet.
pub(crate) fn start_of(header: &WalHeader) -> WalPosition {
    WalPosition {
        salt1: header.salt1,
        salt2: header.salt2,
        checkpoint_seq: header.checkpoint_seq,
        frame: 0,
        checksum: header.checksum,
    }
}

/// Whether frame `at.frame` in the WAL still carries the checksum recorded for it (the WAL was
/// not rewritten under the position).
pub(crate) fn still_matches(
    wal: &Path,
    header: &WalHeader,
    at: &WalPosition,
) -> std::io::Result<bool> {
    if at.frame == 0 {
        return Ok(header.checksum == at.checksum);
    }
    let file = File::open(wal)?;
    let mut fh = [0u8; FRAME_HEADER_LEN as usize];
    match file.read_exact_at(&mut fh, header.frame_offset(at.frame)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(e),
    }
    let stored = (
        u32::from_be_bytes([fh[16], fh[17], fh[18], fh[19]]),
        u32::from_be_bytes([fh[20], fh[21], fh[22], fh[23]]),
    );
    let salts = (
        u32::from_be_bytes([fh[8], fh[9], fh[10], fh[11]]),
        u32::from_be_bytes([fh[12], fh[13], fh[14], fh[15]]),
    );
    Ok(stored == at.checksum && salts == (header.salt1, header.salt2))
}

/// Reads committed transactions after `from` in a WAL with `header` (whose salts `from`
/// must carry); `None` when there is no new complete transaction.
pub(crate) fn scan(
    wal: &Path,
    header: &WalHeader,
    from: &WalPosition,
    max_bytes: usize,
) -> std::io::Result<Option<Scanned>> {
    let file = match File::open(wal) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let frame_len = FRAME_HEADER_LEN + u64::from(header.page_size);
    // Read in batches of frames: one syscall per batch, not per frame.
    let batch_frames: u64 = (1 << 20) / frame_len + 1;
    let mut buf = Vec::new();
    let mut buf_first = 0u32; // frame number of buf's first frame
    let mut buf_frames = 0u32;

    let mut out = PageSet::default();
    let mut txn = PageSet::default();
    let mut sum = from.checksum;
    let mut frame = from.frame;
    let mut end = *from;
    let mut transactions = 0u32;
    loop {
        let next = frame + 1;
        let offset = header.frame_offset(next);
        if offset + frame_len > len {
            break;
        }
        if next >= buf_first + buf_frames || buf_frames == 0 {
            let frames = batch_frames.min((len - offset) / frame_len);
            buf.resize((frames * frame_len) as usize, 0);
            file.read_exact_at(&mut buf, offset)?;
            buf_first = next;
            buf_frames = frames as u32;
        }
        let at = ((next - buf_first) as u64 * frame_len) as usize;
        let bytes = &buf[at..at + frame_len as usize];
        let Some((pgno, commit, new_sum)) = header.check_frame(bytes, sum) else {
            break;
        };
        sum = new_sum;
        frame = next;
        txn.pages
            .insert(pgno, bytes[FRAME_HEADER_LEN as usize..].to_vec());
        if commit != 0 {
            txn.db_pages = commit;
            out.merge(std::mem::take(&mut txn));
            transactions += 1;
            end = WalPosition {
                salt1: header.salt1,
                salt2: header.salt2,
                checkpoint_seq: header.checkpoint_seq,
                frame,
                checksum: sum,
            };
            if out.bytes() >= max_bytes {
                break;
            }
        }
    }
    if transactions == 0 {
        return Ok(None);
    }
    Ok(Some(Scanned {
        pages: out,
        first_frame: from.frame + 1,
        end,
        transactions,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wal_db(dir: &Path) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(dir.join("db")).unwrap();
        conn.pragma_update(None, "journal_mode", "wal").unwrap();
        conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        conn.execute_batch("CREATE TABLE t(x INTEGER, pad BLOB)")
            .unwrap();
        conn
    }

    #[test]
    fn reads_every_committed_transaction_and_only_those() {
        let dir = tempfile::tempdir().unwrap();
        let conn = wal_db(dir.path());
        let wal = dir.path().join("db-wal");
        let header = read_header(&wal).unwrap().expect("wal header");
        let start = start_of(&header);
        let first = scan(&wal, &header, &start, usize::MAX)
            .unwrap()
            .expect("the create");
        assert_eq!(first.transactions, 1);
        assert_eq!(first.first_frame, 1);
        {
            tracing::info!("three more transactions are read from where the last scan ended");
            for i in 0..3 {
                conn.execute("INSERT INTO t VALUES (?1, zeroblob(100))", [i])
                    .unwrap();
            }
            let next = scan(&wal, &header, &first.end, usize::MAX)
                .unwrap()
                .expect("inserts");
            assert_eq!(next.transactions, 3);
            assert_eq!(next.first_frame, first.end.frame + 1);
            assert!(still_matches(&wal, &header, &next.end).unwrap());
            assert!(
                scan(&wal, &header, &next.end, usize::MAX)
                    .unwrap()
                    .is_none()
            );
        }
        {
            tracing::info!("a limit stops at a commit boundary");
            for i in 0..5 {
                conn.execute("INSERT INTO t VALUES (?1, zeroblob(3000))", [i])
                    .unwrap();
            }
            let capped = scan(&wal, &header, &first.end, 1).unwrap().expect("capped");
            assert_eq!(capped.transactions, 1);
        }
    }

    #[test]
    fn a_restart_changes_the_salts() {
        let dir = tempfile::tempdir().unwrap();
        let conn = wal_db(dir.path());
        let wal = dir.path().join("db-wal");
        let header = read_header(&wal).unwrap().expect("wal header");
        let at = start_of(&header);
        conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))
            .unwrap();
        conn.execute("INSERT INTO t VALUES (1, NULL)", []).unwrap();
        match wal_state(&wal, &at).unwrap() {
            WalState::Restarted(h) => {
                assert_eq!(h.salt1, header.salt1.wrapping_add(1));
                assert_eq!(h.checkpoint_seq, header.checkpoint_seq + 1);
            }
            other => panic!("expected a restarted WAL, got {other:?}"),
        }
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        assert_eq!(wal_state(&wal, &at).unwrap(), WalState::Empty);
    }
}
