//! Test support for the whole workspace: real servers, faults, slots and contract suites.
//!
//! - [`NatsServer`], [`EtcdServer`], [`RedisServer`]: the real binaries on free loopback ports in
//!   temporary directories, started with a readiness probe (never a sleep), restartable on the
//!   same port with the same data, pausable with SIGSTOP, and killed when dropped or when the test
//!   process dies (see [`process`]).
//! - [`NatsCluster`], [`EtcdCluster`]: three-member clusters whose peer traffic goes through
//!   [`FaultProxy`]s, so one member can be cut off from the others.
//! - [`FaultProxy`]: pass, latency, refuse, blackhole, and cut, switchable while a test runs.
//! - [`test_slot`]: real-server tests take a slot so they do not starve each other of CPU.
//! - [`tools`]: where the binaries are and which versions are accepted (shared with `cargo xtask
//!   deps`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), testkit::StartError> {
//! let _slot = testkit::test_slot().await;
//! let etcd = testkit::EtcdServer::start().await?;
//! println!("etcd {} at {}", etcd.version(), etcd.url());
//! # Ok(()) }
//! ```
// Test code measures and waits on real time directly.
#![allow(clippy::disallowed_methods)]

pub mod consul;
pub mod coordination;
pub mod etcd;
pub mod event_bus;
pub mod fault_proxy;
pub mod nats;
pub mod object_store;
pub mod probe;
pub mod process;
pub mod redis;
pub mod server;
pub mod slot;
#[cfg(test)]
mod suite_cases;
pub mod tools;
pub mod wait;

pub use wait::{eventually, stays_true_for};

pub use consul::{ConsulOptions, ConsulServer};
pub use etcd::{EtcdCluster, EtcdServer};
pub use fault_proxy::{FaultProxy, Mode};
pub use nats::{NatsCluster, NatsOptions, NatsServer};
pub use redis::RedisServer;
pub use server::StartError;
pub use slot::{TestSlot, test_slot, test_slot_blocking};

/// Installs a `tracing` subscriber that writes to the test's captured output, once per process.
pub fn init_tracing() {
    use std::sync::Once;
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}
