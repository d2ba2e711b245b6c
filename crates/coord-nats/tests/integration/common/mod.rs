//! Helpers shared by coord-nats's integration tests.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use cluster_core::coordination::{Key, WatchEvent, WatchStream};
use cluster_core::ids::PlatformName;
use cluster_core::naming::{NamespaceKind, namespace};
use coord_nats::NatsConfig;
use futures::StreamExt;

/// The adapter configuration the tests use: short deadlines and heartbeats.
pub fn config(url: String) -> NatsConfig {
    NatsConfig {
        call_timeout: Duration::from_secs(1),
        watch_heartbeat: Duration::from_millis(500),
        ping_interval: Duration::from_secs(1),
        ignore_discovered_servers: true,
        ..NatsConfig::new([url])
    }
}

/// A coordinator on `server` with [`config`].
pub async fn connect(server: &testkit::NatsServer) -> coord_nats::NatsCoordinator {
    coord_nats::NatsCoordinator::connect(config(server.url()))
        .await
        .unwrap()
}

/// A key in a namespace of its own.
pub fn fresh_key(name: &str) -> Key {
    let ns = testkit::coordination::fresh_namespace(NamespaceKind::Kv);
    testkit::coordination::key(&ns, name)
}

/// A key in a fixed platform's namespace of `kind`.
pub fn key_in(platform: &str, kind: NamespaceKind, name: &str) -> Key {
    let ns = namespace(&PlatformName::new(platform).unwrap(), None, kind);
    Key::new(ns, name).unwrap()
}

/// Waits until `watch` shows `value` at `key` (as a put or in a snapshot); panics after
/// `limit`, which only bounds a hang.
pub async fn until_value(watch: &mut WatchStream, key: &Key, value: &[u8], limit: Duration) {
    tokio::time::timeout(limit, async {
        loop {
            match watch.next().await {
                Some(Ok(WatchEvent::Put(e))) if e.key == *key && e.value == value => return,
                Some(Ok(WatchEvent::Snapshot { entries, .. }))
                    if entries.iter().any(|e| e.key == *key && e.value == value) =>
                {
                    return;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("watch error: {e}"),
                None => panic!("watch ended"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("watch never showed {:?}", String::from_utf8_lossy(value)));
}
