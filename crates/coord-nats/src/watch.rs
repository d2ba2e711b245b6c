//! Watches and lists through ephemeral push consumers.
//!
//! A watch subscribes to a fresh inbox, then creates an ephemeral consumer on the bucket's
//! stream delivering there: `DeliverLastPerSubject` (the last message of every watched key, the
//! snapshot), then every new message, with idle heartbeats and flow control, no acks, in memory,
//! R1. The snapshot ends with the message whose `pending` count is 0 (or an idle heartbeat once
//! everything was delivered).
//!
//! A background task forwards changes. Renewals (messages with `Coord-Term`) are not changes
//! and are not forwarded. Anything that may have lost a message starts over: a reconnection of
//! the client, two heartbeats without a word, a consumer sequence that skips, a heartbeat naming a consumer sequence we did
//! not see, a status other than heartbeat or flow control. Starting over deletes the old
//! consumer, creates a new one and sends a new `Snapshot` (the backend is `LatestValue`: the
//! history of a key is not kept, and a delete marker expires, so resuming from a sequence could
//! miss a delete). Dropping the stream deletes the consumer; its inactivity threshold removes it
//! if this process dies first.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy, ReplayPolicy, push};
use async_nats::{StatusCode, Subscriber};
use bytes::Bytes;
use cluster_core::backoff::Backoff;
use cluster_core::coordination::{
    CoordError, CoordResult, Key, KeyPrefix, KvEntry, Operation, WatchEvent, WatchStart,
    WatchStream, WatchTarget,
};
use cluster_core::ids::Revision;
use cluster_core::naming::Namespace;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout, timeout_at};

use crate::error::JsFailure;
use crate::jetstream_kv::{Stored, StoredState, stream_name};
use crate::kv::entry;
use crate::{NatsCoordinator, layout};

const HDR_LAST_CONSUMER: &str = "Nats-Last-Consumer";
const HDR_CONSUMER_STALLED: &str = "Nats-Consumer-Stalled";
const ERR_STREAM_NOT_FOUND: u64 = 10059;

/// What a watch or list reads: a bucket, a subject filter, and the keys that match.
#[derive(Debug, Clone)]
struct Scope {
    ns: Namespace,
    bucket: String,
    filter: String,
    target: WatchTarget,
}

impl Scope {
    fn new(target: WatchTarget) -> Scope {
        let ns = match &target {
            WatchTarget::Key(k) => k.namespace().clone(),
            WatchTarget::Prefix(p) => p.namespace().clone(),
        };
        let bucket = layout::bucket(&ns);
        let filter = match &target {
            WatchTarget::Key(k) => format!("$KV.{bucket}.{}", layout::place(k).name),
            // Narrow the filter to whole subject tokens of the prefix; the rest is matched here.
            WatchTarget::Prefix(p) => {
                let stored = layout::stored_prefix(p);
                match stored.rfind('.') {
                    Some(dot) => format!("$KV.{bucket}.{}>", &stored[..=dot]),
                    None => format!("$KV.{bucket}.>"),
                }
            }
        };
        Scope {
            ns,
            bucket,
            filter,
            target,
        }
    }

    fn key(&self, subject: &str) -> Option<Key> {
        let stored = subject.strip_prefix(&format!("$KV.{}.", self.bucket))?;
        let name = layout::key_name(&self.ns, stored)?;
        let key = Key::new(self.ns.clone(), name).ok()?;
        self.target.matches(&key).then_some(key)
    }
}

/// A consumer delivering to our subscription.
struct Feed {
    consumer: String,
    subscriber: Subscriber,
    /// The consumer sequence of the last message received.
    last: u64,
    /// Messages the consumer had for us when created.
    initial_pending: u64,
}

/// One message from a feed.
enum Delivery {
    /// A stored message (`None`: a key outside the watched prefix), with how many more the
    /// consumer holds.
    Message {
        stored: Option<Stored>,
        pending: u64,
    },
    /// An idle heartbeat: nothing more to send right now.
    Idle,
}

