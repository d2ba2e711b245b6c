//! A ring owner of 16 partitions whose `on_release` is slow, SIGSTOPped past its session
//! deadline and resumed before the store can expire its lease (real etcd, separate processes):
//! on resume every partition's work is cancelled at once, before any `on_release` has run and
//! before any successor's `on_own`; the histories show no two owners at work at once.

use crate::common;

use std::time::Duration;

use common::{LIMIT, fixture_with};

const PARTITIONS: u32 = 16;
const TTL: Duration = Duration::from_secs(3);
const MARGIN: Duration = Duration::from_millis(1500);
/// Longer than the renew deadline can be after the stop (at most TTL - margin = 1.5 s after the
/// last renewal), shorter than the store's expiry can be (at least TTL - one renew interval of
/// 0.5 s = 2.5 s after the stop).
const PAUSE: Duration = Duration::from_millis(2000);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_owner_cancels_every_partition_at_once_when_it_resumes() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let mut f = fixture_with(PARTITIONS, false, |s| {
        s.ttl = TTL;
        s.margin = MARGIN;
        s.release_delay = Duration::from_millis(500);
    })
    .await;
    let c = &mut f.cluster;
    {
        tracing::info!("n1 owns all 16 partitions");
        c.start("n1").unwrap();
        c.wait_for(LIMIT, |c| {
            let owners = c.ring_owners();
            (owners.len() == PARTITIONS as usize && owners.values().all(|o| o[0].0 == "n1"))
                .then_some(())
        })
        .expect("n1 owns the ring");
    }
    {
        tracing::info!(
            "n1 is stopped past its deadline; n2 starts; n1 resumes before its lease can expire"
        );
        c.signal("n1", libc::SIGSTOP);
        c.start("n2").unwrap();
        std::thread::sleep(PAUSE);
        c.signal("n1", libc::SIGCONT);
        c.wait_for(LIMIT, |c| {
            let n1 = c.history("n1");
            let cancelled = n1
                .iter()
                .filter(|r| r.event == "cancelled" && r.partition.is_some())
                .count();
            let released = n1.iter().filter(|r| r.event == "release").count();
            let n2_owns = c.history("n2").iter().any(|r| r.event == "own");
            (cancelled >= PARTITIONS as usize && released >= PARTITIONS as usize && n2_owns)
                .then_some(())
        })
        .expect("n1 cancelled and released its partitions, n2 owns some");
    }
    {
        tracing::info!(
            "every cancellation came before n1's first on_release ended and before n2 owned the partition"
        );
        let n1 = c.history("n1");
        let n2 = c.history("n2");
        let first_release = n1
            .iter()
            .filter(|r| r.event == "release")
            .map(|r| r.mono_ns)
            .min()
            .unwrap();
        for p in 0..PARTITIONS {
            let cancelled = n1
                .iter()
                .find(|r| r.event == "cancelled" && r.partition == Some(p))
                .unwrap_or_else(|| panic!("n1 never cancelled partition {p}"))
                .mono_ns;
            assert!(
                cancelled < first_release,
                "partition {p} was cancelled {} ms after an on_release had run",
                (cancelled - first_release) / 1_000_000
            );
            if let Some(own) = n2
                .iter()
                .find(|r| r.event == "own" && r.partition == Some(p))
            {
                assert!(
                    cancelled < own.mono_ns,
                    "n2 owned partition {p} {} ms before n1's work on it was cancelled",
                    (cancelled - own.mono_ns) / 1_000_000
                );
            }
        }
        let violations = c.ownership_violations();
        assert!(violations.is_empty(), "{violations:#?}");
    }
}
