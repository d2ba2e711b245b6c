//! `EventHandler`: what a consumer runs for each event, inside the consumer's SQLite transaction.

use cluster_core::event::Envelope;

/// A handler's failure: the event is retried, later events of its key wait.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HandlerError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

impl HandlerError {
    /// Wraps any error.
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> HandlerError {
        HandlerError(Box::new(e))
    }
}

impl From<rusqlite::Error> for HandlerError {
    fn from(e: rusqlite::Error) -> HandlerError {
        HandlerError::new(e)
    }
}

/// Applies events. Runs on a blocking thread, one event at a time per consumer.
///
/// Write the event's effects through `tx`: the consumer commits them in the same transaction as
/// its dedup and order record, so an event's effect is committed exactly once, even when the
/// consumer crashes and the event is delivered again.
pub trait EventHandler: Send + Sync + 'static {
    /// Applies one event. An error rolls back `tx`, and the event is delivered again later.
    fn handle(&self, tx: &rusqlite::Transaction<'_>, event: &Envelope) -> Result<(), HandlerError>;
}

impl<F> EventHandler for F
where
    F: Fn(&rusqlite::Transaction<'_>, &Envelope) -> Result<(), HandlerError>
        + Send
        + Sync
        + 'static,
{
    fn handle(&self, tx: &rusqlite::Transaction<'_>, event: &Envelope) -> Result<(), HandlerError> {
        self(tx, event)
    }
}