/// Why a feed can no longer be trusted.
#[derive(Debug)]
struct Gap(&'static str);

impl NatsCoordinator {
    async fn open_feed(&self, scope: &Scope, deadline: Instant) -> Result<Feed, JsFailure> {
        let kv = self.kv();
        let heartbeat = kv.config.watch_heartbeat;
        let inbox = kv.client.new_inbox();
        let subscriber = match timeout_at(deadline, kv.client.subscribe(inbox.clone())).await {
            Err(_) => return Err(JsFailure::Timeout(kv.config.call_timeout)),
            Ok(Err(e)) => return Err(JsFailure::Transport(e.to_string())),
            Ok(Ok(s)) => s,
        };
        let name = format!("coord-watch-{}", uuid::Uuid::now_v7().simple());
        let config = push::Config {
            name: Some(name.clone()),
            deliver_subject: inbox,
            deliver_policy: DeliverPolicy::LastPerSubject,
            ack_policy: AckPolicy::None,
            replay_policy: ReplayPolicy::Instant,
            filter_subject: scope.filter.clone(),
            flow_control: true,
            idle_heartbeat: heartbeat,
            memory_storage: true,
            num_replicas: 1,
            // Removes the consumer if this process dies without deleting it.
            inactive_threshold: (heartbeat * 10).max(Duration::from_secs(5)),
            ..Default::default()
        };
        let created = timeout_at(
            deadline,
            kv.js
                .create_consumer_on_stream(config, stream_name(&scope.bucket)),
        )
        .await;
        let consumer = match created {
            Err(_) => return Err(JsFailure::Timeout(kv.config.call_timeout)),
            Ok(Err(e)) => {
                return Err(match e.kind() {
                    async_nats::jetstream::stream::ConsumerErrorKind::JetStream(api)
                        if api.error_code().0 == ERR_STREAM_NOT_FOUND =>
                    {
                        JsFailure::NoBucket(scope.bucket.clone())
                    }
                    async_nats::jetstream::stream::ConsumerErrorKind::JetStream(api) => {
                        JsFailure::api(&api)
                    }
                    async_nats::jetstream::stream::ConsumerErrorKind::TimedOut => {
                        JsFailure::Timeout(kv.config.call_timeout)
                    }
                    _ => JsFailure::Transport(e.to_string()),
                });
            }
            Ok(Ok(c)) => c,
        };
        let info: &consumer::Info = consumer.cached_info();
        Ok(Feed {
            consumer: name,
            subscriber,
            last: 0,
            initial_pending: info.num_pending,
        })
    }

    /// Deletes a consumer in the background (bounded by the call timeout).
    fn drop_feed(&self, feed: Feed, bucket: &str) {
        let Feed {
            consumer,
            subscriber,
            ..
        } = feed;
        drop(subscriber);
        let coord = self.clone();
        let stream = stream_name(bucket);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let kv = coord.kv();
                let deleted = timeout(
                    kv.config.call_timeout,
                    kv.js.delete_consumer_from_stream(&consumer, &stream),
                )
                .await;
                if !matches!(deleted, Ok(Ok(_))) {
                    tracing::debug!(
                        consumer,
                        "watch consumer not deleted; its inactivity threshold will"
                    );
                }
            });
        }
    }

    /// The next message or heartbeat of `feed`, answering flow control on the way.
    async fn next_delivery(&self, scope: &Scope, feed: &mut Feed) -> Result<Delivery, Gap> {
        let idle = self.kv().config.watch_heartbeat * 2;
        loop {
            let message = match timeout(idle, feed.subscriber.next()).await {
                Err(_) => return Err(Gap("no heartbeat for two intervals")),
                Ok(None) => return Err(Gap("subscription closed")),
                Ok(Some(m)) => m,
            };
            match message.status {
                Some(StatusCode::IDLE_HEARTBEAT) => {
                    let headers = message.headers.as_ref();
                    if let Some(stalled) = headers.and_then(|h| h.get_last(HDR_CONSUMER_STALLED)) {
                        // The consumer waits for a flow control answer: more is coming.
                        self.reply_flow_control(stalled.as_str().to_owned()).await;
                        continue;
                    }
                    if let Some(reply) = message.reply {
                        // Flow control request.
                        self.reply_flow_control(reply.to_string()).await;
                        continue;
                    }
                    let last = headers
                        .and_then(|h| h.get_last(HDR_LAST_CONSUMER))
                        .and_then(|v| v.as_str().parse::<u64>().ok());
                    if last.is_some_and(|l| l != feed.last) {
                        return Err(Gap("heartbeat names a message we did not get"));
                    }
                    return Ok(Delivery::Idle);
                }
                Some(_) => return Err(Gap("consumer status")),
                None => {}
            }
            let message = async_nats::jetstream::Message {
                message,
                context: self.kv().js.clone(),
            };
            let (stream_seq, consumer_seq, pending) = match message.info() {
                Ok(info) => (info.stream_sequence, info.consumer_sequence, info.pending),
                Err(_) => return Err(Gap("message without JetStream metadata")),
            };
            if consumer_seq != feed.last + 1 {
                return Err(Gap("consumer sequence skipped"));
            }
            feed.last = consumer_seq;
            let stored = scope.key(message.message.subject.as_str()).map(|key| {
                Stored::decode(
                    key.name().to_owned(),
                    stream_seq,
                    message.message.headers.as_ref(),
                    message.message.payload.clone(),
                )
            });
            return Ok(Delivery::Message { stored, pending });
        }
    }

    async fn reply_flow_control(&self, subject: String) {
        let _ = self.kv().client.publish(subject, Bytes::new()).await;
    }

    /// Reads the snapshot part of a new feed: every watched key's last message.
    async fn read_snapshot(&self, scope: &Scope, feed: &mut Feed) -> Result<Snapshot, Gap> {
        let mut snapshot = Snapshot::default();
        if feed.initial_pending == 0 {
            return Ok(snapshot);
        }
        loop {
            match self.next_delivery(scope, feed).await? {
                Delivery::Idle => return Ok(snapshot),
                Delivery::Message { stored, pending } => {
                    if let Some(stored) = stored {
                        snapshot.add(&scope.ns, &stored);
                    }
                    if pending == 0 {
                        return Ok(snapshot);
                    }
                }
            }
        }
    }

    /// Opens a feed and reads its snapshot; a failure deletes the consumer.
    async fn start_feed(
        &self,
        scope: &Scope,
        deadline: Instant,
    ) -> Result<(Feed, Snapshot), JsFailure> {
        let mut feed = self.open_feed(scope, deadline).await?;
        match self.read_snapshot(scope, &mut feed).await {
            Ok(snapshot) => Ok((feed, snapshot)),
            Err(Gap(why)) => {
                self.drop_feed(feed, &scope.bucket);
                Err(JsFailure::Transport(format!("snapshot interrupted: {why}")))
            }
        }
    }
}

