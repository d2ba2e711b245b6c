//! Ring ownership with real etcd and nodes as separate OS processes: 3 nodes, then 4, then 2
//! (one leaves gracefully, one is SIGKILLed). Checked from the nodes' history files (stamped with
//! CLOCK_MONOTONIC and tokens): every partition ends owned by exactly one live node, no
//! partition ever had two valid owners, work was drained on graceful moves and re-run once after
//! the kill.

use crate::common;

use common::{RING_PARTITIONS, fixture, ring_three_then_four_then_two};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_three_then_four_then_two_keeps_one_owner_and_hands_work_over() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let mut f = fixture(RING_PARTITIONS, true).await;
    ring_three_then_four_then_two(&mut f.cluster);
}
