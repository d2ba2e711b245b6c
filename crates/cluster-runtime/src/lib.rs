//! The platform runtime.
//!
//! Composes the coordination and event-bus ports into [`Platform`] (one node) and [`App`] (a
//! named piece of work in one of four modes):
//!
//! | mode | who is active | authority |
//! | --- | --- | --- |
//! | [`AppMode::ActivePassive`] | the elected leader | the term's fencing token |
//! | [`AppMode::Pool`] | every node running the app | the node's session |
//! | [`AppMode::Replicas`] | `n` nodes, one per slot | each slot claim's token |
//! | [`AppMode::Ring`] | one owner per partition | each partition claim's token |
//!
//! Failure detection comes from the store: a node's lease ends, its keys vanish, and every
//! watcher reacts. A node loses its roles locally at its renew deadline, before the store can
//! expire its lease, and its writes carry fences the store checks ([`FencedKv`]).
//!
//! ```no_run
//! # async fn demo(coord: std::sync::Arc<dyn cluster_core::coordination::Coordinator>) -> Result<(), cluster_runtime::RuntimeError> {
//! use cluster_runtime::{App, Platform};
//!
//! let platform = Platform::builder("prod", "node-1").coordinator(coord).build()?;
//! let orders = platform.register(
//!     App::builder("orders")
//!         .active_passive()
//!         .on_active(|ctx| async move {
//!             let kv = ctx.fenced_kv().expect("active-passive terms are fenced");
//!             kv.put("leader-since", ctx.token.to_string()).await?;
//!             Ok(())
//!         })
//!         .build()?,
//! )?;
//! platform.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # let _ = orders; Ok(()) }
//! ```
#![warn(missing_docs)]
#![warn(clippy::unwrap_used)]

mod admin;
mod app;
mod audit;
mod context;
mod election;
mod error;
mod health;
mod hooks;
mod http;
mod kv;
pub mod metric_definitions;
mod owned_work;
mod platform;
mod ring;
mod self_health;
mod service;
mod sessions;
mod slots;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(not(feature = "sqlite"))]
#[path = "sqlite_off.rs"]
mod sqlite;
mod timing;

pub use app::{App, AppBuilder, AppHooks, AppMode};
pub use audit::{AuditEvent, AuditKind};
pub use context::{
    ActiveContext, AppContext, HealthChange, LeaderChange, MemberChange, OwnContext,
    ReleaseContext, ReleaseReason,
};
pub use election::{ElectionHandle, Role};
pub use error::{BoxError, HookResult, RuntimeError};
pub use health::{CheckReport, CheckResult, CheckSpec, HealthRegistry, HealthStatus};
pub use hooks::HookTimedOut;
pub use kv::{AppKv, FencedKv};
pub use owned_work::{PartitionWork, WorkError, WorkItem, WorkState};
pub use platform::{AppHandle, NodeState, Platform, PlatformBuilder};
pub use ring::{RingHandle, RingView};
pub use service::{ServiceCheck, ServiceOptions};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteSpec;
pub use timing::Timing;
