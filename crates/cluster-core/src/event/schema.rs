//! Payload schemas: the JSON Schema subset events are checked against.
//!
//! Supported keywords: `type` (a name or a list of `object`, `array`, `string`, `integer`,
//! `number`, `boolean`, `null`), `properties`, `required`, `enum`, `items` and
//! `additionalProperties` (a boolean or a schema). `$schema`, `$id`, `title`, `description`
//! and `examples` are accepted and ignored. Any other keyword is an error when the schema is
//! loaded: a schema that says more than the validator checks would promise checks that never
//! happen.
//!
//! ```
//! use cluster_core::event::Schema;
//! use serde_json::json;
//!
//! let schema = Schema::from_json(&json!({
//!     "type": "object",
//!     "properties": { "state": { "enum": ["running", "done"] } },
//!     "required": ["state"],
//! }))?;
//! assert!(schema.validate(&json!({"state": "done"})).is_ok());
//! assert_eq!(schema.validate(&json!({"state": "lost"})).unwrap_err().len(), 1);
//! # Ok::<(), cluster_core::event::SchemaError>(())
//! ```

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::fmt;

use serde_json::Value;

/// A JSON value's type as JSON Schema names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum JsonType {
    /// `null`.
    Null,
    /// `true` or `false`.
    Boolean,
    /// A whole number.
    Integer,
    /// Any number (includes integers).
    Number,
    /// A string.
    String,
    /// An array.
    Array,
    /// An object.
    Object,
}

impl JsonType {
    const ALL: [JsonType; 7] = [
        JsonType::Null,
        JsonType::Boolean,
        JsonType::Integer,
        JsonType::Number,
        JsonType::String,
        JsonType::Array,
        JsonType::Object,
    ];

    /// The JSON Schema name.
    pub const fn as_str(self) -> &'static str {
        match self {
            JsonType::Null => "null",
            JsonType::Boolean => "boolean",
            JsonType::Integer => "integer",
            JsonType::Number => "number",
            JsonType::String => "string",
            JsonType::Array => "array",
            JsonType::Object => "object",
        }
    }

    fn parse(name: &str) -> Option<JsonType> {
        JsonType::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// The most specific type of a value (`integer` for whole numbers).
    pub fn of(value: &Value) -> JsonType {
        match value {
            Value::Null => JsonType::Null,
            Value::Bool(_) => JsonType::Boolean,
            Value::Number(n) if n.is_i64() || n.is_u64() => JsonType::Integer,
            Value::Number(_) => JsonType::Number,
            Value::String(_) => JsonType::String,
            Value::Array(_) => JsonType::Array,
            Value::Object(_) => JsonType::Object,
        }
    }

    /// Whether a value of type `self` satisfies a schema allowing `allowed`.
    pub fn satisfies(self, allowed: JsonType) -> bool {
        self == allowed || (self == JsonType::Integer && allowed == JsonType::Number)
    }
}

impl fmt::Display for JsonType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A schema document that cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// A keyword outside the supported subset.
    #[error(
        "{path}: keyword {keyword:?} is not supported (supported: type, properties, required, enum, items, additionalProperties)"
    )]
    UnsupportedKeyword {
        /// Where in the schema.
        path: String,
        /// The keyword.
        keyword: String,
    },
    /// A keyword with a value of the wrong shape.
    #[error("{path}: {keyword:?} must be {expected}")]
    BadKeyword {
        /// Where in the schema.
        path: String,
        /// The keyword.
        keyword: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// The schema is not a JSON object (or boolean).
    #[error("{path}: a schema must be an object or a boolean")]
    NotASchema {
        /// Where.
        path: String,
    },
}

/// What `additionalProperties` allows.
#[derive(Debug, Clone, PartialEq)]
pub enum Additional {
    /// Any undeclared property (the default).
    Allowed,
    /// No undeclared property.
    Forbidden,
    /// Undeclared properties must match this schema.
    Matching(Box<Schema>),
}

/// A loaded payload schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    /// Allowed types; `None` allows any.
    pub types: Option<BTreeSet<JsonType>>,
    /// Declared properties of objects.
    pub properties: BTreeMap<String, Schema>,
    /// Properties an object must have.
    pub required: BTreeSet<String>,
    /// The only values allowed, if restricted.
    pub enum_values: Option<Vec<Value>>,
    /// The schema of array items; `None` allows any.
    pub items: Option<Box<Schema>>,
    /// What undeclared object properties may be.
    pub additional: Additional,
    /// `false` schema: nothing is valid.
    pub nothing: bool,
}

/// One way a value breaks a schema, with a JSON path (`$.a.b[2]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaViolation {
    /// The value has a type the schema does not allow.
    #[error("{path}: expected {expected}, found {found}")]
    WrongType {
        /// Where.
        path: String,
        /// The allowed types, `|`-separated.
        expected: String,
        /// The value's type.
        found: JsonType,
    },
    /// A required property is missing.
    #[error("{path}: required property {property:?} is missing")]
    MissingRequired {
        /// The object's path.
        path: String,
        /// The property.
        property: String,
    },
    /// A value outside the enum.
    #[error("{path}: {value} is not one of the allowed values")]
    NotInEnum {
        /// Where.
        path: String,
        /// The value, as JSON.
        value: String,
    },
    /// A property the schema forbids.
    #[error("{path}: property {property:?} is not allowed")]
    UnexpectedProperty {
        /// The object's path.
        path: String,
        /// The property.
        property: String,
    },
    /// The schema is `false`.
    #[error("{path}: no value is allowed here")]
    NothingAllowed {
        /// Where.
        path: String,
    },
}

