//! Errors of the EventBus port.

use std::sync::Arc;

/// The cause behind a [`BusError::Unavailable`], kept shareable.
pub type BusErrorSource = Arc<dyn std::error::Error + Send + Sync>;

/// Which bus operation failed, for errors and metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BusOperation {
    /// Creating or updating a stream.
    Provision,
    /// Publishing a message.
    Publish,
    /// Creating or resuming a durable consumer.
    Subscribe,
    /// Receiving the next delivery.
    Receive,
    /// Acknowledging, rejecting or terminating a delivery.
    Ack,
}

impl BusOperation {
    /// A short lowercase label.
    pub const fn as_str(self) -> &'static str {
        match self {
            BusOperation::Provision => "provision",
            BusOperation::Publish => "publish",
            BusOperation::Subscribe => "subscribe",
            BusOperation::Receive => "receive",
            BusOperation::Ack => "ack",
        }
    }
}

impl std::fmt::Display for BusOperation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a bus operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// The bus could not be reached or did not answer in time. Retryable.
    #[error("event bus unavailable during {operation}: {source}")]
    Unavailable {
        /// What was being done.
        operation: BusOperation,
        /// The underlying failure.
        #[source]
        source: BusErrorSource,
    },
    /// No stream takes messages on this subject.
    #[error("no stream stores subject {subject}")]
    NoStream {
        /// The subject.
        subject: String,
    },
    /// The message is larger than the bus accepts.
    #[error("message of {size} bytes exceeds the bus limit of {max} bytes")]
    PayloadTooLarge {
        /// The message size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The server refused the request (a JetStream API error).
    #[error("event bus refused {operation}: {description} (code {code})")]
    Refused {
        /// What was being done.
        operation: BusOperation,
        /// The server's error code.
        code: u64,
        /// The server's description.
        description: String,
    },
    /// A stream or subscription spec is invalid.
    #[error("invalid {field}: {reason}")]
    InvalidSpec {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// The subscription or connection was closed.
    #[error("event bus connection or subscription closed")]
    Closed,
}

impl BusError {
    /// An [`BusError::Unavailable`] from any error.
    pub fn unavailable(
        operation: BusOperation,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        BusError::Unavailable {
            operation,
            source: Arc::new(source),
        }
    }

    /// An [`BusError::Unavailable`] for a call that got no answer within `after`.
    pub fn timed_out(operation: BusOperation, after: std::time::Duration) -> Self {
        BusError::unavailable(operation, crate::coordination::DeadlineExceeded { after })
    }

    /// Whether the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, BusError::Unavailable { .. })
    }

    /// A short label for metrics.
    pub fn as_metrics_label(&self) -> &'static str {
        match self {
            BusError::Unavailable { .. } => "unavailable",
            BusError::NoStream { .. } => "no_stream",
            BusError::PayloadTooLarge { .. } => "too_large",
            BusError::Refused { .. } => "refused",
            BusError::InvalidSpec { .. } => "invalid_spec",
            BusError::Closed => "closed",
        }
    }
}
