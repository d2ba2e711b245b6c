//! Only the holder of a generation's term seals it: a primary whose term ended, starting over
//! after a gap, does not seal its successor's live generation.

use crate::fixtures;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_core::coordination::{ElectionStore, Key, LeaseStore};
use cluster_core::ids::{AppName, PlatformName};
use cluster_core::naming::{NamespaceKind, namespace};
use fixtures::*;
use wal_sqlite::{ReplicationError, ReplicationTerm, Replicator, Standby, StartFrom};

fn election_key() -> Key {
    let ns = namespace(
        &PlatformName::new("test").unwrap(),
        Some(&AppName::new("ledger").unwrap()),
        NamespaceKind::Election,
    );
    Key::new(ns, "leader").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_past_its_term_does_not_seal_the_successors_generation() {
    testkit::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let coord = Arc::new(coord_mem::MemCoordinator::new());
    let stores = dir_stores(dir.path(), coord.clone());
    let a_db = dir.path().join("a.db");
    let a_lease = coord.grant_lease(Duration::from_secs(30)).await.unwrap();
    let a_won = coord
        .campaign(&election_key(), "a", &a_lease.id)
        .await
        .unwrap();
    let a_deadline = Arc::new(Mutex::new(Some(
        tokio::time::Instant::now() + Duration::from_secs(3600),
    )));
    let a_term = {
        let d = a_deadline.clone();
        ReplicationTerm {
            token: a_won.token,
            fence: Some(a_won.fence()),
            safe_until: Some(Arc::new(move || *d.lock().unwrap())),
        }
    };
    let a = open_ledger(&a_db);
    let a_rep = Replicator::start(
        &a_db,
        "a",
        fast_config(),
        stores.clone(),
        a_term.clone(),
        StartFrom::Snapshot,
    )
    .await
    .unwrap();
    let b_replica = dir.path().join("b-replica.db");
    let b = Standby::start(&b_replica, standby_config(), stores.clone())
        .await
        .unwrap();
    for tx in 0..10 {
        write_tx(&a, tx);
    }
    let p = a_rep.sync().await.unwrap();
    assert_eq!(b.wait_for(p, Duration::from_secs(20)).await, Some(p));
    tracing::info!("A's term ends; B wins, promotes and acknowledges a sync in generation 2");
    *a_deadline.lock().unwrap() = Some(tokio::time::Instant::now() - Duration::from_millis(1));
    coord.revoke_lease(&a_lease.id).await.unwrap();
    let b_lease = coord.grant_lease(Duration::from_secs(30)).await.unwrap();
    let b_won = coord
        .campaign(&election_key(), "b", &b_lease.id)
        .await
        .unwrap();
    let b_db = dir.path().join("b.db");
    let b_rep = b
        .promote(
            &b_db,
            "b",
            fast_config(),
            ReplicationTerm {
                token: b_won.token,
                fence: Some(b_won.fence()),
                safe_until: None,
            },
            None,
        )
        .await
        .unwrap();
    let b_conn = open_ledger(&b_db);
    for tx in 100..110 {
        write_tx(&b_conn, tx);
    }
    let pb = b_rep.sync().await.unwrap();
    assert_eq!(pb.generation, 2);
    tracing::info!("A, past its term, starts over from a snapshot (as after a capture gap)");
    let _ = a_rep.stop().await;
    let again = Replicator::start(
        &a_db,
        "a",
        fast_config(),
        stores.clone(),
        a_term,
        StartFrom::Snapshot,
    )
    .await;
    assert!(
        matches!(again, Err(ReplicationError::Fenced { .. })),
        "{:?}",
        again.map(|r| r.stats())
    );
    let (g2, _) = stores.registry.record(2).await.unwrap().unwrap();
    assert_eq!(
        g2.sealed_through, None,
        "A did not seal B's live generation"
    );
    tracing::info!("B's later synced commits survive the next promotion");
    for tx in 200..210 {
        write_tx(&b_conn, tx);
    }
    let pb2 = b_rep.sync().await.unwrap();
    let c_replica = dir.path().join("c-replica.db");
    let c = Standby::start(&c_replica, standby_config(), stores.clone())
        .await
        .unwrap();
    assert_eq!(c.wait_for(pb2, Duration::from_secs(20)).await, Some(pb2));
    b_rep.stop().await.unwrap();
    let c_db = dir.path().join("c.db");
    let c_rep = c
        .promote(
            &c_db,
            "c",
            fast_config(),
            ReplicationTerm::unfenced(cluster_core::ids::FencingToken::new(
                b_won.token.get() + 100,
            )),
            None,
        )
        .await
        .unwrap();
    assert_eq!(rows(&c_db), rows(&b_db));
    assert!(rows(&c_db).iter().any(|(tx, _)| *tx == 209));
    c_rep.stop().await.unwrap();
}
