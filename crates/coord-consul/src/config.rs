//! Configuration of the Consul adapter.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// How to reach Consul, as whom, and the timings of sessions, locks and calls.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsulConfig {
    /// The agent's HTTP address: `http://host:port`, `https://host:port`, or `host:port` (the
    /// form of `CONSUL_HTTP_ADDR`, meaning http).
    pub address: String,
    /// The ACL token sent as `X-Consul-Token`, if ACLs are on.
    pub token: Option<String>,
    /// The datacenter to talk to (`?dc=`); the agent's own when unset.
    pub datacenter: Option<String>,
    /// PEM file of the CA that signed the agent's certificate (https only); the system's roots
    /// when unset.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for agents with `verify_incoming` (with `client_key_file`).
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of `client_cert_file`.
    pub client_key_file: Option<PathBuf>,
    /// Deadline of every call; a store that does not answer by then gives `Unavailable`.
    #[serde(with = "cluster_core::config::duration_ms")]
    pub call_timeout: Duration,
    /// Deadline for opening a connection.
    #[serde(with = "cluster_core::config::duration_ms")]
    pub connect_timeout: Duration,
    /// The agent's `session_ttl_min` (Consul's default: 10 s): smaller TTLs are raised to it.
    #[serde(with = "cluster_core::config::duration_ms")]
    pub session_ttl_min: Duration,
    /// The lock-delay of our sessions (Consul's default: 15 s; 0 disables, 60 s at most): how
    /// long a key held by an invalidated session stays unacquirable.
    #[serde(with = "cluster_core::config::duration_ms")]
    pub lock_delay: Duration,
    /// How often an acquire blocked by a lock-delay is retried.
    #[serde(with = "cluster_core::config::duration_ms")]
    pub lock_delay_retry: Duration,
    /// The `wait` of blocking queries (watches, lock waiters); at most 10 minutes.
    #[serde(with = "cluster_core::config::duration_ms")]
    pub watch_wait: Duration,
}

impl Default for ConsulConfig {
    fn default() -> Self {
        ConsulConfig {
            address: "http://127.0.0.1:8500".into(),
            token: None,
            datacenter: None,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            call_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            session_ttl_min: Duration::from_secs(10),
            lock_delay: Duration::from_secs(15),
            lock_delay_retry: Duration::from_secs(1),
            watch_wait: Duration::from_secs(60),
        }
    }
}

pub use cluster_core::config::ConfigError;

/// The component named in this adapter's [`ConfigError`]s.
pub(crate) const COMPONENT: &str = "consul";

/// Consul's limits on lock-delay and blocking waits.
const MAX_LOCK_DELAY: Duration = Duration::from_secs(60);
const MAX_WATCH_WAIT: Duration = Duration::from_secs(600);
const MAX_SESSION_TTL: Duration = Duration::from_secs(86_400);

impl ConsulConfig {
    /// A configuration for the agent at `address` with default timings.
    pub fn new(address: impl Into<String>) -> Self {
        ConsulConfig {
            address: address.into(),
            ..ConsulConfig::default()
        }
    }

