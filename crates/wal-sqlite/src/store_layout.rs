//! Object names: where generations, segments and snapshots live in their buckets.
//!
//! WAL bucket (the app's `wal` namespace):
//! - `gen/{generation:016x}/manifest`: the generation's [`GenerationManifest`](crate::GenerationManifest)
//! - `gen/{generation:016x}/seg/{index:016x}`: segment `index` of the generation
//!
//! Snapshot bucket (the app's `snapshots` namespace):
//! - `snap/{generation:016x}-{index:016x}/manifest`: a [`SnapshotManifest`](crate::SnapshotManifest)
//! - `snap/{generation:016x}-{index:016x}/part/{n:06}`: its bytes, in parts
//!
//! Fixed-width hex keeps name order equal to numeric order.

use cluster_core::object_store::ObjectName;

use crate::position::Position;

fn name(s: String) -> ObjectName {
    // Built only from hex digits and fixed words: always a valid name.
    ObjectName::new(s).unwrap_or_else(|e| unreachable!("layout name: {e}"))
}

/// The prefix of every generation manifest and segment.
pub(crate) const GENERATIONS: &str = "gen/";

/// A generation's manifest.
pub(crate) fn manifest(generation: u64) -> ObjectName {
    name(format!("gen/{generation:016x}/manifest"))
}

/// A segment.
pub(crate) fn segment(generation: u64, index: u64) -> ObjectName {
    name(format!("gen/{generation:016x}/seg/{index:016x}"))
}

/// The prefix of a generation's segments.
pub(crate) fn segments_of(generation: u64) -> String {
    format!("gen/{generation:016x}/seg/")
}

/// Parses `gen/{g}/manifest` into `g`.
pub(crate) fn parse_manifest(name: &str) -> Option<u64> {
    let rest = name.strip_prefix("gen/")?.strip_suffix("/manifest")?;
    u64::from_str_radix(rest, 16).ok()
}

/// Parses `gen/{g}/seg/{i}` into `(g, i)`.
pub(crate) fn parse_segment(name: &str) -> Option<(u64, u64)> {
    let rest = name.strip_prefix("gen/")?;
    let (g, rest) = rest.split_once("/seg/")?;
    Some((
        u64::from_str_radix(g, 16).ok()?,
        u64::from_str_radix(rest, 16).ok()?,
    ))
}

/// The prefix of every snapshot.
pub(crate) const SNAPSHOTS: &str = "snap/";

/// A snapshot's id: its position as `{generation:016x}-{index:016x}`.
pub(crate) fn snapshot_id(at: Position) -> String {
    format!("{:016x}-{:016x}", at.generation, at.index)
}

/// Parses a snapshot id back into its position.
pub(crate) fn parse_snapshot_id(id: &str) -> Option<Position> {
    let (g, i) = id.split_once('-')?;
    Some(Position {
        generation: u64::from_str_radix(g, 16).ok()?,
        index: u64::from_str_radix(i, 16).ok()?,
    })
}

/// A snapshot's manifest.
pub(crate) fn snapshot_manifest(id: &str) -> Option<ObjectName> {
    ObjectName::new(format!("snap/{id}/manifest")).ok()
}

/// Part `n` of a snapshot.
pub(crate) fn snapshot_part(id: &str, n: usize) -> Option<ObjectName> {
    ObjectName::new(format!("snap/{id}/part/{n:06}")).ok()
}

/// The prefix of one snapshot's objects.
pub(crate) fn snapshot_prefix(id: &str) -> String {
    format!("snap/{id}/")
}

/// Parses `snap/{id}/manifest` into the id.
pub(crate) fn parse_snapshot_manifest(name: &str) -> Option<&str> {
    name.strip_prefix("snap/")?.strip_suffix("/manifest")
}
