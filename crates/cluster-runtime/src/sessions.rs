//! The node's current session, shared by every driver.
//!
//! The platform opens a session (a lease), registers the node under it, and publishes it here.
//! When the session is lost the slot empties; drivers stop what the lease authorised and wait for
//! the next session (with a new lease, re-registered) before campaigning or claiming again.

use std::future::Future;

use coord_client::Session;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How a step run under a session ended.
pub(crate) enum Under<T> {
    /// The driver was told to stop.
    Stopped,
    /// The session was lost first: what it authorised is void; wait for the next one.
    Lost,
    /// The step finished while the session was alive.
    Done(T),
}

/// The slot holding the node's live session, if any.
#[derive(Clone)]
pub(crate) struct SessionSlot {
    tx: std::sync::Arc<watch::Sender<Option<Session>>>,
}

impl Default for SessionSlot {
    fn default() -> Self {
        SessionSlot {
            tx: std::sync::Arc::new(watch::channel(None).0),
        }
    }
}

impl SessionSlot {
    /// Publishes a new live session, or none.
    pub(crate) fn set(&self, session: Option<Session>) {
        self.tx.send_replace(session);
    }

    /// The session, if one is alive now.
    pub(crate) fn current(&self) -> Option<Session> {
        self.tx.borrow().clone().filter(Session::is_alive)
    }

    /// The last session published, alive or not (to revoke it on shutdown).
    pub(crate) fn latest(&self) -> Option<Session> {
        self.tx.borrow().clone()
    }

    /// Waits for a live session; `None` once `stop` fires (every driver's loop starts here).
    pub(crate) async fn next_live(&self, stop: &CancellationToken) -> Option<Session> {
        tokio::select! {
            _ = stop.cancelled() => None,
            s = self.alive() => Some(s),
        }
    }

    /// Waits for a live session.
    pub(crate) async fn alive(&self) -> Session {
        let mut rx = self.tx.subscribe();
        loop {
            if let Some(s) = rx.borrow_and_update().clone().filter(Session::is_alive) {
                return s;
            }
            if rx.changed().await.is_err() {
                // The sender lives as long as the platform; park if it is gone.
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Runs `step` (a campaign, a claim) under `session`: abandoned as soon as `stop` fires or the
/// session is lost, whichever comes first.
pub(crate) async fn under<T>(
    session: &Session,
    stop: &CancellationToken,
    step: impl Future<Output = T>,
) -> Under<T> {
    tokio::select! {
        _ = stop.cancelled() => Under::Stopped,
        _ = session.lost() => Under::Lost,
        t = step => Under::Done(t),
    }
}
