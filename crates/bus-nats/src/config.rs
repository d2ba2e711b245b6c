//! `NatsBusConfig`: how the adapter connects to NATS.

use std::time::Duration;

use serde::Deserialize;
use serde::Serialize;

/// Connection settings for [`NatsEventBus`](crate::NatsEventBus).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsBusConfig {
    /// Server URL(s), comma-separated (`nats://127.0.0.1:4222`).
    pub url: String,
    /// The connection name shown by the server.
    pub name: String,
    /// Every call (publish ack, stream and consumer requests) fails as unavailable after this.
    #[serde(with = "cluster_core::config::duration_ms")]
    pub call_timeout: Duration,
    /// How long one connection attempt may take.
    #[serde(with = "cluster_core::config::duration_ms")]
    pub connect_timeout: Duration,
    /// How often the client pings the server; two missed pongs drop the connection.
    #[serde(with = "cluster_core::config::duration_ms")]
    pub ping_interval: Duration,
    /// Use only the servers in `url`, never ones the cluster advertises.
    pub ignore_discovered_servers: bool,
}

impl Default for NatsBusConfig {
    fn default() -> Self {
        NatsBusConfig {
            url: "nats://127.0.0.1:4222".to_owned(),
            name: "cluster-bus".to_owned(),
            call_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            ping_interval: Duration::from_secs(2),
            ignore_discovered_servers: false,
        }
    }
}

impl NatsBusConfig {
    /// Connection options from these settings: reconnect forever with a capped backoff, every
    /// request bounded by the call timeout.
    pub(crate) fn connect_options(&self) -> async_nats::ConnectOptions {
        let options = async_nats::ConnectOptions::new()
            .name(self.name.clone())
            .connection_timeout(self.connect_timeout)
            .ping_interval(self.ping_interval)
            .request_timeout(Some(self.call_timeout))
            .max_reconnects(None)
            .reconnect_delay_callback(|attempt| {
                cluster_core::backoff::Backoff::new(
                    Duration::from_millis(100),
                    Duration::from_secs(1),
                )
                .ceiling(u32::try_from(attempt).unwrap_or(u32::MAX).saturating_add(1))
            });
        if self.ignore_discovered_servers {
            options.ignore_discovered_servers()
        } else {
            options
        }
    }

    /// Defaults with `url`.
    pub fn new(url: impl Into<String>) -> NatsBusConfig {
        NatsBusConfig {
            url: url.into(),
            ..NatsBusConfig::default()
        }
    }
}
