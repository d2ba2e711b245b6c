//! Configuration of the NATS KV adapter.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// How to reach NATS, how buckets are made, and how long to wait.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URLs, e.g. `["nats://10.0.0.1:4222", "nats://10.0.0.2:4222"]`.
    pub servers: Vec<String>,
    /// Path of a `.creds` file (JWT and NKey seed), for decentralised auth.
    pub credentials_file: Option<PathBuf>,
    /// Authentication token.
    pub token: Option<String>,
    /// Replicas of every bucket this adapter creates; `None`: 3 on a cluster, 1 on a single
    /// server. Buckets that already exist are used as they are.
    pub replicas: Option<usize>,
    /// Deadline of every call; a store that does not answer by then gives `Unavailable`.
    #[serde(with = "cluster_core::config::duration_ms")]
    pub call_timeout: Duration,
    /// Deadline of creating a bucket on first use (a clustered stream placement can take
    /// several seconds while a server is down).
    #[serde(with = "cluster_core::config::duration_ms")]
    pub create_timeout: Duration,
    /// Idle heartbeat of watch consumers: a watch that hears nothing for two heartbeats
    /// starts over with a new snapshot.
    #[serde(with = "cluster_core::config::duration_ms")]
    pub watch_heartbeat: Duration,
    /// Client ping interval: how fast a dead connection is noticed when nothing else is sent.
    #[serde(with = "cluster_core::config::duration_ms")]
    pub ping_interval: Duration,
    /// How long the server keeps the delete marker it writes when a key's TTL runs out
    /// (`subject_delete_marker_ttl`), set when a bucket is created.
    #[serde(with = "cluster_core::config::duration_ms")]
    pub marker_ttl: Duration,
    /// How long a delete tombstone stays before it expires (a marker follows it).
    #[serde(with = "cluster_core::config::duration_ms")]
    pub tombstone_ttl: Duration,
    /// The bucket holding lease records. It has no `_`, so it never collides with a bucket
    /// named by `cluster_core::naming`.
    pub lease_bucket: String,
    /// Use only `servers`, not the servers a cluster advertises (for NAT, proxies, tests).
    pub ignore_discovered_servers: bool,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            servers: vec!["nats://127.0.0.1:4222".into()],
            credentials_file: None,
            token: None,
            replicas: None,
            call_timeout: Duration::from_secs(2),
            create_timeout: Duration::from_secs(20),
            watch_heartbeat: Duration::from_secs(1),
            ping_interval: Duration::from_secs(2),
            marker_ttl: Duration::from_secs(15 * 60),
            tombstone_ttl: Duration::from_secs(15 * 60),
            lease_bucket: "coord-leases".into(),
            ignore_discovered_servers: false,
        }
    }
}

pub use cluster_core::config::ConfigError;

/// The component named in this adapter's [`ConfigError`]s.
const COMPONENT: &str = "nats coordination";

impl NatsConfig {
    /// A configuration for `servers` with default settings.
    pub fn new<S: Into<String>>(servers: impl IntoIterator<Item = S>) -> Self {
        NatsConfig {
            servers: servers.into_iter().map(Into::into).collect(),
            ..NatsConfig::default()
        }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad =
            |field: &'static str, reason: String| Err(ConfigError::new(COMPONENT, field, reason));
        if self.servers.is_empty() {
            return bad("servers", "at least one server is needed".into());
        }
        if let Some(s) = self.servers.iter().find(|s| !valid_server(s)) {
            return bad(
                "servers",
                format!("{s:?} is not a nats://, tls://, ws:// or wss:// URL nor host:port"),
            );
        }
        if self.credentials_file.is_some() && self.token.is_some() {
            return bad(
                "token",
                "give either credentials_file or token, not both".into(),
            );
        }
        if self.token.as_deref() == Some("") {
            return bad("token", "must not be empty".into());
        }
        if let Some(r) = self.replicas
            && !(1..=5).contains(&r)
        {
            return bad(
                "replicas",
                format!("{r} is outside 1..=5 (JetStream's range)"),
            );
        }
        for (field, value) in [
            ("call_timeout", self.call_timeout),
            ("create_timeout", self.create_timeout),
            ("watch_heartbeat", self.watch_heartbeat),
            ("ping_interval", self.ping_interval),
        ] {
            if value.is_zero() {
                return bad(field, "must be greater than zero".into());
            }
        }
        if self.watch_heartbeat < Duration::from_millis(100) {
            return bad("watch_heartbeat", "must be at least 100 ms".into());
        }
        // JetStream refuses TTLs under one second.
        for (field, value) in [
            ("marker_ttl", self.marker_ttl),
            ("tombstone_ttl", self.tombstone_ttl),
        ] {
            if value < Duration::from_secs(1) {
                return bad(
                    field,
                    "must be at least 1 s (JetStream's smallest TTL)".into(),
                );
            }
        }
        if self.lease_bucket.is_empty()
            || !self
                .lease_bucket
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return bad(
                "lease_bucket",
                format!(
                    "{:?} must be non-empty [A-Za-z0-9-] (no '_', which namespace buckets use)",
                    self.lease_bucket
                ),
            );
        }
        Ok(())
    }
}

fn valid_server(s: &str) -> bool {
    let rest = ["nats://", "tls://", "ws://", "wss://"]
        .iter()
        .find_map(|scheme| s.strip_prefix(scheme))
        .unwrap_or(s);
    !rest.is_empty() && !rest.contains(char::is_whitespace) && !rest.contains("://")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(NatsConfig::default().validate(), Ok(()));
    }

    #[test]
    fn validation_names_the_bad_field() {
        let field = |c: NatsConfig| c.validate().unwrap_err().field;
        assert_eq!(field(NatsConfig::new(Vec::<String>::new())), "servers");
        assert_eq!(field(NatsConfig::new(["http://x:1"])), "servers");
        assert_eq!(
            field(NatsConfig {
                replicas: Some(7),
                ..NatsConfig::default()
            }),
            "replicas"
        );
        assert_eq!(
            field(NatsConfig {
                call_timeout: Duration::ZERO,
                ..NatsConfig::default()
            }),
            "call_timeout"
        );
        assert_eq!(
            field(NatsConfig {
                marker_ttl: Duration::from_millis(500),
                ..NatsConfig::default()
            }),
            "marker_ttl"
        );
        assert_eq!(
            field(NatsConfig {
                lease_bucket: "prod_leases".into(),
                ..NatsConfig::default()
            }),
            "lease_bucket"
        );
        assert_eq!(
            field(NatsConfig {
                token: Some("t".into()),
                credentials_file: Some("/x.creds".into()),
                ..NatsConfig::default()
            }),
            "token"
        );
    }

    #[test]
    fn deserializes_with_defaults() {
        let c: NatsConfig = serde_json::from_str(
            r#"{"servers":["nats://a:4222"],"replicas":3,"call_timeout":500}"#,
        )
        .unwrap();
        assert_eq!(c.servers, ["nats://a:4222"]);
        assert_eq!(c.replicas, Some(3));
        assert_eq!(c.call_timeout, Duration::from_millis(500));
        assert_eq!(c.watch_heartbeat, NatsConfig::default().watch_heartbeat);
        let err = serde_json::from_str::<NatsConfig>(r#"{"server":["x"]}"#).unwrap_err();
        assert!(err.to_string().contains("server"), "{err}");
    }
}
