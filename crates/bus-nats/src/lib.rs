//! EventBus, RPC and ObjectStore adapters over NATS and JetStream.
#![warn(clippy::unwrap_used)]
