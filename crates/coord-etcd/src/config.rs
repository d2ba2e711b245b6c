//! Configuration of the etcd adapter.

use std::time::Duration;

use serde::Deserialize;

/// How to reach etcd and how long to wait for it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EtcdConfig {
    /// Client URLs of the members, e.g. `["http://10.0.0.1:2379"]`.
    pub endpoints: Vec<String>,
    /// Deadline of every unary call; a store that does not answer by then gives `Unavailable`.
    #[serde(with = "cluster_core::config::duration_ms")]
    pub call_timeout: Duration,
    /// Deadline for opening a connection.
    #[serde(with = "cluster_core::config::duration_ms")]
    pub connect_timeout: Duration,
    /// HTTP/2 ping interval, so a dead connection (and the watches on it) is noticed.
    #[serde(with = "cluster_core::config::duration_ms")]
    pub keep_alive_interval: Duration,
    /// How long a ping may go unanswered before the connection is dropped.
    #[serde(with = "cluster_core::config::duration_ms")]
    pub keep_alive_timeout: Duration,
    /// User name, when etcd auth is on (with `password`).
    pub username: Option<String>,
    /// Password for `username`.
    pub password: Option<String>,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            call_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            keep_alive_interval: Duration::from_secs(1),
            keep_alive_timeout: Duration::from_secs(2),
            username: None,
            password: None,
        }
    }
}

pub use cluster_core::config::ConfigError;

/// The component named in this adapter's [`ConfigError`]s.
const COMPONENT: &str = "etcd";

impl EtcdConfig {
    /// A configuration for `endpoints` with default timings.
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> Self {
        EtcdConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            ..EtcdConfig::default()
        }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad =
            |field: &'static str, reason: &str| Err(ConfigError::new(COMPONENT, field, reason));
        if self.endpoints.is_empty() {
            return bad("endpoints", "at least one endpoint is needed");
        }
        if let Some(e) = self
            .endpoints
            .iter()
            .find(|e| !(e.starts_with("http://") || e.starts_with("https://")))
        {
            return Err(ConfigError::new(
                COMPONENT,
                "endpoints",
                format!("{e:?} is not an http:// or https:// URL"),
            ));
        }
        if self.username.is_some() != self.password.is_some() {
            return bad("password", "username and password go together");
        }
        for (field, value) in [
            ("call_timeout", self.call_timeout),
            ("connect_timeout", self.connect_timeout),
            ("keep_alive_interval", self.keep_alive_interval),
            ("keep_alive_timeout", self.keep_alive_timeout),
        ] {
            if value.is_zero() {
                return bad(field, "must be greater than zero");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_bad_field() {
        assert!(EtcdConfig::default().validate().is_ok());
        let err = EtcdConfig::new(Vec::<String>::new())
            .validate()
            .unwrap_err();
        assert_eq!(err.field, "endpoints");
        let err = EtcdConfig::new(["127.0.0.1:2379"]).validate().unwrap_err();
        assert_eq!(err.field, "endpoints");
        let c = EtcdConfig {
            call_timeout: Duration::ZERO,
            ..EtcdConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().field, "call_timeout");
    }
}
