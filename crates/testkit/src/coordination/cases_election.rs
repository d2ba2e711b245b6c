//! Elections and locks: one leader, growing tokens, loss before takeover.

use std::sync::Arc;
use std::time::Duration;

use cluster_core::coordination::{CoordError, Coordinator, Expect};
use cluster_core::naming::NamespaceKind;
use coord_client::{LostReason, Session, mono_now};
use futures::StreamExt;
use tokio::sync::Mutex;

use super::cases_lease::node;
use super::harness::{CoordHarness, fresh_namespace, key};
use crate::wait::eventually;

async fn session(coord: &Arc<dyn Coordinator>, name: &str, h: &impl CoordHarness) -> Session {
    Session::open(coord.clone(), node(name), h.timing().lease_timing())
        .await
        .unwrap()
}

/// The first candidate leads; the second waits; resign hands over with a larger token.
pub async fn election_resign_hands_over_with_larger_token<H: CoordHarness>(h: &mut H) {
    let coord = h.client().await;
    let election = key(&fresh_namespace(NamespaceKind::Election), "leader");
    let a = session(&coord, "a", h).await;
    let b = session(&coord, "b", h).await;

    let term_a = coord.campaign(&election, "a", a.lease()).await.unwrap();
    let b_campaign = {
        let coord = coord.clone();
        let election = election.clone();
        let lease = b.lease().clone();
        tokio::spawn(async move { coord.campaign(&election, "b", &lease).await })
    };
    {
        tracing::info!("a leads and b waits");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!b_campaign.is_finished(), "b won while a leads");
        let leader = coord.leader(&election).await.unwrap().unwrap();
        assert_eq!(leader.holder, "a");
        assert_eq!(leader.token, term_a.token);
    }
    {
        tracing::info!("a resigns: b leads with a larger token");
        coord.resign(&term_a).await.unwrap();
        let term_b = tokio::time::timeout(h.timing().max_expiry(), b_campaign)
            .await
            .expect("b leads after a resigns")
            .unwrap()
            .unwrap();
        assert!(
            term_b.token > term_a.token,
            "{} !> {}",
            term_b.token,
            term_a.token
        );
        assert_eq!(coord.leader(&election).await.unwrap().unwrap().holder, "b");
        coord
            .resign(&term_a)
            .await
            .expect("resigning an ended term is a no-op");
        assert_eq!(coord.leader(&election).await.unwrap().unwrap().holder, "b");
    }
}

/// A leader that dies without resigning is replaced after its lease expires, with a larger token.
pub async fn election_killed_holder_replaced_with_larger_token<H: CoordHarness>(h: &mut H) {
    let coord = h.client().await;
    let election = key(&fresh_namespace(NamespaceKind::Election), "leader");
    let a = session(&coord, "a", h).await;
    let b = session(&coord, "b", h).await;
    let term_a = coord.campaign(&election, "a", a.lease()).await.unwrap();

    tracing::info!("a stops renewing, as a killed process would");
    a.abandon();
    let term_b = tokio::time::timeout(
        h.timing().max_expiry(),
        coord.campaign(&election, "b", b.lease()),
    )
    .await
    .expect("b leads once a's lease expires")
    .unwrap();
    assert!(term_b.token > term_a.token);
}

