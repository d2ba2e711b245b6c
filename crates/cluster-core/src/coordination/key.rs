//! Keys of the coordination store: a [`Namespace`] plus a name inside it.
//!
//! Adapters render a key for their store: hierarchical stores (etcd, Consul) use
//! [`Key::path`] (`/{platform}/{app}/{kind}/{name}`), flat ones (NATS KV) use the namespace's
//! bucket and the name as the key inside it. Names are restricted to the characters every store
//! accepts, so a key means the same thing on every backend.

use std::fmt;

use crate::coordination::error::{CoordError, CoordResult};
use crate::naming::Namespace;

/// The characters allowed in a key name (the intersection of what etcd, Consul and NATS KV take).
pub const NAME_CHARSET: &str = "A-Z a-z 0-9 . _ = / -";

/// A key: a name inside a namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    namespace: Namespace,
    name: String,
}

/// A set of keys: every key of a namespace whose name starts with a prefix.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyPrefix {
    namespace: Namespace,
    name_prefix: String,
}

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '=' | '/' | '-')
}

fn check_name(name: &str, allow_empty: bool) -> CoordResult<()> {
    if name.is_empty() {
        return if allow_empty {
            Ok(())
        } else {
            Err(CoordError::bad_request("key name must not be empty"))
        };
    }
    if let Some(bad) = name.chars().find(|c| !allowed(*c)) {
        return Err(CoordError::bad_request(format!(
            "key name {name:?} contains {bad:?}; allowed: {NAME_CHARSET}"
        )));
    }
    if name.starts_with(['.', '/']) || name.contains("..") || name.contains("//") {
        return Err(CoordError::bad_request(format!(
            "key name {name:?} must not start with '.' or '/' nor contain '..' or '//'"
        )));
    }
    Ok(())
}

impl Key {
    /// The key `name` in `namespace`; fails with `BadRequest` on a name some store would reject.
    pub fn new(namespace: Namespace, name: impl Into<String>) -> CoordResult<Key> {
        let name = name.into();
        check_name(&name, false)?;
        if name.ends_with(['.', '/']) {
            return Err(CoordError::bad_request(format!(
                "key name {name:?} must not end with '.' or '/'"
            )));
        }
        Ok(Key { namespace, name })
    }

    /// The namespace.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// The name inside the namespace.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The full hierarchical path, `/{platform}/{app}/{kind}/{name}`.
    pub fn path(&self) -> String {
        self.namespace.key(&self.name)
    }

    /// A key under this one: `{name}/{child}`.
    pub fn child(&self, child: &str) -> CoordResult<Key> {
        Key::new(self.namespace.clone(), format!("{}/{child}", self.name))
    }

    /// The prefix of every key under this one (`{name}/`).
    pub fn children(&self) -> KeyPrefix {
        KeyPrefix {
            namespace: self.namespace.clone(),
            name_prefix: format!("{}/", self.name),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

impl KeyPrefix {
    /// Every key of `namespace` whose name starts with `name_prefix` (empty: the whole namespace).
    pub fn new(namespace: Namespace, name_prefix: impl Into<String>) -> CoordResult<KeyPrefix> {
        let name_prefix = name_prefix.into();
        check_name(&name_prefix, true)?;
        Ok(KeyPrefix {
            namespace,
            name_prefix,
        })
    }

    /// Every key of `namespace`.
    pub fn all(namespace: Namespace) -> KeyPrefix {
        KeyPrefix {
            namespace,
            name_prefix: String::new(),
        }
    }

    /// The namespace.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// The name prefix inside the namespace.
    pub fn name_prefix(&self) -> &str {
        &self.name_prefix
    }

    /// The full hierarchical path prefix.
    pub fn path(&self) -> String {
        self.namespace.key(&self.name_prefix)
    }

    /// Whether `key` is in this set.
    pub fn contains(&self, key: &Key) -> bool {
        key.namespace == self.namespace && key.name.starts_with(&self.name_prefix)
    }
}

impl fmt::Display for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}*", self.path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{AppName, PlatformName};
    use crate::naming::{NamespaceKind, namespace};

    fn ns() -> Namespace {
        namespace(
            &PlatformName::new("prod").unwrap(),
            Some(&AppName::new("orders").unwrap()),
            NamespaceKind::Claims,
        )
    }

    #[test]
    fn renders_paths_and_children() {
        let key = Key::new(ns(), "partition/7").unwrap();
        assert_eq!(key.path(), "/prod/orders/claims/partition/7");
        let child = key.child("abc").unwrap();
        assert_eq!(child.name(), "partition/7/abc");
        assert!(key.children().contains(&child));
        assert!(!key.children().contains(&key));
    }

    #[test]
    fn rejects_names_some_store_would_not_take() {
        for bad in [
            "", "a b", "a*", "a>", ".a", "/a", "a/", "a.", "a//b", "a..b", "ä",
        ] {
            assert!(Key::new(ns(), bad).is_err(), "{bad:?} accepted");
        }
        for good in ["a", "a.b", "a/b", "node-1", "x_y=z"] {
            assert!(Key::new(ns(), good).is_ok(), "{good:?} refused");
        }
    }
}
