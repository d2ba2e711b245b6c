//! `SchemaRegistry`: the payload schemas per `(event_type, major)`, and routing by version.
//!
//! Publishers validate a payload before sending; consumers look up the event's major and
//! either get its schema or a [`RouteError`] that names the dead-letter reason. A registry is
//! loaded from a JSON document, the same file `cargo xtask schema-check OLD NEW` compares:
//!
//! ```json
//! { "schemas": [
//!     { "event_type": "task.started", "schema_version": "1.2", "schema": { "type": "object" } }
//! ] }
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::event::compatibility::CompatibilityReport;
use crate::event::compatibility::check_compatibility;
use crate::event::envelope::EventType;
use crate::event::envelope::SchemaVersion;
use crate::event::schema::Schema;
use crate::event::schema::SchemaError;
use crate::event::schema::SchemaViolation;

/// Why a registry document cannot be loaded.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The document is not the registry format.
    #[error("schema registry document is malformed: {0}")]
    Malformed(#[source] std::sync::Arc<serde_json::Error>),
    /// One schema is invalid.
    #[error("schema for {event_type} v{version}: {source}")]
    Schema {
        /// The event type.
        event_type: EventType,
        /// Its version.
        version: SchemaVersion,
        /// What is wrong.
        #[source]
        source: SchemaError,
    },
    /// Two entries for the same type and major.
    #[error("{event_type} has two schemas for major {major}")]
    Duplicate {
        /// The event type.
        event_type: EventType,
        /// The major.
        major: u32,
    },
}

/// Why an event cannot be routed to a schema, or fails it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// No schema is known for the event type at all.
    #[error("unknown event type {event_type}")]
    UnknownType {
        /// The event type.
        event_type: EventType,
    },
    /// The type is known, its major is not.
    #[error("unknown major {major} for {event_type} (known: {known:?})")]
    UnknownMajor {
        /// The event type.
        event_type: EventType,
        /// The major received.
        major: u32,
        /// The majors this registry has.
        known: Vec<u32>,
    },
    /// The payload does not match the schema.
    #[error("payload of {event_type} v{major} is invalid: {}", violations.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid {
        /// The event type.
        event_type: EventType,
        /// The major.
        major: u32,
        /// What is wrong.
        violations: Vec<SchemaViolation>,
    },
}

/// One registered schema.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisteredSchema {
    /// Its full version (the minor is informational).
    pub version: SchemaVersion,
    /// The schema.
    pub schema: Schema,
}

/// Payload schemas by event type and major.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SchemaRegistry {
    schemas: BTreeMap<EventType, BTreeMap<u32, RegisteredSchema>>,
}

#[derive(Deserialize)]
struct Document {
    schemas: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    event_type: EventType,
    schema_version: SchemaVersion,
    schema: Value,
}

impl SchemaRegistry {
    /// An empty registry.
    pub fn new() -> SchemaRegistry {
        SchemaRegistry::default()
    }

    /// Adds (or replaces) the schema of `event_type` at `version.major`.
    pub fn register(&mut self, event_type: EventType, version: SchemaVersion, schema: Schema) {
        self.schemas
            .entry(event_type)
            .or_default()
            .insert(version.major, RegisteredSchema { version, schema });
    }

    /// Builder form of [`register`](Self::register).
    pub fn with(mut self, event_type: EventType, version: SchemaVersion, schema: Schema) -> Self {
        self.register(event_type, version, schema);
        self
    }

    /// Loads a registry document.
    pub fn from_json(bytes: &[u8]) -> Result<SchemaRegistry, RegistryError> {
        let doc: Document = serde_json::from_slice(bytes)
            .map_err(|e| RegistryError::Malformed(std::sync::Arc::new(e)))?;
        let mut registry = SchemaRegistry::new();
        for entry in doc.schemas {
            let schema =
                Schema::from_json(&entry.schema).map_err(|source| RegistryError::Schema {
                    event_type: entry.event_type.clone(),
                    version: entry.schema_version,
                    source,
                })?;
            if registry
                .get(&entry.event_type, entry.schema_version.major)
                .is_some()
            {
                return Err(RegistryError::Duplicate {
                    event_type: entry.event_type,
                    major: entry.schema_version.major,
                });
            }
            registry.register(entry.event_type, entry.schema_version, schema);
        }
        Ok(registry)
    }

    /// The schema of `event_type` at `major`.
    pub fn get(&self, event_type: &EventType, major: u32) -> Option<&RegisteredSchema> {
        self.schemas.get(event_type)?.get(&major)
    }

