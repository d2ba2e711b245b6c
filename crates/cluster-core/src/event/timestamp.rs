//! `Timestamp`: a wall-clock instant in an event, shown as RFC 3339 UTC with milliseconds.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use serde::Deserialize;
use serde::Serialize;

/// A string that is not `YYYY-MM-DDTHH:MM:SS[.fff]Z`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not an RFC 3339 UTC timestamp (YYYY-MM-DDTHH:MM:SS[.fff]Z)")]
pub struct TimestampError {
    /// The rejected value.
    pub value: String,
}

/// Milliseconds since the Unix epoch, on the wire as `2026-01-31T12:00:00.000Z`.
///
/// For people and audit only: ordering never uses it (clocks jump), `(epoch, sequence)` does.
///
/// ```
/// use cluster_core::event::Timestamp;
///
/// let t = Timestamp::from_unix_millis(1_700_000_000_123);
/// assert_eq!(t.to_string(), "2023-11-14T22:13:20.123Z");
/// assert_eq!("2023-11-14T22:13:20.123Z".parse::<Timestamp>()?, t);
/// # Ok::<(), cluster_core::event::TimestampError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Timestamp(u64);

impl Timestamp {
    /// The instant `millis` milliseconds after the Unix epoch.
    pub const fn from_unix_millis(millis: u64) -> Timestamp {
        Timestamp(millis)
    }

    /// A `SystemTime` (read by the caller, never here), clamped at the epoch.
    pub fn from_system_time(t: SystemTime) -> Timestamp {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        Timestamp(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// Milliseconds since the Unix epoch.
    pub const fn unix_millis(self) -> u64 {
        self.0
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// (year, month, day) to days since 1970-01-01.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.0 % 1000;
        let secs = self.0 / 1000;
        let (year, month, day) = civil_from_days((secs / 86_400) as i64);
        let rem = secs % 86_400;
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
            rem / 3600,
            (rem / 60) % 60,
            rem % 60
        )
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;
    fn from_str(s: &str) -> Result<Timestamp, TimestampError> {
        let err = || TimestampError {
            value: s.to_owned(),
        };
        let body = s.strip_suffix('Z').ok_or_else(err)?;
        let (date, time) = body.split_once('T').ok_or_else(err)?;
        let num = |t: &str, len: usize| -> Result<u64, TimestampError> {
            if t.len() != len || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err());
            }
            t.parse().map_err(|_| err())
        };
        let mut d = date.split('-');
        let (Some(y), Some(mo), Some(da), None) = (d.next(), d.next(), d.next(), d.next()) else {
            return Err(err());
        };
        let (year, month, day) = (num(y, 4)?, num(mo, 2)?, num(da, 2)?);
        let (hms, frac) = match time.split_once('.') {
            Some((hms, frac)) => (hms, Some(frac)),
            None => (time, None),
        };
        let mut t = hms.split(':');
        let (Some(h), Some(mi), Some(se), None) = (t.next(), t.next(), t.next(), t.next()) else {
            return Err(err());
        };
        let (hour, minute, second) = (num(h, 2)?, num(mi, 2)?, num(se, 2)?);
        if !(1..=12).contains(&month)
            || !(1..=31).contains(&day)
            || hour > 23
            || minute > 59
            || second > 60
        {
            return Err(err());
        }
        let millis = match frac {
            None => 0,
            Some(f) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
                let padded = format!("{f:0<3}");
                padded[..3].parse::<u64>().map_err(|_| err())?
            }
            Some(_) => return Err(err()),
        };
        let days = days_from_civil(year as i64, month as u32, day as u32);
        let days = u64::try_from(days).map_err(|_| err())?;
        Ok(Timestamp(
            ((days * 86_400 + hour * 3600 + minute * 60 + second) * 1000) + millis,
        ))
    }
}

impl TryFrom<String> for Timestamp {
    type Error = TimestampError;
    fn try_from(value: String) -> Result<Timestamp, TimestampError> {
        value.parse()
    }
}

impl From<Timestamp> for String {
    fn from(t: Timestamp) -> String {
        t.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants_render_and_parse() {
        for (millis, text) in [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (1_767_225_599_999, "2025-12-31T23:59:59.999Z"),
        ] {
            let t = Timestamp::from_unix_millis(millis);
            assert_eq!(t.to_string(), text);
            assert_eq!(text.parse::<Timestamp>().unwrap(), t);
        }
        assert_eq!(
            "2025-12-31T23:59:59Z".parse::<Timestamp>().unwrap(),
            Timestamp::from_unix_millis(1_767_225_599_000)
        );
    }

    #[test]
    fn malformed_timestamps_are_errors() {
        for bad in [
            "",
            "2025-12-31",
            "2025-12-31T23:59:59",
            "2025-13-01T00:00:00Z",
            "2025-1-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "2025-12-31T23:59:59.Z",
        ] {
            assert!(bad.parse::<Timestamp>().is_err(), "{bad:?}");
        }
    }
}
