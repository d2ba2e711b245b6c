//! The HTTP plumbing: one request with a deadline, the ACL token and datacenter on every call,
//! Consul's JSON shapes, and the mapping of answers onto the port's errors.
//!
//! Status mapping, decided here once: 200 is success; 404 and 409 are answers the caller reads
//! (missing key or session, rolled-back transaction); 400 and 413 are `BadRequest`; 403 (ACL)
//! and "No path to datacenter" are `BadRequest` (configuration, retrying will not help); an
//! unknown session is `LeaseLost`; every other 5xx, 429, a refused connection and a missed
//! deadline are `Unavailable`, the only retryable error.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use cluster_core::coordination::{CoordError, CoordResult, LeaseId, Operation};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use crate::config::{COMPONENT, ConfigError, ConsulConfig};

/// The flags Consul's own lock (`api.Lock`, `consul lock`) writes on its lock key.
pub(crate) const LOCK_FLAG: u64 = 3_304_740_253_564_472_344;

/// One KV entry as Consul returns it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct KvPair {
    pub(crate) key: String,
    #[serde(default)]
    pub(crate) value: Option<String>,
    #[serde(default)]
    pub(crate) flags: u64,
    #[serde(default)]
    pub(crate) create_index: u64,
    #[serde(default)]
    pub(crate) modify_index: u64,
    #[serde(default)]
    pub(crate) lock_index: u64,
    #[serde(default)]
    pub(crate) session: Option<String>,
}

impl KvPair {
    /// The lock holder, if any (Consul may send an empty string for none).
    pub(crate) fn holder(&self) -> Option<&str> {
        self.session.as_deref().filter(|s| !s.is_empty())
    }

    /// The value, decoded.
    pub(crate) fn bytes(&self) -> Vec<u8> {
        self.value
            .as_deref()
            .and_then(|v| BASE64.decode(v).ok())
            .unwrap_or_default()
    }
}

/// One KV operation of a `/v1/txn` request.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct TxnKv {
    verb: &'static str,
    key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flags: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<String>,
}

#[derive(Debug, Serialize)]
struct TxnOp {
    #[serde(rename = "KV")]
    kv: TxnKv,
}

impl TxnKv {
    fn new(verb: &'static str, key: &str) -> TxnKv {
        TxnKv {
            verb,
            key: key.to_owned(),
            value: None,
            flags: None,
            index: None,
            session: None,
        }
    }

    pub(crate) fn set(key: &str, value: &[u8]) -> TxnKv {
        TxnKv {
            value: Some(BASE64.encode(value)),
            ..TxnKv::new("set", key)
        }
    }

    pub(crate) fn cas(key: &str, value: &[u8], index: u64) -> TxnKv {
        TxnKv {
            value: Some(BASE64.encode(value)),
            index: Some(index),
            ..TxnKv::new("cas", key)
        }
    }

    pub(crate) fn lock(key: &str, value: &[u8], flags: u64, session: &str) -> TxnKv {
        TxnKv {
            value: Some(BASE64.encode(value)),
            flags: Some(flags),
            session: Some(session.to_owned()),
            ..TxnKv::new("lock", key)
        }
    }

    pub(crate) fn unlock(key: &str, value: &[u8], flags: u64, session: &str) -> TxnKv {
        TxnKv {
            value: Some(BASE64.encode(value)),
            flags: Some(flags),
            session: Some(session.to_owned()),
            ..TxnKv::new("unlock", key)
        }
    }

    pub(crate) fn get(key: &str) -> TxnKv {
        TxnKv::new("get", key)
    }

    pub(crate) fn check_index(key: &str, index: u64) -> TxnKv {
        TxnKv {
            index: Some(index),
            ..TxnKv::new("check-index", key)
        }
    }

    pub(crate) fn check_not_exists(key: &str) -> TxnKv {
        TxnKv::new("check-not-exists", key)
    }

