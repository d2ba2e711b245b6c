//! The SQLite WAL file format: the 32-byte header, 24-byte frame headers and the cumulative
//! checksum, as the SQLite file-format document defines them.
//!
//! Header (big-endian integers): magic `0x377f0682` (checksums over little-endian words) or
//! `0x377f0683` (big-endian words), format version, page size, checkpoint sequence, salt-1,
//! salt-2, checksum of the first 24 bytes. A frame: page number, database size in pages for a
//! commit frame (0 otherwise), the two salts copied from the header, and the checksum of the
//! first 8 header bytes and the page, chained from the previous frame's (the first frame's
//! from the header's). A frame is valid only if its salts match and its checksum chains: that
//! is what lets a reader tell committed frames from leftovers of an earlier WAL.

/// Length of the WAL header.
pub(crate) const WAL_HEADER_LEN: u64 = 32;
/// Length of a frame header.
pub(crate) const FRAME_HEADER_LEN: u64 = 24;

const MAGIC_LITTLE: u32 = 0x377f_0682;
const MAGIC_BIG: u32 = 0x377f_0683;

/// A cumulative WAL checksum.
pub(crate) type Checksum = (u32, u32);

/// A parsed, validated WAL header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WalHeader {
    /// Checksums are over big-endian words.
    pub(crate) big_endian: bool,
    /// The database page size.
    pub(crate) page_size: u32,
    /// Incremented on every WAL restart.
    pub(crate) checkpoint_seq: u32,
    /// Salt-1: incremented on every restart.
    pub(crate) salt1: u32,
    /// Salt-2: random on every restart.
    pub(crate) salt2: u32,
    /// The header's own checksum: the seed of the first frame's.
    pub(crate) checksum: Checksum,
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// SQLite's WAL checksum over `data` (a multiple of 8 bytes), chained from `seed`.
pub(crate) fn checksum(big_endian: bool, data: &[u8], seed: Checksum) -> Checksum {
    let (mut s0, mut s1) = seed;
    for chunk in data.chunks_exact(8) {
        let (x0, x1) = if big_endian {
            (
                u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
                u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]),
            )
        } else {
            (
                u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
                u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]),
            )
        };
        s0 = s0.wrapping_add(x0).wrapping_add(s1);
        s1 = s1.wrapping_add(x1).wrapping_add(s0);
    }
    (s0, s1)
}

impl WalHeader {
    /// Parses and checks a header; `None` if it is not a complete, valid one (absent, being
    /// written, or damaged).
    pub(crate) fn parse(b: &[u8]) -> Option<WalHeader> {
        if b.len() < WAL_HEADER_LEN as usize {
            return None;
        }
        let big_endian = match be32(b, 0) {
            MAGIC_LITTLE => false,
            MAGIC_BIG => true,
            _ => return None,
        };
        let page_size = be32(b, 8);
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return None;
        }
        let stored = (be32(b, 24), be32(b, 28));
        if checksum(big_endian, &b[..24], (0, 0)) != stored {
            return None;
        }
        Some(WalHeader {
            big_endian,
            page_size,
            checkpoint_seq: be32(b, 12),
            salt1: be32(b, 16),
            salt2: be32(b, 20),
            checksum: stored,
        })
    }

    /// The file offset of frame `n` (1-based).
    pub(crate) fn frame_offset(&self, n: u32) -> u64 {
        WAL_HEADER_LEN + u64::from(n - 1) * (FRAME_HEADER_LEN + u64::from(self.page_size))
    }

    /// Checks one frame (`frame` is header + page) against this header and the previous
    /// checksum; returns `(page number, commit size, new checksum)` when valid.
    pub(crate) fn check_frame(&self, frame: &[u8], prev: Checksum) -> Option<(u32, u32, Checksum)> {
        let pgno = be32(frame, 0);
        let commit = be32(frame, 4);
        if pgno == 0 || be32(frame, 8) != self.salt1 || be32(frame, 12) != self.salt2 {
            return None;
        }
        let sum = checksum(self.big_endian, &frame[..8], prev);
        let sum = checksum(self.big_endian, &frame[FRAME_HEADER_LEN as usize..], sum);
        if sum != (be32(frame, 16), be32(frame, 20)) {
            return None;
        }
        Some((pgno, commit, sum))
    }
}
