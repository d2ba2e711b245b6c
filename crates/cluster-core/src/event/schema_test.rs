use serde_json::json;

use super::*;

fn task_schema() -> Schema {
    Schema::from_json(&json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "task": {"type": "string"},
            "attempt": {"type": "integer"},
            "ratio": {"type": "number"},
            "state": {"enum": ["queued", "running", "done"]},
            "tags": {"type": "array", "items": {"type": "string"}},
            "meta": {"type": "object", "additionalProperties": {"type": "string"}},
            "note": {"type": ["string", "null"]}
        },
        "required": ["task", "state"],
        "additionalProperties": false
    }))
    .unwrap()
}

#[test]
fn valid_payloads_pass() {
    let s = task_schema();
    for ok in [
        json!({"task": "t", "state": "done"}),
        json!({"task": "t", "state": "queued", "attempt": 3, "ratio": 3, "tags": ["a"], "meta": {"k": "v"}, "note": null}),
        json!({"task": "t", "state": "running", "ratio": 0.5, "note": "x"}),
    ] {
        assert_eq!(s.validate(&ok), Ok(()), "{ok}");
    }
}

#[test]
fn every_violation_is_reported_with_its_path() {
    let s = task_schema();
    let errs = s
        .validate(&json!({"state": "lost", "attempt": 1.5, "tags": ["a", 2], "meta": {"k": 1}, "extra": true}))
        .unwrap_err();
    let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert!(
        errs.contains(&SchemaViolation::MissingRequired {
            path: "$".into(),
            property: "task".into()
        }),
        "{text:?}"
    );
    assert!(
        errs.contains(&SchemaViolation::NotInEnum {
            path: "$.state".into(),
            value: "\"lost\"".into()
        }),
        "{text:?}"
    );
    assert!(
        errs.contains(&SchemaViolation::WrongType {
            path: "$.attempt".into(),
            expected: "integer".into(),
            found: JsonType::Number
        }),
        "{text:?}"
    );
    assert!(
        errs.contains(&SchemaViolation::WrongType {
            path: "$.tags[1]".into(),
            expected: "string".into(),
            found: JsonType::Integer
        }),
        "{text:?}"
    );
    assert!(
        errs.contains(&SchemaViolation::WrongType {
            path: "$.meta.k".into(),
            expected: "string".into(),
            found: JsonType::Integer
        }),
        "{text:?}"
    );
    assert!(
        errs.contains(&SchemaViolation::UnexpectedProperty {
            path: "$".into(),
            property: "extra".into()
        }),
        "{text:?}"
    );
    assert_eq!(errs.len(), 6, "{text:?}");
    assert!(s.validate(&json!([1])).is_err());
}

#[test]
fn unsupported_or_malformed_keywords_fail_to_load() {
    assert!(matches!(
        Schema::from_json(&json!({"type": "string", "pattern": "^a"})),
        Err(SchemaError::UnsupportedKeyword { keyword, .. }) if keyword == "pattern"
    ));
    assert!(matches!(
        Schema::from_json(&json!({"properties": {"a": {"minimum": 1}}})),
        Err(SchemaError::UnsupportedKeyword { path, .. }) if path == "$.properties.a"
    ));
    assert!(matches!(
        Schema::from_json(&json!({"type": "text"})),
        Err(SchemaError::BadKeyword {
            keyword: "type",
            ..
        })
    ));
    assert!(matches!(
        Schema::from_json(&json!({"required": "a"})),
        Err(SchemaError::BadKeyword {
            keyword: "required",
            ..
        })
    ));
    assert!(matches!(
        Schema::from_json(&json!(3)),
        Err(SchemaError::NotASchema { .. })
    ));
    assert!(
        Schema::from_json(&json!(false))
            .unwrap()
            .validate(&json!(1))
            .is_err()
    );
    assert!(
        Schema::from_json(&json!(true))
            .unwrap()
            .validate(&json!(1))
            .is_ok()
    );
}
