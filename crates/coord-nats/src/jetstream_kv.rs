//! The few JetStream operations the adapter is built from, with the KV layout of `nats kv`.
//!
//! A bucket `b` is the stream `KV_b` on subjects `$KV.b.>`, one message kept per subject, with
//! per-message TTL and subject delete markers on, and direct get off: every read goes to the
//! stream leader (`STREAM.MSG.GET`), so a read after an acknowledged write sees it. Writes are
//! publishes, made conditional with `Nats-Expected-Last-Subject-Sequence`; the stream leader
//! decides the condition and the write in one step.
//!
//! What a message means is decided here, once ([`Stored`]): a `KV-Operation: DEL`/`PURGE`
//! tombstone or a server delete marker (`Nats-Marker-Reason`, written when a TTL runs out) is
//! [`StoredState::Gone`]; anything else is a live value, with the lease and term headers this
//! adapter writes.
// Call deadlines run on tokio's clock, which tokio sleeps on; no ownership decision is taken on them.
#![allow(clippy::disallowed_methods)]

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::response::Response;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use cluster_core::coordination::LeaseId;
use serde::Deserialize;
use tokio::time::{Instant, timeout_at};

use crate::config::NatsConfig;
use crate::error::{JsFailure, core_request_failure, request_failure};

/// Header naming the lease a value is bound to.
pub(crate) const HDR_LEASE: &str = "Coord-Lease";
/// Header on a renewal: the revision of the write that set the value (the term's token).
pub(crate) const HDR_TERM: &str = "Coord-Term";
const HDR_TTL: &str = "Nats-TTL";
const HDR_EXPECTED_SEQ: &str = "Nats-Expected-Last-Subject-Sequence";
const HDR_EXPECTED_SUBJECT: &str = "Nats-Expected-Last-Subject-Sequence-Subject";
const HDR_KV_OPERATION: &str = "KV-Operation";
const HDR_MARKER_REASON: &str = "Nats-Marker-Reason";
/// `wrong last sequence: N` (single server) and `wrong last sequence` (clustered).
const ERR_WRONG_LAST_SEQUENCE: [u64; 2] = [10071, 10164];
const ERR_STREAM_NOT_FOUND: u64 = 10059;
const ERR_STREAM_NAME_IN_USE: u64 = 10058;
const ERR_NO_MESSAGE_FOUND: u64 = 10037;

/// The stream of bucket `bucket`.
pub(crate) fn stream_name(bucket: &str) -> String {
    format!("KV_{bucket}")
}

/// The subject of key `name` in `bucket`.
pub(crate) fn subject(bucket: &str, name: &str) -> String {
    format!("$KV.{bucket}.{name}")
}

/// A message as read back from a bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    /// The key's name inside the bucket.
    pub(crate) name: String,
    /// The message's stream sequence: the key's revision.
    pub(crate) seq: u64,
    /// What the message says.
    pub(crate) state: StoredState,
}

/// Whether a key holds a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoredState {
    /// A value.
    Live(LiveValue),
    /// Deleted: a tombstone, or a delete marker the server wrote when a TTL ran out.
    Gone,
}

/// A live value with what this adapter wrote next to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LiveValue {
    /// The value.
    pub(crate) value: Bytes,
    /// The revision of the write that set this value: the message's own sequence, or the
    /// `Coord-Term` header of a renewal (renewals rewrite the key and move its revision).
    pub(crate) term: u64,
    /// The lease the value is bound to.
    pub(crate) lease: Option<LeaseId>,
    /// Whether this message is a renewal (same value, new TTL).
    pub(crate) renewal: bool,
}

