//! Schema compatibility: can a consumer on one schema read events written under another?
//!
//! Two questions, answered separately:
//!
//! - **backward** (new consumer reads old events): is every payload valid under OLD also valid
//!   under NEW?
//! - **forward** (old consumer reads new events): is every payload valid under NEW also valid
//!   under OLD?
//!
//! Both reduce to "does schema A accept no more than schema B" ([`accepts_subset`]). One
//! assumption makes the usual evolutions come out as people expect: a producer writes only the
//! properties its schema declares. So adding an optional property is compatible both ways (old
//! consumers ignore it unless they forbid additional properties), adding a required one breaks
//! backward, removing a required one breaks forward, a rename or a retype breaks both, widening
//! an enum breaks forward and narrowing it breaks backward.
//!
//! ```
//! use cluster_core::event::{check_compatibility, Schema};
//! use serde_json::json;
//!
//! let old = Schema::from_json(&json!({"type": "object", "properties": {"a": {"type": "string"}}}))?;
//! let new = Schema::from_json(&json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}, "required": ["b"]}))?;
//! let report = check_compatibility(&old, &new);
//! assert!(!report.is_backward_compatible()); // old events lack "b"
//! assert!(report.is_forward_compatible());   // old consumers ignore "b"
//! # Ok::<(), cluster_core::event::SchemaError>(())
//! ```

use std::fmt;

use crate::event::schema::Additional;
use crate::event::schema::JsonType;
use crate::event::schema::Schema;

/// One reason a payload valid under the reading side's source schema may be refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Incompatibility {
    /// The source allows a type the target does not.
    TypeNotAccepted {
        /// Where.
        path: String,
        /// The type the target refuses (`None`: the source allows any type).
        source_type: Option<JsonType>,
    },
    /// The source allows an enum value the target does not.
    EnumValueNotAccepted {
        /// Where.
        path: String,
        /// The value, as JSON.
        value: String,
    },
    /// The target restricts values to an enum the source does not have.
    EnumIntroduced {
        /// Where.
        path: String,
    },
    /// The target requires a property the source may omit.
    RequiredMissing {
        /// The object's path.
        path: String,
        /// The property.
        property: String,
        /// Whether the source declares it at all (optional) or not (absent).
        declared_in_source: bool,
    },
    /// The source may carry a property the target forbids.
    PropertyForbidden {
        /// The object's path.
        path: String,
        /// The property.
        property: String,
    },
    /// The source's schema is `true`-like where the target is `false`.
    NothingAccepted {
        /// Where.
        path: String,
    },
}

impl fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Incompatibility::TypeNotAccepted {
                path,
                source_type: Some(t),
            } => {
                write!(f, "{path}: type {t} is no longer accepted")
            }
            Incompatibility::TypeNotAccepted {
                path,
                source_type: None,
            } => {
                write!(f, "{path}: any type was allowed, now restricted")
            }
            Incompatibility::EnumValueNotAccepted { path, value } => {
                write!(f, "{path}: enum value {value} is not accepted")
            }
            Incompatibility::EnumIntroduced { path } => {
                write!(f, "{path}: values are now restricted to an enum")
            }
            Incompatibility::RequiredMissing {
                path,
                property,
                declared_in_source: true,
            } => {
                write!(
                    f,
                    "{path}: property {property:?} is required but was optional"
                )
            }
            Incompatibility::RequiredMissing {
                path,
                property,
                declared_in_source: false,
            } => {
                write!(
                    f,
                    "{path}: property {property:?} is required but did not exist"
                )
            }
            Incompatibility::PropertyForbidden { path, property } => {
                write!(
                    f,
                    "{path}: property {property:?} is carried but not allowed"
                )
            }
            Incompatibility::NothingAccepted { path } => write!(f, "{path}: nothing is accepted"),
        }
    }
}

/// Backward and forward findings for one schema change.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CompatibilityReport {
    /// Why a new consumer may fail on old events (empty: backward compatible).
    pub backward: Vec<Incompatibility>,
    /// Why an old consumer may fail on new events (empty: forward compatible).
    pub forward: Vec<Incompatibility>,
}

impl CompatibilityReport {
    /// New consumers read old events.
    pub fn is_backward_compatible(&self) -> bool {
        self.backward.is_empty()
    }

    /// Old consumers read new events.
    pub fn is_forward_compatible(&self) -> bool {
        self.forward.is_empty()
    }

