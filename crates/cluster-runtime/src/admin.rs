//! The admin API under `/v1`, on the platform's HTTP server: JSON over the same runtime calls
//! library users make.
//!
//! | method and path | what |
//! | --- | --- |
//! | `GET /v1/status` | this node, its session, members and apps (as `/status`) |
//! | `GET /v1/health` | this node's health checks |
//! | `GET /v1/nodes`, `GET /v1/nodes/{id}` | live members |
//! | `GET /v1/apps`, `GET /v1/apps/{app}` | apps as this node sees them: role, leader, token, partitions, service |
//! | `POST /v1/apps/{app}/stepdown` | the leader steps down (the next candidate takes the term) |
//! | `GET /v1/apps/{app}/kv/{key}` | a value of the app's key space (the body, or 404) |
//! | `PUT /v1/apps/{app}/kv/{key}` | a fenced write: `X-Cluster-Token` must be the current term's token (409 naming both tokens otherwise) |
//! | `POST /v1/apps/{app}/db/sync` | returns once every commit so far is acknowledged by the object store |
//! | `GET /v1/apps/{app}/snapshots`, `POST` (create), `DELETE .../{id}` | the app's database snapshots |
//!
//! Mutating calls need `Authorization: Bearer TOKEN` (the platform's admin token), else 401.
//! A call the leader must serve (stepdown, a fenced write, sync, creating a snapshot) made on
//! another node is forwarded to the leader's member address once; every answer names the node
//! that acted (`node`). Errors are `{"error": "..."}` with a status that says what kind.

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use cluster_core::ids::FencingToken;
use serde_json::json;

use crate::platform::{Platform, RegisteredApp};

/// The header a forwarded call carries, so it is forwarded once at most.
const FORWARDED: &str = "x-cluster-forwarded";
/// The header carrying the caller's term token on a fenced write.
pub(crate) const TOKEN_HEADER: &str = "x-cluster-token";

/// The `/v1` routes.
pub(crate) fn routes() -> Router<Platform> {
    let router = Router::new()
        .route("/v1/status", get(status))
        .route("/v1/health", get(health))
        .route("/v1/nodes", get(nodes))
        .route("/v1/nodes/{id}", get(node))
        .route("/v1/apps", get(apps))
        .route("/v1/apps/{app}", get(app))
        .route("/v1/apps/{app}/stepdown", post(stepdown))
        .route("/v1/apps/{app}/kv/{*key}", get(kv_get).put(kv_put));
    #[cfg(feature = "sqlite")]
    let router = router
        .route("/v1/apps/{app}/db/sync", post(db::sync))
        .route(
            "/v1/apps/{app}/snapshots",
            get(db::snapshots_list).post(db::snapshots_create),
        )
        .route(
            "/v1/apps/{app}/snapshots/{id}",
            axum::routing::delete(db::snapshots_delete),
        )
        .route(
            "/v1/apps/{app}/snapshots/{id}/database",
            get(db::snapshot_database),
        );
    router
}

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (code, Json(json!({ "error": message.into() }))).into_response()
}

/// A refused call: its status and why, answered as `{"error": ...}`.
struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        error(self.0, self.1)
    }
}

fn authorized(p: &Platform, headers: &HeaderMap) -> Result<(), Refusal> {
    let Some(expected) = p.admin_token() else {
        return Err(Refusal(
            StatusCode::UNAUTHORIZED,
            "this node has no admin token: mutating calls are refused".into(),
        ));
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(t) if constant_time_eq(t.as_bytes(), expected.as_bytes()) => Ok(()),
        Some(_) => Err(Refusal(
            StatusCode::UNAUTHORIZED,
            "wrong admin token".into(),
        )),
        None => Err(Refusal(
            StatusCode::UNAUTHORIZED,
            "this call needs Authorization: Bearer <admin token>".into(),
        )),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn find(p: &Platform, name: &str) -> Result<std::sync::Arc<RegisteredApp>, Refusal> {
    p.inner
        .registered_apps()
        .into_iter()
        .find(|a| a.app.name.as_str() == name)
        .ok_or_else(|| {
            Refusal(
                StatusCode::NOT_FOUND,
                format!("no app {name:?} on this node"),
            )
        })
}

async fn status(State(p): State<Platform>) -> Response {
    Json(p.status_json()).into_response()
}

async fn health(State(p): State<Platform>) -> Response {
    Json(json!({
        "node": p.node().as_str(),
        "status": p.health().status(),
        "checks": p.health().report(),
    }))
    .into_response()
}

async fn nodes(State(p): State<Platform>) -> Response {
    Json(json!({ "nodes": p.members().into_values().collect::<Vec<_>>() })).into_response()
}

async fn node(State(p): State<Platform>, Path(id): Path<String>) -> Response {
    match p.members().into_values().find(|m| m.node.as_str() == id) {
        Some(m) => Json(m).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no live node {id:?}")),
    }
}

async fn apps(State(p): State<Platform>) -> Response {
    Json(json!({ "node": p.node().as_str(), "apps": p.app_status() })).into_response()
}

async fn app(State(p): State<Platform>, Path(name): Path<String>) -> Response {
    match p
        .app_status()
        .into_iter()
        .find(|a| a["app"].as_str() == Some(name.as_str()))
    {
        Some(a) => Json(a).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no app {name:?} on this node"),
        ),
    }
}

/// Serves a leader's call here if this node leads `app`, else forwards it to the leader once.
async fn on_leader(
    p: &Platform,
    app: &RegisteredApp,
    method: Method,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Option<Response> {
    if app.election.is_leader() {
        return None;
    }
    if headers.contains_key(FORWARDED) {
        return Some(error(
            StatusCode::CONFLICT,
            format!("{} does not lead {} (any more)", p.node(), app.app.name),
        ));
    }
    let Some(leader) = app.election.leader() else {
        return Some(error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{} has no leader now", app.app.name),
        ));
    };
    let Some(member) = p
        .members()
        .into_values()
        .find(|m| m.node.as_str() == leader.holder)
    else {
        return Some(error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the leader {} has no member record", leader.holder),
        ));
    };
    Some(forward(&member.address, method, path, headers, body).await)
}

