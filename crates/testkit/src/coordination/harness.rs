//! What an adapter provides to run the contract suite.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use cluster_core::coordination::{Coordinator, Key};
use cluster_core::ids::{PlatformName, Revision};
use cluster_core::lease::LeaseTiming;
use cluster_core::naming::{Namespace, NamespaceKind, namespace};

/// The timing a backend needs in the suite.
#[derive(Debug, Clone, Copy)]
pub struct TimingProfile {
    /// The lease TTL the suite asks for (at least the backend's minimum).
    pub ttl: Duration,
    /// The safety margin of sessions.
    pub margin: Duration,
    /// How much longer than its TTL the store may keep an unrenewed lease (Consul: 2x).
    pub expiry_factor: u32,
    /// The backend's per-call deadline: a call to an unreachable store fails within it.
    pub call_timeout: Duration,
}

impl TimingProfile {
    /// The session timing.
    pub fn lease_timing(&self) -> LeaseTiming {
        LeaseTiming {
            ttl: self.ttl,
            margin: self.margin,
        }
    }

    /// The longest an unrenewed lease may live at the store, plus slack for the store's own
    /// expiry sweep: a bound for waits that must see an expiry.
    pub fn max_expiry(&self) -> Duration {
        self.ttl * self.expiry_factor + Duration::from_secs(5)
    }
}

/// A fault on one client's connection to the store.
pub trait ClientFault: Send + Sync {
    /// Accept nothing and answer nothing (held bytes flow again on heal).
    fn blackhole(&self);
    /// Back to normal.
    fn heal(&self);
}

impl ClientFault for crate::FaultProxy {
    fn blackhole(&self) {
        self.set_mode(crate::Mode::Blackhole);
    }

    fn heal(&self) {
        self.heal();
    }
}

/// A fresh store under test, with clients and faults.
#[async_trait]
pub trait CoordHarness: Send + Sync {
    /// A new client of the store, connected directly.
    async fn client(&self) -> Arc<dyn Coordinator>;

    /// A new client whose own connection can be faulted.
    async fn faultable_client(&self) -> (Arc<dyn Coordinator>, Box<dyn ClientFault>);

    /// Makes the store unavailable to every client (stops the server), keeping its data.
    async fn stop_store(&mut self);

    /// Brings the store back with its data.
    async fn start_store(&mut self);

    /// Compacts history up to `revision`; `false` if the backend has no history to compact.
    async fn compact(&self, revision: Revision) -> bool;

    /// The backend's timing.
    fn timing(&self) -> TimingProfile;
}

/// A namespace no other case uses, so cases sharing a store never see each other's keys.
pub fn fresh_namespace(kind: NamespaceKind) -> Namespace {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let platform = PlatformName::new(format!("contract-{}-{n}", std::process::id()))
        .unwrap_or_else(|e| panic!("contract platform name: {e}"));
    namespace(&platform, None, kind)
}

/// A key in `ns`.
pub fn key(ns: &Namespace, name: &str) -> Key {
    Key::new(ns.clone(), name).unwrap_or_else(|e| panic!("contract key {name:?}: {e}"))
}