impl Stored {
    /// Decodes a message of key `name` at `seq`.
    pub(crate) fn decode(
        name: String,
        seq: u64,
        headers: Option<&HeaderMap>,
        value: Bytes,
    ) -> Self {
        let header = |h: &str| headers.and_then(|m| m.get_last(h)).map(|v| v.as_str());
        let gone = matches!(header(HDR_KV_OPERATION), Some("DEL" | "PURGE"))
            || header(HDR_MARKER_REASON).is_some();
        let state = if gone {
            StoredState::Gone
        } else {
            let renewed_term = header(HDR_TERM).and_then(|t| t.parse::<u64>().ok());
            StoredState::Live(LiveValue {
                value,
                term: renewed_term.unwrap_or(seq),
                lease: header(HDR_LEASE).map(LeaseId::new),
                renewal: renewed_term.is_some(),
            })
        };
        Stored { name, seq, state }
    }

    /// The live value, if any.
    pub(crate) fn live(&self) -> Option<&LiveValue> {
        match &self.state {
            StoredState::Live(v) => Some(v),
            StoredState::Gone => None,
        }
    }
}

/// The condition of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Condition<'a> {
    /// None.
    Any,
    /// The key's last message is at this sequence (0: the key has no message at all).
    LastSeq(u64),
    /// Another key of the same bucket has its last message at this sequence.
    OtherLastSeq(&'a str, u64),
}

/// One publish to a bucket.
#[derive(Debug, Clone)]
pub(crate) struct Write<'a> {
    pub(crate) bucket: &'a str,
    pub(crate) name: &'a str,
    pub(crate) value: Bytes,
    pub(crate) condition: Condition<'a>,
    /// Per-message TTL (whole milliseconds, at least one second).
    pub(crate) ttl: Option<Duration>,
    pub(crate) lease: Option<&'a LeaseId>,
    /// For a renewal: the term it keeps.
    pub(crate) term: Option<u64>,
    /// A delete tombstone instead of a value.
    pub(crate) tombstone: bool,
}

impl<'a> Write<'a> {
    /// A plain value write.
    pub(crate) fn value(bucket: &'a str, name: &'a str, value: Bytes) -> Self {
        Write {
            bucket,
            name,
            value,
            condition: Condition::Any,
            ttl: None,
            lease: None,
            term: None,
            tombstone: false,
        }
    }

    /// A delete tombstone.
    pub(crate) fn tombstone(bucket: &'a str, name: &'a str, ttl: Duration) -> Self {
        Write {
            ttl: Some(ttl),
            tombstone: true,
            ..Write::value(bucket, name, Bytes::new())
        }
    }

    /// With a condition.
    pub(crate) fn when(self, condition: Condition<'a>) -> Self {
        Write { condition, ..self }
    }

    fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        match self.condition {
            Condition::Any => {}
            Condition::LastSeq(seq) => h.insert(HDR_EXPECTED_SEQ, seq.to_string().as_str()),
            Condition::OtherLastSeq(other, seq) => {
                h.insert(HDR_EXPECTED_SEQ, seq.to_string().as_str());
                h.insert(HDR_EXPECTED_SUBJECT, subject(self.bucket, other).as_str());
            }
        }
        if let Some(ttl) = self.ttl {
            h.insert(HDR_TTL, ttl_header(ttl).as_str());
        }
        if let Some(lease) = self.lease {
            h.insert(HDR_LEASE, lease.as_str());
        }
        if let Some(term) = self.term {
            h.insert(HDR_TERM, term.to_string().as_str());
        }
        if self.tombstone {
            h.insert(HDR_KV_OPERATION, "DEL");
        }
        h
    }
}

/// A TTL as the `Nats-TTL` header takes it: whole milliseconds, at least one second.
pub(crate) fn ttl_header(ttl: Duration) -> String {
    format!("{}ms", round_ttl(ttl).as_millis())
}

/// A TTL JetStream accepts: rounded up to whole milliseconds, at least one second.
pub(crate) fn round_ttl(ttl: Duration) -> Duration {
    let ms = ttl.as_nanos().div_ceil(1_000_000);
    Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX).max(1000))
}

#[derive(Debug, Deserialize)]
struct PubAck {
    #[serde(default)]
    seq: u64,
    error: Option<ApiError>,
}

#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(default)]
    code: usize,
    #[serde(default)]
    err_code: u64,
    #[serde(default)]
    description: String,
}

