//! What is particular to Consul, beyond the contract suite: the lock layout shared with
//! `consul lock`, lock-delay, watches that resync when Consul's index goes backwards, session
//! TTL minimums, ACL tokens and datacenters. Against testkit's Consul test server.

use cluster_core::error::Retryable;
use std::time::Duration;

use cluster_core::coordination::{
    CoordError, ElectionStore, Expect, KeyPrefix, KvStore, LeaseStore, WatchEvent, WatchStart,
    WatchStore, WatchTarget,
};
use cluster_core::naming::NamespaceKind;
use coord_consul::{ConsulConfig, ConsulCoordinator};
use futures::StreamExt;
use testkit::coordination::{fresh_namespace, key};
use testkit::{ConsulOptions, ConsulServer};

/// The flags of Consul's own lock key.
const LOCK_FLAG: u64 = 3_304_740_253_564_472_344;

fn fast_server(options: ConsulOptions) -> ConsulServer {
    ConsulServer::start(ConsulOptions {
        session_ttl_min: Duration::from_secs(1),
        ..options
    })
    .unwrap()
}

fn config(server: &ConsulServer) -> ConsulConfig {
    ConsulConfig {
        session_ttl_min: Duration::from_secs(1),
        lock_delay: Duration::from_secs(1),
        lock_delay_retry: Duration::from_millis(100),
        call_timeout: Duration::from_secs(1),
        watch_wait: Duration::from_secs(1),
        ..ConsulConfig::new(server.addr().to_string())
    }
}

/// A raw Consul client, standing in for `consul lock` and for inspecting keys.
struct Raw {
    http: reqwest::Client,
    base: String,
}

impl Raw {
    fn new(server: &ConsulServer) -> Raw {
        let tls = rustls::ClientConfig::builder_with_provider(
            rustls::crypto::ring::default_provider().into(),
        )
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        Raw {
            http: reqwest::Client::builder()
                .tls_backend_preconfigured(tls)
                .build()
                .unwrap(),
            base: server.url(),
        }
    }

    async fn put(&self, path: &str, body: &str) -> String {
        let response = self
            .http
            .put(format!("{}/v1/{path}", self.base))
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        response.text().await.unwrap()
    }

    async fn entry(&self, key: &str) -> Option<serde_json::Value> {
        let response = self
            .http
            .get(format!("{}/v1/kv/{key}", self.base))
            .send()
            .await
            .unwrap();
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return None;
        }
        let list: serde_json::Value = response.json().await.unwrap();
        Some(list[0].clone())
    }

    /// A session as `consul lock` creates one (default checks, release behavior).
    async fn session(&self) -> String {
        let created = self
            .put("session/create", r#"{"TTL":"30s","Checks":[]}"#)
            .await;
        let created: serde_json::Value = serde_json::from_str(&created).unwrap();
        created["ID"].as_str().unwrap().to_owned()
    }
}

