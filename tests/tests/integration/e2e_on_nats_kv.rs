//! The end-to-end scenarios with NATS JetStream KV as the coordination store: a real nats-server
//! and demo nodes as separate OS processes. Active-passive: SIGKILL of the leader and a restart
//! of the killed node, SIGSTOP past the TTL, graceful step-down. Ring: 3 nodes, then 4, then 2.
//!
//! Every namespace of an app shares one bucket on NATS KV, so the ledger's writes to its key
//! space are fenced by its election key in one conditioned publish: the old leader's heartbeats
//! and its straggler after losing the term are writes the store can refuse, and must. The ring
//! runs owned work, fenced by the partition claims.

use crate::common;

use cluster_tests::history::{Record, mono_ns};
use cluster_tests::orchestrator::DemoCluster;
use common::{
    LIMIT, RING_PARTITIONS, nats_fixture, ring_three_then_four_then_two, start_three_with_a_leader,
};

const NODES: [&str; 3] = ["n1", "n2", "n3"];

/// The greatest session deadline `name` recorded (its `alive_until` records), or 0.
fn last_deadline(c: &DemoCluster, name: &str) -> u64 {
    c.history(name)
        .iter()
        .filter(|r| r.event == "alive_until")
        .map(|r| r.mono_ns)
        .max()
        .unwrap_or(0)
}

/// When `name` recorded `event` for the ledger with `token`.
fn ledger_record(c: &DemoCluster, name: &str, event: &str, token: u64) -> Option<Record> {
    c.history(name)
        .into_iter()
        .find(|r| r.app.as_deref() == Some("ledger") && r.event == event && r.token == token)
}

