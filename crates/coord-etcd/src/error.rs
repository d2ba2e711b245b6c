//! Mapping etcd client errors onto the port's errors, at the boundary.

use cluster_core::coordination::{CoordError, LeaseId, Operation};
use etcd_client::Error;
use tonic::Code;

/// Converts an etcd client error into the port's error for `op`.
///
/// Transport, I/O and server-side unavailability are `Unavailable` (retryable); an unknown lease
/// is `LeaseLost`; malformed requests are `BadRequest`.
pub(crate) fn map(op: Operation, lease: Option<&str>, e: Error) -> CoordError {
    match &e {
        Error::InvalidArgs(_)
        | Error::InvalidUri(_)
        | Error::Utf8Error(_)
        | Error::InvalidMetadataValue(_) => CoordError::bad_request(e.to_string()),
        // The client opens a keep-alive stream with one renewal and reports TTL 0 this way.
        Error::LeaseKeepAliveError(msg) if msg.contains("not found") => CoordError::LeaseLost {
            lease: LeaseId::new(lease.unwrap_or("unknown")),
        },
        Error::GRpcStatus(status) => match status.code() {
            // etcd answers NotFound for exactly one thing here: "requested lease not found".
            Code::NotFound => CoordError::LeaseLost {
                lease: LeaseId::new(lease.unwrap_or("unknown")),
            },
            Code::InvalidArgument
            | Code::OutOfRange
            | Code::PermissionDenied
            | Code::Unauthenticated => CoordError::bad_request(e.to_string()),
            _ => CoordError::unavailable(op, e),
        },
        _ => CoordError::unavailable(op, e),
    }
}

/// Whether the error means the endpoint is unusable (move to another one).
pub(crate) fn is_connection_failure(e: &Error) -> bool {
    match e {
        Error::TransportError(_) | Error::IoError(_) => true,
        Error::GRpcStatus(status) => matches!(
            status.code(),
            Code::Unavailable | Code::Unknown | Code::Cancelled
        ),
        _ => false,
    }
}

/// Whether the request certainly did not reach a server that could apply it, so retrying it
/// elsewhere cannot apply it twice: the connection was refused, or the member has no leader
/// (etcd refuses before proposing).
pub(crate) fn never_reached_server(e: &Error) -> bool {
    match e {
        Error::TransportError(_) => true,
        Error::GRpcStatus(status) => {
            let message = status.message();
            status.code() == Code::Unavailable
                && (message.contains("connect error") || message.contains("no leader"))
        }
        _ => false,
    }
}
