//! Mapping async-nats errors onto the port's `BusError` at the boundary: transport trouble is
//! retryable, a refusal by the server is not.

use std::time::Duration;

use async_nats::jetstream;
use cluster_core::event::BusError;
use cluster_core::event::BusOperation;

/// The error of a publish.
pub(crate) fn publish_error(e: jetstream::context::PublishError, subject: &str) -> BusError {
    use jetstream::context::PublishErrorKind as K;
    match e.kind() {
        // No responders: no stream listens, which is also what a restarting server says
        // before JetStream is up. Treated as retryable so no event is refused for a blip; a
        // missing stream shows as a lasting degraded mode with this cause in the log.
        K::StreamNotFound => BusError::unavailable(
            BusOperation::Publish,
            NoStreamAnswered {
                subject: subject.to_owned(),
            },
        ),
        K::MaxPayloadExceeded => BusError::PayloadTooLarge { size: 0, max: 0 },
        K::TimedOut | K::BrokenPipe | K::MaxAckPending | K::Other => {
            BusError::unavailable(BusOperation::Publish, e)
        }
        K::WrongLastMessageId | K::WrongLastSequence => BusError::Refused {
            operation: BusOperation::Publish,
            code: 10071,
            description: e.to_string(),
        },
    }
}

/// No stream answered a publish on `subject`.
#[derive(Debug, thiserror::Error)]
#[error("no stream answered on {subject}")]
pub(crate) struct NoStreamAnswered {
    subject: String,
}

/// The error of a JetStream API request (stream or consumer management).
pub(crate) fn api_error<E>(operation: BusOperation, e: E) -> BusError
where
    E: std::error::Error + Send + Sync + 'static,
{
    // The typed kinds differ per request; a JetStream API error carries the server's code.
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(s) = source {
        if let Some(api) = s.downcast_ref::<jetstream::Error>() {
            return BusError::Refused {
                operation,
                code: api.error_code().0,
                description: api.to_string(),
            };
        }
        source = s.source();
    }
    BusError::unavailable(operation, e)
}

/// A call that got no answer within `after`.
pub(crate) fn timed_out(operation: BusOperation, after: Duration) -> BusError {
    BusError::timed_out(operation, after)
}
