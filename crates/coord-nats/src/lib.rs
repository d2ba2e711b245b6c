//! Coordinator adapter over NATS JetStream KV.
//!
//! Implements `cluster_core`'s coordination port on JetStream KV buckets (one stream per app,
//! holding every namespace of that app, and one per platform-wide namespace; see `layout`), with
//! per-message TTL and subject delete markers
//! (nats-server 2.11+), so that a lease running out is a delete every watcher sees:
//!
//! | port | NATS JetStream KV |
//! | --- | --- |
//! | lease | a record `{lease id}` in the lease bucket, written with `Nats-TTL`; keys bound to the lease carry the same TTL; a renewal rewrites the record and every bound key, each with `Nats-TTL` and `Nats-Expected-Last-Subject-Sequence`, so a renewal never revives an expired key nor overwrites someone else's |
//! | conditional writes | publishes with `Nats-Expected-Last-Subject-Sequence` (create: the key's last message is absent, a tombstone or a delete marker) |
//! | reads | `STREAM.MSG.GET` (direct get is off: reads go to the stream leader) |
//! | watch | an ephemeral push consumer (`DeliverLastPerSubject`) for the snapshot and the changes; renewals are not reported; after any gap a new consumer and a new snapshot (`LatestValue`) |
//! | claims, election, lock | create-if-absent bound to the lease; the token is the revision of the create that began the term, kept in a `Coord-Term` header by every renewal |
//! | `put_if_held` | within one bucket, so within one app: a publish conditioned on the fence key's last sequence; across buckets (another app, a platform-wide namespace) `Unsupported`: no JetStream operation spans two streams |
//!
//! Every call has a deadline ([`NatsConfig::call_timeout`]); a store that does not answer gives
//! `Unavailable`, never a hang. See `docs/coordination-nats.md` for the lease arithmetic.
#![warn(missing_docs)]
#![warn(clippy::unwrap_used)]

mod claims;
mod config;
mod election;
mod error;
mod jetstream_kv;
mod kv;
mod layout;
mod lease_table;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use async_nats::ConnectOptions;
use cluster_core::coordination::{Capabilities, CoordError, Coordinator, Operation, WatchHistory};

pub use config::{ConfigError, NatsConfig};

use crate::jetstream_kv::JetStreamKv;
use crate::lease_table::LeaseTable;

/// The NATS JetStream KV adapter. Cheap to clone; clones share the connection and the table of
/// leases this process renews.
#[derive(Clone)]
pub struct NatsCoordinator {
    inner: Arc<Inner>,
}

struct Inner {
    kv: JetStreamKv,
    leases: LeaseTable,
    /// Counts the client's (re)connections, so watches start over at once after one.
    connections: tokio::sync::watch::Receiver<u64>,
}

impl std::fmt::Debug for NatsCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsCoordinator")
            .field("servers", &self.inner.kv.config.servers)
            .finish_non_exhaustive()
    }
}

/// Why the adapter could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The credentials file could not be read.
    #[error("reading credentials file: {0}")]
    Credentials(#[source] std::io::Error),
    /// The client could not be set up.
    #[error("nats client: {0}")]
    Client(#[from] async_nats::ConnectError),
}

impl cluster_core::error::Retryable for ConnectError {
    /// A server that is not up yet may be later; a bad configuration stays bad.
    fn is_retryable(&self) -> bool {
        match self {
            ConnectError::Config(_) => false,
            ConnectError::Credentials(_) => false,
            ConnectError::Client(_) => true,
        }
    }

    fn as_metrics_label(&self) -> &'static str {
        match self {
            ConnectError::Config(_) => "config",
            ConnectError::Credentials(_) => "credentials",
            ConnectError::Client(_) => "connect",
        }
    }
}

/// A call gave up because the key kept changing under it (renewals racing a conditional
/// write); retrying later succeeds.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{key} kept changing during the call")]
pub(crate) struct Contention {
    pub(crate) key: String,
}

impl NatsCoordinator {
    /// Builds the adapter. It does not wait for a server: the client connects (and reconnects)
    /// in the background, and a store that is down shows on the first call as `Unavailable`.
    pub async fn connect(config: NatsConfig) -> Result<Self, ConnectError> {
        config.validate()?;
        let heartbeat = config.watch_heartbeat;
        let (connected, connections) = tokio::sync::watch::channel(0u64);
        let connected = Arc::new(connected);
        let mut options = ConnectOptions::new()
            .event_callback(move |event| {
                let connected = connected.clone();
                async move {
                    if matches!(event, async_nats::Event::Connected) {
                        connected.send_modify(|n| *n += 1);
                    }
                }
            })
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(config.call_timeout)
            .request_timeout(Some(config.call_timeout))
            .ping_interval(config.ping_interval)
            // Reconnect quickly and keep trying at a steady pace: a watch must resume within
            // two heartbeats of the server coming back.
            .reconnect_delay_callback(move |attempt| {
                (Duration::from_millis(50) * attempt.min(100) as u32).min(heartbeat / 2)
            });
        if let Some(token) = &config.token {
            options = options.token(token.clone());
        }
        if let Some(path) = &config.credentials_file {
            options = options
                .credentials_file(path)
                .await
                .map_err(ConnectError::Credentials)?;
        }
        if config.ignore_discovered_servers {
            options = options.ignore_discovered_servers();
        }
        let client = options.connect(config.servers.as_slice()).await?;
        Ok(NatsCoordinator {
            inner: Arc::new(Inner {
                kv: JetStreamKv::new(client, config),
                leases: LeaseTable::default(),
                connections,
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &NatsConfig {
        &self.inner.kv.config
    }

    /// The NATS client, for operations the port does not cover.
    pub fn client(&self) -> &async_nats::Client {
        &self.inner.kv.client
    }

    pub(crate) fn kv(&self) -> &JetStreamKv {
        &self.inner.kv
    }

    pub(crate) fn leases(&self) -> &LeaseTable {
        &self.inner.leases
    }

    /// A receiver that changes whenever the client (re)connects.
    pub(crate) fn connections(&self) -> tokio::sync::watch::Receiver<u64> {
        let mut rx = self.inner.connections.clone();
        rx.mark_unchanged();
        rx
    }
}

/// The `Unavailable` error for a key that kept changing.
pub(crate) fn contention(op: Operation, key: impl Into<String>) -> CoordError {
    CoordError::unavailable(op, Contention { key: key.into() })
}

impl Coordinator for NatsCoordinator {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            backend: "nats",
            watch_history: WatchHistory::LatestValue,
            put_if_held: false,
        }
    }
}
