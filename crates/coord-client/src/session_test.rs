//! Session deadlines under paused time: lost is final and fires every child token at once.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cluster_core::coordination::{CoordResult, LeaseGrant, LeaseId, LeaseStore};
use cluster_core::ids::NodeId;
use cluster_core::lease::LeaseTiming;
use tokio::sync::Notify;

use cluster_core::time::MonoTime;

use super::*;

/// A lease store whose renewals wait until the test lets them answer.
#[derive(Default)]
struct GatedStore {
    renewing: Notify,
    answer: Notify,
}

#[async_trait]
impl LeaseStore for GatedStore {
    async fn grant_lease(&self, ttl: Duration) -> CoordResult<LeaseGrant> {
        Ok(LeaseGrant {
            id: LeaseId::new("l1"),
            ttl,
        })
    }

    async fn renew_lease(&self, _lease: &LeaseId) -> CoordResult<Duration> {
        self.renewing.notify_one();
        self.answer.notified().await;
        Ok(Duration::from_secs(1))
    }

    async fn revoke_lease(&self, _lease: &LeaseId) -> CoordResult<()> {
        Ok(())
    }
}

fn timing() -> LeaseTiming {
    LeaseTiming::new(Duration::from_secs(1), Duration::from_millis(300)).unwrap()
}

/// Tokio's (paused) clock plus however long the test says the machine was suspended.
#[derive(Default)]
struct SuspendClock {
    suspended: std::sync::Mutex<Duration>,
}

impl SuspendClock {
    fn suspend(&self, d: Duration) {
        *self.suspended.lock().unwrap() += d;
    }
}

impl Clock for SuspendClock {
    fn now(&self) -> MonoTime {
        mono_now() + *self.suspended.lock().unwrap()
    }

    fn wall(&self) -> std::time::SystemTime {
        std::time::SystemTime::now()
    }
}

async fn open_on(store: &Arc<GatedStore>, boot: Arc<dyn Clock>) -> Session {
    Session::open_with_clock(store.clone(), NodeId::new("n1").unwrap(), timing(), boot)
        .await
        .unwrap()
}

async fn open(store: &Arc<GatedStore>) -> Session {
    open_on(store, Arc::new(crate::TokioClock)).await
}

#[tokio::test(start_paused = true)]
async fn a_renewal_answered_after_the_deadline_never_revives_the_session() {
    // The keeper sees the deadline and the late answer ready at once; repeated so that a
    // select that picks either at random is caught.
    for round in 0..24 {
        let store = Arc::new(GatedStore::default());
        let session = open(&store).await;
        let token = session.child_token();
        store.renewing.notified().await;
        // The answer arrives, and the clock jumps past safe_until (0.7 s) but not past the
        // answer's own expiry (renewal sent at ~0.23 s + 1 s): the pause of a stopped process.
        store.answer.notify_one();
        tokio::time::advance(Duration::from_millis(600)).await;
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(
            !session.is_alive(),
            "round {round}: the session came back after its deadline"
        );
        assert!(matches!(
            session.state(),
            SessionState::Lost(LostReason::Expired)
        ));
        assert!(
            token.is_cancelled(),
            "round {round}: the lost token did not fire"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn every_child_token_fires_at_the_deadline_without_a_renewal() {
    let store = Arc::new(GatedStore::default());
    let session = open(&store).await;
    let tokens: Vec<_> = (0..16).map(|_| session.child_token()).collect();
    let deadline = session.safe_until().unwrap();
    tokio::time::sleep_until(to_instant(deadline)).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(tokens.iter().all(CancellationToken::is_cancelled));
    assert_eq!(session.lost().await, LostReason::Expired);
}

#[tokio::test(start_paused = true)]
async fn reading_the_clock_past_the_deadline_declares_the_session_lost() {
    let store = Arc::new(GatedStore::default());
    let session = open(&store).await;
    let token = session.child_token();
    // Past the deadline before the keeper has run: whoever reads the clock first declares it.
    tokio::time::advance(Duration::from_millis(800)).await;
    assert!(!session.is_alive());
    assert!(token.is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn a_suspend_longer_than_the_ttl_ends_the_session_though_the_monotonic_clock_stood_still() {
    let store = Arc::new(GatedStore::default());
    let boot = Arc::new(SuspendClock::default());
    let session = open_on(&store, boot.clone()).await;
    let token = session.child_token();
    assert!(session.is_alive());
    // The machine sleeps for 5 s: CLOCK_MONOTONIC (tokio's clock here) does not move.
    boot.suspend(Duration::from_secs(5));
    assert!(
        !session.is_alive(),
        "a session outlived a suspend longer than its TTL"
    );
    assert!(token.is_cancelled());
    assert_eq!(session.lost().await, LostReason::Expired);
}

#[tokio::test(start_paused = true)]
async fn the_keeper_notices_a_suspend_without_anyone_asking() {
    let store = Arc::new(GatedStore::default());
    let boot = Arc::new(SuspendClock::default());
    let session = open_on(&store, boot.clone()).await;
    let token = session.child_token();
    boot.suspend(Duration::from_secs(5));
    // Within one recheck of the suspend-aware clock, without any is_alive() call.
    tokio::time::sleep(DEADLINE_RECHECK * 2).await;
    assert!(token.is_cancelled(), "the keeper did not see the suspend");
}
