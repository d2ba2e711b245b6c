use proptest::prelude::*;

use super::*;

#[test]
fn node_id_accepts_the_documented_alphabet() {
    for ok in ["a", "Node-1", "n.eu-west_1", "0", &"x".repeat(64)] {
        assert!(NodeId::new(ok).is_ok(), "{ok:?} should be valid");
    }
}

#[test]
fn node_id_rejections_name_the_field_and_value() {
    assert_eq!(
        NodeId::new(""),
        Err(IdError::Empty {
            field: IdField::NodeId
        })
    );
    assert_eq!(
        NodeId::new("-a"),
        Err(IdError::BadCharacter {
            field: IdField::NodeId,
            value: "-a".into(),
            found: '-',
            position: 0,
            allowed: "[A-Za-z0-9]",
        })
    );
    let long = "y".repeat(65);
    assert_eq!(
        NodeId::new(long.clone()),
        Err(IdError::TooLong {
            field: IdField::NodeId,
            value: long,
            len: 65,
            max: 64
        })
    );
    let err = NodeId::new("a/b").unwrap_err().to_string();
    assert!(err.contains("node id") && err.contains("\"a/b\""), "{err}");
}

#[test]
fn platform_and_app_names_are_lowercase_without_underscore() {
    assert!(PlatformName::new("prod-eu1").is_ok());
    assert!(AppName::new("orders").is_ok());
    assert!(AppName::new("a".repeat(32)).is_ok());

    for bad in ["Orders", "orders_locks", "-x", "a.b", "", &"a".repeat(33)] {
        assert!(AppName::new(bad).is_err(), "{bad:?} should be rejected");
        assert!(
            PlatformName::new(bad).is_err(),
            "{bad:?} should be rejected"
        );
    }
    let err = AppName::new("orders_locks").unwrap_err();
    assert!(matches!(
        err,
        IdError::BadCharacter {
            field: IdField::AppName,
            found: '_',
            position: 6,
            ..
        }
    ));
}

#[test]
fn names_serialise_as_plain_strings_and_validate_on_the_way_in() {
    let node = NodeId::new("n1").unwrap();
    assert_eq!(serde_json::to_string(&node).unwrap(), "\"n1\"");
    assert_eq!(serde_json::from_str::<NodeId>("\"n1\"").unwrap(), node);
    assert!(serde_json::from_str::<AppName>("\"Bad\"").is_err());
    assert_eq!(node.to_string(), "n1");
}

#[test]
fn numeric_ids_serialise_transparently() {
    assert_eq!(serde_json::to_string(&PartitionId(7)).unwrap(), "7");
    assert_eq!(serde_json::to_string(&Revision(9)).unwrap(), "9");
    assert_eq!(serde_json::to_string(&FencingToken::new(11)).unwrap(), "11");
    assert_eq!(
        serde_json::from_str::<FencingToken>("11").unwrap(),
        FencingToken::new(11)
    );
}

#[test]
fn fencing_tokens_are_ordered_and_only_grow() {
    let t = FencingToken::from(Revision(5));
    assert_eq!(t.get(), 5);
    assert!(t.successor() > t);
    assert!(FencingToken::ZERO < t);
    assert_eq!(
        FencingToken::new(u64::MAX).successor(),
        FencingToken::new(u64::MAX)
    );
}

proptest! {
    #[test]
    fn valid_node_ids_round_trip(s in "[A-Za-z0-9][A-Za-z0-9._-]{0,63}") {
        let id = NodeId::new(s.clone()).unwrap();
        prop_assert_eq!(id.as_str(), s.as_str());
        let json = serde_json::to_string(&id).unwrap();
        prop_assert_eq!(serde_json::from_str::<NodeId>(&json).unwrap(), id);
    }

    #[test]
    fn app_name_validation_matches_the_regex(s in "\\PC{0,40}") {
        let expected = {
            let bytes = s.as_bytes();
            !s.is_empty()
                && s.len() <= 32
                && s.is_ascii()
                && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
                && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        };
        prop_assert_eq!(AppName::new(s).is_ok(), expected);
    }

    #[test]
    fn successor_is_strictly_greater_below_max(v in 0u64..u64::MAX) {
        prop_assert!(FencingToken::new(v).successor() > FencingToken::new(v));
    }
}