    pub(crate) fn delete(key: &str) -> TxnKv {
        TxnKv::new("delete", key)
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TxnResponse {
    #[serde(default)]
    results: Option<Vec<TxnResult>>,
    #[serde(default)]
    errors: Option<Vec<TxnFailure>>,
}

#[derive(Debug, Deserialize)]
struct TxnResult {
    #[serde(rename = "KV")]
    kv: Option<KvPair>,
}

/// Why a transaction was rolled back: the failed operation's position and Consul's message.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct TxnFailure {
    pub(crate) op_index: usize,
    pub(crate) what: String,
}

impl TxnFailure {
    /// Whether the failure names an unknown session (Consul: "invalid session").
    pub(crate) fn invalid_session(&self) -> bool {
        self.what.to_ascii_lowercase().contains("invalid session")
    }
}

/// The outcome of a transaction Consul processed.
#[derive(Debug)]
pub(crate) enum TxnOutcome {
    /// Committed; the KV results (writes come without values).
    Committed(Vec<KvPair>),
    /// Rolled back; what failed.
    RolledBack(Vec<TxnFailure>),
}

impl TxnOutcome {
    /// The last result for `key` (a write's result carries the key's new indexes).
    pub(crate) fn last_for(results: &[KvPair], key: &str) -> Option<KvPair> {
        results.iter().rev().find(|p| p.key == key).cloned()
    }
}

/// A session as Consul returns it (only the fields we read).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct SessionEntry {
    #[serde(rename = "TTL", default)]
    pub(crate) ttl: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct SessionCreated {
    #[serde(rename = "ID")]
    pub(crate) id: String,
}

/// An answer the caller reads: 200, 404 or 409, with `X-Consul-Index` if sent.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) index: Option<u64>,
    pub(crate) body: Bytes,
}

impl Answer {
    pub(crate) fn json<T: serde::de::DeserializeOwned>(&self, op: Operation) -> CoordResult<T> {
        serde_json::from_slice(&self.body).map_err(|e| {
            CoordError::unavailable(
                op,
                Malformed(format!(
                    "{e}: {}",
                    String::from_utf8_lossy(&self.body[..self.body.len().min(200)])
                )),
            )
        })
    }
}

/// An answer that is not what Consul's API documents.
#[derive(Debug, thiserror::Error)]
#[error("malformed answer from Consul: {0}")]
pub(crate) struct Malformed(pub(crate) String);

/// A Consul error answer that is worth retrying (5xx, 429).
#[derive(Debug, thiserror::Error)]
#[error("Consul answered {status}: {message}")]
pub(crate) struct ServerError {
    status: StatusCode,
    message: String,
}

/// The HTTP client of one agent, with the token and datacenter of every call.
#[derive(Debug)]
pub(crate) struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    datacenter: Option<String>,
    pub(crate) call_timeout: Duration,
}

/// A query parameter.
pub(crate) type Param = (&'static str, String);

/// One request: what it is for, where it goes, and how long it may take.
pub(crate) struct Call<'a> {
    /// The port operation, for errors.
    pub(crate) op: Operation,
    pub(crate) method: Method,
    /// The path under `/v1/`.
    pub(crate) path: &'a str,
    pub(crate) params: &'a [Param],
    pub(crate) body: Option<Vec<u8>>,
    /// The session the call acts for, named in a `LeaseLost`.
    pub(crate) lease: Option<&'a LeaseId>,
    /// The deadline, when a blocking query needs longer than the call timeout.
    pub(crate) deadline: Option<Duration>,
}

impl Api {
    /// Builds the client (reads the TLS files; sends nothing).
    pub(crate) fn new(config: &ConsulConfig) -> Result<Api, ConfigError> {
        let tls = crate::tls::client_config(config)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| ConfigError::new(COMPONENT, "address", format!("HTTP client: {e}")))?;
        Ok(Api {
            http,
            base: config.base_url(),
            token: config.token.clone(),
            datacenter: config.datacenter.clone(),
            call_timeout: config.call_timeout,
        })
    }

    /// Sends one request under its deadline.
    pub(crate) async fn send(&self, call: Call<'_>) -> CoordResult<Answer> {
        let Call {
            op,
            method,
            path,
            params,
            body,
            lease,
            deadline,
        } = call;
        let mut url = format!("{}/v1/{path}", self.base);
        let mut separator = '?';
        let dc = self.datacenter.as_ref().map(|dc| ("dc", dc.clone()));
        for (name, value) in params.iter().chain(dc.iter()) {
            url.push(separator);
            separator = '&';
            url.push_str(name);
            if !value.is_empty() {
                url.push('=');
                url.push_str(&encode(value));
            }
        }
        let mut request = self.http.request(method, url);
        if let Some(token) = &self.token {
            request = request.header("X-Consul-Token", token);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let limit = deadline.unwrap_or(self.call_timeout);
        let exchange = async {
            let response = request.send().await?;
            let status = response.status();
            let index = response
                .headers()
                .get("X-Consul-Index")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, index, body))
        };
        let (status, index, body) = match tokio::time::timeout(limit, exchange).await {
            Err(_) => return Err(CoordError::timed_out(op, limit)),
            Ok(Err(e)) => return Err(CoordError::unavailable(op, e)),
            Ok(Ok(answer)) => answer,
        };
        classify(op, lease, status, index, body)
    }

    /// A transaction of KV operations: committed or rolled back.
    pub(crate) async fn txn(
        &self,
        op: Operation,
        ops: Vec<TxnKv>,
        lease: Option<&LeaseId>,
    ) -> CoordResult<TxnOutcome> {
        let ops: Vec<TxnOp> = ops.into_iter().map(|kv| TxnOp { kv }).collect();
        let body = serde_json::to_vec(&ops)
            .map_err(|e| CoordError::bad_request(format!("encoding transaction: {e}")))?;
        let answer = self
            .send(Call {
                op,
                method: Method::PUT,
                path: "txn",
                params: &[],
                body: Some(body),
                lease,
                deadline: None,
            })
            .await?;
        let response: TxnResponse = answer.json(op)?;
        match answer.status {
            StatusCode::OK => Ok(TxnOutcome::Committed(
                response
                    .results
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|r| r.kv)
                    .collect(),
            )),
            StatusCode::CONFLICT => Ok(TxnOutcome::RolledBack(response.errors.unwrap_or_default())),
            other => Err(CoordError::unavailable(
                op,
                Malformed(format!("transaction answered {other}")),
            )),
        }
    }
}