    /// Both ways: the change fits in a minor version.
    pub fn is_full(&self) -> bool {
        self.is_backward_compatible() && self.is_forward_compatible()
    }
}

/// Compares an old and a new payload schema in both directions.
pub fn check_compatibility(old: &Schema, new: &Schema) -> CompatibilityReport {
    CompatibilityReport {
        backward: accepts_subset(old, new),
        forward: accepts_subset(new, old),
    }
}

/// Why some payload valid under `source` may be invalid under `target`; empty when none.
pub fn accepts_subset(source: &Schema, target: &Schema) -> Vec<Incompatibility> {
    let mut out = Vec::new();
    subset(source, target, "$", &mut out);
    out
}

fn may_be(schema: &Schema, t: JsonType) -> bool {
    schema
        .types
        .as_ref()
        .is_none_or(|types| types.iter().any(|allowed| t.satisfies(*allowed)))
}

fn subset(a: &Schema, b: &Schema, path: &str, out: &mut Vec<Incompatibility>) {
    if a.nothing {
        return;
    }
    if b.nothing {
        out.push(Incompatibility::NothingAccepted {
            path: path.to_owned(),
        });
        return;
    }
    match (&a.types, &b.types) {
        (_, None) => {}
        (None, Some(_)) if a.enum_values.is_none() => out.push(Incompatibility::TypeNotAccepted {
            path: path.to_owned(),
            source_type: None,
        }),
        (None, Some(_)) => {}
        (Some(at), Some(bt)) => {
            for t in at {
                if !bt.iter().any(|allowed| t.satisfies(*allowed)) {
                    out.push(Incompatibility::TypeNotAccepted {
                        path: path.to_owned(),
                        source_type: Some(*t),
                    });
                }
            }
        }
    }
    match (&a.enum_values, &b.enum_values) {
        (_, None) => {}
        (None, Some(_)) => out.push(Incompatibility::EnumIntroduced {
            path: path.to_owned(),
        }),
        (Some(av), Some(bv)) => {
            for v in av.iter().filter(|v| !bv.contains(v)) {
                out.push(Incompatibility::EnumValueNotAccepted {
                    path: path.to_owned(),
                    value: v.to_string(),
                });
            }
        }
    }
    // Enum-only schemas: values outside the type set of the target.
    if let (Some(av), Some(bt), None) = (&a.enum_values, &b.types, &a.types) {
        for v in av {
            let t = JsonType::of(v);
            if !bt.iter().any(|allowed| t.satisfies(*allowed)) {
                out.push(Incompatibility::EnumValueNotAccepted {
                    path: path.to_owned(),
                    value: v.to_string(),
                });
            }
        }
    }
    if may_be(a, JsonType::Object) && may_be(b, JsonType::Object) {
        for property in b.required.difference(&a.required) {
            out.push(Incompatibility::RequiredMissing {
                path: path.to_owned(),
                property: property.clone(),
                declared_in_source: a.properties.contains_key(property),
            });
        }
        for (name, a_prop) in &a.properties {
            let sub_path = format!("{path}.{name}");
            match (b.properties.get(name), &b.additional) {
                (Some(b_prop), _) => subset(a_prop, b_prop, &sub_path, out),
                (None, Additional::Allowed) => {}
                (None, Additional::Forbidden) => out.push(Incompatibility::PropertyForbidden {
                    path: path.to_owned(),
                    property: name.clone(),
                }),
                (None, Additional::Matching(b_extra)) => subset(a_prop, b_extra, &sub_path, out),
            }
        }
        // Producers write only declared properties, so `a`'s additionalProperties adds nothing
        // unless `a` declares none and says what extra ones look like (a map type).
        if let Additional::Matching(a_extra) = &a.additional {
            match &b.additional {
                Additional::Allowed => {}
                Additional::Forbidden => out.push(Incompatibility::PropertyForbidden {
                    path: path.to_owned(),
                    property: "*".to_owned(),
                }),
                Additional::Matching(b_extra) => {
                    subset(a_extra, b_extra, &format!("{path}.*"), out)
                }
            }
        }
    }
    if may_be(a, JsonType::Array)
        && may_be(b, JsonType::Array)
        && let Some(b_items) = &b.items
    {
        let any = Schema::any();
        let a_items = a.items.as_deref().unwrap_or(&any);
        subset(a_items, b_items, &format!("{path}[]"), out);
    }
}

#[cfg(test)]
#[path = "compatibility_test.rs"]
mod tests;
