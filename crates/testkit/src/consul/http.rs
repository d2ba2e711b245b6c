//! The HTTP face of the Consul test server: routing, query parameters, ACL tokens, datacenter
//! checks, blocking queries and JSON in the shapes Consul's API documents.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::ConsulOptions;
use super::duration;
use super::store::{
    Behavior, Entry, KvOp, MAX_SESSION_TTL, SERF_HEALTH, Session, SessionRequest, Store, is_uuid,
};

/// Values may not be larger than this (512 kB).
const MAX_VALUE_SIZE: usize = 512 * 1024;

/// A transaction may hold at most this many operations.
const MAX_TXN_OPS: usize = 128;

/// The default and the longest `wait` of a blocking query.
const DEFAULT_WAIT: Duration = Duration::from_secs(300);
const MAX_WAIT: Duration = Duration::from_secs(600);

/// What the server's tasks share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) store: std::sync::Mutex<Store>,
    /// The raft index after every change; blocking queries wait on it.
    pub(crate) changes: watch::Sender<u64>,
    pub(crate) options: ConsulOptions,
    /// Whether the server answers (sessions do not expire while it is stopped).
    pub(crate) serving: AtomicBool,
    /// Blocking queries waiting for a change now (what a test waits on instead of a sleep).
    pub(crate) blocked: AtomicUsize,
}

/// Counts a blocking query as waiting for as long as it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Shared {
    /// Runs `f` on the store and wakes blocking queries if the index moved.
    pub(crate) fn with_store<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        let mut store = match self.store.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let before = store.raft_index();
        let out = f(&mut store);
        let after = store.raft_index();
        drop(store);
        if after != before {
            self.changes.send_replace(after);
        }
        out
    }

    pub(crate) fn serving(&self) -> bool {
        self.serving.load(Ordering::SeqCst)
    }
}

/// Accepts connections until `cancel` fires; open connections end with it too.
pub(crate) async fn serve(shared: Arc<Shared>, listener: TcpListener, cancel: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        let (shared, cancel) = (shared.clone(), cancel.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(shared.clone(), req));
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                _ = cancel.cancelled() => {}
            }
        });
    }
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Reply {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A request refused: the status and the message Consul would send.
struct Refusal {
    status: StatusCode,
    message: String,
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
    }
}

fn json_reply(status: StatusCode, value: &Value) -> Reply {
    reply(status, value.to_string())
}

/// A read's answer: the `X-Consul-*` headers every blocking endpoint sends.
fn with_index(mut response: Reply, index: u64) -> Reply {
    let headers = response.headers_mut();
    headers.insert("X-Consul-Index", HeaderValue::from(index));
    headers.insert("X-Consul-KnownLeader", HeaderValue::from_static("true"));
    headers.insert("X-Consul-LastContact", HeaderValue::from_static("0"));
    response
}

/// The query string, percent-decoded, in order.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: Option<&str>) -> Query {
        Query(
            raw.unwrap_or("")
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|pair| match pair.split_once('=') {
                    Some((k, v)) => (decode(k), decode(v)),
                    None => (decode(pair), String::new()),
                })
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    fn number(&self, name: &str) -> Result<Option<u64>, Refusal> {
        match self.get(name) {
            None => Ok(None),
            Some(text) => text.parse().map(Some).map_err(|_| {
                refuse(
                    StatusCode::BAD_REQUEST,
                    format!("Invalid {name} value: {text:?}"),
                )
            }),
        }
    }
}

fn decode(text: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&hi), Some(&lo)) => hex(hi).zip(hex(lo)).map(|(h, l)| h * 16 + l),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, b) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Reply, Infallible> {
    Ok(route(&shared, req)
        .await
        .unwrap_or_else(|refusal| reply(refusal.status, refusal.message)))
}

