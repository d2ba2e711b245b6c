//! Where a key lives in JetStream KV.
//!
//! Every namespace of one app (its election, claims, locks, key-value data, assignments, WAL
//! registry...) shares one bucket, `{platform}_app_{app}`, with each key stored as
//! `{kind}.{name}`; platform-wide namespaces keep a bucket per kind, `{platform}_{kind}`. An
//! app's writes fenced by its election key or a partition claim are then writes within one
//! stream, which JetStream can condition on the fence key's last sequence in one publish
//! (`put_if_held`). Injective: platform and app names have no `_`, kinds have neither `_` nor
//! `.`, so no two keys share a place.

use cluster_core::coordination::{Key, KeyPrefix};
use cluster_core::naming::Namespace;

use crate::lease_table::BoundKey;

/// The bucket holding the keys of `ns`.
pub(crate) fn bucket(ns: &Namespace) -> String {
    match ns.app() {
        Some(app) => format!("{}_app_{app}", ns.platform()),
        None => ns.bucket(),
    }
}

/// The name, within its bucket, of the key `name` of `ns`.
pub(crate) fn stored_name(ns: &Namespace, name: &str) -> String {
    match ns.app() {
        Some(_) => format!("{}.{name}", ns.kind()),
        None => name.to_owned(),
    }
}

/// The key's bucket and stored name.
pub(crate) fn place(key: &Key) -> BoundKey {
    BoundKey {
        bucket: bucket(key.namespace()),
        name: stored_name(key.namespace(), key.name()),
    }
}

/// The stored-name prefix of every key of `prefix`.
pub(crate) fn stored_prefix(prefix: &KeyPrefix) -> String {
    stored_name(prefix.namespace(), prefix.name_prefix())
}

/// The key name of `stored` if it belongs to `ns` (its bucket may hold other kinds too).
pub(crate) fn key_name<'a>(ns: &Namespace, stored: &'a str) -> Option<&'a str> {
    match ns.app() {
        Some(_) => stored
            .strip_prefix(ns.kind().as_str())
            .and_then(|rest| rest.strip_prefix('.')),
        None => Some(stored),
    }
}

#[cfg(test)]
mod tests {
    use cluster_core::ids::{AppName, PlatformName};
    use cluster_core::naming::{NamespaceKind, namespace};

    use super::*;

    #[test]
    fn an_apps_namespaces_share_a_bucket_and_keys_round_trip() {
        let p = PlatformName::new("prod").unwrap();
        let a = AppName::new("jobs").unwrap();
        let claims = Key::new(namespace(&p, Some(&a), NamespaceKind::Claims), "p-3").unwrap();
        let kv = Key::new(namespace(&p, Some(&a), NamespaceKind::Kv), "p-3").unwrap();
        let election =
            Key::new(namespace(&p, Some(&a), NamespaceKind::Election), "leader").unwrap();
        assert_eq!(place(&claims).bucket, place(&kv).bucket);
        assert_eq!(place(&claims).bucket, place(&election).bucket);
        assert_ne!(place(&claims).name, place(&kv).name);
        assert_eq!(place(&claims).name, "claims.p-3");
        assert_eq!(
            key_name(claims.namespace(), &place(&claims).name),
            Some("p-3")
        );
        assert_eq!(key_name(kv.namespace(), &place(&claims).name), None);
        let members = namespace(&p, None, NamespaceKind::Members);
        assert_eq!(bucket(&members), "prod_members");
        assert_eq!(stored_name(&members, "n1"), "n1");
        // An app called like a kind does not land in that kind's platform-wide bucket.
        let odd = namespace(
            &p,
            Some(&AppName::new("members").unwrap()),
            NamespaceKind::Kv,
        );
        assert_ne!(bucket(&odd), bucket(&members));
    }
}
