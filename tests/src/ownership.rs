//! The ownership checker: from the nodes' histories, did a partition ever have two owners at
//! work at once?
//!
//! An ownership of partition `p` with token `t` starts at its `own` record. It ends when its
//! work really stopped: the `cancelled` record its `on_own` task wrote when the ownership's
//! cancellation fired, or the moment the orchestrator SIGKILLed the process, or SIGSTOPped it
//! (a stopped process does nothing until resumed). Session deadlines are not an end: the point
//! is to see work that outlived them. Two rules:
//!
//! - every new owner's `own` comes after the previous owner's end (and its token is larger);
//! - no owner records an action for the partition (`work_run`, `write_accepted`) after the next
//!   owner's `own`: a paused owner that resumes must not act before its cancellation.

use std::collections::BTreeMap;

use crate::history::Record;

/// Records of the work an owner does for a partition.
const ACTIONS: &[&str] = &["work_run", "write_accepted"];

/// One process's life as the checker sees it.
#[derive(Debug, Clone, Default)]
pub struct Life<'a> {
    /// The node.
    pub node: &'a str,
    /// Its records, in order.
    pub records: &'a [Record],
    /// When it was SIGKILLed, if it was.
    pub killed: Option<u64>,
    /// When it was SIGSTOPped (each pause).
    pub paused: Vec<u64>,
}

#[derive(Debug, Clone)]
struct Ownership {
    token: u64,
    node: String,
    start: u64,
    end: u64,
    actions: Vec<u64>,
}

/// The lives of one node from its history file (a restarted node appends to the same file; each
/// `started` record begins a life), with the SIGKILLs and SIGSTOPs the orchestrator sent it.
pub fn lives<'a>(
    node: &'a str,
    records: &'a [Record],
    kills: &[u64],
    pauses: &[u64],
) -> Vec<Life<'a>> {
    let mut starts: Vec<usize> = records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.event == "started")
        .map(|(i, _)| i)
        .collect();
    if starts.first() != Some(&0) {
        starts.insert(0, 0);
    }
    // `alive_until` records carry a deadline, a time in the future: not when a life began or
    // ended.
    let stamped = |r: &&Record| r.event != "alive_until";
    starts
        .iter()
        .enumerate()
        .map(|(k, &from)| {
            let to = starts.get(k + 1).copied().unwrap_or(records.len());
            let begun = records[from..to]
                .iter()
                .find(stamped)
                .map_or(0, |r| r.mono_ns);
            let ended_next = records[to..]
                .iter()
                .find(stamped)
                .map_or(u64::MAX, |r| r.mono_ns);
            let within = |t: &u64| *t >= begun && *t < ended_next;
            Life {
                node,
                records: &records[from..to],
                killed: kills.iter().copied().find(within),
                paused: pauses.iter().copied().filter(within).collect(),
            }
        })
        .collect()
}