async fn route(shared: &Arc<Shared>, req: Request<Incoming>) -> Result<Reply, Refusal> {
    let method = req.method().clone();
    let path = decode(req.uri().path());
    let query = Query::parse(req.uri().query());
    if path == "/v1/status/leader" {
        return Ok(reply(StatusCode::OK, "\"127.0.0.1:8300\""));
    }
    check_token(shared, &req, &query)?;
    if let Some(dc) = query.get("dc")
        && !dc.is_empty()
        && dc != shared.options.datacenter
    {
        return Err(refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "No path to datacenter",
        ));
    }
    let body = read_body(req).await?;
    let now = Instant::now();
    if let Some(key) = path.strip_prefix("/v1/kv/") {
        return match method {
            Method::GET => kv_get(shared, key, &query).await,
            Method::PUT => kv_put(shared, key, &query, body, now),
            Method::DELETE => kv_delete(shared, key, &query, now),
            _ => Err(method_not_allowed(&method)),
        };
    }
    match (method.clone(), path.as_str()) {
        (Method::PUT, "/v1/txn") => txn(shared, &body, now),
        (Method::PUT, "/v1/session/create") => session_create(shared, &body, now),
        (Method::GET, "/v1/session/list") => {
            let (index, sessions) = blocking(shared, &query, |s| s.sessions(None)).await?;
            Ok(sessions_reply(index, &sessions))
        }
        (_, p) => {
            if let Some(id) = p.strip_prefix("/v1/session/destroy/") {
                expect_put(&method)?;
                valid_uuid(id)?;
                shared.with_store(|s| s.destroy_session(id, now));
                Ok(reply(StatusCode::OK, "true"))
            } else if let Some(id) = p.strip_prefix("/v1/session/renew/") {
                expect_put(&method)?;
                valid_uuid(id)?;
                match shared.with_store(|s| s.renew_session(id, now)) {
                    Some(session) => Ok(json_reply(
                        StatusCode::OK,
                        &Value::Array(vec![session_json(&session)]),
                    )),
                    None => Err(refuse(
                        StatusCode::NOT_FOUND,
                        format!("Session id '{id}' not found"),
                    )),
                }
            } else if let Some(id) = p.strip_prefix("/v1/session/info/") {
                expect_get(&method)?;
                let (index, session) = blocking(shared, &query, |s| s.session(id)).await?;
                Ok(sessions_reply(
                    index,
                    &session.into_iter().collect::<Vec<_>>(),
                ))
            } else if let Some(node) = p.strip_prefix("/v1/session/node/") {
                expect_get(&method)?;
                let (index, sessions) =
                    blocking(shared, &query, |s| s.sessions(Some(node))).await?;
                Ok(sessions_reply(index, &sessions))
            } else {
                Err(refuse(StatusCode::NOT_FOUND, format!("no handler for {p}")))
            }
        }
    }
}

fn method_not_allowed(method: &Method) -> Refusal {
    refuse(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} not allowed"),
    )
}

fn expect_put(method: &Method) -> Result<(), Refusal> {
    if *method == Method::PUT {
        Ok(())
    } else {
        Err(method_not_allowed(method))
    }
}

fn expect_get(method: &Method) -> Result<(), Refusal> {
    if *method == Method::GET {
        Ok(())
    } else {
        Err(method_not_allowed(method))
    }
}

fn valid_uuid(id: &str) -> Result<(), Refusal> {
    if is_uuid(id) {
        Ok(())
    } else {
        Err(refuse(
            StatusCode::BAD_REQUEST,
            format!("Session id {id:?} is not a valid UUID"),
        ))
    }
}

/// The token from `X-Consul-Token`, `Authorization: Bearer` or `?token=`, checked against the
/// configured one: without it every request is denied with 403.
fn check_token(shared: &Shared, req: &Request<Incoming>, query: &Query) -> Result<(), Refusal> {
    let Some(required) = &shared.options.acl_token else {
        return Ok(());
    };
    let headers = req.headers();
    let presented = headers
        .get("X-Consul-Token")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            headers
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
        })
        .or_else(|| query.get("token"))
        .filter(|t| !t.is_empty());
    match presented {
        Some(token) if token == required => Ok(()),
        Some(_) => Err(refuse(StatusCode::FORBIDDEN, "ACL not found")),
        None => Err(refuse(StatusCode::FORBIDDEN, "Permission denied")),
    }
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, Refusal> {
    // Room for a whole transaction of maximal values, base64-encoded.
    let limit = MAX_VALUE_SIZE * 2 + 64 * 1024;
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => Err(refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body too large or unreadable: {e}"),
        )),
    }
}

