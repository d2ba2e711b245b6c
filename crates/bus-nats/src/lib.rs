//! EventBus, RPC and ObjectStore adapters over NATS and JetStream.
