//! The client side of the coordination port, built once for every backend.
//!
//! - [`Session`]: a lease kept alive in the background, judged by `cluster_core::lease`'s state
//!   machine on the monotonic clock, with a lost signal that fires at the local deadline (send
//!   time of the last acknowledged renewal + granted TTL - margin), before the store can expire
//!   the lease. Lost is final: keep-alives stop and a best-effort revoke is sent.
//! - [`TokioClock`]: the `Clock` port over tokio's clock (so tests can pause time).
//! - [`RetryPolicy`]: exponential backoff with jitter for retryable errors, within a budget.
//!
//! Adapters (`coord-etcd`, `coord-consul`, `coord-nats`, `coord-mem`) implement the port with
//! one round trip per call; this crate adds what must behave the same on all of them.
#![warn(missing_docs)]
#![warn(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::disallowed_methods))]

mod clock;
mod retry;
mod session;

pub use clock::{BootClock, TokioClock, instant_now, mono_now, to_instant, wall_now};
pub use retry::RetryPolicy;
pub use session::{LostReason, Session, SessionState};