/// Runs `query` until its index passes `?index=` (or at once without one), up to `?wait=` plus
/// a random extra of up to wait/16.
async fn blocking<T>(
    shared: &Arc<Shared>,
    params: &Query,
    query: impl Fn(&Store) -> (u64, T),
) -> Result<(u64, T), Refusal> {
    let min_index = params.number("index")?.unwrap_or(0);
    let wait = match params.get("wait") {
        None | Some("") => DEFAULT_WAIT,
        Some(text) => duration::parse(text).ok_or_else(|| {
            refuse(
                StatusCode::BAD_REQUEST,
                format!("Invalid wait time {text:?}"),
            )
        })?,
    }
    .min(MAX_WAIT);
    let jitter = wait.mul_f64(fastrand::f64() / 16.0);
    let deadline = tokio::time::Instant::now() + wait + jitter;
    let mut changes = shared.changes.subscribe();
    let mut waiting = None;
    loop {
        changes.borrow_and_update();
        let (index, value) = shared.with_store(|s| query(s));
        let index = index.max(1);
        if min_index == 0 || index > min_index || tokio::time::Instant::now() >= deadline {
            return Ok((index, value));
        }
        waiting.get_or_insert_with(|| Waiting::new(&shared.blocked));
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return Ok((index, value));
                }
            }
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

fn entry_json(e: &Entry, with_value: bool) -> Value {
    let mut object = json!({
        "LockIndex": e.lock_index,
        "Key": e.key,
        "Flags": e.flags,
        "Value": if with_value && !e.value.is_empty() {
            Value::String(BASE64.encode(&e.value))
        } else {
            Value::Null
        },
        "CreateIndex": e.create_index,
        "ModifyIndex": e.modify_index,
    });
    if let (Some(session), Some(map)) = (&e.session, object.as_object_mut()) {
        map.insert("Session".into(), Value::String(session.clone()));
    }
    object
}

fn session_json(s: &Session) -> Value {
    json!({
        "ID": s.id,
        "Name": s.name,
        "Node": s.node,
        "LockDelay": u64::try_from(s.lock_delay.as_nanos()).unwrap_or(u64::MAX),
        "Behavior": s.behavior.as_str(),
        "TTL": s.ttl_text,
        "NodeChecks": s.node_checks,
        "ServiceChecks": Value::Null,
        "CreateIndex": s.create_index,
        "ModifyIndex": s.modify_index,
    })
}

fn sessions_reply(index: u64, sessions: &[Session]) -> Reply {
    let list: Vec<Value> = sessions.iter().map(session_json).collect();
    with_index(json_reply(StatusCode::OK, &Value::Array(list)), index)
}

async fn kv_get(shared: &Arc<Shared>, key: &str, query: &Query) -> Result<Reply, Refusal> {
    if query.has("keys") {
        let separator = query.get("separator").map(str::to_owned);
        let (index, keys) =
            blocking(shared, query, |s| s.kv_keys(key, separator.as_deref())).await?;
        return Ok(if keys.is_empty() {
            with_index(reply(StatusCode::NOT_FOUND, ""), index)
        } else {
            with_index(json_reply(StatusCode::OK, &json!(keys)), index)
        });
    }
    if query.has("recurse") {
        let (index, entries) = blocking(shared, query, |s| s.kv_list(key)).await?;
        return Ok(if entries.is_empty() {
            with_index(reply(StatusCode::NOT_FOUND, ""), index)
        } else {
            let list: Vec<Value> = entries.iter().map(|e| entry_json(e, true)).collect();
            with_index(json_reply(StatusCode::OK, &Value::Array(list)), index)
        });
    }
    let (index, entry) = blocking(shared, query, |s| s.kv_get(key)).await?;
    Ok(match entry {
        None => with_index(reply(StatusCode::NOT_FOUND, ""), index),
        Some(e) if query.has("raw") => {
            let mut r = reply(StatusCode::OK, e.value);
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            with_index(r, index)
        }
        Some(e) => with_index(
            json_reply(StatusCode::OK, &Value::Array(vec![entry_json(&e, true)])),
            index,
        ),
    })
}

