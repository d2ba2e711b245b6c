//! `/health`, `/ready`, `/status` and `/metrics` over HTTP, and the admin API (`/v1`, see `admin`).
//!
//! - `/health`: 200 unless a critical health check fails (503), with every check's report.
//! - `/ready`: 200 once the node is joined under a live session and every app has settled;
//!   503 while starting, during a store outage (no live session) and while leaving.
//! - `/status`: JSON: node, lifecycle state, session deadline, members, apps with roles,
//!   leaders, owned partitions and tokens.
//! - `/metrics`: Prometheus text.

use std::net::SocketAddr;
use std::sync::OnceLock;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

use crate::error::RuntimeError;
use crate::health::HealthStatus;
use crate::platform::Platform;

fn handle() -> &'static OnceLock<Option<PrometheusHandle>> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    &HANDLE
}

/// Installs the process-wide Prometheus recorder once. If the process installed another
/// recorder already, metrics go there and `/metrics` is empty.
pub(crate) fn install_recorder() {
    handle().get_or_init(|| match PrometheusBuilder::new().install_recorder() {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::warn!(error = %e, "another metrics recorder is installed; /metrics stays empty");
            None
        }
    });
}

/// The metrics in Prometheus text format.
pub(crate) fn render_metrics() -> String {
    handle()
        .get()
        .and_then(Option::as_ref)
        .map(PrometheusHandle::render)
        .unwrap_or_default()
}

/// Binds `addr` and serves the endpoints until `stop` fires; returns the bound address.
pub(crate) async fn serve(
    platform: Platform,
    addr: SocketAddr,
    stop: CancellationToken,
) -> Result<SocketAddr, RuntimeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(RuntimeError::Http)?;
    let bound = listener.local_addr().map_err(RuntimeError::Http)?;
    let router = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/status", get(status))
        .route("/metrics", get(metrics_text))
        .merge(crate::admin::routes())
        .with_state(platform);
    tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "http endpoint stopped");
        }
    });
    tracing::info!(%bound, "serving /health /ready /status /metrics and the admin API under /v1");
    Ok(bound)
}

async fn health(State(p): State<Platform>) -> impl IntoResponse {
    let status = p.health().status();
    let code = if status == HealthStatus::Unhealthy {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (
        code,
        Json(serde_json::json!({ "status": status, "checks": p.health().report() })),
    )
}

async fn ready(State(p): State<Platform>) -> impl IntoResponse {
    let ready = p.is_ready() && p.health().status() != HealthStatus::Unhealthy;
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(serde_json::json!({ "ready": ready, "state": p.state() })),
    )
}

async fn status(State(p): State<Platform>) -> impl IntoResponse {
    Json(p.status_json())
}

impl Platform {
    /// What `/status` and `/v1/status` answer.
    pub(crate) fn status_json(&self) -> serde_json::Value {
        let p = self;
        let session = p.inner.sessions.current();
        let members: Vec<_> = p.members().into_values().collect();
        serde_json::json!({
            "platform": p.name().as_str(),
            "node": p.node().as_str(),
            "state": p.state(),
            "ready": p.is_ready(),
            "health": p.health().status(),
            "health_state": p.node_health(),
            "session": session.map(|s| serde_json::json!({
                "lease": s.lease().as_str(),
                "ttl_ms": s.ttl().as_millis() as u64,
                "safe_for_ms": s.safe_until().map(|t| t.saturating_duration_since(coord_client::mono_now()).as_millis() as u64),
            })),
            "members": members,
            "apps": p.app_status(),
        })
    }
}

async fn metrics_text() -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        render_metrics(),
    )
}
