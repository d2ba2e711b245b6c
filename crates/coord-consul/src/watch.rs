//! Watches as blocking queries: a read of the key (or prefix) for the snapshot, then reads with
//! `?index=<last X-Consul-Index>&wait=` that return when something under it changed.
//!
//! Consul keeps no history, so a watch is level-based with latest values: each answer is
//! compared with what the watcher knows, and the differences go out as `Put`s (in
//! `ModifyIndex` order) and `Delete`s (at the answer's index). After any gap the watch sends a
//! new `Snapshot` instead: a failed or timed-out query (store down, partition), an index that
//! went backwards (tombstones reaped, snapshot restored) or an index of 0. The loop is rate
//! limited by a token bucket (burst 10, then one query per 50 ms), as Consul's guide asks.
// The watch's request pacing runs on tokio's clock, which it sleeps on.
#![allow(clippy::disallowed_methods)]

use cluster_core::error::Retryable;
use std::collections::BTreeMap;
use std::time::Duration;

use cluster_core::backoff::Backoff;
use cluster_core::coordination::{
    CoordError, CoordResult, Key, KvEntry, Operation, WatchEvent, WatchStream, WatchTarget,
};
use cluster_core::ids::Revision;
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::api::{Call, KvPair, Param, SharedApi};
use crate::{consul_key, consul_prefix, entry_of};

/// What a watch reads.
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    target: WatchTarget,
    path: String,
    recurse: bool,
}

impl Scope {
    pub(crate) fn new(target: WatchTarget) -> Scope {
        let (path, recurse) = match &target {
            WatchTarget::Key(key) => (consul_key(key), false),
            WatchTarget::Prefix(prefix) => (consul_prefix(prefix), true),
        };
        Scope {
            target,
            path,
            recurse,
        }
    }

    fn namespace(&self) -> &cluster_core::naming::Namespace {
        match &self.target {
            WatchTarget::Key(key) => key.namespace(),
            WatchTarget::Prefix(prefix) => prefix.namespace(),
        }
    }
}

/// One read of the scope, blocking on `block = (index, wait)` if given: the answer's index and
/// the entries (sorted by key).
pub(crate) async fn read(
    api: &SharedApi,
    scope: &Scope,
    block: Option<(u64, Duration)>,
) -> CoordResult<(u64, Vec<KvEntry>)> {
    let mut params: Vec<Param> = Vec::new();
    if scope.recurse {
        params.push(("recurse", String::new()));
    }
    let mut deadline = None;
    match block {
        Some((index, wait)) => {
            params.push(("index", index.to_string()));
            params.push(("wait", format!("{}ms", wait.as_millis())));
            // Consul may add up to wait/16 before answering.
            deadline = Some(wait + wait / 16 + api.call_timeout);
        }
        None => params.push(("consistent", String::new())),
    }
    let answer = api
        .send(Call {
            op: Operation::Watch,
            method: Method::GET,
            path: &format!("kv/{}", scope.path),
            params: &params,
            body: None,
            lease: None,
            deadline,
        })
        .await?;
    let index = answer.index.unwrap_or(0);
    if answer.status == StatusCode::NOT_FOUND {
        return Ok((index, Vec::new()));
    }
    let pairs: Vec<KvPair> = answer.json(Operation::Watch)?;
    let ns = scope.namespace();
    let entries = pairs
        .iter()
        .filter_map(|p| entry_of(ns, p))
        .filter(|e| scope.target.matches(&e.key))
        .collect();
    Ok((index, entries))
}

/// The changes from `known` to `now` at `index`: puts in `ModifyIndex` order, then deletes.
pub(crate) fn diff(known: &BTreeMap<Key, KvEntry>, now: &[KvEntry], index: u64) -> Vec<WatchEvent> {
    let mut puts: Vec<KvEntry> = now
        .iter()
        .filter(|e| known.get(&e.key).is_none_or(|k| k.revision != e.revision))
        .cloned()
        .collect();
    puts.sort_by_key(|e| e.revision);
    let present: std::collections::BTreeSet<&Key> = now.iter().map(|e| &e.key).collect();
    let deletes = known
        .keys()
        .filter(|k| !present.contains(k))
        .map(|key| WatchEvent::Delete {
            key: key.clone(),
            revision: Revision(index),
        });
    puts.into_iter()
        .map(WatchEvent::Put)
        .chain(deletes)
        .collect()
}

/// A token bucket: `BURST` queries at once, then one per `REFILL`.
struct RateLimit {
    tokens: f64,
    last: Instant,
}

const BURST: f64 = 10.0;
const REFILL: Duration = Duration::from_millis(50);

impl RateLimit {
    fn new() -> RateLimit {
        RateLimit {
            tokens: BURST,
            last: Instant::now(),
        }
    }

    async fn take(&mut self) {
        let now = Instant::now();
        self.tokens =
            (self.tokens + (now - self.last).as_secs_f64() / REFILL.as_secs_f64()).min(BURST);
        self.last = now;
        if self.tokens < 1.0 {
            let missing = REFILL.mul_f64(1.0 - self.tokens);
            tokio::time::sleep(missing).await;
            self.tokens = 1.0;
            self.last = Instant::now();
        }
        self.tokens -= 1.0;
    }
}

/// Opens a watch: the first read happens here (a store that is down fails the call), the rest
/// in a background task that ends when the stream is dropped.
pub(crate) async fn open(api: SharedApi, wait: Duration, scope: Scope) -> CoordResult<WatchStream> {
    let (first_index, first) = read(&api, &scope, None).await?;
    let (tx, rx) = mpsc::channel::<CoordResult<WatchEvent>>(64);
    if tx
        .send(Ok(WatchEvent::Snapshot {
            entries: first.clone(),
            revision: Revision(first_index),
        }))
        .await
        .is_err()
    {
        return Err(CoordError::bad_request("watch receiver closed at once"));
    }
    tokio::spawn(follow(api, wait, scope, tx, first_index, first));
    Ok(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .boxed())
}

async fn follow(
    api: SharedApi,
    wait: Duration,
    scope: Scope,
    tx: mpsc::Sender<CoordResult<WatchEvent>>,
    mut index: u64,
    first: Vec<KvEntry>,
) {
    let mut known: BTreeMap<Key, KvEntry> = first.into_iter().map(|e| (e.key.clone(), e)).collect();
    let mut gap = false;
    let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    let mut delay = backoff.initial;
    let mut limit = RateLimit::new();
    loop {
        limit.take().await;
        let answer = tokio::select! {
            _ = tx.closed() => return,
            answer = read(&api, &scope, Some((index.max(1), wait))) => answer,
        };
        let (new_index, entries) = match answer {
            Ok(answer) => answer,
            Err(e) if e.is_retryable() => {
                tracing::debug!(path = %scope.path, error = %e, "Consul watch: query failed; will resync");
                gap = true;
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = backoff.after(delay);
                continue;
            }
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        delay = backoff.initial;
        let events = if gap || new_index < index || new_index == 0 {
            vec![WatchEvent::Snapshot {
                entries: entries.clone(),
                revision: Revision(new_index),
            }]
        } else if new_index == index {
            Vec::new()
        } else {
            diff(&known, &entries, new_index)
        };
        for event in events {
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
        known = entries.into_iter().map(|e| (e.key.clone(), e)).collect();
        // Consul's guide: an index of 0 is a bug upstream; 1 is always safe to block on.
        index = new_index.max(1);
        gap = false;
    }
}
