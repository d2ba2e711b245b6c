//! Generations: their manifest in the object store and their record in the coordinator.
//!
//! A generation is one unbroken run of segments written by one primary under one token. It
//! starts either from a snapshot (a new database, a gap in capture) or from its parent's
//! sealed end (a promotion: the new primary's database is exactly the parent's history up to
//! the seal). The coordinator's record is the authority for live replicas and is changed only
//! by compare-and-set; the manifest in the object store lets a restore walk the history without
//! a coordinator.

use serde::{Deserialize, Serialize};

use crate::position::Position;

/// Immutable facts about a generation, written to the WAL bucket before its first segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationManifest {
    /// The generation.
    pub generation: u64,
    /// The fencing token of the primary writing it.
    pub token: u64,
    /// The node writing it.
    pub node: String,
    /// The parent's sealed end this generation continues from (after a promotion).
    pub parent: Option<Position>,
    /// The snapshot it starts from (a fresh start), as a snapshot id.
    pub base_snapshot: Option<String>,
    /// The database page size.
    pub page_size: u32,
    /// When it started (Unix milliseconds).
    pub started_at_ms: u64,
}

/// Where the fence of a generation's primary lives in the coordinator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceRecord {
    /// The fence key's namespace.
    pub namespace: cluster_core::naming::Namespace,
    /// The fence key's name.
    pub name: String,
}

/// A generation's record in the coordinator: who writes it and where it ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationRecord {
    /// The generation.
    pub generation: u64,
    /// The writer's fencing token.
    pub token: u64,
    /// The writer's fence; a replica applies unsealed segments only while it stands.
    pub fence: Option<FenceRecord>,
    /// The parent this generation continues from.
    pub parent: Option<Position>,
    /// Set once: the last segment that counts. Readers never apply past it.
    pub sealed_through: Option<u64>,
}