/// Whether a stream's group has elected a leader.
fn has_leader(info: &stream::Info) -> bool {
    info.cluster.as_ref().is_some_and(|c| c.leader.is_some())
}

/// JetStream KV operations over one connection.
#[derive(Debug)]
pub(crate) struct JetStreamKv {
    pub(crate) client: async_nats::Client,
    pub(crate) js: jetstream::Context,
    /// The same connection with `create_timeout` as its request timeout: placing a replicated
    /// stream (right after a cluster starts, or while a peer is down) outlasts `call_timeout`.
    js_create: jetstream::Context,
    pub(crate) config: NatsConfig,
    ensured: Mutex<HashSet<String>>,
}

impl JetStreamKv {
    pub(crate) fn new(client: async_nats::Client, config: NatsConfig) -> Self {
        let mut js = jetstream::new(client.clone());
        js.set_timeout(config.call_timeout);
        let mut js_create = jetstream::new(client.clone());
        js_create.set_timeout(config.create_timeout);
        JetStreamKv {
            client,
            js,
            js_create,
            config,
            ensured: Mutex::default(),
        }
    }

    /// The deadline of a call starting now.
    pub(crate) fn deadline(&self) -> Instant {
        Instant::now() + self.config.call_timeout
    }

    /// Publishes `w`; returns the new message's sequence. Creates the bucket on first use.
    pub(crate) async fn publish(&self, w: &Write<'_>, deadline: Instant) -> Result<u64, JsFailure> {
        let subject = subject(w.bucket, w.name);
        let headers = w.headers();
        let mut ensured = false;
        loop {
            let request =
                self.client
                    .request_with_headers(subject.clone(), headers.clone(), w.value.clone());
            let reply = match timeout_at(deadline, request).await {
                Err(_) => return Err(JsFailure::Timeout(self.config.call_timeout)),
                Ok(Err(e)) => {
                    let failure = core_request_failure(&e, w.bucket, self.config.call_timeout);
                    if !matches!(failure, JsFailure::NoBucket(_)) {
                        return Err(failure);
                    }
                    if !ensured {
                        self.ensure_bucket(w.bucket, deadline).await?;
                        ensured = true;
                    } else {
                        // The stream exists, but in a cluster the interest in its subjects
                        // reaches this server a moment after it is created.
                        tokio::time::sleep(Duration::from_millis(25)).await;
                    }
                    continue;
                }
                Ok(Ok(reply)) => reply,
            };
            let ack: PubAck = serde_json::from_slice(&reply.payload)
                .map_err(|e| JsFailure::Transport(format!("unreadable publish ack: {e}")))?;
            return match ack.error {
                None => Ok(ack.seq),
                Some(e) if ERR_WRONG_LAST_SEQUENCE.contains(&e.err_code) => {
                    Err(JsFailure::WrongLastSequence)
                }
                Some(e) => Err(JsFailure::Api {
                    code: e.code,
                    err_code: e.err_code,
                    description: e.description,
                }),
            };
        }
    }

