use proptest::prelude::*;

use super::*;

fn platform(s: &str) -> PlatformName {
    PlatformName::new(s).unwrap()
}

fn app(s: &str) -> AppName {
    AppName::new(s).unwrap()
}

#[test]
fn every_kind_renders_as_documented() {
    let p = platform("prod");
    let a = app("orders");
    for kind in NamespaceKind::ALL {
        let ns = namespace(&p, Some(&a), kind);
        assert_eq!(ns.key_prefix(), format!("/prod/orders/{kind}/"));
        assert_eq!(ns.bucket(), format!("prod_orders_{kind}"));
        let wide = namespace(&p, None, kind);
        assert_eq!(wide.key_prefix(), format!("/prod/_/{kind}/"));
        assert_eq!(wide.bucket(), format!("prod_{kind}"));
    }
}

#[test]
fn bucket_names_use_only_nats_safe_characters() {
    let ns = namespace(
        &platform("p-1"),
        Some(&app("a-2")),
        NamespaceKind::Snapshots,
    );
    assert!(
        ns.bucket()
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    );
}

#[test]
fn the_seed_collision_cannot_be_expressed() {
    // Old scheme: app "orders_locks" + kind X vs app "orders" + locks. The first app name is
    // invalid now, and the closest valid spelling renders differently.
    assert!(AppName::new("orders_locks").is_err());
    let p = platform("prod");
    let a = namespace(&p, Some(&app("orders-locks")), NamespaceKind::Kv);
    let b = namespace(&p, Some(&app("orders")), NamespaceKind::Locks);
    assert_ne!(a.bucket(), b.bucket());
    assert_ne!(a.key_prefix(), b.key_prefix());
}

#[test]
fn platform_wide_never_shadows_an_app_named_like_a_kind() {
    let p = platform("prod");
    let wide = namespace(&p, None, NamespaceKind::Members);
    let app_ns = namespace(&p, Some(&app("members")), NamespaceKind::Locks);
    assert!(!app_ns.key_prefix().starts_with(&wide.key_prefix()));
    assert_ne!(wide.bucket(), app_ns.bucket());
}

fn arb_kind() -> impl Strategy<Value = NamespaceKind> {
    proptest::sample::select(NamespaceKind::ALL.to_vec())
}

// Small alphabets make accidental near-collisions (shared prefixes, kind-like names) likely.
fn arb_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9][a-z0-9-]{0,31}",
        "[ak][a-z-]{0,6}",
        proptest::sample::select(
            NamespaceKind::ALL
                .iter()
                .map(|k| k.as_str().to_owned())
                .collect::<Vec<_>>()
        ),
    ]
}

fn arb_namespace() -> impl Strategy<Value = Namespace> {
    (arb_name(), proptest::option::of(arb_name()), arb_kind()).prop_map(|(p, a, kind)| {
        let p = platform(&p);
        let a = a.map(|a| app(&a));
        namespace(&p, a.as_ref(), kind)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn distinct_namespaces_never_share_a_bucket(x in arb_namespace(), y in arb_namespace()) {
        prop_assume!(x != y);
        prop_assert_ne!(x.bucket(), y.bucket());
    }

    #[test]
    fn distinct_namespaces_never_share_or_nest_key_prefixes(x in arb_namespace(), y in arb_namespace()) {
        prop_assume!(x != y);
        prop_assert!(!x.key_prefix().starts_with(&y.key_prefix()));
        prop_assert!(!y.key_prefix().starts_with(&x.key_prefix()));
    }

    #[test]
    fn bucket_parts_round_trip(x in arb_namespace()) {
        let bucket = x.bucket();
        let parts: Vec<&str> = bucket.split('_').collect();
        match x.app() {
            Some(a) => prop_assert_eq!(parts, vec![x.platform().as_str(), a.as_str(), x.kind().as_str()]),
            None => prop_assert_eq!(parts, vec![x.platform().as_str(), x.kind().as_str()]),
        }
    }
}
