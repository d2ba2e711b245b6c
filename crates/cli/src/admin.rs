//! The admin commands: calls to an agent's `/v1` API. They need only the agent's address and,
//! for changes, the admin token; they never read a store.

use std::time::Duration;

use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use serde_json::Value;

use crate::exit::Failure;

/// The agent address used when none is given.
pub const DEFAULT_ADDR: &str = "http://127.0.0.1:7600";

/// A connection to one agent's admin API.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
    timeout: Duration,
}

impl Client {
    /// A client for the agent at `addr` (`http://host:port` or `host:port`).
    pub fn new(addr: &str, token: Option<String>, timeout: Duration) -> Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let base = if addr.starts_with("http://") || addr.starts_with("https://") {
            addr.trim_end_matches('/').to_owned()
        } else {
            format!("http://{}", addr.trim_end_matches('/'))
        };
        Client {
            base,
            token,
            http: reqwest::Client::new(),
            timeout,
        }
    }

    /// Calls `path`; the answer's JSON, or the failure its status means.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, String)],
    ) -> Result<Value, Failure> {
        let bytes = self.call_raw(method, path, body, headers).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            Failure::Other(format!("{}{path}: the answer is not JSON: {e}", self.base))
        })
    }

    /// Calls `path`; the answer's body.
    pub async fn call_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, String)],
    ) -> Result<Vec<u8>, Failure> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url).timeout(self.timeout);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        for (k, v) in headers {
            request = request.header(*k, v);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                Failure::TimedOut(format!("{url}: no answer within {:?}", self.timeout))
            } else {
                Failure::Unreachable(format!("{url}: {e}"))
            }
        })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    Failure::TimedOut(format!("{url}: no answer within {:?}", self.timeout))
                } else {
                    Failure::Unreachable(format!("{url}: {e}"))
                }
            })?
            .to_vec();
        if status.is_success() {
            return Ok(bytes);
        }
        let message = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        let text = format!("{status}: {message}");
        Err(match status.as_u16() {
            401 | 403 | 409 => Failure::Refused(text),
            400 => Failure::Config(text),
            502 | 503 => Failure::Unreachable(text),
            504 => Failure::TimedOut(text),
            _ => Failure::Other(text),
        })
    }

    /// `GET path` as JSON.
    pub async fn get(&self, path: &str) -> Result<Value, Failure> {
        self.call(reqwest::Method::GET, path, None, &[]).await
    }

    /// `POST path` as JSON.
    pub async fn post(&self, path: &str) -> Result<Value, Failure> {
        self.call(reqwest::Method::POST, path, None, &[]).await
    }
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY).set_header(header.to_vec());
    t
}

/// A JSON value as a table cell (`-` for null).
pub fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The apps of a `/v1/apps` or `/v1/status` answer as a table.
pub fn apps_table(apps: &Value) -> String {
    let mut t = table(&[
        "app",
        "mode",
        "role",
        "leader",
        "token",
        "partitions",
        "service",
    ]);
    for a in apps.as_array().into_iter().flatten() {
        let partitions = a["partitions"]
            .as_object()
            .map_or("-".into(), |p| p.len().to_string());
        let service = match &a["backend"] {
            Value::Null => "-".into(),
            b => format!(
                "{} {} ({} restarts)",
                text(&b["kind"]),
                text(&b["state"]["state"]),
                text(&b["restarts"])
            ),
        };
        t.add_row(vec![
            text(&a["app"]),
            text(&a["mode"]),
            text(&a["role"]["role"]),
            text(&a["leader"]["node"]),
            text(&a["leader"]["token"]),
            partitions,
            service,
        ]);
    }
    t.to_string()
}

/// The members of a `/v1/nodes` or `/v1/status` answer as a table.
pub fn nodes_table(nodes: &Value) -> String {
    let mut t = table(&["node", "address", "labels", "apps"]);
    for n in nodes.as_array().into_iter().flatten() {
        let labels = n["labels"]
            .as_object()
            .map(|l| {
                l.iter()
                    .map(|(k, v)| format!("{k}={}", text(v)))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        t.add_row(vec![
            text(&n["node"]),
            text(&n["address"]),
            labels,
            text(&n["metadata"]["apps"]),
        ]);
    }
    t.to_string()
}

/// A `/v1/status` answer for people.
pub fn status_text(s: &Value) -> String {
    let mut out = format!(
        "node {} of platform {}: {}, {}{}\n",
        text(&s["node"]),
        text(&s["platform"]),
        text(&s["state"]),
        text(&s["health"]),
        match s["session"]["safe_for_ms"].as_u64() {
            Some(ms) => format!(", lease safe for {ms} ms"),
            None => ", no session".into(),
        }
    );
    out.push_str(&nodes_table(&s["members"]));
    out.push('\n');
    out.push_str(&apps_table(&s["apps"]));
    out
}

/// A `/v1/health` answer for people.
pub fn health_text(h: &Value) -> String {
    let mut t = table(&["check", "ok", "critical", "failures", "last error"]);
    for c in h["checks"].as_array().into_iter().flatten() {
        let last_error = c["history"]
            .as_array()
            .and_then(|h| h.last())
            .map_or("-".into(), |r| text(&r["error"]));
        t.add_row(vec![
            text(&c["name"]),
            text(&c["ok"]),
            text(&c["critical"]),
            text(&c["consecutive_failures"]),
            last_error,
        ]);
    }
    if h["checks"].as_array().is_none_or(|c| c.is_empty()) {
        return format!(
            "node {}: {} (no health checks)",
            text(&h["node"]),
            text(&h["status"])
        );
    }
    format!("node {}: {}\n{t}", text(&h["node"]), text(&h["status"]))
}

/// Snapshots of a `/v1/apps/{app}/snapshots` answer as a table.
pub fn snapshots_table(s: &Value) -> String {
    let mut t = table(&["id", "position", "size", "created (unix ms)"]);
    for m in s["snapshots"].as_array().into_iter().flatten() {
        t.add_row(vec![
            text(&m["id"]),
            format!(
                "{}/{}",
                text(&m["position"]["generation"]),
                text(&m["position"]["index"])
            ),
            text(&m["size"]),
            text(&m["created_at_ms"]),
        ]);
    }
    t.to_string()
}
