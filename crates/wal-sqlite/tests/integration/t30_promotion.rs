//! Promotion and fencing with an in-process coordinator: the standby that wins the term
//! catches up, seals the old generation and continues it; the old primary, fenced out but
//! still running, keeps putting segments that no replica ever applies, and cannot start a
//! generation; it is rebuilt as a replica of the new generation.

use crate::fixtures;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_core::coordination::{ElectionStore, Key, LeaseStore};
use cluster_core::ids::{AppName, PlatformName};
use cluster_core::naming::{NamespaceKind, namespace};
use fixtures::*;
use wal_sqlite::{
    PromotionEvent, ReplicationError, ReplicationTerm, Replicator, Standby, StartFrom,
    discard_database,
};

fn election_key() -> Key {
    let ns = namespace(
        &PlatformName::new("test").unwrap(),
        Some(&AppName::new("ledger").unwrap()),
        NamespaceKind::Election,
    );
    Key::new(ns, "leader").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promoted_standby_continues_and_the_fenced_out_primary_is_never_applied() {
    testkit::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let coord = Arc::new(coord_mem::MemCoordinator::new());
    let stores = dir_stores(dir.path(), coord.clone());
    let a_db = dir.path().join("a.db");
    let b_replica = dir.path().join("b-replica.db");
    let b_db = dir.path().join("b.db");
    let c_replica = dir.path().join("c-replica.db");
    let a_lease = coord.grant_lease(Duration::from_secs(30)).await.unwrap();
    let a_term = coord
        .campaign(&election_key(), "a", &a_lease.id)
        .await
        .unwrap();
    let a = open_ledger(&a_db);
    let a_rep = Replicator::start(
        &a_db,
        "a",
        fast_config(),
        stores.clone(),
        ReplicationTerm {
            token: a_term.token,
            fence: Some(a_term.fence()),
            // No lease deadline: this primary keeps shipping after losing, as a paused
            // process that wakes up would for a moment.
            safe_until: None,
        },
        StartFrom::Snapshot,
    )
    .await
    .unwrap();
    let b = Standby::start(&b_replica, standby_config(), stores.clone())
        .await
        .unwrap();
    let c = Standby::start(&c_replica, standby_config(), stores.clone())
        .await
        .unwrap();
    let acked = {
        tracing::info!("A writes; both standbys follow");
        for tx in 0..100 {
            write_tx(&a, tx);
        }
        let p = a_rep.sync().await.unwrap();
        assert_eq!(b.wait_for(p, Duration::from_secs(20)).await, Some(p));
        assert_eq!(c.wait_for(p, Duration::from_secs(20)).await, Some(p));
        p
    };
    let b_term = {
        tracing::info!("A's lease ends; B wins the next term");
        coord.revoke_lease(&a_lease.id).await.unwrap();
        let b_lease = coord.grant_lease(Duration::from_secs(30)).await.unwrap();
        let t = coord
            .campaign(&election_key(), "b", &b_lease.id)
            .await
            .unwrap();
        assert!(t.token > a_term.token);
        t
    };
    let stale_rows = {
        tracing::info!("A, not yet aware, writes more; its replicator ships them");
        for tx in 1000..1010 {
            write_tx(&a, tx);
        }
        let p = a_rep.sync().await.unwrap();
        assert!(p.index > acked.index);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            c.position(),
            Some(acked),
            "C does not apply a fenced-out writer's segments"
        );
        rows(&a_db)
    };
    let events = Arc::new(Mutex::new(Vec::new()));
    let b_rep = {
        tracing::info!("B promotes: catch-up, verify, seal, new generation");
        let seen = events.clone();
        let r = b
            .promote(
                &b_db,
                "b",
                fast_config(),
                ReplicationTerm {
                    token: b_term.token,
                    fence: Some(b_term.fence()),
                    safe_until: None,
                },
                Some(Arc::new(move |e: &PromotionEvent| {
                    seen.lock().unwrap().push(e.clone())
                })),
            )
            .await
            .unwrap();
        let events = events.lock().unwrap().clone();
        assert!(matches!(
            events.first(),
            Some(PromotionEvent::Started { .. })
        ));
        assert!(matches!(
            events.get(1),
            Some(PromotionEvent::CatchupStarted { .. })
        ));
        assert!(matches!(
            events.get(2),
            Some(PromotionEvent::CatchupCompleted { .. })
        ));
        assert_eq!(events.get(3), Some(&PromotionEvent::DatabaseVerified));
        assert!(matches!(
            events.get(4),
            Some(PromotionEvent::Completed { generation: 2, .. })
        ));
        r
    };
    {
        tracing::info!(
            "the old generation is sealed where B caught up; B's database holds what it applied"
        );
        let (g1, _) = stores.registry.record(1).await.unwrap().unwrap();
        let seal = g1.sealed_through.unwrap();
        let b_rows = rows(&b_db);
        // B caught up on whatever A had shipped when B listed: A's stale rows are either all
        // in (shipped before the seal) or not; the seal decides, for every replica alike.
        assert!(
            b_rows.len() == 200 || b_rows == stale_rows,
            "{} rows",
            b_rows.len()
        );
        tracing::info!(seal, rows = b_rows.len(), "sealed");
    }
    let b_conn = open_ledger(&b_db);
    {
        tracing::info!("A ships more into its sealed generation; B writes in the new one");
        for tx in 2000..2010 {
            write_tx(&a, tx);
        }
        a_rep.sync().await.unwrap();
        for tx in 3000..3020 {
            write_tx(&b_conn, tx);
        }
        let p = b_rep.sync().await.unwrap();
        assert_eq!(p.generation, 2);
        assert_eq!(c.wait_for(p, Duration::from_secs(20)).await, Some(p));
        assert_eq!(
            rows(&c_replica),
            rows(&b_db),
            "C follows B, never A's later writes"
        );
        assert!(
            rows(&c_replica)
                .iter()
                .all(|(tx, _)| !(2000..2010).contains(tx))
        );
        integrity_ok(&c_replica);
    }
    {
        tracing::info!("A cannot start a generation with its old fence");
        a_rep.stop().await.unwrap();
        drop(a);
        let again = Replicator::start(
            &a_db,
            "a",
            fast_config(),
            stores.clone(),
            ReplicationTerm {
                token: a_term.token,
                fence: Some(a_term.fence()),
                safe_until: None,
            },
            StartFrom::Snapshot,
        )
        .await;
        assert!(
            matches!(again, Err(ReplicationError::Fenced { .. })),
            "{again:?}"
        );
    }
    {
        tracing::info!(
            "A is demoted: its database discarded, rebuilt as a replica of generation 2"
        );
        discard_database(&a_db).unwrap();
        let a_standby = Standby::start(&a_db, standby_config(), stores.clone())
            .await
            .unwrap();
        let p = b_rep.sync().await.unwrap();
        assert_eq!(
            a_standby.wait_for(p, Duration::from_secs(20)).await,
            Some(p)
        );
        assert_eq!(rows(&a_db), rows(&b_db));
        a_standby.stop().await.unwrap();
    }
    c.stop().await.unwrap();
    b_rep.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_lease_deadline_a_primary_ships_nothing_and_sync_fails() {
    testkit::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let coord = Arc::new(coord_mem::MemCoordinator::new());
    let stores = dir_stores(dir.path(), coord.clone());
    let db = dir.path().join("a.db");
    let conn = open_ledger(&db);
    let deadline = Arc::new(Mutex::new(Some(
        tokio::time::Instant::now() + Duration::from_secs(3600),
    )));
    let d = deadline.clone();
    let rep = Replicator::start(
        &db,
        "a",
        fast_config(),
        stores.clone(),
        ReplicationTerm {
            token: cluster_core::ids::FencingToken::new(7),
            fence: None,
            safe_until: Some(Arc::new(move || *d.lock().unwrap())),
        },
        StartFrom::Snapshot,
    )
    .await
    .unwrap();
    let before = {
        tracing::info!("within the lease, sync succeeds");
        write_tx(&conn, 1);
        rep.sync().await.unwrap()
    };
    {
        tracing::info!("the lease's safe deadline passes (a paused process wakes up late)");
        *deadline.lock().unwrap() = Some(tokio::time::Instant::now() - Duration::from_millis(1));
        write_tx(&conn, 2);
        let err = rep.sync().await.unwrap_err();
        assert!(
            matches!(
                err,
                ReplicationError::Fenced { token } if token.get() == 7
            ) || matches!(err, ReplicationError::Stopped),
            "{err}"
        );
        rep.stopped().await;
        assert!(rep.stats().fenced);
    }
    {
        tracing::info!("nothing after the deadline reached the store");
        let segments = stores.wal.list("gen/").await.unwrap();
        let last = segments
            .iter()
            .filter(|i| i.name.as_str().contains("/seg/"))
            .count() as u64;
        assert_eq!(last, before.index);
    }
}
