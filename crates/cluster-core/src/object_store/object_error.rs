//! Errors of the ObjectStore port.

/// The cause behind an [`ObjectStoreError::Unavailable`], kept shareable.
pub type ObjectErrorSource = crate::error::ErrorSource;

crate::operation_enum! {
    /// Which object store operation failed, for errors and metric labels.
    pub enum ObjectOperation {
        /// Opening or creating the bucket.
        Open => "open",
        /// Storing an object.
        Put => "put",
        /// Reading an object or its description.
        Get => "get",
        /// Listing objects.
        List => "list",
        /// Deleting an object.
        Delete => "delete",
    }
}

/// Why an object store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ObjectStoreError {
    /// The store could not be reached or did not answer in time. Retryable; a put that failed
    /// this way may still have been stored.
    #[error("object store unavailable during {operation}: {source}")]
    Unavailable {
        /// What was being done.
        operation: ObjectOperation,
        /// The underlying failure.
        #[source]
        source: ObjectErrorSource,
    },
    /// The name breaks the naming rules.
    #[error("invalid object name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// The object is larger than the store accepts.
    #[error("object of {size} bytes exceeds the store limit of {max} bytes")]
    TooLarge {
        /// The object's size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The stored bytes do not match what the store recorded for them.
    #[error("object {name} is damaged: {detail}")]
    Corrupt {
        /// The object.
        name: String,
        /// What did not match.
        detail: String,
    },
    /// The store refused the request (bad bucket config, permissions, a full disk).
    #[error("object store refused {operation}: {detail}")]
    Refused {
        /// What was being done.
        operation: ObjectOperation,
        /// The store's answer.
        detail: String,
    },
}

impl ObjectStoreError {
    /// An [`ObjectStoreError::Refused`].
    pub fn refused(operation: ObjectOperation, detail: impl Into<String>) -> Self {
        ObjectStoreError::Refused {
            operation,
            detail: detail.into(),
        }
    }
}

crate::unavailable_error!(ObjectStoreError, ObjectOperation);

impl crate::error::Retryable for ObjectStoreError {
    /// Whether the same call may succeed later.
    fn is_retryable(&self) -> bool {
        matches!(self, ObjectStoreError::Unavailable { .. })
    }

    /// A short label for metrics.
    fn as_metrics_label(&self) -> &'static str {
        match self {
            ObjectStoreError::Unavailable { .. } => "unavailable",
            ObjectStoreError::InvalidName { .. } => "invalid_name",
            ObjectStoreError::TooLarge { .. } => "too_large",
            ObjectStoreError::Corrupt { .. } => "corrupt",
            ObjectStoreError::Refused { .. } => "refused",
        }
    }
}
