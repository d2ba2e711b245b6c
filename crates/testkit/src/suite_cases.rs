//! Each contract suite's case list is checked against its case files: every `pub async fn` in
//! a suite's `cases_*.rs` is one case, and the suite macro must name exactly those, so a new
//! case cannot be written and left out of the suite (or a removed one linger in the macro).

use std::collections::BTreeSet;

/// The case functions declared in the given sources.
fn declared(sources: &[&str]) -> BTreeSet<String> {
    sources
        .iter()
        .flat_map(|s| s.lines())
        .filter_map(|l| l.strip_prefix("pub async fn "))
        .map(|rest| {
            rest.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// The case names listed in the suite macro's first arm of `module`.
fn listed(module: &str, suite: &str) -> BTreeSet<String> {
    let head = format!("$crate::{suite}!(@cases $harness;");
    let start = module.find(&head).expect("the macro's case list") + head.len();
    let end = start
        + module[start..]
            .find(");")
            .expect("the end of the case list");
    module[start..end]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn check(suite: &str, module: &str, sources: &[&str]) {
    let declared = declared(sources);
    let listed = listed(module, suite);
    assert!(!declared.is_empty(), "{suite}: no cases found");
    let missing: Vec<_> = declared.difference(&listed).collect();
    let stale: Vec<_> = listed.difference(&declared).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "{suite}: cases not in the macro: {missing:?}; macro names no such case: {stale:?}"
    );
}

#[test]
fn every_coordination_case_is_in_the_suite() {
    check(
        "coordination_contract_suite",
        include_str!("coordination/mod.rs"),
        &[
            include_str!("coordination/cases_election.rs"),
            include_str!("coordination/cases_kv.rs"),
            include_str!("coordination/cases_lease.rs"),
            include_str!("coordination/cases_membership.rs"),
            include_str!("coordination/cases_outage.rs"),
            include_str!("coordination/cases_watch.rs"),
        ],
    );
}

#[test]
fn every_event_bus_case_is_in_the_suite() {
    check(
        "event_bus_contract_suite",
        include_str!("event_bus/mod.rs"),
        &[
            include_str!("event_bus/cases_consume.rs"),
            include_str!("event_bus/cases_outage.rs"),
            include_str!("event_bus/cases_publish.rs"),
        ],
    );
}

#[test]
fn every_object_store_case_is_in_the_suite() {
    check(
        "object_store_contract_suite",
        include_str!("object_store/mod.rs"),
        &[
            include_str!("object_store/cases_basic.rs"),
            include_str!("object_store/cases_outage.rs"),
        ],
    );
}

#[test]
fn every_case_file_is_read() {
    // A new cases_*.rs file must be added to the lists above.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = 0;
    for suite in ["coordination", "event_bus", "object_store"] {
        for entry in std::fs::read_dir(dir.join(suite)).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.starts_with("cases_") {
                files += 1;
            }
        }
    }
    assert_eq!(
        files,
        6 + 3 + 2,
        "a cases file is missing from the checks above"
    );
}
