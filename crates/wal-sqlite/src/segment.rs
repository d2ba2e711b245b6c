//! `Segment`: committed transactions of one generation, as shipped to the store.
//!
//! Layout: magic `WALSEG01`, a big-endian `u32` header length, the JSON [`SegmentHeader`],
//! then `page_count` records of (big-endian `u32` page number, page image), then the xxh3-64
//! of everything before it. The header names the generation, the index, the WAL frame range
//! and salts it came from, the writer's fencing token, the database size after it, and the
//! checksum of the previous segment, so a reader detects a damaged, missing or foreign segment
//! before applying anything.
//!
//! In the store a segment is usually zstd-compressed (see [`crate::compression`]);
//! [`Segment::decode`] reads both forms, and the checksums are of the plain bytes.

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use crate::compression;
use crate::error::SegmentError;
use crate::page_set::PageSet;
use crate::wal_scan::WalPosition;

const MAGIC: &[u8; 8] = b"WALSEG01";
/// The largest plain segment a compressed one may expand to (a single transaction makes one
/// segment however large it is).
const MAX_PLAIN_BYTES: usize = 4 << 30;

/// What a segment says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentHeader {
    /// The generation.
    pub generation: u64,
    /// Its index in the generation (1-based, without holes).
    pub index: u64,
    /// The writer's fencing token.
    pub token: u64,
    /// The first WAL frame read into it.
    pub first_frame: u32,
    /// The WAL position after its last commit frame.
    pub end: WalPosition,
    /// The page size.
    pub page_size: u32,
    /// The database size in pages after it.
    pub db_pages: u32,
    /// How many page records follow.
    pub page_count: u32,
    /// How many transactions it holds.
    pub transactions: u32,
    /// When it was captured (Unix milliseconds).
    pub captured_at_ms: u64,
    /// The checksum of the previous segment of the generation (0 for the first).
    pub prev_checksum: u64,
}

impl SegmentHeader {
    /// Reads the header of a stored segment (compressed or plain), after verifying it whole.
    pub fn from_stored(bytes: &[u8]) -> Result<SegmentHeader, SegmentError> {
        Segment::decode(bytes).map(|s| s.header)
    }
}

/// A decoded, verified segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    pub(crate) header: SegmentHeader,
    pub(crate) pages: PageSet,
    /// The trailer checksum: what the next segment names as `prev_checksum`.
    pub(crate) checksum: u64,
}