    /// The majors known for `event_type`, ascending.
    pub fn majors(&self, event_type: &EventType) -> Vec<u32> {
        self.schemas
            .get(event_type)
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Every event type.
    pub fn event_types(&self) -> impl Iterator<Item = &EventType> {
        self.schemas.keys()
    }

    /// Routes an event by type and major and validates its payload.
    pub fn route(
        &self,
        event_type: &EventType,
        major: u32,
        payload: &Value,
    ) -> Result<&RegisteredSchema, RouteError> {
        let Some(by_major) = self.schemas.get(event_type) else {
            return Err(RouteError::UnknownType {
                event_type: event_type.clone(),
            });
        };
        let Some(registered) = by_major.get(&major) else {
            return Err(RouteError::UnknownMajor {
                event_type: event_type.clone(),
                major,
                known: by_major.keys().copied().collect(),
            });
        };
        registered
            .schema
            .validate(payload)
            .map_err(|violations| RouteError::Invalid {
                event_type: event_type.clone(),
                major,
                violations,
            })?;
        Ok(registered)
    }
}

/// How one `(event_type, major)` changed between two registries.
#[derive(Debug, Clone, PartialEq)]
pub enum SchemaChange {
    /// Present in both: the compatibility findings.
    Changed {
        /// Old version.
        old: SchemaVersion,
        /// New version.
        new: SchemaVersion,
        /// Findings.
        report: CompatibilityReport,
    },
    /// Only in the new registry (a new type or a new major: dual-publish both majors).
    Added {
        /// Its version.
        version: SchemaVersion,
        /// Against the highest older major of the same type, if any.
        against_previous_major: Option<CompatibilityReport>,
    },
    /// Only in the old registry: consumers of it will dead-letter these events as unknown.
    Removed {
        /// Its version.
        version: SchemaVersion,
    },
}

/// The compatibility of every schema between an old and a new registry.
pub fn compare_registries(
    old: &SchemaRegistry,
    new: &SchemaRegistry,
) -> Vec<(EventType, u32, SchemaChange)> {
    let mut out = Vec::new();
    for (event_type, new_majors) in &new.schemas {
        for (major, n) in new_majors {
            let change = match old.get(event_type, *major) {
                Some(o) => SchemaChange::Changed {
                    old: o.version,
                    new: n.version,
                    report: check_compatibility(&o.schema, &n.schema),
                },
                None => SchemaChange::Added {
                    version: n.version,
                    against_previous_major: old
                        .schemas
                        .get(event_type)
                        .and_then(|m| m.range(..major).next_back())
                        .map(|(_, o)| check_compatibility(&o.schema, &n.schema)),
                },
            };
            out.push((event_type.clone(), *major, change));
        }
    }
    for (event_type, old_majors) in &old.schemas {
        for (major, o) in old_majors {
            if new.get(event_type, *major).is_none() {
                out.push((
                    event_type.clone(),
                    *major,
                    SchemaChange::Removed { version: o.version },
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn doc(schemas: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({ "schemas": schemas })).unwrap()
    }

    #[test]
    fn routes_by_major_and_validates() {
        let reg = SchemaRegistry::from_json(&doc(json!([
            {"event_type": "task.started", "schema_version": "1.0", "schema": {"type": "object", "required": ["task"]}},
            {"event_type": "task.started", "schema_version": "2.3", "schema": {"type": "object", "required": ["task_id"]}}
        ])))
        .unwrap();
        let t: EventType = "task.started".parse().unwrap();
        assert_eq!(reg.majors(&t), vec![1, 2]);
        assert!(reg.route(&t, 1, &json!({"task": "a"})).is_ok());
        assert_eq!(
            reg.route(&t, 2, &json!({"task_id": "a"})).unwrap().version,
            SchemaVersion::new(2, 3)
        );
        assert!(matches!(
            reg.route(&t, 2, &json!({"task": "a"})),
            Err(RouteError::Invalid { .. })
        ));
        assert!(matches!(
            reg.route(&t, 3, &json!({})),
            Err(RouteError::UnknownMajor { major: 3, known, .. }) if known == vec![1, 2]
        ));
        let other: EventType = "job.fired".parse().unwrap();
        assert!(matches!(
            reg.route(&other, 1, &json!({})),
            Err(RouteError::UnknownType { .. })
        ));
    }

    #[test]
    fn bad_documents_name_the_problem() {
        assert!(matches!(
            SchemaRegistry::from_json(b"{}"),
            Err(RegistryError::Malformed(_))
        ));
        assert!(matches!(
            SchemaRegistry::from_json(&doc(
                json!([{"event_type": "task.x", "schema_version": "1.0", "schema": {"format": "uuid"}}])
            )),
            Err(RegistryError::Schema { .. })
        ));
        assert!(matches!(
            SchemaRegistry::from_json(&doc(json!([
                {"event_type": "task.x", "schema_version": "1.0", "schema": {}},
                {"event_type": "task.x", "schema_version": "1.1", "schema": {}}
            ]))),
            Err(RegistryError::Duplicate { major: 1, .. })
        ));
    }

    #[test]
    fn registries_compare_per_type_and_major() {
        let old = SchemaRegistry::from_json(&doc(json!([
            {"event_type": "task.started", "schema_version": "1.0", "schema": {"type": "object", "properties": {"a": {"type": "string"}}}},
            {"event_type": "job.fired", "schema_version": "1.0", "schema": {}}
        ])))
        .unwrap();
        let new = SchemaRegistry::from_json(&doc(json!([
            {"event_type": "task.started", "schema_version": "1.1", "schema": {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}}},
            {"event_type": "task.started", "schema_version": "2.0", "schema": {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}}
        ])))
        .unwrap();
        let changes = compare_registries(&old, &new);
        assert_eq!(changes.len(), 3);
        assert!(changes.iter().any(|c| matches!(c, (t, 1, SchemaChange::Changed { report, .. }) if t.to_string() == "task.started" && report.is_full())));
        assert!(changes.iter().any(|c| matches!(c, (_, 2, SchemaChange::Added { against_previous_major: Some(r), .. }) if !r.is_backward_compatible())));
        assert!(changes.iter().any(
            |c| matches!(c, (t, 1, SchemaChange::Removed { .. }) if t.to_string() == "job.fired")
        ));
    }
}