    /// The last message of key `name`, read from the stream leader; `None` if the key has no
    /// message (or the bucket does not exist yet).
    pub(crate) async fn last(
        &self,
        bucket: &str,
        name: &str,
        deadline: Instant,
    ) -> Result<Option<Stored>, JsFailure> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind as Kind;
        let stream = self
            .js
            .get_stream_no_info(stream_name(bucket))
            .await
            .map_err(|e| JsFailure::Transport(e.to_string()))?;
        let subject = subject(bucket, name);
        match timeout_at(deadline, stream.get_last_raw_message_by_subject(&subject)).await {
            Err(_) => Err(JsFailure::Timeout(self.config.call_timeout)),
            Ok(Ok(m)) => Ok(Some(Stored::decode(
                name.to_owned(),
                m.sequence,
                Some(&m.headers),
                m.payload,
            ))),
            Ok(Err(e)) => match e.kind() {
                Kind::NoMessageFound => Ok(None),
                Kind::JetStream(api)
                    if matches!(
                        api.error_code().0,
                        ERR_STREAM_NOT_FOUND | ERR_NO_MESSAGE_FOUND
                    ) =>
                {
                    Ok(None)
                }
                Kind::JetStream(api) => Err(JsFailure::api(&api)),
                _ => Err(JsFailure::Transport(e.to_string())),
            },
        }
    }

    /// Makes sure the bucket exists with what this adapter needs, creating it if absent.
    pub(crate) async fn ensure_bucket(
        &self,
        bucket: &str,
        deadline: Instant,
    ) -> Result<(), JsFailure> {
        if self.is_ensured(bucket) {
            return Ok(());
        }
        let name = stream_name(bucket);
        let info: Result<Response<stream::Info>, _> = match timeout_at(
            deadline,
            self.js.request(format!("STREAM.INFO.{name}"), &()),
        )
        .await
        {
            Err(_) => return Err(JsFailure::Timeout(self.config.call_timeout)),
            Ok(r) => r,
        };
        match info {
            Ok(Response::Ok(info)) => {
                check_bucket(bucket, &info.config)?;
                self.mark_ensured(bucket);
                return Ok(());
            }
            Ok(Response::Err { error }) if error.error_code().0 == ERR_STREAM_NOT_FOUND => {}
            Ok(Response::Err { error }) => return Err(JsFailure::api(&error)),
            Err(e) => return Err(request_failure(&e, bucket, self.config.call_timeout)),
        }
        self.check_server_version()?;
        let config = self.bucket_config(bucket);
        // Placing a replicated stream can take seconds while a peer is down: give creation its
        // own, longer deadline.
        let create_deadline = deadline.max(Instant::now() + self.config.create_timeout);
        let created: Result<Response<stream::Info>, _> = match timeout_at(
            create_deadline,
            self.js_create
                .request(format!("STREAM.CREATE.{name}"), &config),
        )
        .await
        {
            Err(_) => return Err(JsFailure::Timeout(self.config.create_timeout)),
            Ok(r) => r,
        };
        match created {
            Ok(Response::Ok(info)) => {
                tracing::info!(bucket, replicas = config.num_replicas, "created bucket");
                if config.num_replicas > 1 && !has_leader(&info) {
                    // A replicated stream answers nothing until its group elects a leader: the
                    // first write would otherwise spend its whole call timeout waiting.
                    self.await_stream_leader(&name, create_deadline).await?;
                }
            }
            // Created concurrently by another client: check it like an existing one.
            Ok(Response::Err { error }) if error.error_code().0 == ERR_STREAM_NAME_IN_USE => {
                return Box::pin(self.ensure_bucket(bucket, create_deadline)).await;
            }
            Ok(Response::Err { error }) => return Err(JsFailure::api(&error)),
            Err(e) => return Err(request_failure(&e, bucket, self.config.create_timeout)),
        }
        self.mark_ensured(bucket);
        Ok(())
    }

    /// Polls the stream's info until its group has a leader, or `deadline`.
    async fn await_stream_leader(&self, name: &str, deadline: Instant) -> Result<(), JsFailure> {
        loop {
            let info: Result<Response<stream::Info>, _> = timeout_at(
                deadline,
                self.js.request(format!("STREAM.INFO.{name}"), &()),
            )
            .await
            .map_err(|_| JsFailure::Timeout(self.config.create_timeout))?;
            if let Ok(Response::Ok(info)) = info
                && has_leader(&info)
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(JsFailure::Timeout(self.config.create_timeout));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn is_ensured(&self, bucket: &str) -> bool {
        self.ensured
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(bucket)
    }

    fn mark_ensured(&self, bucket: &str) {
        self.ensured
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(bucket.to_owned());
    }

    /// The stream configuration of a new bucket.
    fn bucket_config(&self, bucket: &str) -> stream::Config {
        let replicas = self.config.replicas.unwrap_or_else(|| {
            if self.client.server_info().cluster.is_some() {
                3
            } else {
                1
            }
        });
        stream::Config {
            name: stream_name(bucket),
            description: Some("coordination bucket (coord-nats)".into()),
            subjects: vec![format!("$KV.{bucket}.>")],
            max_messages_per_subject: 1,
            discard: stream::DiscardPolicy::New,
            allow_rollup: true,
            deny_delete: true,
            deny_purge: false,
            // Reads must go to the stream leader: a direct get may be served by a follower
            // that has not applied the latest write yet.
            allow_direct: false,
            num_replicas: replicas,
            storage: stream::StorageType::File,
            allow_message_ttl: true,
            subject_delete_marker_ttl: Some(self.config.marker_ttl),
            ..Default::default()
        }
    }

    fn check_server_version(&self) -> Result<(), JsFailure> {
        let version = self.client.server_info().version;
        let mut parts = version
            .trim_start_matches('v')
            .split(['.', '-'])
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        if (major, minor) < (2, 11) {
            return Err(JsFailure::Api {
                code: 400,
                err_code: 0,
                description: format!(
                    "nats-server {version} has no per-message TTL or delete markers; 2.11+ is needed"
                ),
            });
        }
        Ok(())
    }
}

/// Refuses an existing bucket that cannot give lease expiry as a watch event.
fn check_bucket(bucket: &str, config: &stream::Config) -> Result<(), JsFailure> {
    let problem = if !config.allow_message_ttl {
        Some("per-message TTL (allow_msg_ttl) is off")
    } else if config.subject_delete_marker_ttl.is_none() {
        Some("subject delete markers (subject_delete_marker_ttl) are off")
    } else if config.max_messages_per_subject != 1 {
        Some("it keeps more than one message per key")
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(JsFailure::Api {
            code: 400,
            err_code: 0,
            description: format!("bucket {bucket} exists but {problem}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, *v);
        }
        h
    }

    #[test]
    fn decodes_values_tombstones_markers_and_renewals() {
        let plain = Stored::decode("k".into(), 7, None, Bytes::from_static(b"v"));
        let live = plain.live().unwrap();
        assert_eq!(
            (live.term, live.renewal, live.lease.clone()),
            (7, false, None)
        );

        let h = headers(&[(HDR_LEASE, "abc"), (HDR_TERM, "3"), (HDR_TTL, "2000ms")]);
        let renewal = Stored::decode("k".into(), 9, Some(&h), Bytes::from_static(b"v"));
        let live = renewal.live().unwrap();
        assert_eq!(live.term, 3);
        assert!(live.renewal);
        assert_eq!(live.lease.as_ref().map(LeaseId::as_str), Some("abc"));

        for gone in [
            headers(&[(HDR_KV_OPERATION, "DEL")]),
            headers(&[(HDR_KV_OPERATION, "PURGE")]),
            headers(&[(HDR_MARKER_REASON, "MaxAge"), (HDR_TTL, "2s")]),
        ] {
            let s = Stored::decode("k".into(), 11, Some(&gone), Bytes::new());
            assert_eq!(s.state, StoredState::Gone);
        }
    }

    #[test]
    fn ttls_are_whole_milliseconds_and_at_least_a_second() {
        assert_eq!(ttl_header(Duration::from_millis(300)), "1000ms");
        assert_eq!(ttl_header(Duration::from_micros(2_000_001)), "2001ms");
        assert_eq!(round_ttl(Duration::from_secs(10)), Duration::from_secs(10));
    }

    #[test]
    fn conditions_become_headers() {
        let w = Write::value("b", "k", Bytes::new()).when(Condition::OtherLastSeq("fence", 5));
        let h = w.headers();
        assert_eq!(h.get_last(HDR_EXPECTED_SEQ).map(|v| v.as_str()), Some("5"));
        assert_eq!(
            h.get_last(HDR_EXPECTED_SUBJECT).map(|v| v.as_str()),
            Some("$KV.b.fence")
        );
    }
}