fn kv_put(
    shared: &Shared,
    key: &str,
    query: &Query,
    body: Bytes,
    now: Instant,
) -> Result<Reply, Refusal> {
    if key.is_empty() {
        return Err(refuse(StatusCode::BAD_REQUEST, "Missing key name"));
    }
    if body.len() > MAX_VALUE_SIZE {
        return Err(refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Request body({} bytes) too large, max size: {MAX_VALUE_SIZE} bytes",
                body.len()
            ),
        ));
    }
    let key = key.to_owned();
    let value = body.to_vec();
    let flags = query.number("flags")?.unwrap_or(0);
    // The precedence of Consul's handler: release over acquire over cas.
    let op = if let Some(session) = query.get("release") {
        KvOp::Unlock {
            key,
            value,
            flags,
            session: session.to_owned(),
        }
    } else if let Some(session) = query.get("acquire") {
        KvOp::Lock {
            key,
            value,
            flags,
            session: session.to_owned(),
        }
    } else if let Some(index) = query.number("cas")? {
        KvOp::Cas {
            key,
            value,
            flags,
            index,
        }
    } else {
        KvOp::Set { key, value, flags }
    };
    match shared.with_store(|s| s.kv_write(&op, now)) {
        Ok(done) => Ok(reply(StatusCode::OK, if done { "true" } else { "false" })),
        Err(what) => Err(refuse(StatusCode::INTERNAL_SERVER_ERROR, what)),
    }
}

fn kv_delete(shared: &Shared, key: &str, query: &Query, now: Instant) -> Result<Reply, Refusal> {
    let key = key.to_owned();
    let op = if query.has("recurse") {
        KvOp::DeleteTree { key }
    } else if let Some(index) = query.number("cas")? {
        KvOp::DeleteCas { key, index }
    } else {
        KvOp::Delete { key }
    };
    match shared.with_store(|s| s.kv_write(&op, now)) {
        Ok(done) => Ok(reply(StatusCode::OK, if done { "true" } else { "false" })),
        Err(what) => Err(refuse(StatusCode::INTERNAL_SERVER_ERROR, what)),
    }
}

fn bad_txn(reason: impl Into<String>) -> Refusal {
    refuse(
        StatusCode::BAD_REQUEST,
        format!("Failed to parse body: {}", reason.into()),
    )
}

fn parse_txn_op(item: &Value) -> Result<KvOp, Refusal> {
    let kv = item
        .get("KV")
        .ok_or_else(|| bad_txn("only KV operations are supported by this test server"))?;
    let text = |name: &str| {
        kv.get(name)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let number = |name: &str| kv.get(name).and_then(Value::as_u64).unwrap_or(0);
    let key = text("Key");
    let value = match kv.get("Value") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(b64)) => BASE64
            .decode(b64)
            .map_err(|e| bad_txn(format!("Value of {key:?} is not base64: {e}")))?,
        Some(other) => return Err(bad_txn(format!("Value of {key:?} is {other}"))),
    };
    if value.len() > MAX_VALUE_SIZE {
        return Err(refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Value for key {key:?} is too large ({} > {MAX_VALUE_SIZE} bytes)",
                value.len()
            ),
        ));
    }
    let (flags, index, session) = (number("Flags"), number("Index"), text("Session"));
    Ok(match text("Verb").as_str() {
        "set" => KvOp::Set { key, value, flags },
        "cas" => KvOp::Cas {
            key,
            value,
            flags,
            index,
        },
        "lock" => KvOp::Lock {
            key,
            value,
            flags,
            session,
        },
        "unlock" => KvOp::Unlock {
            key,
            value,
            flags,
            session,
        },
        "get" => KvOp::Get { key },
        "get-or-empty" => KvOp::GetOrEmpty { key },
        "get-tree" => KvOp::GetTree { key },
        "check-index" => KvOp::CheckIndex { key, index },
        "check-session" => KvOp::CheckSession { key, session },
        "check-not-exists" => KvOp::CheckNotExists { key },
        "delete" => KvOp::Delete { key },
        "delete-tree" => KvOp::DeleteTree { key },
        "delete-cas" => KvOp::DeleteCas { key, index },
        verb => return Err(bad_txn(format!("unknown KV verb {verb:?}"))),
    })
}