/// Every violation of the two rules, readably; empty when the histories are sound.
pub fn violations(lives: &[Life<'_>]) -> Vec<String> {
    let mut by_partition: BTreeMap<u32, Vec<Ownership>> = BTreeMap::new();
    for life in lives {
        for (i, r) in life.records.iter().enumerate() {
            if r.event != "own" {
                continue;
            }
            let Some(p) = r.partition else { continue };
            let later = &life.records[i + 1..];
            let mine = |e: &&Record| e.partition == Some(p) && e.token == r.token;
            let cancelled = later
                .iter()
                .filter(mine)
                .find(|e| e.event == "cancelled")
                .map(|e| e.mono_ns);
            let paused = life.paused.iter().copied().find(|t| *t >= r.mono_ns);
            let killed = life.killed.filter(|t| *t >= r.mono_ns);
            let end = [cancelled, paused, killed]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(u64::MAX);
            let actions = later
                .iter()
                .filter(mine)
                .filter(|e| ACTIONS.contains(&e.event.as_str()))
                .map(|e| e.mono_ns)
                .collect();
            by_partition.entry(p).or_default().push(Ownership {
                token: r.token,
                node: life.node.to_owned(),
                start: r.mono_ns,
                end,
                actions,
            });
        }
    }
    let mut found = Vec::new();
    for (p, mut list) in by_partition {
        list.sort_by_key(|o| (o.token, o.start));
        for pair in list.windows(2) {
            let (old, new) = (&pair[0], &pair[1]);
            if new.token <= old.token {
                found.push(format!(
                    "partition {p}: token {} of {} is not above {} of {}",
                    new.token, new.node, old.token, old.node
                ));
            }
            if new.start < old.end {
                let ms = if old.end == u64::MAX {
                    "still running".to_owned()
                } else {
                    format!("{} ms before it stopped", (old.end - new.start) / 1_000_000)
                };
                found.push(format!(
                    "partition {p}: {} (token {}) owned it while {} (token {}) was at work: {ms}",
                    new.node, new.token, old.node, old.token
                ));
            }
            for t in old.actions.iter().filter(|t| **t > new.start) {
                found.push(format!(
                    "partition {p}: {} (token {}) acted {} ms after {} (token {}) owned it",
                    old.node,
                    old.token,
                    (t - new.start) / 1_000_000,
                    new.node,
                    new.token
                ));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(node: &str, event: &str, token: u64, partition: u32, at_ms: u64) -> Record {
        Record {
            node: node.to_owned(),
            app: Some("jobs".into()),
            event: event.to_owned(),
            token,
            partition: Some(partition),
            detail: None,
            mono_ns: at_ms * 1_000_000,
        }
    }

    fn life<'a>(node: &'a str, records: &'a [Record]) -> Life<'a> {
        Life {
            node,
            records,
            ..Life::default()
        }
    }

    #[test]
    fn a_successor_that_owns_before_the_old_owner_was_cancelled_is_flagged() {
        // n1's session deadline passed at 1,000 ms, but its work was only cancelled at 3,000.
        let n1 = [
            rec("n1", "own", 5, 3, 0),
            rec("n1", "alive_until", 0, 3, 1_000),
            rec("n1", "cancelled", 5, 3, 3_000),
        ];
        let n2 = [rec("n2", "own", 9, 3, 2_000)];
        let found = violations(&[life("n1", &n1), life("n2", &n2)]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].contains("while n1 (token 5) was at work: 1000 ms"),
            "{found:?}"
        );
    }

    #[test]
    fn an_owner_acting_after_its_successor_took_over_is_flagged_even_when_paused() {
        let n1 = [
            rec("n1", "own", 5, 3, 0),
            rec("n1", "work_run", 5, 3, 2_500),
            rec("n1", "cancelled", 5, 3, 2_600),
        ];
        let n2 = [rec("n2", "own", 9, 3, 2_000)];
        let paused = Life {
            paused: vec![500 * 1_000_000],
            ..life("n1", &n1)
        };
        let found = violations(&[paused, life("n2", &n2)]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].contains("n1 (token 5) acted 500 ms after n2"),
            "{found:?}"
        );
    }

    #[test]
    fn a_kill_before_the_first_recorded_deadline_still_ends_the_life() {
        // The first record is the session deadline, 1.4 s ahead; the node is killed at 0.9 s.
        let n2 = [
            Record {
                node: "n2".into(),
                event: "alive_until".into(),
                mono_ns: 1_400 * 1_000_000,
                ..Record::default()
            },
            rec("n2", "own", 5, 3, 100),
        ];
        let n3 = [rec("n3", "own", 9, 3, 3_000)];
        let mut all = lives("n2", &n2, &[900 * 1_000_000], &[]);
        all.extend(lives("n3", &n3, &[], &[]));
        assert_eq!(all[0].killed, Some(900 * 1_000_000));
        let found = violations(&all);
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn a_clean_handoff_and_a_killed_owner_pass() {
        let n1 = [
            rec("n1", "own", 5, 3, 0),
            rec("n1", "work_run", 5, 3, 100),
            rec("n1", "cancelled", 5, 3, 900),
            rec("n1", "own", 11, 4, 950),
        ];
        let n2 = [
            rec("n2", "own", 9, 3, 1_000),
            rec("n2", "own", 12, 4, 3_000),
        ];
        let killed = Life {
            killed: Some(2_000 * 1_000_000),
            ..life("n1", &n1)
        };
        let found = violations(&[killed, life("n2", &n2)]);
        assert!(found.is_empty(), "{found:?}");
    }
}
