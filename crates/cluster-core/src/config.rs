//! What every component's configuration shares: one error that names the component, the field
//! and what is wrong with it, and one way to write durations in config files and JSON.
//!
//! Adapters validate their own config structs and answer [`ConfigError`]; the agent's config
//! loader reports field paths (`coordination.etcd.endpoints`) through the same type.

use std::borrow::Cow;

/// A configuration value that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{component} config: {field}: {reason}")]
pub struct ConfigError {
    /// Whose configuration (`etcd`, `consul`, `nats coordination`, `wal replication`...).
    pub component: &'static str,
    /// The bad field, or its path.
    pub field: Cow<'static, str>,
    /// What is wrong with it, with the accepted values where there is a list.
    pub reason: String,
}

impl ConfigError {
    /// `component`'s `field` cannot work because of `reason`.
    pub fn new(
        component: &'static str,
        field: impl Into<Cow<'static, str>>,
        reason: impl Into<String>,
    ) -> Self {
        ConfigError {
            component,
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// A [`std::time::Duration`] written as whole milliseconds (`"call_timeout": 1500`), for
/// `#[serde(with = "cluster_core::config::duration_ms")]`. A duration past `u64::MAX`
/// milliseconds is written as `u64::MAX`.
///
/// Reading also takes a human-written string (`"1500ms"`, `"2s"`, `"1m 30s"`), so an adapter's
/// config table in the agent's TOML file reads like the rest of the file.
pub mod duration_ms {
    use std::fmt;
    use std::time::Duration;

    use serde::de::{self, Deserializer, Visitor};
    use serde::{Deserialize, Serializer};

    /// Writes `d` as milliseconds.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// Reads milliseconds, or a string such as `"2s"`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(MillisOrText)
    }

    struct MillisOrText;

    impl Visitor<'_> for MillisOrText {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("milliseconds, or a duration such as \"500ms\", \"2s\" or \"1m 30s\"")
        }

        fn visit_u64<E: de::Error>(self, ms: u64) -> Result<Duration, E> {
            Ok(Duration::from_millis(ms))
        }

        fn visit_i64<E: de::Error>(self, ms: i64) -> Result<Duration, E> {
            u64::try_from(ms)
                .map(Duration::from_millis)
                .map_err(|_| E::invalid_value(de::Unexpected::Signed(ms), &self))
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
            humantime::parse_duration(text)
                .map_err(|e| E::custom(format!("{text:?} is not a duration ({e})")))
        }
    }

    /// Reads the wrapped value with [`deserialize`].
    struct Wrapped(Duration);

    impl<'de> Deserialize<'de> for Wrapped {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            deserialize(d).map(Wrapped)
        }
    }

    /// The same for an `Option<Duration>` (absent or `null` is `None`), for
    /// `#[serde(default, with = "cluster_core::config::duration_ms::option")]`.
    pub mod option {
        use std::time::Duration;

        use serde::{Deserialize, Deserializer, Serializer};

        /// Writes `d` as milliseconds, or none.
        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => s.serialize_some(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                None => s.serialize_none(),
            }
        }

        /// Reads milliseconds or a duration string, or none.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            Ok(Option::<super::Wrapped>::deserialize(d)?.map(|w| w.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Timing {
        #[serde(with = "duration_ms")]
        timeout: Duration,
        #[serde(default, with = "duration_ms::option")]
        deadline: Option<Duration>,
    }

    #[test]
    fn durations_round_trip_as_milliseconds() {
        let t = Timing {
            timeout: Duration::from_millis(1500),
            deadline: Some(Duration::from_secs(2)),
        };
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, r#"{"timeout":1500,"deadline":2000}"#);
        assert_eq!(serde_json::from_str::<Timing>(&json).unwrap(), t);
        let absent: Timing = serde_json::from_str(r#"{"timeout":0}"#).unwrap();
        assert_eq!(absent.deadline, None);
        assert!(serde_json::from_str::<Timing>(r#"{"timeout":-1}"#).is_err());
    }

    #[test]
    fn durations_are_read_from_text_too() {
        let t: Timing = serde_json::from_str(r#"{"timeout":"1m 30s","deadline":"250ms"}"#).unwrap();
        assert_eq!(t.timeout, Duration::from_secs(90));
        assert_eq!(t.deadline, Some(Duration::from_millis(250)));
        let err = serde_json::from_str::<Timing>(r#"{"timeout":"soon"}"#).unwrap_err();
        assert!(
            err.to_string().contains("\"soon\" is not a duration"),
            "{err}"
        );
    }

    #[test]
    fn the_error_names_component_field_and_reason() {
        let e = ConfigError::new("etcd", "endpoints", "must not be empty");
        assert_eq!(e.to_string(), "etcd config: endpoints: must not be empty");
        assert_eq!(e.field, "endpoints");
        let path = ConfigError::new("agent", format!("app[{}].mode", 1), "bad");
        assert_eq!(path.field, "app[1].mode");
    }
}
