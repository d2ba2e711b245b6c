//! Coordinator adapter over Consul's HTTP API.
//!
//! Sessions carry leases, `?cas=` and `?acquire=` carry claims, blocking queries carry watches.
#![warn(clippy::unwrap_used)]
