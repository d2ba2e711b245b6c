//! Without the `sqlite` feature no app has a database: [`SqliteSpec`] and [`SqliteRole`] are
//! uninhabited, so the election's database steps (`follow`, `promote`, `stop_primary`, ...) are
//! code that provably never runs, and the runtime neither compiles nor links SQLite or
//! `wal-sqlite`. The signatures are those of `sqlite.rs`, which the feature compiles instead.

use std::time::Duration;

use cluster_core::object_store::ObjectStores;
use tokio_util::sync::CancellationToken;

use crate::context::{ActiveContext, AppContext};
use crate::error::{BoxError, RuntimeError};

/// No database: there is no value of this type.
#[derive(Debug, Clone)]
pub(crate) enum SqliteSpec {}

impl SqliteSpec {
    pub(crate) fn validate(&self) -> Result<(), RuntimeError> {
        match *self {}
    }
}

/// No database: there is no value of this type.
pub(crate) enum SqliteRole {}

impl SqliteRole {
    pub(crate) async fn open_retrying(
        _ctx: &AppContext,
        spec: &SqliteSpec,
        _provider: &dyn ObjectStores,
        _retry: Duration,
        _stop: &CancellationToken,
    ) -> Option<SqliteRole> {
        match *spec {}
    }

    pub(crate) async fn follow(&self) -> Result<(), BoxError> {
        match *self {}
    }

    pub(crate) async fn close(&self) {
        match *self {}
    }

    pub(crate) async fn stop_primary(&self) -> Result<(), BoxError> {
        match *self {}
    }

    pub(crate) async fn promote(
        &self,
        _active: &ActiveContext,
        _session: coord_client::Session,
    ) -> Result<(), BoxError> {
        match *self {}
    }

    pub(crate) async fn fenced_out(&self) {
        match *self {}
    }
}