#[tokio::test]
async fn elections_use_consuls_lock_layout_and_contend_with_consul_lock() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let server = fast_server(ConsulOptions::default());
    let coord = ConsulCoordinator::new(config(&server)).unwrap();
    let raw = Raw::new(&server);
    let election = key(&fresh_namespace(NamespaceKind::Election), "leader");
    let lock_path = format!("{}/.lock", election.path().trim_start_matches('/'));
    let lease = coord.grant_lease(Duration::from_secs(5)).await.unwrap();

    let term = {
        tracing::info!(
            "our term is the key {{name}}/.lock, with Consul's lock flags and our session"
        );
        let term = coord
            .campaign(&election, "node-a", &lease.id)
            .await
            .unwrap();
        let entry = raw.entry(&lock_path).await.expect("lock key written");
        assert_eq!(entry["Flags"], LOCK_FLAG);
        assert_eq!(entry["Session"], lease.id.as_str());
        assert_eq!(
            entry["ModifyIndex"],
            term.token.get(),
            "the token is the ModifyIndex"
        );
        term
    };
    let foreign = raw.session().await;
    {
        tracing::info!("a `consul lock` contender cannot acquire while we hold it");
        let acquired = raw
            .put(
                &format!("kv/{lock_path}?acquire={foreign}&flags={LOCK_FLAG}"),
                "",
            )
            .await;
        assert_eq!(acquired, "false");
        coord.resign(&term).await.unwrap();
        assert!(coord.leader(&election).await.unwrap().is_none());
    }
    {
        tracing::info!("when it holds the lock, our campaign waits until it releases");
        let acquired = raw
            .put(
                &format!("kv/{lock_path}?acquire={foreign}&flags={LOCK_FLAG}"),
                "consul-lock",
            )
            .await;
        assert_eq!(acquired, "true");
        assert_eq!(
            coord.leader(&election).await.unwrap().unwrap().holder,
            "consul-lock"
        );
        let waiting = {
            let (coord, election, lease) = (coord.clone(), election.clone(), lease.id.clone());
            tokio::spawn(async move { coord.campaign(&election, "node-a", &lease).await })
        };
        testkit::stays_true_for(
            "led while consul lock held the key",
            Duration::from_millis(300),
            || !waiting.is_finished(),
        )
        .await;
        raw.put(
            &format!("kv/{lock_path}?release={foreign}&flags={LOCK_FLAG}"),
            "",
        )
        .await;
        let next = tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("campaign wins after the release")
            .unwrap()
            .unwrap();
        assert!(next.token > term.token);
    }
}

#[tokio::test]
async fn lock_delay_holds_back_the_next_acquirer_after_a_session_ends() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let server = fast_server(ConsulOptions::default());
    let coord = ConsulCoordinator::new(config(&server)).unwrap();
    let raw = Raw::new(&server);
    let election = key(&fresh_namespace(NamespaceKind::Election), "leader");
    let lock_path = format!("{}/.lock", election.path().trim_start_matches('/'));
    let a = coord.grant_lease(Duration::from_secs(5)).await.unwrap();
    let b = coord.grant_lease(Duration::from_secs(5)).await.unwrap();
    let term_a = coord.campaign(&election, "a", &a.id).await.unwrap();

    {
        tracing::info!(
            "a's session ends: its lock key goes, and an acquire right after is refused"
        );
        coord.revoke_lease(&a.id).await.unwrap();
        assert!(raw.entry(&lock_path).await.is_none(), "behavior delete");
        let refused = raw
            .put(
                &format!("kv/{lock_path}?acquire={}&flags={LOCK_FLAG}", b.id),
                "b",
            )
            .await;
        assert_eq!(refused, "false", "lock-delay");
    }
    {
        tracing::info!("b's campaign waits the lock-delay out and leads with a larger token");
        let term_b = tokio::time::timeout(
            Duration::from_secs(10),
            coord.campaign(&election, "b", &b.id),
        )
        .await
        .expect("b leads once the lock-delay passed")
        .unwrap();
        assert!(term_b.token > term_a.token);
    }
}

