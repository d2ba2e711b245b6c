//! Durations as Consul's HTTP API writes them: Go's `time.Duration` text ("15s", "1m30s",
//! "500ms") and, for `LockDelay`, a bare number (seconds below 1000, nanoseconds otherwise).

use std::time::Duration;

/// Parses a Go duration string ("10s", "1.5s", "2m", "1h0m0s", "250ms"); `None` if malformed.
pub(crate) fn parse(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text == "0" {
        return Some(Duration::ZERO);
    }
    if text.is_empty() || text.starts_with('-') {
        return None;
    }
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return None;
        }
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * seconds_per_unit;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// Formats a duration as Go does for whole units ("10s", "1m30s", "1h0m0s", "1.5s", "0s").
pub(crate) fn format(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    if d < Duration::from_secs(1) {
        let nanos = d.as_nanos();
        return if nanos.is_multiple_of(1_000_000) {
            format!("{}ms", nanos / 1_000_000)
        } else if nanos.is_multiple_of(1_000) {
            format!("{}µs", nanos / 1_000)
        } else {
            format!("{nanos}ns")
        };
    }
    let total = d.as_secs();
    let (h, m, s) = (total / 3600, (total % 3600) / 60, total % 60);
    let frac = d.subsec_nanos();
    let seconds = if frac == 0 {
        format!("{s}s")
    } else {
        let digits = format!("{frac:09}");
        format!("{s}.{}s", digits.trim_end_matches('0'))
    };
    if h > 0 {
        format!("{h}h{m}m{seconds}")
    } else if m > 0 {
        format!("{m}m{seconds}")
    } else {
        seconds
    }
}

/// Reads a `LockDelay` field: a duration string, or a number (seconds when below 1000, as
/// Consul's decoder treats small numbers, nanoseconds otherwise).
pub(crate) fn parse_lock_delay(value: &serde_json::Value) -> Option<Duration> {
    match value {
        serde_json::Value::String(text) => parse(text),
        serde_json::Value::Number(n) => {
            let n = n.as_u64()?;
            Some(if n < 1000 {
                Duration::from_secs(n)
            } else {
                Duration::from_nanos(n)
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_go_durations() {
        assert_eq!(parse("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse("1h0m0s"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse("0"), Some(Duration::ZERO));
        for bad in ["", "10", "s", "-1s", "1x", "1.2.3s"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        assert_eq!(format(Duration::from_secs(10)), "10s");
        assert_eq!(format(Duration::from_secs(90)), "1m30s");
        assert_eq!(format(Duration::from_secs(86400)), "24h0m0s");
        assert_eq!(format(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format(Duration::from_millis(500)), "500ms");
        for d in [1, 10, 61, 3601, 86400] {
            let d = Duration::from_secs(d);
            assert_eq!(parse(&format(d)), Some(d));
        }
    }

    #[test]
    fn lock_delay_numbers_are_seconds_when_small() {
        let v = |j: &str| parse_lock_delay(&serde_json::from_str(j).unwrap());
        assert_eq!(v("15"), Some(Duration::from_secs(15)));
        assert_eq!(v("15000000000"), Some(Duration::from_secs(15)));
        assert_eq!(v("\"2s\""), Some(Duration::from_secs(2)));
        assert_eq!(v("null"), None);
    }
}