/// A leader cut off from the store learns it lost before the next leader's term begins.
pub async fn election_blackholed_holder_loses_before_successor_leads<H: CoordHarness>(h: &mut H) {
    let observer = h.client().await;
    let (coord_a, fault) = h.faultable_client().await;
    let election = key(&fresh_namespace(NamespaceKind::Election), "leader");
    let a = session(&coord_a, "a", h).await;
    let b = session(&observer, "b", h).await;
    let term_a = coord_a.campaign(&election, "a", a.lease()).await.unwrap();

    let events: Arc<Mutex<Vec<(&'static str, cluster_core::time::MonoTime)>>> = Arc::default();
    let b_won = {
        let (observer, election, lease, events) = (
            observer.clone(),
            election.clone(),
            b.lease().clone(),
            events.clone(),
        );
        tokio::spawn(async move {
            let term = observer.campaign(&election, "b", &lease).await;
            events.lock().await.push(("b_leads", mono_now()));
            term
        })
    };
    let a_lost = {
        let (a, events) = (a.clone(), events.clone());
        tokio::spawn(async move {
            let reason = a.lost().await;
            events.lock().await.push(("a_lost", mono_now()));
            reason
        })
    };
    tracing::info!("blackhole a's connection");
    fault.blackhole();
    let term_b = tokio::time::timeout(h.timing().max_expiry() * 2, b_won)
        .await
        .expect("b leads")
        .unwrap()
        .unwrap();
    let reason = a_lost.await.unwrap();
    fault.heal();
    assert_eq!(reason, LostReason::Expired);
    let events = events.lock().await.clone();
    let order: Vec<&str> = events.iter().map(|(e, _)| *e).collect();
    assert_eq!(
        order,
        ["a_lost", "b_leads"],
        "a must learn it lost before b's term begins"
    );
    assert!(term_b.token > term_a.token);
}

/// A leader blackholed past its renew deadline but for less than its TTL, then healed, does not
/// lead again with its old lease, and someone leads with a larger token.
pub async fn election_healed_holder_does_not_lead_again<H: CoordHarness>(h: &mut H) {
    let timing = h.timing();
    let observer = h.client().await;
    let (coord_a, fault) = h.faultable_client().await;
    let election = key(&fresh_namespace(NamespaceKind::Election), "leader");
    let data = key(&fresh_namespace(NamespaceKind::Kv), "guarded");
    let a = session(&coord_a, "a", h).await;
    let b = session(&observer, "b", h).await;
    let term_a = coord_a.campaign(&election, "a", a.lease()).await.unwrap();
    let b_campaign = {
        let (observer, election, lease) = (observer.clone(), election.clone(), b.lease().clone());
        tokio::spawn(async move { observer.campaign(&election, "b", &lease).await })
    };

    {
        tracing::info!(
            "blackhole a until its session is lost (past the renew deadline), then heal"
        );
        fault.blackhole();
        let reason = tokio::time::timeout(timing.ttl * 2, a.lost())
            .await
            .expect("a's session is lost by its deadline");
        assert_eq!(reason, LostReason::Expired);
        fault.heal();
    }
    let term_b = {
        tracing::info!("b leads with a larger token; a's session stays lost");
        let term_b = tokio::time::timeout(timing.max_expiry() * 2, b_campaign)
            .await
            .expect("someone leads again")
            .unwrap()
            .unwrap();
        assert!(term_b.token > term_a.token);
        assert!(!a.is_alive(), "a lost session came back");
        term_b
    };
    {
        tracing::info!("a's writes fenced by its old term are refused by the store");
        if coord_a.capabilities().put_if_held {
            let err = coord_a
                .put_if_held(&data, b"stale".to_vec(), &term_a.fence())
                .await
                .unwrap_err();
            assert!(matches!(err, CoordError::StaleToken { .. }), "{err:?}");
            observer
                .put_if_held(&data, b"fresh".to_vec(), &term_b.fence())
                .await
                .unwrap();
        }
        let leader = observer.leader(&election).await.unwrap().unwrap();
        assert_eq!(leader.holder, "b");
        assert_eq!(leader.token, term_b.token);
        let err = coord_a
            .put(&data, b"x".to_vec(), Expect::Any, Some(a.lease()))
            .await;
        assert!(matches!(err, Err(CoordError::LeaseLost { .. })), "{err:?}");
    }
}

/// Two candidates taking turns never hold leadership at the same time.
pub async fn election_never_two_leaders<H: CoordHarness>(h: &mut H) {
    let coord = h.client().await;
    let election = key(&fresh_namespace(NamespaceKind::Election), "leader");
    let intervals: Arc<
        Mutex<
            Vec<(
                u64,
                cluster_core::time::MonoTime,
                cluster_core::time::MonoTime,
            )>,
        >,
    > = Arc::default();
    let mut tasks = Vec::new();
    for name in ["a", "b", "c"] {
        let (coord, election, intervals) = (coord.clone(), election.clone(), intervals.clone());
        let s = session(&coord, name, h).await;
        tasks.push(tokio::spawn(async move {
            for _ in 0..4 {
                let term = coord.campaign(&election, name, s.lease()).await.unwrap();
                let from = mono_now();
                tokio::time::sleep(Duration::from_millis(20)).await;
                let to = mono_now();
                intervals.lock().await.push((term.token.get(), from, to));
                coord.resign(&term).await.unwrap();
            }
            s.close(coord.as_ref()).await.unwrap();
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(120), t)
            .await
            .expect("rounds finish")
            .unwrap();
    }
    let mut intervals = intervals.lock().await.clone();
    intervals.sort_by_key(|(token, _, _)| *token);
    assert_eq!(intervals.len(), 12);
    for pair in intervals.windows(2) {
        let (t1, _, end1) = pair[0];
        let (t2, start2, _) = pair[1];
        assert!(t2 > t1, "tokens must strictly grow");
        assert!(start2 >= end1, "term {t2} began before term {t1} ended");
    }
}

/// Observers see the current leader, then each change.
pub async fn election_observe_reports_changes<H: CoordHarness>(h: &mut H) {
    let coord = h.client().await;
    let limit = h.timing().max_expiry();
    let election = key(&fresh_namespace(NamespaceKind::Election), "leader");
    let mut leaders = coord.observe_leader(&election).await.unwrap();
    let first = tokio::time::timeout(limit, leaders.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first, None, "no leader yet");

    let a = session(&coord, "a", h).await;
    let term = coord.campaign(&election, "a", a.lease()).await.unwrap();
    let seen = tokio::time::timeout(limit, leaders.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        seen.map(|l| (l.holder, l.token)),
        Some(("a".to_owned(), term.token))
    );
    coord.resign(&term).await.unwrap();
    let seen = tokio::time::timeout(limit, leaders.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(seen, None);
}

/// A lock excludes a second holder until released; each hold has a larger token.
pub async fn lock_excludes_and_tokens_grow<H: CoordHarness>(h: &mut H) {
    let coord = h.client().await;
    let name = key(&fresh_namespace(NamespaceKind::Locks), "migrations");
    let a = session(&coord, "a", h).await;
    let b = session(&coord, "b", h).await;
    let hold_a = coord.lock(&name, "a", a.lease()).await.unwrap();
    let b_lock = {
        let (coord, name, lease) = (coord.clone(), name.clone(), b.lease().clone());
        tokio::spawn(async move { coord.lock(&name, "b", &lease).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!b_lock.is_finished(), "b took a held lock");
    coord.unlock(&hold_a).await.unwrap();
    let hold_b = tokio::time::timeout(h.timing().max_expiry(), b_lock)
        .await
        .expect("b gets the lock")
        .unwrap()
        .unwrap();
    assert!(hold_b.token() > hold_a.token());
    eventually("lock released", Duration::from_secs(30), || async {
        coord.unlock(&hold_b).await.is_ok()
    })
    .await;
}