/// The last message of every watched key, as a snapshot is read.
#[derive(Debug, Default)]
struct Snapshot {
    entries: BTreeMap<String, KvEntry>,
    revision: u64,
}

impl Snapshot {
    fn add(&mut self, ns: &Namespace, stored: &Stored) {
        self.revision = self.revision.max(stored.seq);
        let live = Key::new(ns.clone(), stored.name.clone())
            .ok()
            .and_then(|key| entry(&key, stored));
        match live {
            Some(e) => {
                self.entries.insert(stored.name.clone(), e);
            }
            None => {
                self.entries.remove(&stored.name);
            }
        }
    }

    fn into_event(self, floor: u64) -> WatchEvent {
        WatchEvent::Snapshot {
            entries: self.entries.into_values().collect(),
            revision: Revision(self.revision.max(floor)),
        }
    }
}

/// Every live entry under `prefix`, sorted by name.
pub(crate) async fn list(
    coord: &NatsCoordinator,
    prefix: &KeyPrefix,
    deadline: Instant,
) -> CoordResult<Vec<KvEntry>> {
    let scope = Scope::new(WatchTarget::Prefix(prefix.clone()));
    match coord.start_feed(&scope, deadline).await {
        Ok((feed, snapshot)) => {
            coord.drop_feed(feed, &scope.bucket);
            Ok(snapshot.entries.into_values().collect())
        }
        // Nothing was ever written there.
        Err(JsFailure::NoBucket(_)) => Ok(Vec::new()),
        Err(e) => Err(e.into_coord(Operation::Read)),
    }
}