#[tokio::test]
async fn watches_resync_with_a_snapshot_when_the_index_goes_backwards() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let server = fast_server(ConsulOptions::default());
    let coord = ConsulCoordinator::new(config(&server)).unwrap();
    let ns = fresh_namespace(NamespaceKind::Kv);
    coord
        .put(&key(&ns, "a"), b"1".to_vec(), Expect::Any, None)
        .await
        .unwrap();
    coord
        .put(&key(&ns, "b"), b"2".to_vec(), Expect::Any, None)
        .await
        .unwrap();
    coord.delete(&key(&ns, "b"), Expect::Any).await.unwrap();
    let mut watch = coord
        .watch(
            WatchTarget::Prefix(KeyPrefix::all(ns.clone())),
            WatchStart::Now,
        )
        .await
        .unwrap();
    let before = match watch.next().await.unwrap().unwrap() {
        WatchEvent::Snapshot { entries, revision } => {
            assert_eq!(entries.len(), 1);
            revision
        }
        other => panic!("expected a snapshot, got {other:?}"),
    };
    {
        tracing::info!(
            "tombstones reaped: the prefix index falls; the watch answers with a new snapshot"
        );
        server.reap_tombstones();
        let event = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("the watch notices at its next wait timeout")
            .unwrap()
            .unwrap();
        match event {
            WatchEvent::Snapshot { entries, revision } => {
                assert!(revision < before, "{revision} !< {before}");
                assert_eq!(entries.len(), 1);
                assert_eq!(entries[0].key.name(), "a");
            }
            other => panic!("expected a resync snapshot, got {other:?}"),
        }
    }
    {
        tracing::info!("and keeps delivering changes after it");
        let rev = coord
            .put(&key(&ns, "c"), b"3".to_vec(), Expect::Any, None)
            .await
            .unwrap();
        let event = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(event.revision(), rev);
    }
}

#[tokio::test]
async fn sessions_are_ttl_only_with_delete_behavior_and_at_least_the_minimum_ttl() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let server = ConsulServer::start(ConsulOptions::default()).unwrap();
    let coord = ConsulCoordinator::new(ConsulConfig::new(server.url())).unwrap();
    let raw = Raw::new(&server);

    tracing::info!("a 2 s TTL is raised to Consul's 10 s minimum; no health checks");
    let grant = coord.grant_lease(Duration::from_secs(2)).await.unwrap();
    assert_eq!(grant.ttl, Duration::from_secs(10));
    assert_eq!(coord.renew_lease(&grant.id).await.unwrap(), grant.ttl);
    let info: serde_json::Value = raw
        .http
        .get(format!("{}/v1/session/info/{}", server.url(), grant.id))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info[0]["NodeChecks"], serde_json::json!([]));
    assert_eq!(info[0]["Behavior"], "delete");
    assert_eq!(info[0]["LockDelay"], 15_000_000_000u64, "Consul's default");
    coord.revoke_lease(&grant.id).await.unwrap();
    let err = coord.renew_lease(&grant.id).await.unwrap_err();
    assert!(matches!(err, CoordError::LeaseLost { .. }), "{err:?}");
}

#[tokio::test]
async fn acl_token_and_datacenter_are_sent_and_refusals_are_not_retryable() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let server = fast_server(ConsulOptions {
        acl_token: Some("s3cret".into()),
        ..ConsulOptions::default()
    });
    let k = key(&fresh_namespace(NamespaceKind::Kv), "k");
    {
        tracing::info!("with the token and the right datacenter, calls work");
        let coord = ConsulCoordinator::new(ConsulConfig {
            token: Some("s3cret".into()),
            datacenter: Some("dc1".into()),
            ..config(&server)
        })
        .unwrap();
        coord
            .put(&k, b"v".to_vec(), Expect::Any, None)
            .await
            .unwrap();
        let lease = coord.grant_lease(Duration::from_secs(2)).await.unwrap();
        coord.renew_lease(&lease.id).await.unwrap();
    }
    {
        tracing::info!("without the token: a bad request, not an outage");
        let coord = ConsulCoordinator::new(config(&server)).unwrap();
        let err = coord.get(&k).await.unwrap_err();
        assert!(matches!(err, CoordError::BadRequest { .. }), "{err:?}");
        assert!(!err.is_retryable());
    }
    {
        tracing::info!("another datacenter: a bad request naming it");
        let coord = ConsulCoordinator::new(ConsulConfig {
            token: Some("s3cret".into()),
            datacenter: Some("dc9".into()),
            ..config(&server)
        })
        .unwrap();
        let err = coord.get(&k).await.unwrap_err();
        assert!(err.to_string().contains("datacenter"), "{err}");
        assert!(!err.is_retryable());
    }
}
