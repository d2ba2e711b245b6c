//! The schema evolution cases, each checked in both directions.

use serde_json::json;

use super::*;

fn schema(v: serde_json::Value) -> Schema {
    Schema::from_json(&v).unwrap()
}

fn base() -> serde_json::Value {
    json!({
        "type": "object",
        "properties": {
            "task": {"type": "string"},
            "note": {"type": "string"},
            "state": {"enum": ["queued", "done"]}
        },
        "required": ["task", "state"]
    })
}

fn changed(f: impl FnOnce(&mut serde_json::Value)) -> Schema {
    let mut v = base();
    f(&mut v);
    schema(v)
}

/// (backward, forward) for base -> changed.
fn verdict(new: &Schema) -> (bool, bool) {
    let r = check_compatibility(&schema(base()), new);
    (r.is_backward_compatible(), r.is_forward_compatible())
}

#[test]
fn add_optional_is_compatible_both_ways() {
    let new = changed(|v| v["properties"]["owner"] = json!({"type": "string"}));
    assert_eq!(verdict(&new), (true, true));
}

#[test]
fn add_optional_breaks_forward_when_old_forbids_extras() {
    let mut closed = base();
    closed["additionalProperties"] = json!(false);
    let mut open_new = closed.clone();
    open_new["properties"]["owner"] = json!({"type": "string"});
    let r = check_compatibility(&schema(closed), &schema(open_new));
    assert!(r.is_backward_compatible());
    assert!(
        matches!(&r.forward[..], [Incompatibility::PropertyForbidden { property, .. }] if property == "owner")
    );
}

#[test]
fn add_required_breaks_backward_only() {
    let new = changed(|v| {
        v["properties"]["owner"] = json!({"type": "string"});
        v["required"] = json!(["task", "state", "owner"]);
    });
    assert_eq!(verdict(&new), (false, true));
    let r = check_compatibility(&schema(base()), &new);
    assert!(
        matches!(&r.backward[..], [Incompatibility::RequiredMissing { property, declared_in_source: false, .. }] if property == "owner")
    );
}

#[test]
fn remove_optional_is_compatible_both_ways() {
    let new = changed(|v| {
        v["properties"].as_object_mut().unwrap().remove("note");
    });
    assert_eq!(verdict(&new), (true, true));
}

#[test]
fn remove_required_breaks_forward_only() {
    let new = changed(|v| {
        v["properties"].as_object_mut().unwrap().remove("task");
        v["required"] = json!(["state"]);
    });
    assert_eq!(verdict(&new), (true, false));
    let r = check_compatibility(&schema(base()), &new);
    assert!(
        matches!(&r.forward[..], [Incompatibility::RequiredMissing { property, .. }] if property == "task")
    );
}

#[test]
fn rename_breaks_both() {
    let new = changed(|v| {
        let props = v["properties"].as_object_mut().unwrap();
        let task = props.remove("task").unwrap();
        props.insert("task_id".into(), task);
        v["required"] = json!(["task_id", "state"]);
    });
    assert_eq!(verdict(&new), (false, false));
}

#[test]
fn retype_breaks_both() {
    let new = changed(|v| v["properties"]["task"] = json!({"type": "integer"}));
    assert_eq!(verdict(&new), (false, false));
    let r = check_compatibility(&schema(base()), &new);
    assert!(
        matches!(&r.backward[..], [Incompatibility::TypeNotAccepted { path, source_type: Some(JsonType::String) }] if path == "$.task")
    );
}

#[test]
fn integer_to_number_is_a_widening() {
    let old = schema(json!({"type": "object", "properties": {"n": {"type": "integer"}}}));
    let new = schema(json!({"type": "object", "properties": {"n": {"type": "number"}}}));
    let r = check_compatibility(&old, &new);
    assert!(r.is_backward_compatible());
    assert!(!r.is_forward_compatible());
}

#[test]
fn widen_enum_breaks_forward_only() {
    let new = changed(|v| v["properties"]["state"] = json!({"enum": ["queued", "done", "failed"]}));
    assert_eq!(verdict(&new), (true, false));
    let r = check_compatibility(&schema(base()), &new);
    assert!(
        matches!(&r.forward[..], [Incompatibility::EnumValueNotAccepted { value, .. }] if value == "\"failed\"")
    );
}

#[test]
fn narrow_enum_breaks_backward_only() {
    let new = changed(|v| v["properties"]["state"] = json!({"enum": ["done"]}));
    assert_eq!(verdict(&new), (false, true));
}

#[test]
fn array_items_are_compared() {
    let old = schema(json!({"type": "array", "items": {"type": "string"}}));
    let new = schema(json!({"type": "array", "items": {"type": ["string", "null"]}}));
    let r = check_compatibility(&old, &new);
    assert!(r.is_backward_compatible());
    assert!(!r.is_forward_compatible());
    assert!(r.forward[0].to_string().contains("$[]"), "{}", r.forward[0]);
}
