//! `cargo xtask schema-check OLD NEW`: backward and forward compatibility of every event schema.
//!
//! OLD and NEW are schema registry documents (`cluster_core::event::SchemaRegistry::from_json`).
//! For each `(event_type, major)` in both, it reports backward compatibility (new consumers read
//! old events) and forward compatibility (old consumers read new events) separately. A change
//! within a major must be both: it fails the check. A new major is reported against the highest
//! older one (a breaking change needs a new major and a dual-publish window); a removed major is
//! a warning (its consumers will dead-letter those events as `unknown_major`).

use std::path::Path;

use anyhow::Context;
use cluster_core::event::{CompatibilityReport, SchemaChange, SchemaRegistry, compare_registries};

fn load(path: &Path) -> anyhow::Result<SchemaRegistry> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    SchemaRegistry::from_json(&bytes).with_context(|| format!("loading {}", path.display()))
}

fn verdict(ok: bool) -> &'static str {
    if ok { "compatible" } else { "BREAKS" }
}

fn print_report(report: &CompatibilityReport) {
    println!(
        "    backward (new consumer, old events): {}",
        verdict(report.is_backward_compatible())
    );
    for finding in &report.backward {
        println!("      - {finding}");
    }
    println!(
        "    forward  (old consumer, new events): {}",
        verdict(report.is_forward_compatible())
    );
    for finding in &report.forward {
        println!("      - {finding}");
    }
}

/// Compares two registry files; fails when a change within a major is not compatible both ways.
pub(crate) fn run(old: &Path, new: &Path) -> anyhow::Result<()> {
    let old_registry = load(old)?;
    let new_registry = load(new)?;
    let mut breaking = 0;
    for (event_type, major, change) in compare_registries(&old_registry, &new_registry) {
        match change {
            SchemaChange::Changed { old, new, report } => {
                println!("{event_type} v{major}: {old} -> {new}");
                print_report(&report);
                if !report.is_full() {
                    breaking += 1;
                    println!(
                        "    => not allowed within major {major}: publish it as a new major and dual-publish both"
                    );
                }
            }
            SchemaChange::Added {
                version,
                against_previous_major,
            } => {
                println!("{event_type} v{major}: new ({version})");
                if let Some(report) = against_previous_major {
                    println!("  against the previous major:");
                    print_report(&report);
                    println!("    => dual-publish both majors until every consumer reads v{major}");
                }
            }
            SchemaChange::Removed { version } => {
                println!("{event_type} v{major}: removed ({version})");
                println!(
                    "    warning: consumers still on v{major} dead-letter these events as unknown_major"
                );
            }
        }
    }
    anyhow::ensure!(
        breaking == 0,
        "{breaking} schema change(s) break compatibility within a major"
    );
    println!("schema-check: ok");
    Ok(())
}
