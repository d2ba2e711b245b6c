//! Errors from building rings.

use crate::ids::NodeId;

/// A ring could not be built or changed as asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RingError {
    /// The node is already on the ring.
    #[error("node {node} is already on the ring")]
    DuplicateNode {
        /// The node.
        node: NodeId,
    },
    /// The node is not on the ring.
    #[error("node {node} is not on the ring")]
    UnknownNode {
        /// The node.
        node: NodeId,
    },
    /// A node was given weight zero.
    #[error("weight of node {node} must be at least 1")]
    ZeroWeight {
        /// The node.
        node: NodeId,
    },
    /// `vnodes_per_weight` is zero.
    #[error("vnodes_per_weight must be at least 1")]
    ZeroVnodes,
    /// The ring would hold more virtual nodes than supported.
    #[error("the ring would hold {points} virtual nodes; at most {max} are supported")]
    TooManyPoints {
        /// Virtual nodes requested.
        points: u64,
        /// The limit.
        max: u64,
    },
    /// A partitioned ring needs at least one partition.
    #[error("partition count must be at least 1")]
    ZeroPartitions,
    /// A partitioned ring needs at least one node.
    #[error("the ring has no nodes")]
    EmptyRing,
    /// The bounded-load `eps` is not a positive finite number.
    #[error("bounded-load eps must be a positive finite number, got {eps}")]
    InvalidEpsilon {
        /// The rejected value.
        eps: f64,
    },
}
