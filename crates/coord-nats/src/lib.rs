//! Coordinator adapter over NATS JetStream KV.
//!
//! Revisions give compare-and-set; per-message TTL gives leases whose expiry is a watch event.
#![warn(clippy::unwrap_used)]
