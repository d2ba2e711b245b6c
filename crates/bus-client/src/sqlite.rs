//! Opening the local SQLite files (outbox, consumer records) with durable settings.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

/// Opens `path` in WAL mode with `synchronous = FULL`: a committed transaction survives a
/// crash of the process or the machine.
pub(crate) fn open_durable(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

/// A `u64` as SQLite's signed integer (values past `i64::MAX` do not occur: they are counts).
pub(crate) fn to_sql(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A SQLite integer back as `u64`.
pub(crate) fn from_sql(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