    /// The configuration Consul's own tools read from the environment (`CONSUL_HTTP_ADDR`,
    /// `CONSUL_HTTP_TOKEN`, `CONSUL_HTTP_SSL`, `CONSUL_CACERT`, `CONSUL_CLIENT_CERT`,
    /// `CONSUL_CLIENT_KEY`), or `None` when `CONSUL_HTTP_ADDR` is unset.
    pub fn from_env() -> Option<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let mut address = var("CONSUL_HTTP_ADDR")?;
        if !address.contains("://") && var("CONSUL_HTTP_SSL").is_some_and(|v| v == "true") {
            address = format!("https://{address}");
        }
        Some(ConsulConfig {
            address,
            token: var("CONSUL_HTTP_TOKEN"),
            ca_file: var("CONSUL_CACERT").map(PathBuf::from),
            client_cert_file: var("CONSUL_CLIENT_CERT").map(PathBuf::from),
            client_key_file: var("CONSUL_CLIENT_KEY").map(PathBuf::from),
            ..ConsulConfig::default()
        })
    }

    /// The base URL (`http(s)://host:port`, no trailing slash).
    pub fn base_url(&self) -> String {
        let address = self.address.trim_end_matches('/');
        if address.contains("://") {
            address.to_owned()
        } else {
            format!("http://{address}")
        }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let base = self.base_url();
        let rest = match base.split_once("://") {
            Some(("http" | "https", rest)) => rest,
            _ => {
                return Err(ConfigError::new(
                    COMPONENT,
                    "address",
                    format!("{:?} is not host:port or an http(s):// URL", self.address),
                ));
            }
        };
        if rest.is_empty() || rest.contains('/') {
            return Err(ConfigError::new(
                COMPONENT,
                "address",
                format!("{:?} must be scheme://host:port with no path", self.address),
            ));
        }
        if self.token.as_deref().is_some_and(str::is_empty) {
            return Err(ConfigError::new(
                COMPONENT,
                "token",
                "must not be empty when set",
            ));
        }
        if let Some(dc) = &self.datacenter
            && (dc.is_empty()
                || !dc
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
        {
            return Err(ConfigError::new(
                COMPONENT,
                "datacenter",
                format!("{dc:?} is not a datacenter name"),
            ));
        }
        let https = base.starts_with("https://");
        for (field, file) in [
            ("ca_file", &self.ca_file),
            ("client_cert_file", &self.client_cert_file),
            ("client_key_file", &self.client_key_file),
        ] {
            if file.is_some() && !https {
                return Err(ConfigError::new(
                    COMPONENT,
                    field,
                    "TLS files need an https:// address",
                ));
            }
        }
        if self.client_cert_file.is_some() != self.client_key_file.is_some() {
            return Err(ConfigError::new(
                COMPONENT,
                "client_key_file",
                "client_cert_file and client_key_file go together",
            ));
        }
        for (field, value) in [
            ("call_timeout", self.call_timeout),
            ("connect_timeout", self.connect_timeout),
            ("session_ttl_min", self.session_ttl_min),
            ("lock_delay_retry", self.lock_delay_retry),
            ("watch_wait", self.watch_wait),
        ] {
            if value.is_zero() {
                return Err(ConfigError::new(
                    COMPONENT,
                    field,
                    "must be greater than zero",
                ));
            }
        }
        if self.session_ttl_min > MAX_SESSION_TTL {
            return Err(ConfigError::new(
                COMPONENT,
                "session_ttl_min",
                "Consul's TTLs end at 24 h",
            ));
        }
        if self.lock_delay > MAX_LOCK_DELAY {
            return Err(ConfigError::new(
                COMPONENT,
                "lock_delay",
                "Consul caps lock-delay at 60 s",
            ));
        }
        if self.watch_wait > MAX_WATCH_WAIT {
            return Err(ConfigError::new(
                COMPONENT,
                "watch_wait",
                "Consul caps blocking waits at 10 minutes",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_bad_field() {
        assert!(ConsulConfig::default().validate().is_ok());
        assert!(ConsulConfig::new("127.0.0.1:8500").validate().is_ok());
        assert_eq!(
            ConsulConfig::new("127.0.0.1:8500").base_url(),
            "http://127.0.0.1:8500"
        );
        let field = |c: ConsulConfig| c.validate().unwrap_err().field;
        assert_eq!(field(ConsulConfig::new("ftp://x:1")), "address");
        assert_eq!(field(ConsulConfig::new("http://x:1/v1")), "address");
        assert_eq!(
            field(ConsulConfig {
                ca_file: Some("ca.pem".into()),
                ..ConsulConfig::default()
            }),
            "ca_file"
        );
        assert_eq!(
            field(ConsulConfig {
                client_cert_file: Some("c.pem".into()),
                ..ConsulConfig::new("https://x:8501")
            }),
            "client_key_file"
        );
        assert_eq!(
            field(ConsulConfig {
                lock_delay: Duration::from_secs(61),
                ..ConsulConfig::default()
            }),
            "lock_delay"
        );
        assert_eq!(
            field(ConsulConfig {
                call_timeout: Duration::ZERO,
                ..ConsulConfig::default()
            }),
            "call_timeout"
        );
        assert_eq!(
            field(ConsulConfig {
                datacenter: Some("dc 1".into()),
                ..ConsulConfig::default()
            }),
            "datacenter"
        );
        assert_eq!(
            field(ConsulConfig {
                token: Some(String::new()),
                ..ConsulConfig::default()
            }),
            "token"
        );
    }

    #[test]
    fn deserialises_with_defaults() {
        let c: ConsulConfig = serde_json::from_str(
            r#"{"address":"https://c:8501","lock_delay":0,"datacenter":"eu"}"#,
        )
        .unwrap();
        assert_eq!(c.lock_delay, Duration::ZERO);
        assert_eq!(c.call_timeout, Duration::from_secs(2));
        assert!(c.validate().is_ok());
        let err = serde_json::from_str::<ConsulConfig>(r#"{"adress":"x"}"#).unwrap_err();
        assert!(err.to_string().contains("adress"));
    }
}
