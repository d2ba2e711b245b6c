//! The subject taxonomy: the one place that builds every NATS subject the platform uses.
//!
//! | subject | what |
//! | --- | --- |
//! | `{prefix}.v{major}.lifecycle.{kind}.{shard}.{event}` | lifecycle events of workflows, tasks, nodes, ownership and jobs |
//! | `{prefix}.v{major}.platform.{event}` | platform-wide events (membership, leadership, assignments) |
//! | `{prefix}.audit.{category}` | audit records |
//! | `{prefix}.rpc.{service}.{method}` | request/reply calls between nodes |
//! | `{prefix}.deadletter.{reason}` | events a consumer could not apply, with the reason |
//!
//! Every part is a [`SubjectToken`]: non-empty, at most 64 characters of `[A-Za-z0-9_-]`. A dot,
//! a wildcard (`*`, `>`) or whitespace in a token is an error, never a new subject level, so a
//! value from input cannot widen a subscription or land in another shard's subject.
//!
//! Consumers subscribe with [`SubjectFilter`]s built by the same functions, each level either
//! exact or `*`, and `>` only where the taxonomy allows it (after the prefix and version).

use std::fmt;

use serde::Deserialize;
use serde::Serialize;

use crate::event::DeadLetterReason;
use crate::ids::PartitionId;

/// Why a subject part was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubjectError {
    /// The token is empty.
    #[error("subject token must not be empty")]
    Empty,
    /// The token is longer than allowed.
    #[error("subject token {token:?} is {len} characters long; at most {max} are allowed")]
    TooLong {
        /// The rejected token.
        token: String,
        /// Its length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// The token contains a character that would change the subject's shape.
    #[error("subject token {token:?} has {found:?} at position {position}; allowed: [A-Za-z0-9_-]")]
    BadCharacter {
        /// The rejected token.
        token: String,
        /// The offending character.
        found: char,
        /// Its character index.
        position: usize,
    },
    /// A subject string does not follow the taxonomy.
    #[error("subject {subject:?} does not follow the taxonomy: {expected}")]
    NotInTaxonomy {
        /// The subject.
        subject: String,
        /// What shape was expected.
        expected: &'static str,
    },
}

/// The longest token accepted.
pub const MAX_TOKEN_LEN: usize = 64;

/// One level of a subject: `[A-Za-z0-9_-]{1,64}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SubjectToken(String);

impl SubjectToken {
    /// Validates one subject level.
    pub fn new(value: impl Into<String>) -> Result<Self, SubjectError> {
        let value = value.into();
        if value.is_empty() {
            return Err(SubjectError::Empty);
        }
        if let Some((position, found)) = value
            .chars()
            .enumerate()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        {
            return Err(SubjectError::BadCharacter {
                token: value,
                found,
                position,
            });
        }
        if value.len() > MAX_TOKEN_LEN {
            return Err(SubjectError::TooLong {
                len: value.len(),
                token: value,
                max: MAX_TOKEN_LEN,
            });
        }
        Ok(Self(value))
    }

    /// The token as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SubjectToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for SubjectToken {
    type Error = SubjectError;
    fn try_from(value: String) -> Result<Self, SubjectError> {
        Self::new(value)
    }
}

impl From<SubjectToken> for String {
    fn from(value: SubjectToken) -> String {
        value.0
    }
}

/// What a lifecycle event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LifecycleKind {
    /// A workflow run.
    Workflow,
    /// A task within a workflow.
    Task,
    /// A cluster node.
    Node,
    /// Ownership of a partition.
    Ownership,
    /// A scheduled job.
    Job,
}

impl LifecycleKind {
    /// Every kind.
    pub const ALL: [LifecycleKind; 5] = [
        LifecycleKind::Workflow,
        LifecycleKind::Task,
        LifecycleKind::Node,
        LifecycleKind::Ownership,
        LifecycleKind::Job,
    ];

