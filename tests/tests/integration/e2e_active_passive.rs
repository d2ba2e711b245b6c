//! Active-passive failover with real etcd and nodes as separate OS processes: SIGKILL, SIGSTOP,
//! graceful step-down, a duplicate node id, and etcd stopped for three TTLs.

use crate::common;

use cluster_tests::history::mono_ns;
use cluster_tests::orchestrator::DemoCluster;
use common::{LIMIT, TTL, fixture, start_three_with_a_leader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_leader_makes_a_standby_active_with_a_larger_token() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let mut f = fixture(8, false).await;
    let c = &mut f.cluster;
    let (leader, token) = start_three_with_a_leader(c);
    {
        tracing::info!("exactly one node is active");
        let active: Vec<String> = ["n1", "n2", "n3"]
            .into_iter()
            .filter(|n| c.history(n).iter().filter(|r| r.event == "active").count() > 0)
            .map(str::to_owned)
            .collect();
        assert_eq!(active, vec![leader.clone()]);
    }
    let killed_at = mono_ns();
    c.kill(&leader);
    let (next, next_token) = c
        .wait_for(LIMIT, |c| c.leader("ledger").filter(|(n, _)| *n != leader))
        .expect("a standby takes over");
    assert!(next_token > token);
    let began = c
        .history(&next)
        .into_iter()
        .find(|r| r.event == "active" && r.token == next_token)
        .expect("on_active recorded")
        .mono_ns;
    assert!(began > killed_at, "the new term began after the kill");
    let deadline = c
        .history(&leader)
        .iter()
        .filter(|r| r.event == "alive_until")
        .map(|r| r.mono_ns)
        .max()
        .unwrap_or(0);
    assert!(
        began > deadline.min(killed_at),
        "the new leader began before the old one's authority ended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_past_the_ttl_loses_leadership_and_the_old_write_is_refused() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let mut f = fixture(8, false).await;
    let c = &mut f.cluster;
    let (leader, token) = start_three_with_a_leader(c);
    {
        tracing::info!("SIGSTOP the leader past its TTL: another node leads");
        c.signal(&leader, libc::SIGSTOP);
        let (next, next_token) = c
            .wait_for(LIMIT, |c| {
                ["n1", "n2", "n3"]
                    .into_iter()
                    .filter(|n| *n != leader)
                    .find_map(|n| {
                        c.history(n)
                            .into_iter()
                            .rfind(|r| r.event == "active")
                            .map(|r| (n.to_owned(), r.token))
                    })
            })
            .expect("a new leader while the old one is stopped");
        assert!(next_token > token);
        let began = c
            .history(&next)
            .into_iter()
            .find(|r| r.event == "active" && r.token == next_token)
            .unwrap()
            .mono_ns;
        let old_deadline = c
            .history(&leader)
            .iter()
            .filter(|r| r.event == "alive_until")
            .map(|r| r.mono_ns)
            .max()
            .unwrap_or(0);
        assert!(
            old_deadline < began,
            "the new term began before the paused leader's deadline"
        );
    }
    {
        tracing::info!(
            "SIGCONT: the old leader learns it lost, runs on_passive, and its old-term write is refused"
        );
        c.signal(&leader, libc::SIGCONT);
        let refused = c
            .wait_for(LIMIT, |c| {
                c.history(&leader).into_iter().find(|r| {
                    r.detail
                        .as_deref()
                        .is_some_and(|d| d.starts_with("straggler"))
                        && (r.event == "write_refused" || r.event == "write_accepted")
                })
            })
            .expect("the old leader tried its straggler write");
        assert_eq!(refused.event, "write_refused", "{refused:?}");
        assert_eq!(refused.token, token);
        let passive = c
            .history(&leader)
            .into_iter()
            .rfind(|r| r.event == "passive")
            .expect("on_passive ran");
        assert_eq!(
            passive.detail.as_deref(),
            Some("after_cancel"),
            "the term's work was cancelled before on_passive began"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_step_down_hands_leadership_over() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let mut f = fixture(8, false).await;
    let c = &mut f.cluster;
    let (leader, token) = start_three_with_a_leader(c);
    let asked = mono_ns();
    c.signal(&leader, libc::SIGUSR1);
    let (next, next_token) = c
        .wait_for(LIMIT, |c| c.leader("ledger").filter(|(n, _)| *n != leader))
        .expect("another node leads after the step-down");
    assert!(next_token > token);
    let released = c
        .history(&leader)
        .into_iter()
        .find(|r| r.event == "cancelled" && r.token == token)
        .expect("the old term was cancelled")
        .mono_ns;
    let began = c
        .history(&next)
        .into_iter()
        .find(|r| r.event == "active" && r.token == next_token)
        .unwrap()
        .mono_ns;
    assert!(asked < began);
    assert!(
        released <= began + 50_000_000,
        "step-down hands over: the old term ends before (or as) the new one begins"
    );
    assert!(
        c.is_running(&leader),
        "stepping down does not stop the node"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_node_id_is_refused() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let mut f = fixture(8, false).await;
    let c = &mut f.cluster;
    c.start("n1").unwrap();
    c.wait_for(LIMIT, |c| c.leader("ledger")).expect("n1 runs");
    let (code, output) = c.run_to_exit("n1", LIMIT).unwrap();
    assert_ne!(code, Some(0), "a second n1 must not run: {output}");
    assert!(
        output.contains("already registered"),
        "the refusal names the reason: {output}"
    );
    assert!(c.is_running("n1"), "the first n1 is unaffected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_down_for_three_ttls_stops_every_leader_and_one_leads_after() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let mut f = fixture(8, false).await;
    for n in ["n1", "n2", "n3"] {
        f.cluster.start(n).unwrap();
    }
    let (_, token) = f
        .cluster
        .wait_for(LIMIT, |c| c.leader("ledger"))
        .expect("a leader");
    let stopped_at = {
        tracing::info!("stop etcd for three TTLs");
        f.etcd.stop();
        mono_ns()
    };
    tokio::time::sleep(TTL * 3).await;
    {
        tracing::info!("nobody acted as leader past its deadline");
        for n in ["n1", "n2", "n3"] {
            let h = f.cluster.history(n);
            let deadline = h
                .iter()
                .filter(|r| r.event == "alive_until" && r.mono_ns >= stopped_at)
                .map(|r| r.mono_ns)
                .max()
                .unwrap_or(stopped_at);
            if let Some(active) = h.iter().rfind(|r| r.event == "active") {
                let ended = h
                    .iter()
                    .find(|r| r.event == "cancelled" && r.token == active.token)
                    .map(|r| r.mono_ns);
                let ended = ended.expect("a leader's work was cancelled during the outage");
                // Recorded by the node's own task right after the deadline passed.
                assert!(ended >= stopped_at);
                assert!(
                    ended <= deadline + 500_000_000,
                    "{n} kept leading {} ms past its deadline",
                    (ended - deadline) / 1_000_000
                );
            }
        }
        assert!(
            f.cluster.leader("ledger").is_none(),
            "a node still claims to lead with etcd down"
        );
    }
    {
        tracing::info!("etcd back: exactly one node leads, with a larger token");
        f.etcd.restart().await.unwrap();
        let (_, new_token) = f
            .cluster
            .wait_for(LIMIT, |c| c.leader("ledger").filter(|(_, t)| *t > token))
            .expect("a leader after the outage");
        assert!(new_token > token);
        let leaders = |c: &DemoCluster| -> Vec<String> {
            ["n1", "n2", "n3"]
                .into_iter()
                .filter(|n| {
                    c.history(n)
                        .into_iter()
                        .rfind(|r| r.event == "active" || r.event == "passive")
                        .is_some_and(|r| r.event == "active")
                })
                .map(str::to_owned)
                .collect()
        };
        testkit::stays_true_for(
            "exactly one node leads after the outage",
            std::time::Duration::from_millis(500),
            || leaders(&f.cluster).len() == 1,
        )
        .await;
    }
}