async fn forward(
    address: &str,
    method: Method,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let url = format!("http://{address}{path}");
    let mut request = http_client()
        .request(method, &url)
        .header(FORWARDED, "1")
        .timeout(Duration::from_secs(30))
        .body(body);
    for name in [
        axum::http::header::AUTHORIZATION.as_str(),
        axum::http::header::CONTENT_TYPE.as_str(),
        TOKEN_HEADER,
    ] {
        if let Some(v) = headers.get(name) {
            request = request.header(name, v.as_bytes());
        }
    }
    match request.send().await {
        Ok(r) => {
            let code = StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let ctype = r
                .headers()
                .get(axum::http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/json")
                .to_owned();
            let bytes = r.bytes().await.unwrap_or_default();
            (code, [(axum::http::header::CONTENT_TYPE, ctype)], bytes).into_response()
        }
        Err(e) => error(
            StatusCode::BAD_GATEWAY,
            format!("forwarding to the leader at {address}: {e}"),
        ),
    }
}

fn http_client() -> &'static reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        // Forwarding is plain HTTP, but the client needs a TLS provider to be built.
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::new()
    })
}

/// An authorized call on the app `name` that its leader must serve: the app, here on the
/// leader; or the answer to give (refused, or the leader's own when forwarded).
async fn leader_call(
    p: &Platform,
    name: &str,
    method: Method,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<std::sync::Arc<RegisteredApp>, Response> {
    authorized(p, headers).map_err(IntoResponse::into_response)?;
    let app = find(p, name).map_err(IntoResponse::into_response)?;
    match on_leader(p, &app, method, path, headers, body).await {
        Some(answer) => Err(answer),
        None => Ok(app),
    }
}

async fn stepdown(
    State(p): State<Platform>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/v1/apps/{name}/stepdown");
    let app = match leader_call(&p, &name, Method::POST, &path, &headers, Bytes::new()).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let token = app.election.fencing_token();
    match app.election.step_down().await {
        Ok(()) => Json(json!({
            "node": p.node().as_str(),
            "app": name,
            "stepped_down": true,
            "token": token.map(FencingToken::get),
        }))
        .into_response(),
        Err(e) => error(StatusCode::CONFLICT, e.to_string()),
    }
}

async fn kv_get(State(p): State<Platform>, Path((name, key)): Path<(String, String)>) -> Response {
    let app = match find(&p, &name) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    match app.ctx.kv().get(&key).await {
        Ok(Some(v)) => (StatusCode::OK, v).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no key {key:?} in {name}")),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

async fn kv_put(
    State(p): State<Platform>,
    Path((name, key)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(given) = headers
        .get(TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "a fenced write needs X-Cluster-Token: <the term's token>",
        );
    };
    let path = format!("/v1/apps/{name}/kv/{key}");
    let app = match leader_call(&p, &name, Method::PUT, &path, &headers, body.clone()).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let Some(term) = app
        .ctx
        .shared
        .term()
        .filter(|t| t.holds(&app.ctx.shared.sessions))
    else {
        return error(
            StatusCode::CONFLICT,
            format!("{} holds no term of {name} now", p.node()),
        );
    };
    if term.token.get() != given {
        return error(
            StatusCode::CONFLICT,
            format!(
                "stale token: the write carries {given}, the current term's is {}",
                term.token.get()
            ),
        );
    }
    match app
        .ctx
        .kv()
        .fenced(term.fence.clone())
        .put(&key, body.to_vec())
        .await
    {
        Ok(revision) => Json(json!({
            "node": p.node().as_str(),
            "revision": revision.0,
            "token": given,
        }))
        .into_response(),
        Err(e) if matches!(e, cluster_core::coordination::CoordError::StaleToken { .. }) => error(
            StatusCode::CONFLICT,
            format!("stale token: the write carries {given}; the store refused it: {e}"),
        ),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// The database calls, with the `sqlite` feature.
#[cfg(feature = "sqlite")]
mod db {
    use super::*;

    /// An authorized call on the database of the app `name`.
    fn authorized_database(
        p: &Platform,
        headers: &HeaderMap,
        name: &str,
    ) -> Result<std::sync::Arc<crate::sqlite::SqliteRole>, Refusal> {
        authorized(p, headers)?;
        let app = find(p, name)?;
        database(&app, name)
    }

    /// The database of snapshot `id`, restored and verified here, as bytes: what
    /// `cluster snapshot restore --to PATH` writes. Nothing else is touched.
    pub(super) async fn snapshot_database(
        State(p): State<Platform>,
        Path((name, id)): Path<(String, String)>,
        headers: HeaderMap,
    ) -> Response {
        let db = match authorized_database(&p, &headers, &name) {
            Ok(db) => db,
            Err(r) => return r.into_response(),
        };
        let scratch = db.scratch_path(&id);
        let _ = std::fs::remove_file(&scratch);
        let restored = db.snapshots().restore(&id, &scratch).await;
        let answer = match restored {
            Ok(report) => match tokio::fs::read(&scratch).await {
                Ok(bytes) => (
                    StatusCode::OK,
                    [
                        (
                            axum::http::header::CONTENT_TYPE,
                            "application/vnd.sqlite3".to_owned(),
                        ),
                        (
                            axum::http::HeaderName::from_static("x-cluster-position"),
                            format!("{}/{}", report.position.generation, report.position.index),
                        ),
                    ],
                    bytes,
                )
                    .into_response(),
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            },
            Err(e) if e.to_string().contains("not a snapshot id") => {
                error(StatusCode::BAD_REQUEST, e.to_string())
            }
            Err(e) => error(StatusCode::NOT_FOUND, e.to_string()),
        };
        for suffix in ["", "-wal", "-shm"] {
            let mut p = scratch.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(std::path::PathBuf::from(p));
        }
        answer
    }

    /// The app's database on this node.
    fn database(
        app: &RegisteredApp,
        name: &str,
    ) -> Result<std::sync::Arc<crate::sqlite::SqliteRole>, Refusal> {
        app.sqlite
            .get()
            .cloned()
            .ok_or_else(|| Refusal(StatusCode::NOT_FOUND, format!("{name} has no database")))
    }

    pub(super) async fn sync(
        State(p): State<Platform>,
        Path(name): Path<String>,
        headers: HeaderMap,
    ) -> Response {
        let path = format!("/v1/apps/{name}/db/sync");
        let app = match leader_call(&p, &name, Method::POST, &path, &headers, Bytes::new()).await {
            Ok(a) => a,
            Err(r) => return r,
        };
        let Some(primary) = app.sqlite.get().and_then(|d| d.replicator()) else {
            return error(
                StatusCode::CONFLICT,
                format!("{name} has no primary database on this node"),
            );
        };
        match primary.sync().await {
            Ok(position) => {
                Json(json!({ "node": p.node().as_str(), "position": position })).into_response()
            }
            Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        }
    }

    pub(super) async fn snapshots_list(
        State(p): State<Platform>,
        Path(name): Path<String>,
    ) -> Response {
        let app = match find(&p, &name) {
            Ok(a) => a,
            Err(r) => return r.into_response(),
        };
        let db = match database(&app, &name) {
            Ok(db) => db,
            Err(r) => return r.into_response(),
        };
        match db.snapshots().list().await {
            Ok(list) => {
                Json(json!({ "node": p.node().as_str(), "snapshots": list })).into_response()
            }
            Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        }
    }

    pub(super) async fn snapshots_create(
        State(p): State<Platform>,
        Path(name): Path<String>,
        headers: HeaderMap,
    ) -> Response {
        let path = format!("/v1/apps/{name}/snapshots");
        let app = match leader_call(&p, &name, Method::POST, &path, &headers, Bytes::new()).await {
            Ok(a) => a,
            Err(r) => return r,
        };
        let db = match database(&app, &name) {
            Ok(db) => db,
            Err(r) => return r.into_response(),
        };
        match db.snapshots().create().await {
            Ok(m) => Json(json!({ "node": p.node().as_str(), "snapshot": m })).into_response(),
            Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        }
    }

    pub(super) async fn snapshots_delete(
        State(p): State<Platform>,
        Path((name, id)): Path<(String, String)>,
        headers: HeaderMap,
    ) -> Response {
        let db = match authorized_database(&p, &headers, &name) {
            Ok(db) => db,
            Err(r) => return r.into_response(),
        };
        match db.snapshots().delete(&id).await {
            Ok(true) => Json(json!({ "node": p.node().as_str(), "deleted": id })).into_response(),
            Ok(false) => error(StatusCode::NOT_FOUND, format!("no snapshot {id:?}")),
            Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        }
    }
}
