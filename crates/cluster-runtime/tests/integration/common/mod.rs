//! Fixtures for runtime tests: nodes on one in-memory store, and an ordered event log.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_core::coordination::Coordinator;
use cluster_core::time::MonoTime;
use cluster_runtime::{App, AppHandle, Platform, PlatformBuilder, RuntimeError};
use coord_mem::MemCoordinator;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Short timings so tests move quickly; the order of events is what they check.
pub(crate) const TTL: Duration = Duration::from_millis(1500);
pub(crate) const MARGIN: Duration = Duration::from_millis(500);

/// One entry of the shared log: who, what, with which token, when (monotonic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) node: String,
    pub(crate) event: String,
    pub(crate) token: u64,
    pub(crate) at: MonoTime,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Log(Arc<Mutex<Vec<Entry>>>);

impl Log {
    pub(crate) fn push(&self, node: &str, event: &str, token: u64) {
        self.0.lock().unwrap().push(Entry {
            node: node.to_owned(),
            event: event.to_owned(),
            token,
            at: coord_client::mono_now(),
        });
    }

    pub(crate) fn entries(&self) -> Vec<Entry> {
        self.0.lock().unwrap().clone()
    }

    pub(crate) fn events_of(&self, node: &str) -> Vec<String> {
        self.entries()
            .into_iter()
            .filter(|e| e.node == node)
            .map(|e| e.event)
            .collect()
    }

    pub(crate) fn position_of(&self, node: &str, event: &str) -> Option<usize> {
        self.entries()
            .iter()
            .position(|e| e.node == node && e.event == event)
    }

    pub(crate) fn position(&self, node: &str, event: &str, token: u64) -> Option<usize> {
        self.entries()
            .iter()
            .position(|e| e.node == node && e.event == event && e.token == token)
    }
}

/// A platform running in a task until stopped.
pub(crate) struct Running {
    stop: Option<oneshot::Sender<()>>,
    pub(crate) task: JoinHandle<Result<(), RuntimeError>>,
}

impl Running {
    /// Runs `platform` in a task.
    pub(crate) fn spawn(platform: &Platform) -> Running {
        let (tx, rx) = oneshot::channel::<()>();
        let runner = platform.clone();
        let task = tokio::spawn(async move {
            runner
                .run(async move {
                    let _ = rx.await;
                })
                .await
        });
        Running {
            stop: Some(tx),
            task,
        }
    }

    /// Shuts the platform down gracefully; returns how `run` ended.
    pub(crate) async fn stop(mut self) -> Result<(), RuntimeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.expect("platform task")
    }
}

/// A running node: its platform, app handle, and a way to stop it gracefully.
pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) platform: Platform,
    pub(crate) app: AppHandle,
    pub(crate) coord: MemCoordinator,
    pub(crate) running: Running,
}

impl Node {
    pub(crate) async fn stop(self) -> Result<(), RuntimeError> {
        self.running.stop().await
    }
}

/// Starts node `name` on `store` (its own link) with `app`.
pub(crate) async fn start_node(store: &MemCoordinator, name: &str, app: App) -> Node {
    start_node_with(store, name, app, |b| b).await
}

/// Starts node `name` with `app`, its platform settings adjusted by `configure`.
pub(crate) async fn start_node_with(
    store: &MemCoordinator,
    name: &str,
    app: App,
    configure: impl FnOnce(PlatformBuilder) -> PlatformBuilder,
) -> Node {
    start_node_on(store.connect(), name, app, configure).await
}

/// Starts node `name` on the handle `coord` (whose link the test may have armed already).
pub(crate) async fn start_node_on(
    coord: MemCoordinator,
    name: &str,
    app: App,
    configure: impl FnOnce(PlatformBuilder) -> PlatformBuilder,
) -> Node {
    let coord = coord.with_call_timeout(Duration::from_millis(300));
    let builder = Platform::builder("test", name)
        .coordinator(Arc::new(coord.clone()) as Arc<dyn Coordinator>)
        .lease_ttl(TTL)
        .lease_margin(MARGIN)
        .hook_timeout(Duration::from_secs(2))
        .shutdown_timeout(Duration::from_secs(10))
        .drain_timeout(Duration::from_secs(2));
    let platform = configure(builder).build().expect("platform config");
    let app = platform.register(app).expect("register");
    Node {
        name: name.to_owned(),
        running: Running::spawn(&platform),
        platform,
        app,
        coord,
    }
}

/// Polls `check` until it holds; the limit only bounds a hang.
pub(crate) async fn eventually<F: FnMut() -> bool>(what: &str, limit: Duration, mut check: F) {
    let deadline = std::time::Instant::now() + limit;
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