fn classify(
    op: Operation,
    lease: Option<&LeaseId>,
    status: StatusCode,
    index: Option<u64>,
    body: Bytes,
) -> CoordResult<Answer> {
    let message = || String::from_utf8_lossy(&body).trim().to_owned();
    match status {
        StatusCode::OK | StatusCode::NOT_FOUND | StatusCode::CONFLICT => Ok(Answer {
            status,
            index,
            body,
        }),
        StatusCode::FORBIDDEN => Err(CoordError::bad_request(format!(
            "Consul refused the ACL token: {}",
            message()
        ))),
        s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
            let text = message();
            if text.to_ascii_lowercase().contains("invalid session") {
                Err(CoordError::LeaseLost {
                    lease: LeaseId::new(
                        lease.map_or_else(|| "unknown".to_owned(), ToString::to_string),
                    ),
                })
            } else if text.contains("No path to datacenter") {
                Err(CoordError::bad_request(format!("Consul: {text}")))
            } else {
                Err(CoordError::unavailable(
                    op,
                    ServerError {
                        status,
                        message: text,
                    },
                ))
            }
        }
        _ => Err(CoordError::bad_request(format!(
            "Consul answered {status}: {}",
            message()
        ))),
    }
}

/// Percent-encodes a query value (ids, numbers and durations pass unchanged).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Shared handle to the client.
pub(crate) type SharedApi = Arc<Api>;

/// Parses a Go duration as Consul writes TTLs ("10s", "1m30s", "1.5s").
pub(crate) fn parse_go_duration(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let number: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[u..];
        total += number * unit;
    }
    Duration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cluster_core::error::Retryable;

    #[test]
    fn ttls_parse_as_go_durations() {
        assert_eq!(parse_go_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration(""), None);
        assert_eq!(parse_go_duration("10"), None);
    }

    #[test]
    fn statuses_map_to_port_errors() {
        let lease = LeaseId::new("s");
        let err = |status, body: &str| {
            classify(
                Operation::Write,
                Some(&lease),
                status,
                None,
                Bytes::from(body.to_owned()),
            )
            .unwrap_err()
        };
        assert!(err(StatusCode::INTERNAL_SERVER_ERROR, "No cluster leader").is_retryable());
        assert!(err(StatusCode::TOO_MANY_REQUESTS, "slow down").is_retryable());
        assert!(matches!(
            err(StatusCode::INTERNAL_SERVER_ERROR, "invalid session \"s\""),
            CoordError::LeaseLost { .. }
        ));
        assert!(matches!(
            err(StatusCode::FORBIDDEN, "Permission denied"),
            CoordError::BadRequest { .. }
        ));
        assert!(matches!(
            err(StatusCode::INTERNAL_SERVER_ERROR, "No path to datacenter"),
            CoordError::BadRequest { .. }
        ));
        assert!(matches!(
            err(StatusCode::BAD_REQUEST, "bad"),
            CoordError::BadRequest { .. }
        ));
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
    }
}
