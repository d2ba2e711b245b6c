//! The Consul test server against the behaviour Consul's HTTP API documentation describes: KV
//! with CAS and locks, sessions with TTLs, lock-delay and leader changes, blocking queries,
//! transactions, ACL tokens, datacenters, and outages.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::{ConsulOptions, ConsulServer, eventually};

/// A plain HTTP client for the server's API.
struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// One answer: status, `X-Consul-Index` (if sent) and the body.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    index: Option<u64>,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn http_client() -> reqwest::Client {
    let tls = rustls::ClientConfig::builder_with_provider(
        rustls::crypto::ring::default_provider().into(),
    )
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .unwrap()
}

impl Api {
    fn new(server: &ConsulServer) -> Api {
        Api {
            http: http_client(),
            base: server.url(),
            token: None,
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Answer {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.header("X-Consul-Token", token);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let index = response
            .headers()
            .get("X-Consul-Index")
            .map(|v| v.to_str().unwrap().parse().unwrap());
        let body = response.bytes().await.unwrap().to_vec();
        Answer {
            status,
            index,
            body,
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None).await
    }

    async fn put(&self, path: &str, body: impl Into<Vec<u8>>) -> Answer {
        self.call(Method::PUT, path, Some(body.into())).await
    }

    async fn delete(&self, path: &str) -> Answer {
        self.call(Method::DELETE, path, None).await
    }

    async fn entry(&self, key: &str) -> Option<Value> {
        let answer = self.get(&format!("/v1/kv/{key}")).await;
        match answer.status {
            StatusCode::NOT_FOUND => None,
            StatusCode::OK => Some(answer.json()[0].clone()),
            other => panic!("GET {key}: {other} {}", answer.text()),
        }
    }

    async fn session(&self, body: Value) -> String {
        let answer = self.put("/v1/session/create", body.to_string()).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        answer.json()["ID"].as_str().unwrap().to_owned()
    }

    async fn session_exists(&self, id: &str) -> bool {
        let answer = self.get(&format!("/v1/session/info/{id}")).await;
        assert_eq!(answer.status, StatusCode::OK);
        !answer.json().as_array().unwrap().is_empty()
    }

    async fn txn(&self, ops: Value) -> Answer {
        self.put("/v1/txn", ops.to_string()).await
    }
}

fn fast_options() -> ConsulOptions {
    ConsulOptions {
        session_ttl_min: Duration::from_secs(1),
        ..ConsulOptions::default()
    }
}

fn index_of(entry: &Value, field: &str) -> u64 {
    entry[field].as_u64().unwrap()
}

fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[tokio::test]
async fn kv_cas_listing_and_indexes() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let server = ConsulServer::start(ConsulOptions::default()).unwrap();
    let api = Api::new(&server);

    {
        tracing::info!("a missing key is a 404 that still carries an index");
        let answer = api.get("/v1/kv/app/missing").await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND);
        assert!(answer.index.unwrap() >= 1);
    }
    let created = {
        tracing::info!("cas=0 creates only; a second cas=0 is refused");
        assert_eq!(
            api.put("/v1/kv/app/a?cas=0&flags=7", "one").await.text(),
            "true"
        );
        assert_eq!(api.put("/v1/kv/app/a?cas=0", "two").await.text(), "false");
        let entry = api.entry("app/a").await.unwrap();
        assert_eq!(entry["Value"], b64("one"));
        assert_eq!(entry["Flags"], 7);
        assert_eq!(entry["LockIndex"], 0);
        assert_eq!(
            index_of(&entry, "CreateIndex"),
            index_of(&entry, "ModifyIndex")
        );
        assert!(entry.get("Session").is_none());
        entry
    };
    let modified = {
        tracing::info!("cas=<ModifyIndex> writes once; the stale index is then refused");
        let index = index_of(&created, "ModifyIndex");
        assert_eq!(
            api.put(&format!("/v1/kv/app/a?cas={index}"), "two")
                .await
                .text(),
            "true"
        );
        assert_eq!(
            api.put(&format!("/v1/kv/app/a?cas={index}"), "three")
                .await
                .text(),
            "false"
        );
        let entry = api.entry("app/a").await.unwrap();
        assert_eq!(entry["Value"], b64("two"));
        assert!(index_of(&entry, "ModifyIndex") > index);
        assert_eq!(entry["CreateIndex"], created["CreateIndex"]);
        entry
    };
    {
        tracing::info!("recurse and keys list a prefix in order; the separator cuts keys");
        api.put("/v1/kv/app/b/x", "x").await;
        api.put("/v1/kv/app/b/y", "y").await;
        api.put("/v1/kv/other", "o").await;
        let all = api.get("/v1/kv/app/?recurse").await;
        let all = all.json();
        let keys: Vec<&str> = all
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["Key"].as_str().unwrap())
            .collect();
        assert_eq!(keys, ["app/a", "app/b/x", "app/b/y"]);
        let listed = api.get("/v1/kv/app/?keys&separator=/").await.json();
        assert_eq!(listed, json!(["app/a", "app/b/"]));
        let answer = api.get("/v1/kv/app/?raw").await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND);
        assert_eq!(api.get("/v1/kv/app/a?raw").await.text(), "two");
        assert_eq!(
            api.get("/v1/kv/nothing/?recurse").await.status,
            StatusCode::NOT_FOUND
        );
    }
    {
        tracing::info!("the index header of a read follows the newest write and never falls");
        let before = api.get("/v1/kv/app/a").await.index.unwrap();
        api.put("/v1/kv/app/c", "c").await;
        let after = api.get("/v1/kv/app/a").await.index.unwrap();
        assert!(after > before, "{after} !> {before}");
        let prefix = api.get("/v1/kv/app/b/?recurse").await;
        let newest = prefix
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|e| index_of(e, "ModifyIndex"))
            .max()
            .unwrap();
        assert_eq!(
            prefix.index,
            Some(newest),
            "a prefix read answers with its newest index"
        );
    }
    {
        tracing::info!("DELETE with cas needs the current ModifyIndex");
        let stale = index_of(&created, "ModifyIndex");
        assert_eq!(
            api.delete(&format!("/v1/kv/app/a?cas={stale}"))
                .await
                .text(),
            "false"
        );
        assert!(api.entry("app/a").await.is_some());
        let current = index_of(&modified, "ModifyIndex");
        assert_eq!(
            api.delete(&format!("/v1/kv/app/a?cas={current}"))
                .await
                .text(),
            "true"
        );
        assert!(api.entry("app/a").await.is_none());
        assert_eq!(api.delete("/v1/kv/app/b?recurse").await.text(), "true");
        assert!(api.entry("app/b/x").await.is_none());
        assert!(api.entry("other").await.is_some());
    }
    {
        tracing::info!("values over 512 kB are refused");
        let answer = api.put("/v1/kv/big", vec![b'x'; 512 * 1024 + 1]).await;
        assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    }
}