/// Node `name`'s last ledger role record (`active` or `passive`).
fn last_role(c: &DemoCluster, name: &str) -> Option<Record> {
    c.history(name).into_iter().rfind(|r| {
        r.app.as_deref() == Some("ledger") && (r.event == "active" || r.event == "passive")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_kv_sigkill_of_the_leader_makes_a_standby_active_and_the_killed_node_rejoins() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let mut f = nats_fixture(8, false).await;
    let c = &mut f.cluster;
    let (leader, token) = start_three_with_a_leader(c);
    {
        tracing::info!("exactly one node is active");
        let active: Vec<&str> = NODES
            .into_iter()
            .filter(|n| c.history(n).iter().any(|r| r.event == "active"))
            .collect();
        assert_eq!(active, vec![leader.as_str()]);
    }
    let killed_at = mono_ns();
    let (next, next_token) = {
        tracing::info!("SIGKILL the leader: a standby takes over with a larger token");
        c.kill(&leader);
        let (next, next_token) = c
            .wait_for(LIMIT, |c| c.leader("ledger").filter(|(n, _)| *n != leader))
            .expect("a standby takes over");
        assert!(next_token > token, "{next_token} after {token}");
        let began = ledger_record(c, &next, "active", next_token)
            .expect("on_active recorded")
            .mono_ns;
        assert!(began > killed_at, "the new term began after the kill");
        let deadline = last_deadline(c, &leader);
        assert!(
            deadline > 0,
            "the killed leader recorded its session deadlines"
        );
        assert!(
            deadline < began,
            "the new leader began {} ms before the killed one's lease deadline passed",
            (deadline - began) / 1_000_000
        );
        (next, next_token)
    };
    {
        tracing::info!("restart the killed node: it rejoins as a standby, the new leader stays");
        let starts = c
            .rejoin(&leader, killed_at, LIMIT)
            .expect("the killed node rejoins");
        tracing::info!(starts, "the killed node rejoined");
        let role = last_role(c, &leader).expect("the restarted node has a role");
        assert_eq!(role.event, "passive", "{role:?}");
        assert!(role.mono_ns > killed_at);
        assert_eq!(c.leader("ledger"), Some((next.clone(), next_token)));
        assert!(
            ledger_record(c, &next, "cancelled", next_token).is_none(),
            "the new leader's term was not disturbed by the rejoin"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_kv_sigstop_past_the_ttl_loses_leadership_and_no_old_write_is_accepted() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let mut f = nats_fixture(8, false).await;
    let c = &mut f.cluster;
    let (leader, token) = start_three_with_a_leader(c);
    let began = {
        tracing::info!("SIGSTOP the leader past its TTL: another node leads");
        c.signal(&leader, libc::SIGSTOP);
        let (next, next_token) = c
            .wait_for(LIMIT, |c| {
                NODES.into_iter().filter(|n| *n != leader).find_map(|n| {
                    c.history(n)
                        .into_iter()
                        .rfind(|r| r.event == "active")
                        .map(|r| (n.to_owned(), r.token))
                })
            })
            .expect("a new leader while the old one is stopped");
        assert!(next_token > token, "{next_token} after {token}");
        let began = ledger_record(c, &next, "active", next_token)
            .unwrap()
            .mono_ns;
        let old_deadline = last_deadline(c, &leader);
        assert!(
            old_deadline < began,
            "the new term began before the paused leader's deadline"
        );
        began
    };
    {
        tracing::info!("SIGCONT: the old leader's term is cancelled, then it runs on_passive");
        c.signal(&leader, libc::SIGCONT);
        let straggler = c
            .wait_for(LIMIT, |c| {
                c.history(&leader).into_iter().find(|r| {
                    r.detail
                        .as_deref()
                        .is_some_and(|d| d.starts_with("straggler"))
                        && (r.event == "write_accepted"
                            || r.event == "write_refused"
                            || r.event == "write_unsupported")
                })
            })
            .expect("the old leader tried its straggler write");
        tracing::info!(outcome = %straggler.event, "the old leader's straggler write");
        assert_eq!(straggler.event, "write_refused", "{straggler:?}");
        assert_eq!(straggler.token, token);
        let history = c.history(&leader);
        let cancelled = history
            .iter()
            .find(|r| r.event == "cancelled" && r.token == token)
            .expect("the old term was cancelled");
        let passive = history
            .iter()
            .rfind(|r| r.event == "passive")
            .expect("on_passive ran");
        // The order is the one on_passive saw: the demo node stamps `cancelled` from a task the
        // cancellation wakes, which may run a moment after on_passive wrote its record, so the
        // two stamps do not order them; `after_cancel` does.
        assert_eq!(
            passive.detail.as_deref(),
            Some("after_cancel"),
            "the term's work was cancelled before on_passive began: {cancelled:?} {passive:?}"
        );
        assert!(
            passive.mono_ns > began,
            "the old leader resumed after the new term began"
        );
        assert!(
            history
                .iter()
                .any(|r| r.event == "write_accepted" && r.token == token && r.mono_ns < began),
            "the old leader's term wrote nothing the store fenced: the check below would be empty"
        );
        assert!(
            !history
                .iter()
                .any(|r| r.event == "write_accepted" && r.mono_ns >= began),
            "the old leader had a write accepted after another node became active"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_kv_graceful_step_down_hands_leadership_over() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let mut f = nats_fixture(8, false).await;
    let c = &mut f.cluster;
    let (leader, token) = start_three_with_a_leader(c);
    let asked = mono_ns();
    c.signal(&leader, libc::SIGUSR1);
    let (next, next_token) = c
        .wait_for(LIMIT, |c| c.leader("ledger").filter(|(n, _)| *n != leader))
        .expect("another node leads after the step-down");
    assert!(next_token > token, "{next_token} after {token}");
    let released = ledger_record(c, &leader, "cancelled", token)
        .expect("the old term was cancelled")
        .mono_ns;
    let began = ledger_record(c, &next, "active", next_token)
        .unwrap()
        .mono_ns;
    assert!(asked < began);
    assert!(
        released <= began,
        "step-down hands over: the old term ended {} ms after the new one began",
        (released - began) / 1_000_000
    );
    assert!(
        c.is_running(&leader),
        "stepping down does not stop the node"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_kv_ring_three_then_four_then_two_keeps_one_owner_and_hands_work_over() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    // Owned work items sit next to the claim keys, so their fenced writes work on NATS KV.
    let mut f = nats_fixture(RING_PARTITIONS, true).await;
    ring_three_then_four_then_two(&mut f.cluster);
}