/// Opens a watch: the first snapshot is read before returning, so an outage shows here.
pub(crate) async fn open(
    coord: &NatsCoordinator,
    target: WatchTarget,
    start: WatchStart,
) -> CoordResult<WatchStream> {
    if let WatchStart::After(_) = start {
        return Err(CoordError::Unsupported {
            operation: "watch from a revision",
            backend: "nats",
            reason: "JetStream KV keeps only the latest value of a key; watches start with a snapshot",
        });
    }
    let op = Operation::Watch;
    let scope = Scope::new(target);
    let deadline = coord.kv().deadline();
    coord
        .kv()
        .ensure_bucket(&scope.bucket, deadline)
        .await
        .map_err(|e| e.into_coord(op))?;
    let (feed, snapshot) = coord
        .start_feed(&scope, deadline)
        .await
        .map_err(|e| e.into_coord(op))?;
    let floor = snapshot.revision;
    let (tx, rx) = mpsc::channel(256);
    let _ = tx.send(Ok(snapshot.into_event(0))).await;
    tokio::spawn(forward(coord.clone(), scope, feed, floor, tx));
    Ok(
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) })
            .boxed(),
    )
}

type Sender = mpsc::Sender<CoordResult<WatchEvent>>;

async fn forward(
    coord: NatsCoordinator,
    scope: Scope,
    mut feed: Feed,
    mut delivered: u64,
    tx: Sender,
) {
    loop {
        let gap = tokio::select! {
            _ = tx.closed() => None,
            gap = relay(&coord, &scope, &mut feed, &mut delivered, &tx) => Some(gap),
        };
        let Some(gap) = gap.filter(|_| !tx.is_closed()) else {
            coord.drop_feed(feed, &scope.bucket);
            return;
        };
        tracing::debug!(filter = %scope.filter, reason = gap.0, "watch starts over with a snapshot");
        coord.drop_feed(feed, &scope.bucket);
        let Some((next, snapshot)) = restart(&coord, &scope, &tx).await else {
            return;
        };
        feed = next;
        let event = snapshot.into_event(delivered);
        delivered = event.revision().0;
        if tx.send(Ok(event)).await.is_err() {
            coord.drop_feed(feed, &scope.bucket);
            return;
        }
    }
}

/// Forwards changes until the feed has a gap (or the watcher is gone).
async fn relay(
    coord: &NatsCoordinator,
    scope: &Scope,
    feed: &mut Feed,
    delivered: &mut u64,
    tx: &Sender,
) -> Gap {
    // A reconnection may have lost messages in flight, and after a server restart the
    // consumer may be gone: start over at once instead of waiting for missed heartbeats.
    let mut connections = coord.connections();
    loop {
        let delivery = tokio::select! {
            Ok(()) = connections.changed() => return Gap("reconnected"),
            delivery = coord.next_delivery(scope, feed) => delivery,
        };
        let stored = match delivery {
            Err(gap) => return gap,
            Ok(Delivery::Idle | Delivery::Message { stored: None, .. }) => continue,
            Ok(Delivery::Message {
                stored: Some(stored),
                ..
            }) => stored,
        };
        if stored.seq <= *delivered {
            continue;
        }
        let Ok(key) = Key::new(scope.ns.clone(), stored.name.clone()) else {
            continue;
        };
        let event = match &stored.state {
            // Same value, new TTL: not a change.
            StoredState::Live(live) if live.renewal => continue,
            StoredState::Live(_) => match entry(&key, &stored) {
                Some(e) => WatchEvent::Put(e),
                None => continue,
            },
            StoredState::Gone => WatchEvent::Delete {
                key,
                revision: Revision(stored.seq),
            },
        };
        *delivered = stored.seq;
        if tx.send(Ok(event)).await.is_err() {
            return Gap("watcher gone");
        }
    }
}

/// Opens a new feed, retrying until it works or the watcher is gone.
async fn restart(coord: &NatsCoordinator, scope: &Scope, tx: &Sender) -> Option<(Feed, Snapshot)> {
    let heartbeat = coord.kv().config.watch_heartbeat;
    let backoff = Backoff::new(Duration::from_millis(20), heartbeat / 2);
    let mut pause = backoff.initial;
    loop {
        if tx.is_closed() {
            return None;
        }
        let deadline = coord.kv().deadline();
        match coord.start_feed(scope, deadline).await {
            Ok(started) => return Some(started),
            Err(e) => {
                tracing::debug!(filter = %scope.filter, error = %e, "watch restart failed; retrying");
                tokio::time::sleep(pause).await;
                pause = backoff.after(pause);
            }
        }
    }
}

#[async_trait::async_trait]
impl cluster_core::coordination::WatchStore for NatsCoordinator {
    async fn watch(&self, target: WatchTarget, start: WatchStart) -> CoordResult<WatchStream> {
        open(self, target, start).await
    }
}
