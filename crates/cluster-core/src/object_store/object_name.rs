//! Object names: the characters every store takes, checked once.

use std::fmt;

use crate::object_store::object_error::ObjectStoreError;

/// The characters allowed in an object name.
pub const NAME_CHARSET: &str = "A-Z a-z 0-9 . _ = / -";

/// The longest name, in bytes (leaves room for a flat file name and for NATS subject encoding).
pub const MAX_NAME_LEN: usize = 200;

/// A validated object name: `[A-Za-z0-9._=/-]`, 1 to [`MAX_NAME_LEN`] bytes, not starting with
/// `.` or `/`, not ending with `/`, without `..` or `//`.
///
/// ```
/// use cluster_core::object_store::ObjectName;
///
/// let name = ObjectName::new("wal/0000000000000001/0000000000000007")?;
/// assert_eq!(name.as_str(), "wal/0000000000000001/0000000000000007");
/// assert!(ObjectName::new("../etc/passwd").is_err());
/// # Ok::<(), cluster_core::object_store::ObjectStoreError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectName(String);

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '=' | '/' | '-')
}

impl ObjectName {
    /// Checks `name`; fails with [`ObjectStoreError::InvalidName`] naming the broken rule.
    pub fn new(name: impl Into<String>) -> Result<ObjectName, ObjectStoreError> {
        let name = name.into();
        let invalid = |reason: &'static str| ObjectStoreError::InvalidName {
            name: name.clone(),
            reason,
        };
        if name.is_empty() {
            return Err(invalid("must not be empty"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(invalid("is longer than 200 bytes"));
        }
        if !name.chars().all(allowed) {
            return Err(invalid("has a character outside A-Z a-z 0-9 . _ = / -"));
        }
        if name.starts_with(['.', '/']) || name.ends_with('/') {
            return Err(invalid("must not start with '.' or '/' nor end with '/'"));
        }
        if name.contains("..") || name.contains("//") {
            return Err(invalid("must not contain '..' or '//'"));
        }
        Ok(ObjectName(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ObjectName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_every_store_takes_are_accepted_and_others_refused() {
        for ok in [
            "a",
            "wal/00/01",
            "snap-1.db",
            "k=v_x",
            &"x".repeat(MAX_NAME_LEN),
        ] {
            assert_eq!(ObjectName::new(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            "/abs",
            ".hidden",
            "dir/",
            "a//b",
            "a/../b",
            "sp ace",
            "pct%",
            "ü",
            &"x".repeat(MAX_NAME_LEN + 1),
        ] {
            let err = ObjectName::new(bad).unwrap_err();
            assert!(
                matches!(err, ObjectStoreError::InvalidName { .. }),
                "{bad:?}: {err}"
            );
        }
    }
}