impl Segment {
    /// Encodes; returns the bytes and their checksum.
    pub(crate) fn encode(header: &SegmentHeader, pages: &PageSet) -> (Vec<u8>, u64) {
        // The header is plain data; serialising it cannot fail.
        let json = serde_json::to_vec(header).unwrap_or_default();
        let page_size = header.page_size as usize;
        let mut out = Vec::with_capacity(16 + json.len() + pages.pages.len() * (4 + page_size));
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(json.len() as u32).to_be_bytes());
        out.extend_from_slice(&json);
        for (pgno, image) in &pages.pages {
            out.extend_from_slice(&pgno.to_be_bytes());
            out.extend_from_slice(image);
        }
        let sum = xxh3_64(&out);
        out.extend_from_slice(&sum.to_be_bytes());
        (out, sum)
    }

    /// Decodes a stored segment, compressed or plain, and verifies the checksum and the layout.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Segment, SegmentError> {
        if compression::is_compressed(bytes) {
            let plain = compression::decompress(bytes, MAX_PLAIN_BYTES).map_err(|e| {
                SegmentError::Damaged {
                    detail: format!("compressed segment: {e}"),
                }
            })?;
            return Self::decode_plain(&plain);
        }
        Self::decode_plain(bytes)
    }

    /// Decodes plain segment bytes.
    fn decode_plain(bytes: &[u8]) -> Result<Segment, SegmentError> {
        let damaged = |detail: &str| SegmentError::Damaged {
            detail: detail.to_owned(),
        };
        if bytes.len() < 20 || &bytes[..8] != MAGIC {
            return Err(damaged("not a segment (bad magic or too short)"));
        }
        let (body, trailer) = bytes.split_at(bytes.len() - 8);
        let stored = u64::from_be_bytes(trailer.try_into().map_err(|_| damaged("trailer"))?);
        let sum = xxh3_64(body);
        if sum != stored {
            return Err(damaged("checksum mismatch"));
        }
        let json_len = u32::from_be_bytes([body[8], body[9], body[10], body[11]]) as usize;
        let json = body
            .get(12..12 + json_len)
            .ok_or_else(|| damaged("header length"))?;
        let header: SegmentHeader =
            serde_json::from_slice(json).map_err(|e| damaged(&format!("header: {e}")))?;
        let page_size = header.page_size as usize;
        if !(512..=65536).contains(&page_size) {
            return Err(damaged("page size"));
        }
        let mut rest = &body[12 + json_len..];
        let record = 4 + page_size;
        if rest.len() != record * header.page_count as usize {
            return Err(damaged("page records do not match the page count"));
        }
        let mut pages = PageSet {
            db_pages: header.db_pages,
            ..PageSet::default()
        };
        while !rest.is_empty() {
            let pgno = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
            if pgno == 0 || pgno > header.db_pages {
                return Err(damaged("page number outside the database"));
            }
            pages.pages.insert(pgno, rest[4..record].to_vec());
            rest = &rest[record..];
        }
        Ok(Segment {
            header,
            pages,
            checksum: sum,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (SegmentHeader, PageSet) {
        let mut pages = PageSet {
            db_pages: 3,
            ..PageSet::default()
        };
        pages.pages.insert(1, vec![1; 512]);
        pages.pages.insert(3, vec![3; 512]);
        let header = SegmentHeader {
            generation: 2,
            index: 7,
            token: 41,
            first_frame: 10,
            end: WalPosition {
                salt1: 1,
                salt2: 2,
                checkpoint_seq: 0,
                frame: 12,
                checksum: (5, 6),
            },
            page_size: 512,
            db_pages: 3,
            page_count: 2,
            transactions: 2,
            captured_at_ms: 1,
            prev_checksum: 99,
        };
        (header, pages)
    }

    #[test]
    fn round_trip_and_every_flipped_byte_is_caught() {
        let (header, pages) = sample();
        let (bytes, sum) = Segment::encode(&header, &pages);
        let back = Segment::decode(&bytes).unwrap();
        assert_eq!(back.header, header);
        assert_eq!(back.pages, pages);
        assert_eq!(back.checksum, sum);
        for at in (0..bytes.len()).step_by(37) {
            let mut bad = bytes.clone();
            bad[at] ^= 0x40;
            assert!(
                Segment::decode(&bad).is_err(),
                "flip at {at} went unnoticed"
            );
        }
        assert!(Segment::decode(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn a_compressed_segment_decodes_to_the_same_segment_and_checksum() {
        let (header, pages) = sample();
        let (plain, sum) = Segment::encode(&header, &pages);
        let stored = compression::compress(&plain, 1);
        assert!(
            stored.len() < plain.len(),
            "{} >= {}",
            stored.len(),
            plain.len()
        );
        let back = Segment::decode(&stored).unwrap();
        assert_eq!(back.header, header);
        assert_eq!(back.pages, pages);
        assert_eq!(back.checksum, sum, "checksum of the plain bytes");
        // Damage inside the compressed frame is caught, by zstd or by the checksum.
        for at in (16..stored.len()).step_by(5) {
            let mut bad = stored.clone();
            bad[at] ^= 0x40;
            assert!(
                Segment::decode(&bad).is_err(),
                "flip at {at} went unnoticed"
            );
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Any segment round-trips, plain and compressed, and any one damaged byte or any
        /// truncation of the plain form is refused.
        #[test]
        fn any_segment_round_trips_and_any_damage_is_refused(
            generation in 1u64..1_000,
            index in 1u64..1_000_000,
            token in 0u64..u64::MAX,
            size_log in 9u32..13,
            db_pages in 1u32..64,
            picks in proptest::collection::btree_map(0u32..64, proptest::num::u8::ANY, 0..8),
            flip_at in proptest::num::usize::ANY,
            flip in 1u8..=255,
            cut in proptest::num::usize::ANY,
        ) {
            let page_size = 1u32 << size_log;
            let mut pages = PageSet { db_pages, ..PageSet::default() };
            for (pgno, fill) in picks {
                let pgno = pgno % db_pages + 1;
                pages.pages.insert(pgno, vec![fill; page_size as usize]);
            }
            let header = SegmentHeader {
                generation,
                index,
                token,
                first_frame: 1,
                end: WalPosition { salt1: 7, salt2: 8, checkpoint_seq: 0, frame: 3, checksum: (1, 2) },
                page_size,
                db_pages,
                page_count: pages.pages.len() as u32,
                transactions: 1,
                captured_at_ms: 5,
                prev_checksum: generation ^ index,
            };
            let (plain, sum) = Segment::encode(&header, &pages);
            let back = Segment::decode(&plain).unwrap();
            proptest::prop_assert_eq!(&back.header, &header);
            proptest::prop_assert_eq!(&back.pages, &pages);
            proptest::prop_assert_eq!(back.checksum, sum);
            let stored = compression::compress(&plain, 1);
            proptest::prop_assert_eq!(Segment::decode(&stored).unwrap(), back);
            let mut bad = plain.clone();
            bad[flip_at % plain.len()] ^= flip;
            proptest::prop_assert!(Segment::decode(&bad).is_err());
            let short = &plain[..cut % plain.len()];
            proptest::prop_assert!(Segment::decode(short).is_err());
        }
    }
}
