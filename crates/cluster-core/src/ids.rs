//! Identifiers and tokens shared by every crate.
//!
//! Names ([`NodeId`], [`PlatformName`], [`AppName`]) are validated strings: once constructed they
//! are known to be safe inside store keys, NATS bucket names and subjects. Numbers
//! ([`PartitionId`], [`Revision`], [`FencingToken`]) are `Copy` newtypes, totally
//! ordered and serialised as plain integers.
//!
//! ```
//! use cluster_core::ids::{AppName, FencingToken, NodeId, Revision};
//!
//! let node = NodeId::new("node-1.eu")?;
//! assert_eq!(node.as_str(), "node-1.eu");
//! assert!(AppName::new("Orders").is_err()); // app names are lowercase
//!
//! let token = FencingToken::from(Revision(41));
//! assert!(token.successor() > token);
//! # Ok::<(), cluster_core::ids::IdError>(())
//! ```

use std::fmt;

use serde::Deserialize;
use serde::Serialize;

/// Which kind of identifier failed validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IdField {
    /// A [`NodeId`].
    NodeId,
    /// A [`PlatformName`].
    PlatformName,
    /// An [`AppName`].
    AppName,
}

impl fmt::Display for IdField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdField::NodeId => "node id",
            IdField::PlatformName => "platform name",
            IdField::AppName => "app name",
        })
    }
}

/// A string that is not a valid identifier, naming the field, the value and the broken rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The value is empty.
    #[error("{field} must not be empty")]
    Empty {
        /// Which identifier was being built.
        field: IdField,
    },
    /// The value is longer than allowed.
    #[error("{field} {value:?} is {len} characters long; at most {max} are allowed")]
    TooLong {
        /// Which identifier was being built.
        field: IdField,
        /// The rejected value.
        value: String,
        /// Its length in bytes.
        len: usize,
        /// The maximum length.
        max: usize,
    },
    /// The value contains a character the identifier does not allow at that position.
    #[error("{field} {value:?} has {found:?} at position {position}; allowed: {allowed}")]
    BadCharacter {
        /// Which identifier was being built.
        field: IdField,
        /// The rejected value.
        value: String,
        /// The offending character.
        found: char,
        /// Its character index (0-based).
        position: usize,
        /// The allowed characters at that position.
        allowed: &'static str,
    },
}

/// The character rules of one kind of name.
struct NameRule {
    field: IdField,
    max: usize,
    first: fn(char) -> bool,
    first_desc: &'static str,
    rest: fn(char) -> bool,
    rest_desc: &'static str,
}

impl NameRule {
    fn check(&self, value: &str) -> Result<(), IdError> {
        if value.is_empty() {
            return Err(IdError::Empty { field: self.field });
        }
        for (position, c) in value.chars().enumerate() {
            let (ok, allowed) = if position == 0 {
                ((self.first)(c), self.first_desc)
            } else {
                ((self.rest)(c), self.rest_desc)
            };
            if !ok {
                return Err(IdError::BadCharacter {
                    field: self.field,
                    value: value.to_owned(),
                    found: c,
                    position,
                    allowed,
                });
            }
        }
        // All characters are ASCII here, so bytes == characters.
        if value.len() > self.max {
            return Err(IdError::TooLong {
                field: self.field,
                value: value.to_owned(),
                len: value.len(),
                max: self.max,
            });
        }
        Ok(())
    }
}

fn lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

const NODE_ID_RULE: NameRule = NameRule {
    field: IdField::NodeId,
    max: 64,
    first: |c| c.is_ascii_alphanumeric(),
    first_desc: "[A-Za-z0-9]",
    rest: |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'),
    rest_desc: "[A-Za-z0-9._-]",
};

const PLATFORM_RULE: NameRule = NameRule {
    field: IdField::PlatformName,
    max: 32,
    first: lower_alnum,
    first_desc: "[a-z0-9]",
    rest: |c| lower_alnum(c) || c == '-',
    rest_desc: "[a-z0-9-]",
};

const APP_RULE: NameRule = NameRule {
    field: IdField::AppName,
    max: 32,
    first: lower_alnum,
    first_desc: "[a-z0-9]",
    rest: |c| lower_alnum(c) || c == '-',
    rest_desc: "[a-z0-9-]",
};

/// Declares a validated string identifier with the shared API.
macro_rules! validated_name {
    ($(#[$doc:meta])* $name:ident, $rule:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps a name.
            pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                $rule.check(&value)?;
                Ok(Self(value))
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                Self::new(value)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(value: &str) -> Result<Self, IdError> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }
    };
}

validated_name!(
    /// A cluster node's identity: `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`.
    NodeId,
    NODE_ID_RULE
);

validated_name!(
    /// A platform (one cluster deployment) name: `[a-z0-9][a-z0-9-]{0,31}`.
    PlatformName,
    PLATFORM_RULE
);

validated_name!(
    /// An application name within a platform: `[a-z0-9][a-z0-9-]{0,31}`.
    AppName,
    APP_RULE
);

/// A fixed partition of an app's key space.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct PartitionId(pub u32);

impl fmt::Display for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{}", self.0)
    }
}

/// A store's modification revision (etcd `mod_revision`, Consul `ModifyIndex`, NATS KV revision).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct Revision(pub u64);

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

/// A token carried by every write done on behalf of an owner; newer owners hold larger tokens.
///
/// Tokens are issued by the coordination store (usually the revision of the claim) and only
/// grow: a receiver rejects any token older than the newest it has seen (see
/// [`FencingGuard`](crate::fencing::FencingGuard)).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct FencingToken(u64);

impl FencingToken {
    /// The smallest token; older than any token a store issues.
    pub const ZERO: FencingToken = FencingToken(0);

    /// Wraps a raw token value.
    pub const fn new(value: u64) -> FencingToken {
        FencingToken(value)
    }

    /// The raw token value.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The smallest token newer than this one.
    pub const fn successor(self) -> FencingToken {
        FencingToken(self.0.saturating_add(1))
    }
}

impl From<Revision> for FencingToken {
    fn from(revision: Revision) -> FencingToken {
        FencingToken(revision.0)
    }
}

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}", self.0)
    }
}

#[cfg(test)]
#[path = "ids_test.rs"]
mod tests;
