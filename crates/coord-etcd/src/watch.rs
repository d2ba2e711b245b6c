//! Watches that resume where they left off.
//!
//! A watch starts with a `Range` read (the snapshot) and an etcd watch from the revision after
//! it. A background task forwards events and, when the stream breaks (server restart, member
//! without a leader, dead connection noticed by HTTP/2 pings), opens a new etcd watch from the
//! revision after the last one delivered. etcd keeps history until compaction, so nothing is
//! missed; if the history needed was compacted the stream ends with `Compacted`.

use std::time::Duration;

use cluster_core::backoff::Backoff;
use cluster_core::coordination::{
    CoordError, CoordResult, Key, KvEntry, Operation, WatchEvent, WatchStart, WatchStream,
    WatchTarget,
};
use cluster_core::ids::Revision;
use cluster_core::naming::Namespace;
use etcd_client::{EventType, GetOptions, SortOrder, SortTarget, WatchOptions};
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::EtcdCoordinator;
use crate::kv::{entry, revision};

struct Target {
    ns: Namespace,
    path: String,
    prefix: bool,
}

impl Target {
    fn watch_options(&self, from: Revision) -> WatchOptions {
        let options = WatchOptions::new().with_start_revision(from.0 as i64);
        if self.prefix {
            options.with_prefix()
        } else {
            options
        }
    }
}

/// Opens a watch: the snapshot (for `Now`) is read before returning, so errors surface here.
pub(crate) async fn open(
    coord: EtcdCoordinator,
    target: WatchTarget,
    start: WatchStart,
) -> CoordResult<WatchStream> {
    let target = match target {
        WatchTarget::Key(k) => Target {
            ns: k.namespace().clone(),
            path: k.path(),
            prefix: false,
        },
        WatchTarget::Prefix(p) => Target {
            ns: p.namespace().clone(),
            path: p.path(),
            prefix: true,
        },
    };
    let (tx, rx) = mpsc::channel(1024);
    let next = match start {
        WatchStart::After(r) => Revision(r.0 + 1),
        WatchStart::Now => {
            let resp = coord
                .call(Operation::Watch, None, |client| {
                    let path = target.path.clone();
                    let options = target.prefix.then(|| {
                        GetOptions::new()
                            .with_prefix()
                            .with_sort(SortTarget::Key, SortOrder::Ascend)
                    });
                    async move { client.kv_client().get(path, options).await }
                })
                .await?;
            let at = revision(resp.header().map_or(0, |h| h.revision()));
            let entries: Vec<KvEntry> = resp
                .kvs()
                .iter()
                .filter_map(|kv| entry(&target.ns, kv))
                .collect();
            let _ = tx
                .send(Ok(WatchEvent::Snapshot {
                    entries,
                    revision: at,
                }))
                .await;
            Revision(at.0 + 1)
        }
    };
    tokio::spawn(forward(coord, target, next, tx));
    Ok(tokio_stream_from(rx))
}

fn tokio_stream_from(rx: mpsc::Receiver<CoordResult<WatchEvent>>) -> WatchStream {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) }).boxed()
}

async fn forward(
    coord: EtcdCoordinator,
    target: Target,
    mut next: Revision,
    tx: mpsc::Sender<CoordResult<WatchEvent>>,
) {
    let backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
    let mut delay = backoff.initial;
    loop {
        let index = coord.current.load(std::sync::atomic::Ordering::Relaxed) % coord.clients.len();
        let mut client = coord.clients[index].watch_client();
        // Events below the revision this stream starts at were delivered by an earlier stream.
        // Several events may share one revision (a transaction, a lease expiring with many
        // keys): every one of them is delivered.
        let from = next;
        let opened = tokio::select! {
            _ = tx.closed() => return,
            opened = tokio::time::timeout(
                coord.config.call_timeout,
                client.watch(target.path.clone(), Some(target.watch_options(next))),
            ) => opened,
        };
        let mut stream = match opened {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!(path = %target.path, error = %e, "watch open failed; retrying");
                coord.rotate(index);
                tokio::time::sleep(delay).await;
                delay = backoff.after(delay);
                continue;
            }
            Err(_) => {
                coord.rotate(index);
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        loop {
            let message = tokio::select! {
                _ = tx.closed() => return,
                message = stream.message() => message,
            };
            let resp = match message {
                Ok(Some(resp)) => resp,
                Ok(None) | Err(_) => {
                    coord.rotate(index);
                    break;
                }
            };
            if resp.compact_revision() > 0 {
                let _ = tx
                    .send(Err(CoordError::Compacted {
                        requested: next,
                        compacted: revision(resp.compact_revision()),
                    }))
                    .await;
                return;
            }
            if resp.canceled() {
                tracing::debug!(path = %target.path, reason = resp.cancel_reason(), "watch cancelled; resuming");
                coord.rotate(index);
                break;
            }
            delay = backoff.initial;
            for event in resp.events() {
                let Some(kv) = event.kv() else { continue };
                let at = revision(kv.mod_revision());
                if at < from {
                    continue;
                }
                let item = match event.event_type() {
                    EventType::Put => entry(&target.ns, kv).map(WatchEvent::Put),
                    EventType::Delete => std::str::from_utf8(kv.key())
                        .ok()
                        .and_then(|p| p.strip_prefix(&target.ns.key_prefix()))
                        .and_then(|name| Key::new(target.ns.clone(), name).ok())
                        .map(|key| WatchEvent::Delete { key, revision: at }),
                };
                next = Revision(at.0 + 1);
                if let Some(item) = item
                    && tx.send(Ok(item)).await.is_err()
                {
                    return;
                }
            }
        }
        tokio::time::sleep(delay).await;
    }
}