#[tokio::test]
async fn sessions_ttl_bounds_and_expiry_between_ttl_and_twice_ttl() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let server = ConsulServer::start(ConsulOptions::default()).unwrap();
    let api = Api::new(&server);

    {
        tracing::info!("TTLs outside 10s..86400s are refused with the bounds named");
        for ttl in ["5s", "86401s"] {
            let answer = api
                .put("/v1/session/create", json!({ "TTL": ttl }).to_string())
                .await;
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{ttl}");
            assert!(answer.text().contains("10s"), "{}", answer.text());
        }
    }
    {
        tracing::info!("defaults: release, 15s lock-delay, serfHealth; Checks [] means none");
        let id = api.session(json!({ "TTL": "10s", "Name": "n" })).await;
        let info = api.get(&format!("/v1/session/info/{id}")).await;
        assert!(info.index.is_some());
        let info = &info.json()[0];
        assert_eq!(info["Behavior"], "release");
        assert_eq!(info["LockDelay"], 15_000_000_000u64);
        assert_eq!(info["TTL"], "10s");
        assert_eq!(info["NodeChecks"], json!(["serfHealth"]));
        let id = api
            .session(json!({ "TTL": "10s", "Checks": [], "Behavior": "delete", "LockDelay": "0s" }))
            .await;
        let info = api.get(&format!("/v1/session/info/{id}")).await.json();
        assert_eq!(info[0]["NodeChecks"], json!([]));
        assert_eq!(info[0]["Behavior"], "delete");
        assert_eq!(info[0]["LockDelay"], 0);
        let renewed = api.put(&format!("/v1/session/renew/{id}"), "").await;
        assert_eq!(renewed.status, StatusCode::OK);
        assert_eq!(renewed.json()[0]["TTL"], "10s");
        assert_eq!(
            api.put(&format!("/v1/session/destroy/{id}"), "")
                .await
                .text(),
            "true"
        );
        assert_eq!(
            api.put(&format!("/v1/session/destroy/{id}"), "")
                .await
                .text(),
            "true",
            "idempotent"
        );
        let gone = api.put(&format!("/v1/session/renew/{id}"), "").await;
        assert_eq!(gone.status, StatusCode::NOT_FOUND);
        assert_eq!(
            api.get(&format!("/v1/session/info/{id}")).await.json(),
            json!([])
        );
        assert_eq!(
            api.put("/v1/session/destroy/not-a-uuid", "").await.status,
            StatusCode::BAD_REQUEST
        );
        let unknown_check = api
            .put(
                "/v1/session/create",
                json!({ "Checks": ["web"] }).to_string(),
            )
            .await;
        assert!(!unknown_check.status.is_success());
    }
    drop(server);
    let server = ConsulServer::start(fast_options()).unwrap();
    let api = Api::new(&server);
    {
        tracing::info!("an unrenewed session lives at least its TTL and at most twice it");
        let ttl = Duration::from_secs(1);
        let created = Instant::now();
        let id = api.session(json!({ "TTL": "1s", "Checks": [] })).await;
        tokio::time::sleep(ttl.mul_f64(0.8)).await;
        assert!(api.session_exists(&id).await, "expired before its TTL");
        while api.session_exists(&id).await {
            assert!(
                created.elapsed() < ttl * 2 + Duration::from_secs(1),
                "outlived twice its TTL"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(created.elapsed() >= ttl);
    }
}

#[tokio::test]
async fn acquire_release_lock_index_behaviors_and_lock_delay() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let server = ConsulServer::start(fast_options()).unwrap();
    let api = Api::new(&server);
    let a = api
        .session(json!({ "TTL": "30s", "Checks": [], "LockDelay": "1s" }))
        .await;
    let b = api
        .session(json!({ "TTL": "30s", "Checks": [], "LockDelay": "0s" }))
        .await;
    let flags = 3304740253564472344u64;

    {
        tracing::info!("acquire sets Session and LockIndex; another session is refused");
        assert_eq!(
            api.put(&format!("/v1/kv/l/.lock?acquire={a}&flags={flags}"), "a")
                .await
                .text(),
            "true"
        );
        let entry = api.entry("l/.lock").await.unwrap();
        assert_eq!(entry["Session"], a.as_str());
        assert_eq!(entry["LockIndex"], 1);
        assert_eq!(entry["Flags"], flags);
        assert_eq!(
            api.put(&format!("/v1/kv/l/.lock?acquire={b}"), "b")
                .await
                .text(),
            "false"
        );
        let bogus = "00000000-0000-0000-0000-000000000000";
        let answer = api
            .put(&format!("/v1/kv/l/other?acquire={bogus}"), "x")
            .await;
        assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            answer.text().contains("invalid session"),
            "{}",
            answer.text()
        );
    }
    {
        tracing::info!("a plain write keeps the lock; re-acquire by the holder keeps LockIndex");
        api.put("/v1/kv/l/.lock", "plain").await;
        assert_eq!(api.entry("l/.lock").await.unwrap()["Session"], a.as_str());
        api.put(&format!("/v1/kv/l/.lock?acquire={a}&flags={flags}"), "a2")
            .await;
        assert_eq!(api.entry("l/.lock").await.unwrap()["LockIndex"], 1);
    }
    {
        tracing::info!("release by a non-holder fails; by the holder clears Session only");
        assert_eq!(
            api.put(&format!("/v1/kv/l/.lock?release={b}"), "")
                .await
                .text(),
            "false"
        );
        let held = api.entry("l/.lock").await.unwrap();
        assert_eq!(
            api.put(&format!("/v1/kv/l/.lock?release={a}&flags={flags}"), "")
                .await
                .text(),
            "true"
        );
        let released = api.entry("l/.lock").await.unwrap();
        assert!(released.get("Session").is_none());
        assert_eq!(released["LockIndex"], 1);
        assert!(index_of(&released, "ModifyIndex") > index_of(&held, "ModifyIndex"));
        assert_eq!(
            api.put(&format!("/v1/kv/l/.lock?acquire={b}"), "b")
                .await
                .text(),
            "true"
        );
        assert_eq!(api.entry("l/.lock").await.unwrap()["LockIndex"], 2);
        api.put(&format!("/v1/kv/l/.lock?release={b}"), "").await;
    }
    {
        tracing::info!(
            "invalidation with release: key kept, Session cleared, ModifyIndex bumped, lock-delay blocks"
        );
        assert_eq!(
            api.put(&format!("/v1/kv/l/.lock?acquire={a}"), "a")
                .await
                .text(),
            "true"
        );
        let held = api.entry("l/.lock").await.unwrap();
        api.put(&format!("/v1/session/destroy/{a}"), "").await;
        let released = api.entry("l/.lock").await.unwrap();
        assert!(released.get("Session").is_none());
        assert!(index_of(&released, "ModifyIndex") > index_of(&held, "ModifyIndex"));
        assert_eq!(
            api.put(&format!("/v1/kv/l/.lock?acquire={b}"), "b")
                .await
                .text(),
            "false",
            "lock-delay"
        );
        let txn = api
            .txn(json!([{ "KV": { "Verb": "lock", "Key": "l/.lock", "Session": b } }]))
            .await;
        assert_eq!(txn.status, StatusCode::CONFLICT, "lock-delay in a txn too");
        let started = Instant::now();
        while api
            .put(&format!("/v1/kv/l/.lock?acquire={b}"), "b")
            .await
            .text()
            != "true"
        {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "lock-delay never ended"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    {
        tracing::info!("invalidation with delete: the held key is deleted");
        let d = api
            .session(json!({ "TTL": "30s", "Checks": [], "Behavior": "delete", "LockDelay": "0s" }))
            .await;
        api.put(&format!("/v1/kv/eph?acquire={d}"), "e").await;
        api.put("/v1/kv/plain", "p").await;
        api.put(&format!("/v1/session/destroy/{d}"), "").await;
        assert!(api.entry("eph").await.is_none());
        assert!(api.entry("plain").await.is_some());
    }
}

#[tokio::test]
async fn leader_change_restarts_session_ttls() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let server = ConsulServer::start(fast_options()).unwrap();
    let api = Api::new(&server);
    let id = api.session(json!({ "TTL": "1s", "Checks": [] })).await;
    let created = Instant::now();

    tracing::info!("leader changes every 500ms keep an unrenewed 1s session alive past 2x its TTL");
    while created.elapsed() < Duration::from_secs(3) {
        server.leader_change();
        assert!(
            api.session_exists(&id).await,
            "expired despite leader changes"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tracing::info!("without them it expires");
    let stopped = Instant::now();
    while api.session_exists(&id).await {
        assert!(stopped.elapsed() < Duration::from_secs(4));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn blocking_queries_wake_on_change_or_wait_and_prefix_index_can_go_back() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let server = ConsulServer::start(ConsulOptions::default()).unwrap();
    let api = Api::new(&server);
    api.put("/v1/kv/w/a", "1").await;
    let first = api.get("/v1/kv/w/a").await.index.unwrap();

    {
        tracing::info!("no change: the query answers after wait, same index");
        let started = Instant::now();
        let answer = api.get(&format!("/v1/kv/w/a?index={first}&wait=1s")).await;
        assert!(started.elapsed() >= Duration::from_secs(1));
        assert_eq!(answer.index, Some(first));
    }
    {
        tracing::info!("a write wakes the query with a larger index and the new value");
        let url = format!("/v1/kv/w/?recurse&index={first}&wait=30s");
        let waiter = {
            let api = Api::new(&server);
            tokio::spawn(async move { api.get(&url).await })
        };
        testkit::stays_true_for(
            "answered without a change",
            Duration::from_millis(200),
            || !waiter.is_finished(),
        )
        .await;
        api.put("/v1/kv/w/b", "2").await;
        let answer = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert!(answer.index.unwrap() > first);
        assert_eq!(answer.json().as_array().unwrap().len(), 2);
    }
    {
        tracing::info!("deleting the newest key and reaping tombstones moves a prefix index back");
        let with_b = api.get("/v1/kv/w/?recurse").await.index.unwrap();
        api.delete("/v1/kv/w/b").await;
        let deleted = api.get("/v1/kv/w/?recurse").await.index.unwrap();
        assert!(deleted > with_b, "a tombstone keeps the index up");
        server.reap_tombstones();
        let reaped = api.get("/v1/kv/w/?recurse").await.index.unwrap();
        assert!(reaped < deleted, "{reaped} !< {deleted}");
        assert!(server.index() > deleted, "the raft index itself only grows");
    }
}

#[tokio::test]
async fn transactions_commit_whole_or_roll_back_with_errors() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let server = ConsulServer::start(ConsulOptions::default()).unwrap();
    let api = Api::new(&server);
    let s = api
        .session(json!({ "Checks": [], "LockDelay": "0s" }))
        .await;

    let fence = {
        tracing::info!("lock and set in one transaction; results hold no values for writes");
        let answer = api
            .txn(json!([
                { "KV": { "Verb": "check-not-exists", "Key": "t/fence" } },
                { "KV": { "Verb": "lock", "Key": "t/fence", "Value": b64("me"), "Session": s } },
                { "KV": { "Verb": "set", "Key": "t/data", "Value": b64("v1") } },
            ]))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        let results = answer.json()["Results"].as_array().unwrap().clone();
        assert_eq!(results.len(), 2);
        assert_eq!(results[0]["KV"]["Session"], s.as_str());
        assert_eq!(results[0]["KV"]["Value"], Value::Null);
        assert_eq!(
            results[0]["KV"]["ModifyIndex"], results[1]["KV"]["ModifyIndex"],
            "one index"
        );
        index_of(&results[0]["KV"], "ModifyIndex")
    };
    {
        tracing::info!("check-index and check-session guard a write");
        let answer = api
            .txn(json!([
                { "KV": { "Verb": "check-index", "Key": "t/fence", "Index": fence } },
                { "KV": { "Verb": "check-session", "Key": "t/fence", "Session": s } },
                { "KV": { "Verb": "set", "Key": "t/data", "Value": b64("v2") } },
                { "KV": { "Verb": "get", "Key": "t/data" } },
            ]))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        let results = answer.json()["Results"].as_array().unwrap().clone();
        assert_eq!(results.last().unwrap()["KV"]["Value"], b64("v2"));
    }
    {
        tracing::info!("a failed check rolls everything back and names the failed operations");
        let before = server.index();
        let answer = api
            .txn(json!([
                { "KV": { "Verb": "set", "Key": "t/data", "Value": b64("v3") } },
                { "KV": { "Verb": "check-index", "Key": "t/fence", "Index": fence + 1000 } },
                { "KV": { "Verb": "check-session", "Key": "t/data", "Session": s } },
                { "KV": { "Verb": "cas", "Key": "t/new", "Value": b64("x"), "Index": 5 } },
                { "KV": { "Verb": "delete-cas", "Key": "t/data", "Index": 1 } },
                { "KV": { "Verb": "check-not-exists", "Key": "t/data" } },
                { "KV": { "Verb": "get", "Key": "t/none" } },
            ]))
            .await;
        assert_eq!(answer.status, StatusCode::CONFLICT);
        let body = answer.json();
        assert_eq!(body["Results"], Value::Null);
        let failed: Vec<u64> = body["Errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["OpIndex"].as_u64().unwrap())
            .collect();
        assert_eq!(failed, [1, 2, 3, 4, 5, 6]);
        assert_eq!(
            api.get("/v1/kv/t/data?raw").await.text(),
            "v2",
            "rolled back"
        );
        assert!(api.entry("t/new").await.is_none());
        assert!(
            server.index() > before,
            "a write transaction takes a raft index even when rolled back"
        );
    }
    {
        tracing::info!("unlock, delete and read-only transactions");
        let answer = api
            .txn(json!([
                { "KV": { "Verb": "unlock", "Key": "t/fence", "Session": s } },
                { "KV": { "Verb": "delete-cas", "Key": "t/data", "Index": index_of(&api.entry("t/data").await.unwrap(), "ModifyIndex") } },
            ]))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        assert!(api.entry("t/fence").await.unwrap().get("Session").is_none());
        assert!(api.entry("t/data").await.is_none());
        let before = server.index();
        let read = api
            .txn(json!([{ "KV": { "Verb": "get-tree", "Key": "t/" } }]))
            .await;
        assert_eq!(read.status, StatusCode::OK);
        assert_eq!(
            server.index(),
            before,
            "read-only transactions take no index"
        );
        let too_many: Vec<Value> = (0..129)
            .map(|i| json!({ "KV": { "Verb": "get-or-empty", "Key": format!("k{i}") } }))
            .collect();
        assert_eq!(
            api.txn(Value::Array(too_many)).await.status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }
}

#[tokio::test]
async fn acl_token_and_datacenter_are_enforced() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let server = ConsulServer::start(ConsulOptions {
        acl_token: Some("s3cret".into()),
        ..ConsulOptions::default()
    })
    .unwrap();
    let mut api = Api::new(&server);

    {
        tracing::info!("without the token, or with a wrong one: 403");
        assert_eq!(api.get("/v1/kv/a").await.status, StatusCode::FORBIDDEN);
        assert_eq!(api.put("/v1/kv/a", "x").await.status, StatusCode::FORBIDDEN);
        api.token = Some("wrong".into());
        assert_eq!(
            api.put("/v1/session/create", "{}").await.status,
            StatusCode::FORBIDDEN
        );
    }
    {
        tracing::info!("with it, as a header, a bearer token or a query parameter");
        api.token = Some("s3cret".into());
        assert_eq!(api.put("/v1/kv/a", "x").await.text(), "true");
        let bearer = api
            .http
            .get(format!("{}/v1/kv/a", server.url()))
            .bearer_auth("s3cret")
            .send()
            .await
            .unwrap();
        assert_eq!(bearer.status(), StatusCode::OK);
        api.token = None;
        assert_eq!(
            api.get("/v1/kv/a?token=s3cret").await.status,
            StatusCode::OK
        );
    }
    {
        tracing::info!("another datacenter has no path");
        api.token = Some("s3cret".into());
        assert_eq!(api.get("/v1/kv/a?dc=dc1").await.status, StatusCode::OK);
        let other = api.get("/v1/kv/a?dc=elsewhere").await;
        assert_eq!(other.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(other.text().contains("No path to datacenter"));
    }
}

#[tokio::test]
async fn stop_and_restart_keep_state_and_port() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let mut server = ConsulServer::start(fast_options()).unwrap();
    let api = Api::new(&server);
    api.put("/v1/kv/keep", "me").await;
    let index = api.get("/v1/kv/keep").await.index.unwrap();
    let session = api.session(json!({ "TTL": "1s", "Checks": [] })).await;

    let waiter = {
        let url = format!("{}/v1/kv/keep?index={index}&wait=60s", server.url());
        let http = http_client();
        tokio::spawn(async move { http.get(url).send().await })
    };
    eventually(
        "the blocking query waits at the server",
        Duration::from_secs(5),
        || {
            let waiting = server.blocking_queries();
            async move { waiting == 1 }
        },
    )
    .await;
    {
        tracing::info!("stopped: the port refuses and open blocking queries end");
        server.stop();
        let ended = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert!(ended.is_err(), "the blocking query should fail: {ended:?}");
        let refused = http_client()
            .get(format!("{}/v1/kv/keep", server.url()))
            .send()
            .await;
        assert!(refused.is_err());
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    {
        tracing::info!(
            "restarted on the same port with the same data; sessions survived the outage"
        );
        let addr = server.addr();
        server.restart().await.unwrap();
        assert_eq!(server.addr(), addr);
        assert_eq!(api.get("/v1/kv/keep?raw").await.text(), "me");
        assert!(
            api.session_exists(&session).await,
            "a stopped server expires nothing"
        );
    }
}
