//! The demo's service: a ledger over the app's replicated SQLite database, run by a `cluster`
//! agent's process backend while its node leads the `ledger` app.
//!
//! - `POST /entries` with `{"amount": N}` inserts an entry and answers only once the agent's
//!   `db/sync` says every commit so far is acknowledged by the object store (sync mode): an
//!   answered entry survives the leader's death.
//! - `GET /sum` answers `{"count": C, "sum": S, "node": ..., "token": ...}`.
//!
//! Its environment comes from the agent: `CLUSTER_DB`, `CLUSTER_AGENT_URL`, `CLUSTER_APP`,
//! `CLUSTER_NODE`, `CLUSTER_TOKEN` and `CLUSTER_TOKEN_FILE`; `LEDGER_ADDR` from the app's
//! config.

use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::json;

struct Ledger {
    db: Mutex<rusqlite::Connection>,
    http: reqwest::Client,
    sync_url: String,
    admin_token: String,
    node: String,
    token: u64,
}

fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set (run me under a cluster agent)"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let addr = env("LEDGER_ADDR")?;
    let path = env("CLUSTER_DB")?;
    let agent = env("CLUSTER_AGENT_URL")?;
    let app = env("CLUSTER_APP")?;
    let admin_token = std::fs::read_to_string(env("CLUSTER_TOKEN_FILE")?)
        .context("reading the agent's admin token")?
        .trim()
        .to_owned();
    let db = rusqlite::Connection::open(&path).with_context(|| format!("opening {path}"))?;
    db.busy_timeout(std::time::Duration::from_secs(5))?;
    db.pragma_update(None, "journal_mode", "WAL")?;
    db.execute(
        "CREATE TABLE IF NOT EXISTS entries (id INTEGER PRIMARY KEY AUTOINCREMENT, amount INTEGER NOT NULL, node TEXT NOT NULL, term INTEGER NOT NULL)",
        [],
    )?;
    let ledger = Arc::new(Ledger {
        db: Mutex::new(db),
        http: reqwest::Client::new(),
        sync_url: format!("{agent}/v1/apps/{app}/db/sync"),
        admin_token,
        node: env("CLUSTER_NODE")?,
        token: env("CLUSTER_TOKEN")?.parse().context("CLUSTER_TOKEN")?,
    });
    let router = axum::Router::new()
        .route("/entries", post(add))
        .route("/sum", get(sum))
        .with_state(ledger);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    println!("ledger serving on {addr}, database {path}");
    axum::serve(listener, router).await?;
    Ok(())
}

async fn add(
    State(l): State<Arc<Ledger>>,
    Json(body): Json<serde_json::Value>,
) -> impl IntoResponse {
    let Some(amount) = body["amount"].as_i64() else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "amount must be an integer"})),
        );
    };
    let id = {
        let db = l.db.lock().unwrap_or_else(|p| p.into_inner());
        match db.execute(
            "INSERT INTO entries (amount, node, term) VALUES (?1, ?2, ?3)",
            rusqlite::params![amount, l.node, l.token as i64],
        ) {
            Ok(_) => db.last_insert_rowid(),
            Err(e) => {
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(json!({"error": e.to_string()})),
                );
            }
        }
    };
    // Acknowledged only once the commit is in the object store.
    let synced = l
        .http
        .post(&l.sync_url)
        .bearer_auth(&l.admin_token)
        .send()
        .await
        .map(|r| r.status().is_success());
    match synced {
        Ok(true) => (StatusCode::OK, Json(json!({"id": id, "node": l.node}))),
        Ok(false) | Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "the commit is not acknowledged; retry"})),
        ),
    }
}

async fn sum(State(l): State<Arc<Ledger>>) -> impl IntoResponse {
    let db = l.db.lock().unwrap_or_else(|p| p.into_inner());
    let row = db.query_row(
        "SELECT count(*), coalesce(sum(amount), 0) FROM entries",
        [],
        |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
    );
    match row {
        Ok((count, sum)) => (
            StatusCode::OK,
            Json(json!({"count": count, "sum": sum, "node": l.node, "token": l.token})),
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": e.to_string()})),
        ),
    }
}
