//! Failures of JetStream calls, and how they map onto the port's errors at the boundary.
//!
//! A timeout, a broken connection, a stream without a leader or a JetStream that is not up yet
//! are `Unavailable` (retryable). A refused condition (`wrong last sequence`) is handled by the
//! caller, which knows what the condition was. Anything else the server refuses is `BadRequest`.

use std::time::Duration;

use cluster_core::coordination::{CoordError, Operation};

/// Why one JetStream call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum JsFailure {
    /// A `Nats-Expected-Last-Subject-Sequence` condition did not hold.
    #[error("wrong last sequence")]
    WrongLastSequence,
    /// The bucket's stream does not exist (or nothing answers on its subjects).
    #[error("bucket {0} does not exist")]
    NoBucket(String),
    /// No answer within the deadline.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The connection failed or the request could not be sent.
    #[error("nats: {0}")]
    Transport(String),
    /// The JetStream API refused the request.
    #[error("jetstream {code} (err_code {err_code}): {description}")]
    Api {
        /// HTTP-like status.
        code: usize,
        /// JetStream's error code.
        err_code: u64,
        /// The server's description.
        description: String,
    },
}

/// JetStream API error codes that mean "try again later".
const RETRYABLE_ERR_CODES: [u64; 9] = [
    10005, // no suitable peers for placement (a peer is offline)
    10008, // cluster not available
    10009, // not the cluster leader
    10023, // insufficient resources (a peer is down while placing a stream)
    10039, // jetstream not enabled for the account (while a server restarts)
    10076, // jetstream not enabled (yet, after a restart)
    10118, // stream offline
    10119, // consumer offline
    10194, // stream offline, with a reason
];

impl JsFailure {
    /// A failure from a JetStream API error.
    pub(crate) fn api(e: &async_nats::jetstream::Error) -> JsFailure {
        JsFailure::Api {
            code: e.code(),
            err_code: e.error_code().0,
            description: e.to_string(),
        }
    }

    /// Whether the failure means "the store could not serve this now".
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            JsFailure::Timeout(_) | JsFailure::Transport(_) | JsFailure::NoBucket(_) => true,
            JsFailure::WrongLastSequence => false,
            JsFailure::Api { code, err_code, .. } => {
                *code >= 500 || RETRYABLE_ERR_CODES.contains(err_code)
            }
        }
    }

    /// The port's error for this failure during `op`.
    pub(crate) fn into_coord(self, op: Operation) -> CoordError {
        if self.is_retryable() {
            CoordError::unavailable(op, self)
        } else {
            CoordError::bad_request(format!("{op}: {self}"))
        }
    }
}

/// A failure from an async-nats request error.
pub(crate) fn request_failure(
    e: &async_nats::jetstream::context::RequestError,
    bucket: &str,
    timeout: Duration,
) -> JsFailure {
    use async_nats::jetstream::context::RequestErrorKind;
    match e.kind() {
        RequestErrorKind::TimedOut => JsFailure::Timeout(timeout),
        RequestErrorKind::NoResponders => JsFailure::NoBucket(bucket.to_owned()),
        RequestErrorKind::InvalidSubject | RequestErrorKind::Other => {
            JsFailure::Transport(e.to_string())
        }
    }
}

/// A failure from a core request error.
pub(crate) fn core_request_failure(
    e: &async_nats::RequestError,
    bucket: &str,
    timeout: Duration,
) -> JsFailure {
    use async_nats::RequestErrorKind;
    match e.kind() {
        RequestErrorKind::TimedOut => JsFailure::Timeout(timeout),
        RequestErrorKind::NoResponders => JsFailure::NoBucket(bucket.to_owned()),
        _ => JsFailure::Transport(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_are_retryable_refusals_are_not() {
        assert!(JsFailure::Timeout(Duration::from_secs(1)).is_retryable());
        assert!(JsFailure::NoBucket("b".into()).is_retryable());
        let offline = JsFailure::Api {
            code: 500,
            err_code: 10118,
            description: "stream offline".into(),
        };
        assert!(offline.is_retryable());
        let bad = JsFailure::Api {
            code: 400,
            err_code: 10165,
            description: "invalid per-message TTL".into(),
        };
        assert!(!bad.is_retryable());
        assert!(matches!(
            bad.into_coord(Operation::Write),
            CoordError::BadRequest { .. }
        ));
    }
}
