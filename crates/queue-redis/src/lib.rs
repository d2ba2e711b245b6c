//! Work lanes on Redis whose dequeue is guarded by partition ownership and fencing tokens.
#![warn(clippy::unwrap_used)]
