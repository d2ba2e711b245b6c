//! `EventId`: a UUIDv7 that names one event everywhere (envelope, `Nats-Msg-Id`, dedup records).

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;
use serde::Serialize;

/// A string that is not a UUID in its hyphenated form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a UUID (8-4-4-4-12 hex digits)")]
pub struct EventIdError {
    /// The rejected value.
    pub value: String,
}

/// An event's identity: a UUID, version 7 when this platform made it (time-ordered).
///
/// The core reads no clock and draws no random numbers, so adapters make ids with
/// [`EventId::v7`] from a timestamp and random bits they supply.
///
/// ```
/// use cluster_core::event::EventId;
///
/// let id = EventId::v7(1_700_000_000_000, [7; 10]);
/// assert_eq!(id.version(), 7);
/// let text = id.to_string();
/// assert_eq!(text.parse::<EventId>()?, id);
/// # Ok::<(), cluster_core::event::EventIdError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EventId(u128);

impl EventId {
    /// A version 7 UUID: 48 bits of unix milliseconds, then 74 random bits.
    pub fn v7(unix_millis: u64, random: [u8; 10]) -> EventId {
        let mut bytes = [0u8; 16];
        bytes[..6].copy_from_slice(&unix_millis.to_be_bytes()[2..]);
        bytes[6..].copy_from_slice(&random);
        bytes[6] = (bytes[6] & 0x0f) | 0x70; // version 7
        bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
        EventId(u128::from_be_bytes(bytes))
    }

    /// An id from its 16 bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> EventId {
        EventId(u128::from_be_bytes(bytes))
    }

    /// The id's 16 bytes.
    pub const fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    /// The UUID version nibble.
    pub const fn version(self) -> u8 {
        ((self.0 >> 76) & 0xf) as u8
    }

    /// The id with a dual-publish suffix, `{event_id}.v{major}`, for `Nats-Msg-Id`.
    pub fn message_id_for_major(self, major: u32) -> String {
        format!("{self}.v{major}")
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.to_bytes();
        for (i, byte) in b.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl FromStr for EventId {
    type Err = EventIdError;
    fn from_str(s: &str) -> Result<EventId, EventIdError> {
        let err = || EventIdError {
            value: s.to_owned(),
        };
        let groups: Vec<&str> = s.split('-').collect();
        let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        if lens != [8, 4, 4, 4, 12] {
            return Err(err());
        }
        let mut value: u128 = 0;
        for c in groups.concat().chars() {
            let digit = c.to_digit(16).ok_or_else(err)?;
            value = (value << 4) | u128::from(digit);
        }
        Ok(EventId(value))
    }
}

impl TryFrom<String> for EventId {
    type Error = EventIdError;
    fn try_from(value: String) -> Result<EventId, EventIdError> {
        value.parse()
    }
}

impl From<EventId> for String {
    fn from(id: EventId) -> String {
        id.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v7_sets_version_variant_and_time_order() {
        let a = EventId::v7(1_000, [0xff; 10]);
        let b = EventId::v7(1_001, [0x00; 10]);
        assert_eq!(a.version(), 7);
        assert_eq!(a.to_bytes()[8] >> 6, 0b10);
        assert!(a < b, "later millis sort later");
        assert_eq!(&a.to_string()[..14], "00000000-03e8-");
    }

    #[test]
    fn text_round_trips_and_rejects_garbage() {
        let id = EventId::v7(1_700_000_000_123, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        let text = id.to_string();
        assert_eq!(text.len(), 36);
        assert_eq!(text.parse::<EventId>().unwrap(), id);
        assert_eq!(text.to_uppercase().parse::<EventId>().unwrap(), id);
        for bad in [
            "",
            "x",
            "0000000-0000-0000-0000-000000000000",
            "g0000000-0000-0000-0000-000000000000",
        ] {
            assert!(bad.parse::<EventId>().is_err(), "{bad:?}");
        }
        assert_eq!(id.message_id_for_major(2), format!("{text}.v2"));
    }
}
