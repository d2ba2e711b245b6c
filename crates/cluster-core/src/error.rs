//! What every error of the workspace answers, written once.
//!
//! Callers react to an error in two ways: retry it later or give up, and count it under a
//! stable label. [`Retryable`] is that question, implemented by every library error (the three
//! port errors, the runtime's, the publisher's, replication's and the value errors of this
//! crate), so a retry loop or a metric never needs to know which crate an error came from.
//!
//! The three port errors (`CoordError`, `BusError`, `ObjectStoreError`) share one shape: an
//! operation enum naming what was being done, and an `Unavailable { operation, source }`
//! variant, the only retryable one, decided by the adapter at the boundary. [`operation_enum!`](crate::operation_enum)
//! writes such an operation enum with its label and `Display`, and [`unavailable_error!`](crate::unavailable_error) the
//! `unavailable` and `timed_out` constructors, so the three cannot drift apart.
//!
//! ```
//! use cluster_core::coordination::{CoordError, Operation};
//! use cluster_core::error::Retryable;
//!
//! let e = CoordError::timed_out(Operation::Read, std::time::Duration::from_secs(1));
//! assert!(e.is_retryable());
//! assert_eq!(e.as_metrics_label(), "unavailable");
//! assert_eq!(Operation::Read.to_string(), "read");
//! ```

use std::sync::Arc;

/// The cause behind an `Unavailable` error: kept as a shareable error object.
pub type ErrorSource = Arc<dyn std::error::Error + Send + Sync>;

/// The two questions every error of the workspace answers.
pub trait Retryable {
    /// Whether the same call may succeed if retried later (the store or bus was unreachable,
    /// or did not answer in time). An error that is not retryable is final for that call.
    fn is_retryable(&self) -> bool;

    /// A short, stable, lowercase label for metrics: one per variant.
    fn as_metrics_label(&self) -> &'static str;
}

/// A call did not complete within its deadline.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("no answer within {after:?}")]
pub struct DeadlineExceeded {
    /// The deadline that passed.
    pub after: std::time::Duration,
}

/// An operation enum: `Copy`, non-exhaustive, with `as_str` (the metric label) and `Display`.
///
/// ```
/// cluster_core::operation_enum! {
///     /// What a cache was doing.
///     pub enum CacheOperation {
///         /// Reading.
///         Get => "get",
///         /// Writing.
///         Put => "put",
///     }
/// }
/// assert_eq!(CacheOperation::Put.as_str(), "put");
/// assert_eq!(CacheOperation::Get.to_string(), "get");
/// ```
#[macro_export]
macro_rules! operation_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $label:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        $vis enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// A short lowercase label for metrics.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $label ),+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// The `unavailable` and `timed_out` constructors of a port error whose `Unavailable` variant
/// is `{ operation: $operation, source: ErrorSource }`.
#[macro_export]
macro_rules! unavailable_error {
    ($error:ident, $operation:ty) => {
        impl $error {
            /// An `Unavailable` error from any error: retryable.
            pub fn unavailable(
                operation: $operation,
                source: impl ::std::error::Error + Send + Sync + 'static,
            ) -> Self {
                $error::Unavailable {
                    operation,
                    source: ::std::sync::Arc::new(source),
                }
            }

            /// An `Unavailable` error for a call that ran past its deadline: retryable.
            pub fn timed_out(operation: $operation, after: ::std::time::Duration) -> Self {
                $error::unavailable(operation, $crate::error::DeadlineExceeded { after })
            }
        }
    };
}

/// [`Retryable`] for errors that are never retryable (invalid values and configurations): one
/// label for the whole type.
#[macro_export]
macro_rules! never_retryable {
    ($( $error:ty => $label:literal ),+ $(,)?) => {
        $(
            impl $crate::error::Retryable for $error {
                fn is_retryable(&self) -> bool {
                    false
                }

                fn as_metrics_label(&self) -> &'static str {
                    $label
                }
            }
        )+
    };
}

// The value and configuration errors of this crate: a bad value stays bad.
crate::never_retryable! {
    crate::config::ConfigError => "config",
    crate::ids::IdError => "invalid_id",
    crate::lease::LeaseTimingError => "lease_timing",
    crate::lease::LeaseError => "lease",
    crate::ring::RingError => "ring",
    crate::rebalance::PlanError => "plan",
    crate::placement::PolicyError => "placement_policy",
    crate::node_health::HealthConfigError => "health_config",
    crate::rate_limiter::RateLimitConfigError => "rate_limit_config",
    crate::dedup_window::DedupConfigError => "dedup_config",
    crate::event::SubjectError => "subject",
    crate::event::SchemaError => "schema",
    crate::event::RegistryError => "schema_registry",
    crate::event::RouteError => "schema_route",
    crate::event::EnvelopeError => "envelope",
    crate::event::SchemaVersionError => "schema_version",
    crate::event::EventIdError => "event_id",
    crate::event::TimestampError => "timestamp",
    crate::event::DrainTimeout => "drain_timeout",
    crate::fencing::StaleToken => "stale_token",
}

impl Retryable for DeadlineExceeded {
    fn is_retryable(&self) -> bool {
        true
    }

    fn as_metrics_label(&self) -> &'static str {
        "deadline_exceeded"
    }
}

impl Retryable for crate::rate_limiter::RateLimited {
    /// A limited call may pass once the limiter has refilled.
    fn is_retryable(&self) -> bool {
        true
    }

    fn as_metrics_label(&self) -> &'static str {
        "rate_limited"
    }
}
