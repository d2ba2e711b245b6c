use super::*;

fn sample() -> Envelope {
    Envelope {
        event_id: EventId::v7(1_700_000_000_000, [3; 10]),
        event_type: "task.started".parse().unwrap(),
        schema_version: SchemaVersion::new(2, 1),
        occurred_at: Timestamp::from_unix_millis(1_700_000_000_000),
        node_id: NodeId::new("node-1").unwrap(),
        shard: PartitionId(7),
        ordering_key: Some("task-42".into()),
        sequence: 9,
        epoch: FencingToken::new(88),
        causation_id: None,
        correlation_id: Some(EventId::v7(1_699_999_999_000, [1; 10])),
        payload: serde_json::json!({"task": "t-42", "attempt": 1}),
    }
}

#[test]
fn envelope_round_trips_as_documented_json() {
    let e = sample();
    let bytes = e.encode().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(json["event_type"], "task.started");
    assert_eq!(json["schema_version"], "2.1");
    assert_eq!(json["occurred_at"], "2023-11-14T22:13:20.000Z");
    assert_eq!(json["epoch"], 88);
    assert_eq!(json["shard"], 7);
    assert_eq!(Envelope::decode(&bytes).unwrap(), e);
    let subjects = Subjects::new("prod").unwrap();
    assert_eq!(
        e.subject(&subjects).as_str(),
        "prod.v2.lifecycle.task.p7.started"
    );
    assert_eq!(
        Envelope::decode_from("prod.v2.lifecycle.task.p7.started", &bytes).unwrap(),
        e
    );
}

#[test]
fn malformed_envelopes_are_errors_with_a_reason() {
    let good = serde_json::to_value(sample()).unwrap();
    let mut cases: Vec<(&str, Vec<u8>)> =
        vec![("not json", b"{not json".to_vec()), ("empty", Vec::new())];
    for field in [
        "event_id",
        "event_type",
        "schema_version",
        "epoch",
        "payload",
        "node_id",
    ] {
        let mut v = good.clone();
        v.as_object_mut().unwrap().remove(field);
        cases.push((field, serde_json::to_vec(&v).unwrap()));
    }
    let mut v = good.clone();
    v["event_id"] = "nope".into();
    cases.push(("bad id", serde_json::to_vec(&v).unwrap()));
    let mut v = good.clone();
    v["event_type"] = "task.a.b".into();
    cases.push(("bad type", serde_json::to_vec(&v).unwrap()));
    let mut v = good.clone();
    v["surprise"] = 1.into();
    cases.push(("unknown field", serde_json::to_vec(&v).unwrap()));
    for (what, bytes) in cases {
        let err = Envelope::decode(&bytes).unwrap_err();
        assert!(
            matches!(err, EnvelopeError::Malformed(_)),
            "{what}: {err:?}"
        );
    }
    let mut e = sample();
    e.ordering_key = Some(String::new());
    assert!(matches!(
        Envelope::decode(&e.encode().unwrap()),
        Err(EnvelopeError::BadOrderingKey { .. })
    ));
    let bytes = sample().encode().unwrap();
    assert!(matches!(
        Envelope::decode_from("prod.v3.lifecycle.task.p7.started", &bytes),
        Err(EnvelopeError::SubjectMismatch {
            envelope: 2,
            subject_major: Some(3),
            ..
        })
    ));
}

#[test]
fn dual_publish_message_ids_differ_per_major() {
    let mut e = sample();
    let single = e.message_id(false);
    let v2 = e.message_id(true);
    e.schema_version = SchemaVersion::new(3, 0);
    let v3 = e.message_id(true);
    assert_eq!(single, e.event_id.to_string());
    assert_eq!(v2, format!("{single}.v2"));
    assert_ne!(v2, v3);
}

#[test]
fn versions_and_types_parse_strictly() {
    assert_eq!(
        "10.0".parse::<SchemaVersion>().unwrap(),
        SchemaVersion::new(10, 0)
    );
    for bad in ["1", "1.", ".1", "a.b", "1.2.3", "-1.0"] {
        assert!(bad.parse::<SchemaVersion>().is_err(), "{bad}");
    }
    assert_eq!(
        "platform.node_joined"
            .parse::<EventType>()
            .unwrap()
            .family(),
        EventFamily::Platform
    );
    for bad in ["task", "thing.x", "task.", "task.a b"] {
        assert!(bad.parse::<EventType>().is_err(), "{bad}");
    }
}
