//! In-process EventBus, RPC and ObjectStore adapters for dev mode and fast tests.
#![warn(clippy::unwrap_used)]