const IGNORED: [&str; 5] = ["$schema", "$id", "title", "description", "examples"];

impl Schema {
    /// The schema that allows every value.
    pub fn any() -> Schema {
        Schema {
            types: None,
            properties: BTreeMap::new(),
            required: BTreeSet::new(),
            enum_values: None,
            items: None,
            additional: Additional::Allowed,
            nothing: false,
        }
    }

    /// Loads a schema document.
    pub fn from_json(doc: &Value) -> Result<Schema, SchemaError> {
        Schema::load(doc, "$")
    }

    fn load(doc: &Value, path: &str) -> Result<Schema, SchemaError> {
        let map = match doc {
            Value::Bool(true) => return Ok(Schema::any()),
            Value::Bool(false) => {
                return Ok(Schema {
                    nothing: true,
                    ..Schema::any()
                });
            }
            Value::Object(map) => map,
            _ => {
                return Err(SchemaError::NotASchema {
                    path: path.to_owned(),
                });
            }
        };
        let bad = |keyword: &'static str, expected: &'static str| SchemaError::BadKeyword {
            path: path.to_owned(),
            keyword,
            expected,
        };
        let mut schema = Schema::any();
        for (keyword, value) in map {
            match keyword.as_str() {
                "type" => {
                    let names: Vec<&Value> = match value {
                        Value::Array(names) => names.iter().collect(),
                        other => vec![other],
                    };
                    let mut types = BTreeSet::new();
                    for name in names {
                        let t = name
                            .as_str()
                            .and_then(JsonType::parse)
                            .ok_or_else(|| bad("type", "a JSON type name or a list of them"))?;
                        types.insert(t);
                    }
                    schema.types = Some(types);
                }
                "properties" => {
                    let props = value
                        .as_object()
                        .ok_or_else(|| bad("properties", "an object of schemas"))?;
                    for (name, sub) in props {
                        let sub = Schema::load(sub, &format!("{path}.properties.{name}"))?;
                        schema.properties.insert(name.clone(), sub);
                    }
                }
                "required" => {
                    let names = value
                        .as_array()
                        .ok_or_else(|| bad("required", "a list of property names"))?;
                    for name in names {
                        let name = name
                            .as_str()
                            .ok_or_else(|| bad("required", "a list of property names"))?;
                        schema.required.insert(name.to_owned());
                    }
                }
                "enum" => {
                    let values = value
                        .as_array()
                        .ok_or_else(|| bad("enum", "a list of values"))?;
                    schema.enum_values = Some(values.clone());
                }
                "items" => {
                    schema.items = Some(Box::new(Schema::load(value, &format!("{path}.items"))?));
                }
                "additionalProperties" => {
                    schema.additional = match value {
                        Value::Bool(true) => Additional::Allowed,
                        Value::Bool(false) => Additional::Forbidden,
                        other => Additional::Matching(Box::new(Schema::load(
                            other,
                            &format!("{path}.additionalProperties"),
                        )?)),
                    };
                }
                k if IGNORED.contains(&k) => {}
                other => {
                    return Err(SchemaError::UnsupportedKeyword {
                        path: path.to_owned(),
                        keyword: other.to_owned(),
                    });
                }
            }
        }
        Ok(schema)
    }

    /// Checks `value`, returning every violation found.
    pub fn validate(&self, value: &Value) -> Result<(), Vec<SchemaViolation>> {
        let mut out = Vec::new();
        self.check(value, "$", &mut out);
        if out.is_empty() { Ok(()) } else { Err(out) }
    }

    fn check(&self, value: &Value, path: &str, out: &mut Vec<SchemaViolation>) {
        if self.nothing {
            out.push(SchemaViolation::NothingAllowed {
                path: path.to_owned(),
            });
            return;
        }
        let found = JsonType::of(value);
        if let Some(types) = &self.types
            && !types.iter().any(|t| found.satisfies(*t))
        {
            out.push(SchemaViolation::WrongType {
                path: path.to_owned(),
                expected: types
                    .iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join("|"),
                found,
            });
            return;
        }
        if let Some(allowed) = &self.enum_values
            && !allowed.contains(value)
        {
            out.push(SchemaViolation::NotInEnum {
                path: path.to_owned(),
                value: value.to_string(),
            });
        }
        match value {
            Value::Object(map) => {
                for name in &self.required {
                    if !map.contains_key(name) {
                        out.push(SchemaViolation::MissingRequired {
                            path: path.to_owned(),
                            property: name.clone(),
                        });
                    }
                }
                for (name, v) in map {
                    let sub_path = format!("{path}.{name}");
                    match (self.properties.get(name), &self.additional) {
                        (Some(sub), _) => sub.check(v, &sub_path, out),
                        (None, Additional::Allowed) => {}
                        (None, Additional::Forbidden) => {
                            out.push(SchemaViolation::UnexpectedProperty {
                                path: path.to_owned(),
                                property: name.clone(),
                            });
                        }
                        (None, Additional::Matching(sub)) => sub.check(v, &sub_path, out),
                    }
                }
            }
            Value::Array(items) => {
                if let Some(item_schema) = &self.items {
                    for (i, item) in items.iter().enumerate() {
                        item_schema.check(item, &format!("{path}[{i}]"), out);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
#[path = "schema_test.rs"]
mod tests;
