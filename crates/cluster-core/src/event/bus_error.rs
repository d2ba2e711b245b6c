//! Errors of the EventBus port.

/// The cause behind a [`BusError::Unavailable`], kept shareable.
pub type BusErrorSource = crate::error::ErrorSource;

crate::operation_enum! {
    /// Which bus operation failed, for errors and metric labels.
    pub enum BusOperation {
        /// Creating or updating a stream.
        Provision => "provision",
        /// Publishing a message.
        Publish => "publish",
        /// Creating or resuming a durable consumer.
        Subscribe => "subscribe",
        /// Receiving the next delivery.
        Receive => "receive",
        /// Acknowledging, rejecting or terminating a delivery.
        Ack => "ack",
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

crate::unavailable_error!(BusError, BusOperation);

impl crate::error::Retryable for BusError {
    /// Whether the same call may succeed later.
    fn is_retryable(&self) -> bool {
        matches!(self, BusError::Unavailable { .. })
    }

    /// A short label for metrics.
    fn as_metrics_label(&self) -> &'static str {
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
