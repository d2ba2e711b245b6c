//! Compression of stored objects: segments and snapshot parts go to the store zstd-compressed,
//! inside an envelope that says so.
//!
//! Envelope: magic `WALZSTD1`, the big-endian `u64` length of the plain bytes, then one zstd
//! frame of them. A segment is recognised by its first bytes (`WALSEG01` plain, as written
//! before compression, or `WALZSTD1`); a snapshot part by its manifest's `compression`, since a
//! plain part is raw database bytes that could begin with anything. Checksums are always of
//! the plain bytes, so a segment's checksum (and the `prev_checksum` chain) does not depend on
//! how it was stored.

use std::io::Read;

use serde::{Deserialize, Serialize};

/// The envelope's magic.
const MAGIC: &[u8; 8] = b"WALZSTD1";
/// Magic plus the plain length.
const HEADER: usize = 16;

/// How an object's bytes are stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// As they are (every object written before compression existed).
    #[default]
    None,
    /// zstd, in the `WALZSTD1` envelope.
    Zstd,
}

/// Compresses `plain` at zstd `level` into the envelope.
pub(crate) fn compress(plain: &[u8], level: i32) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + plain.len() / 2);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(plain.len() as u64).to_be_bytes());
    // Compressing into a Vec fails only on an invalid level (validated in the config) or
    // allocation failure; fall back to zstd's default level rather than lose the object.
    match zstd::bulk::compress(plain, level) {
        Ok(frame) => out.extend_from_slice(&frame),
        Err(_) => out.extend_from_slice(&zstd::bulk::compress(plain, 0).unwrap_or_default()),
    }
    out
}

/// Whether `stored` is in the compression envelope.
pub(crate) fn is_compressed(stored: &[u8]) -> bool {
    stored.len() >= HEADER && &stored[..8] == MAGIC
}

/// The plain bytes of an enveloped object, at most `max` long.
pub(crate) fn decompress(stored: &[u8], max: usize) -> Result<Vec<u8>, String> {
    if !is_compressed(stored) {
        return Err("not a compressed object (bad magic or too short)".into());
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&stored[8..16]);
    let len = u64::from_be_bytes(len);
    let len = usize::try_from(len)
        .ok()
        .filter(|l| *l <= max)
        .ok_or_else(|| format!("plain length {len} is over the limit of {max}"))?;
    // Streamed, and reading at most one byte past the stated length: a damaged length can
    // neither make us allocate it up front nor let a frame expand without bound.
    let decoder =
        zstd::stream::read::Decoder::new(&stored[HEADER..]).map_err(|e| format!("zstd: {e}"))?;
    let mut plain = Vec::with_capacity(len.min(stored.len().saturating_mul(4)));
    decoder
        .take(len as u64 + 1)
        .read_to_end(&mut plain)
        .map_err(|e| format!("zstd: {e}"))?;
    if plain.len() != len {
        return Err(format!(
            "decompressed to {} bytes, the envelope says {len}",
            plain.len()
        ));
    }
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_smaller_for_repetitive_bytes_and_damage_is_caught() {
        let plain: Vec<u8> = (0..64 * 1024).map(|i| (i % 7) as u8).collect();
        let stored = compress(&plain, 1);
        assert!(is_compressed(&stored));
        assert!(stored.len() < plain.len() / 10, "{}", stored.len());
        assert_eq!(decompress(&stored, plain.len()).unwrap(), plain);
        assert!(decompress(&stored, plain.len() - 1).is_err(), "limit");
        assert!(decompress(&plain, usize::MAX).is_err(), "not enveloped");
        let mut bad = stored.clone();
        bad[9] ^= 1;
        assert!(decompress(&bad, usize::MAX).is_err(), "length");
        assert!(decompress(&stored[..stored.len() - 3], usize::MAX).is_err());
        let empty = compress(&[], 3);
        assert_eq!(decompress(&empty, 0).unwrap(), Vec::<u8>::new());
    }
}