fn txn(shared: &Shared, body: &[u8], now: Instant) -> Result<Reply, Refusal> {
    let items: Vec<Value> = serde_json::from_slice(body).map_err(|e| bad_txn(e.to_string()))?;
    if items.len() > MAX_TXN_OPS {
        return Err(refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Transaction contains too many operations ({} > {MAX_TXN_OPS})",
                items.len()
            ),
        ));
    }
    let ops = items
        .iter()
        .map(parse_txn_op)
        .collect::<Result<Vec<_>, _>>()?;
    match shared.with_store(|s| s.txn(&ops, now)) {
        Ok(results) => {
            let results: Vec<Value> = results
                .iter()
                .map(|(e, with_value)| json!({ "KV": entry_json(e, *with_value) }))
                .collect();
            Ok(json_reply(
                StatusCode::OK,
                &json!({ "Results": results, "Errors": Value::Null }),
            ))
        }
        Err(errors) => {
            let errors: Vec<Value> = errors
                .iter()
                .map(|e| json!({ "OpIndex": e.op_index, "What": e.what }))
                .collect();
            Ok(json_reply(
                StatusCode::CONFLICT,
                &json!({ "Results": Value::Null, "Errors": errors }),
            ))
        }
    }
}

fn session_create(shared: &Shared, body: &[u8], now: Instant) -> Result<Reply, Refusal> {
    let bad = |reason: String| {
        refuse(
            StatusCode::BAD_REQUEST,
            format!("Request decode failed: {reason}"),
        )
    };
    let request: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?
    };
    let text = |name: &str| {
        request
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let options = &shared.options;
    let node = match text("Node") {
        n if n.is_empty() => options.node_name.clone(),
        n => n,
    };
    if node != options.node_name {
        return Err(refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Missing node registration",
        ));
    }
    // `NodeChecks` (1.7+) or its deprecated alias `Checks`; absent means the gossip check.
    let checks = match request.get("NodeChecks").or_else(|| request.get("Checks")) {
        None | Some(Value::Null) => vec![SERF_HEALTH.to_owned()],
        Some(Value::Array(list)) => list
            .iter()
            .map(|c| c.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("Checks must be strings".into()))?,
        Some(other) => return Err(bad(format!("Checks is {other}"))),
    };
    if let Some(missing) = checks.iter().find(|c| *c != SERF_HEALTH) {
        return Err(refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Missing check '{missing}' registration"),
        ));
    }
    if let Some(Value::Array(list)) = request.get("ServiceChecks")
        && let Some(first) = list.first()
    {
        return Err(refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Missing check '{first}' registration"),
        ));
    }
    let behavior = match text("Behavior").as_str() {
        "" | "release" => Behavior::Release,
        "delete" => Behavior::Delete,
        other => {
            return Err(refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("Invalid Behavior setting '{other}'"),
            ));
        }
    };
    let lock_delay = match request.get("LockDelay") {
        None | Some(Value::Null) => Duration::from_secs(15),
        Some(v) => {
            duration::parse_lock_delay(v).ok_or_else(|| bad(format!("LockDelay {v} is invalid")))?
        }
    };
    let ttl_text = text("TTL");
    let ttl = if ttl_text.is_empty() {
        None
    } else {
        let ttl =
            duration::parse(&ttl_text).ok_or_else(|| bad(format!("invalid TTL {ttl_text:?}")))?;
        if !ttl.is_zero() && (ttl < options.session_ttl_min || ttl > MAX_SESSION_TTL) {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                format!(
                    "TTL must be between [{}, {}]",
                    duration::format(options.session_ttl_min),
                    duration::format(MAX_SESSION_TTL)
                ),
            ));
        }
        Some(ttl).filter(|t| !t.is_zero())
    };
    let session = shared.with_store(|s| {
        s.create_session(
            SessionRequest {
                name: text("Name"),
                node,
                lock_delay,
                behavior,
                ttl,
                ttl_text,
                node_checks: checks,
            },
            now,
        )
    });
    Ok(json_reply(StatusCode::OK, &json!({ "ID": session.id })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_percent_decoded() {
        let q = Query::parse(Some("recurse&index=5&separator=%2F&token=a+b"));
        assert!(q.has("recurse"));
        assert_eq!(q.get("separator"), Some("/"));
        assert_eq!(q.get("token"), Some("a b"));
        assert_eq!(q.number("index").ok().flatten(), Some(5));
        assert_eq!(decode("%zz"), "%zz");
        assert_eq!(decode("a%2"), "a%2");
    }
}
