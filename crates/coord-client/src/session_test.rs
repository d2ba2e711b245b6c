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

/// A timing whose renewal interval (400 ms) and retry pause (100 ms) are whole milliseconds,
/// the resolution of tokio's timer, so paused-time tests can compare instants exactly.
fn even_timing() -> LeaseTiming {
    LeaseTiming::new(Duration::from_millis(1500), Duration::from_millis(300)).unwrap()
}

/// A lease store that answers at once (or fails while `failing`) and records when each renewal
/// was asked for, on tokio's paused clock.
#[derive(Default)]
struct RecordingStore {
    failing: std::sync::atomic::AtomicBool,
    renewals: std::sync::Mutex<Vec<MonoTime>>,
}

#[async_trait]
impl LeaseStore for RecordingStore {
    async fn grant_lease(&self, ttl: Duration) -> CoordResult<LeaseGrant> {
        Ok(LeaseGrant {
            id: LeaseId::new("l1"),
            ttl,
        })
    }

    async fn renew_lease(&self, _lease: &LeaseId) -> CoordResult<Duration> {
        self.renewals.lock().unwrap().push(mono_now());
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(CoordError::timed_out(
                cluster_core::coordination::Operation::RenewLease,
                Duration::ZERO,
            ));
        }
        Ok(even_timing().ttl)
    }

    async fn revoke_lease(&self, _lease: &LeaseId) -> CoordResult<()> {
        Ok(())
    }
}

fn gaps(at: &[MonoTime]) -> Vec<Duration> {
    at.windows(2)
        .map(|w| w[1].saturating_duration_since(w[0]))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn renewals_go_out_every_third_of_the_usable_lifetime() {
    let store = Arc::new(RecordingStore::default());
    let opened = mono_now();
    let session = Session::open_with_clock(
        store.clone(),
        NodeId::new("n1").unwrap(),
        even_timing(),
        Arc::new(crate::TokioClock),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let renewals = store.renewals.lock().unwrap().clone();
    let interval = even_timing().renew_interval();
    assert_eq!(interval, Duration::from_millis(400));
    assert_eq!(renewals.len(), 7, "{renewals:?}");
    assert_eq!(renewals[0].saturating_duration_since(opened), interval);
    assert!(
        gaps(&renewals).iter().all(|g| *g == interval),
        "every renewal one interval after the last: {:?}",
        gaps(&renewals)
    );
    assert!(session.is_alive(), "answered renewals keep the session");
}

#[tokio::test(start_paused = true)]
async fn failed_renewals_retry_at_a_quarter_interval_until_the_deadline_and_then_lost_is_final() {
    let store = Arc::new(RecordingStore::default());
    store
        .failing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let opened = mono_now();
    let session = Session::open_with_clock(
        store.clone(),
        NodeId::new("n1").unwrap(),
        even_timing(),
        Arc::new(crate::TokioClock),
    )
    .await
    .unwrap();
    let deadline = session.safe_until().unwrap();
    assert_eq!(
        deadline.saturating_duration_since(opened),
        Duration::from_millis(1200),
        "the deadline is the grant's send time + ttl - margin"
    );
    assert_eq!(session.lost().await, LostReason::Expired);
    assert_eq!(mono_now(), deadline, "lost exactly at the deadline");
    let renewals = store.renewals.lock().unwrap().clone();
    let interval = even_timing().renew_interval();
    assert_eq!(renewals[0].saturating_duration_since(opened), interval);
    assert!(
        gaps(&renewals)
            .iter()
            .all(|g| *g == retry_pause(even_timing())),
        "failed renewals are retried every quarter interval: {:?}",
        gaps(&renewals)
    );
    assert_eq!(retry_pause(even_timing()), interval / 4);
    {
        // The store comes back: nothing revives a lost session.
        store
            .failing
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let asked = store.renewals.lock().unwrap().len();
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!session.is_alive());
        assert_eq!(
            store.renewals.lock().unwrap().len(),
            asked,
            "a lost session renews no more"
        );
    }
}