    /// The kind's subject level.
    pub const fn as_str(self) -> &'static str {
        match self {
            LifecycleKind::Workflow => "workflow",
            LifecycleKind::Task => "task",
            LifecycleKind::Node => "node",
            LifecycleKind::Ownership => "ownership",
            LifecycleKind::Job => "job",
        }
    }

    /// The kind named by a subject level.
    pub fn parse(level: &str) -> Option<LifecycleKind> {
        LifecycleKind::ALL.into_iter().find(|k| k.as_str() == level)
    }
}

impl fmt::Display for LifecycleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A concrete subject to publish on, built only by [`Subjects`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Subject(String);

impl Subject {
    /// The subject as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Accepts a subject string that a bus delivered, checking only that every level is a token.
    pub fn parse(subject: &str) -> Result<Subject, SubjectError> {
        for level in subject.split('.') {
            SubjectToken::new(level)?;
        }
        Ok(Subject(subject.to_owned()))
    }

    /// The major version in a versioned subject (`{prefix}.v{major}....`), if it has one.
    pub fn major(&self) -> Option<u32> {
        self.0.split('.').nth(1)?.strip_prefix('v')?.parse().ok()
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Subject {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A subscription pattern built by [`Subjects`]: exact levels, `*` levels and a final `>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SubjectFilter(String);

impl SubjectFilter {
    /// The filter as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `subject` matches this filter under NATS rules.
    pub fn matches(&self, subject: &str) -> bool {
        let mut pattern = self.0.split('.');
        let mut levels = subject.split('.');
        loop {
            match (pattern.next(), levels.next()) {
                (Some(">"), Some(_)) => return true,
                (Some("*"), Some(_)) => {}
                (Some(p), Some(l)) if p == l => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }
}

impl fmt::Display for SubjectFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<Subject> for SubjectFilter {
    fn from(subject: Subject) -> SubjectFilter {
        SubjectFilter(subject.0)
    }
}

/// One level of a filter: a fixed value or any value (`*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Level<T> {
    /// Exactly this value.
    Is(T),
    /// Any value.
    Any,
}

impl<T: fmt::Display> Level<T> {
    fn render(&self) -> String {
        match self {
            Level::Is(v) => v.to_string(),
            Level::Any => "*".to_owned(),
        }
    }
}

/// A lifecycle subject's parts, as parsed back from a delivered subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleSubject {
    /// The schema major version.
    pub major: u32,
    /// What the event is about.
    pub kind: LifecycleKind,
    /// The shard (partition) of the event's ordering key.
    pub shard: PartitionId,
    /// The event name.
    pub event: SubjectToken,
}

/// The subject builder for one platform prefix.
///
/// ```
/// use cluster_core::event::{Level, LifecycleKind, Subjects, SubjectToken};
/// use cluster_core::ids::PartitionId;
///
/// let subjects = Subjects::new("prod")?;
/// let s = subjects.lifecycle(2, LifecycleKind::Task, PartitionId(7), &SubjectToken::new("started")?);
/// assert_eq!(s.as_str(), "prod.v2.lifecycle.task.p7.started");
/// let shard_7 = subjects.lifecycle_filter(Level::Is(2), Level::Any, Level::Is(PartitionId(7)), Level::Any);
/// assert_eq!(shard_7.as_str(), "prod.v2.lifecycle.*.p7.*");
/// assert!(shard_7.matches(s.as_str()));
/// assert!(SubjectToken::new("a.b").is_err());
/// # Ok::<(), cluster_core::event::SubjectError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Subjects {
    prefix: SubjectToken,
}

impl Subjects {
    /// A builder for subjects under `prefix` (usually the platform name).
    pub fn new(prefix: impl Into<String>) -> Result<Subjects, SubjectError> {
        Ok(Subjects {
            prefix: SubjectToken::new(prefix)?,
        })
    }

    /// The prefix.
    pub fn prefix(&self) -> &SubjectToken {
        &self.prefix
    }

    /// `{prefix}.v{major}.lifecycle.{kind}.{shard}.{event}`.
    pub fn lifecycle(
        &self,
        major: u32,
        kind: LifecycleKind,
        shard: PartitionId,
        event: &SubjectToken,
    ) -> Subject {
        Subject(format!(
            "{}.v{major}.lifecycle.{kind}.{shard}.{event}",
            self.prefix
        ))
    }

    /// A filter over lifecycle subjects; each level exact or any.
    pub fn lifecycle_filter(
        &self,
        major: Level<u32>,
        kind: Level<LifecycleKind>,
        shard: Level<PartitionId>,
        event: Level<SubjectToken>,
    ) -> SubjectFilter {
        let major = match major {
            Level::Is(m) => format!("v{m}"),
            Level::Any => "*".to_owned(),
        };
        SubjectFilter(format!(
            "{}.{major}.lifecycle.{}.{}.{}",
            self.prefix,
            kind.render(),
            shard.render(),
            event.render()
        ))
    }

    /// Every lifecycle subject of every major: `{prefix}.*.lifecycle.>`.
    pub fn all_lifecycle(&self) -> SubjectFilter {
        SubjectFilter(format!("{}.*.lifecycle.>", self.prefix))
    }

    /// `{prefix}.v{major}.platform.{event}`.
    pub fn platform(&self, major: u32, event: &SubjectToken) -> Subject {
        Subject(format!("{}.v{major}.platform.{event}", self.prefix))
    }

    /// Every platform event of every major: `{prefix}.*.platform.*`.
    pub fn all_platform(&self) -> SubjectFilter {
        SubjectFilter(format!("{}.*.platform.*", self.prefix))
    }

    /// `{prefix}.audit.{category}`.
    pub fn audit(&self, category: &SubjectToken) -> Subject {
        Subject(format!("{}.audit.{category}", self.prefix))
    }

    /// Every audit subject: `{prefix}.audit.*`.
    pub fn all_audit(&self) -> SubjectFilter {
        SubjectFilter(format!("{}.audit.*", self.prefix))
    }

    /// `{prefix}.rpc.{service}.{method}`.
    pub fn rpc(&self, service: &SubjectToken, method: &SubjectToken) -> Subject {
        Subject(format!("{}.rpc.{service}.{method}", self.prefix))
    }

    /// Every method of `service`: `{prefix}.rpc.{service}.*`.
    pub fn rpc_service(&self, service: &SubjectToken) -> SubjectFilter {
        SubjectFilter(format!("{}.rpc.{service}.*", self.prefix))
    }

    /// `{prefix}.deadletter.{reason}`.
    pub fn dead_letter(&self, reason: DeadLetterReason) -> Subject {
        // Reasons are fixed lowercase words, always valid tokens.
        Subject(format!("{}.deadletter.{}", self.prefix, reason.as_str()))
    }

    /// Every dead letter: `{prefix}.deadletter.*`.
    pub fn all_dead_letters(&self) -> SubjectFilter {
        SubjectFilter(format!("{}.deadletter.*", self.prefix))
    }

    /// Parses a lifecycle subject of this prefix back into its parts.
    pub fn parse_lifecycle(&self, subject: &str) -> Result<LifecycleSubject, SubjectError> {
        const EXPECTED: &str = "{prefix}.v{major}.lifecycle.{kind}.p{shard}.{event}";
        let bad = || SubjectError::NotInTaxonomy {
            subject: subject.to_owned(),
            expected: EXPECTED,
        };
        let parts: Vec<&str> = subject.split('.').collect();
        let [prefix, version, lifecycle, kind, shard, event] = parts.as_slice() else {
            return Err(bad());
        };
        if *prefix != self.prefix.as_str() || *lifecycle != "lifecycle" {
            return Err(bad());
        }
        let major = version
            .strip_prefix('v')
            .and_then(|m| m.parse().ok())
            .ok_or_else(bad)?;
        let kind = LifecycleKind::parse(kind).ok_or_else(bad)?;
        let shard = shard
            .strip_prefix('p')
            .and_then(|s| s.parse().ok())
            .map(PartitionId)
            .ok_or_else(bad)?;
        Ok(LifecycleSubject {
            major,
            kind,
            shard,
            event: SubjectToken::new(*event)?,
        })
    }
}

#[cfg(test)]
#[path = "subject_test.rs"]
mod tests;
