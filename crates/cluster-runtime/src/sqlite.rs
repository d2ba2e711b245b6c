//! SQLite replication wired into an active-passive app's election (`App::with_sqlite`).
//!
//! The leader's database is captured into WAL segments on the app's `wal` bucket; every standby
//! follows them into its replica. The runtime drives `wal-sqlite` from the election:
//!
//! - standby (initially, and after every term): stop the replicator if one runs, discard the
//!   local primary copy (its unshipped tail belongs to a term that ended), follow into the replica;
//! - becoming leader, before `on_active`: promote the replica (catch up, verify, seal the old
//!   generation with a CAS in the coordinator, move the replica into place, start a generation
//!   under this term's token, fence and lease deadline). A failed promotion fails `on_active`, so
//!   the node steps down instead of leading without its data;
//! - a replicator fenced out by a newer term ends the term at once.
//!
//! The app must not open the database path until `on_active` runs. Audit events:
//! `promotion_started`, `wal_catchup_started`, `wal_catchup_completed`, `database_verified`,
//! `promotion_completed`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_core::coordination::KvStore;
use cluster_core::ids::FencingToken;
use cluster_core::naming::{NamespaceKind, namespace};
use cluster_core::object_store::{ObjectStoreError, ObjectStores};
use tokio_util::sync::CancellationToken;
use wal_sqlite::{
    GenerationRegistry, PromotionEvent, ReplicationConfig, ReplicationStores, ReplicationTerm,
    Replicator, Retention, Snapshots, Standby, StandbyConfig,
};

use crate::audit::{AuditKind, AuditRecord};
use crate::context::{ActiveContext, AppContext};
use crate::error::{BoxError, RuntimeError};

/// Where an app's database lives and how it is kept.
#[derive(Debug, Clone)]
pub struct SqliteSpec {
    /// The database the leader writes (WAL mode).
    pub path: PathBuf,
    /// Where a standby keeps its replica.
    pub replica_path: PathBuf,
    /// How often the leader takes a snapshot (none if unset).
    pub snapshot_interval: Option<Duration>,
    /// Which snapshots to keep.
    pub retention: Retention,
    /// Promote even when a segment is missing below the head (losing commits); off by default.
    pub accept_data_loss: bool,
}

impl SqliteSpec {
    /// Refuses a spec that cannot work, naming the field.
    pub(crate) fn validate(&self) -> Result<(), RuntimeError> {
        if self.path == self.replica_path {
            return Err(RuntimeError::config(
                "sqlite.replica_path",
                "must differ from the database path",
            ));
        }
        Ok(())
    }
}

/// The replication side of one app on one node.
pub(crate) struct SqliteRole {
    spec: SqliteSpec,
    stores: ReplicationStores,
    standby: tokio::sync::Mutex<Option<Standby>>,
    replicator: Mutex<Option<Replicator>>,
    /// The token of the term the running replicator serves.
    term_token: Mutex<Option<u64>>,
    audit: crate::audit::Audit,
    app: String,
}

impl SqliteRole {
    /// Opens the app's buckets and generation registry.
    pub(crate) async fn open(
        ctx: &AppContext,
        spec: SqliteSpec,
        provider: &dyn ObjectStores,
    ) -> Result<SqliteRole, RuntimeError> {
        let wal_ns = namespace(ctx.platform(), Some(ctx.app()), NamespaceKind::Wal);
        let snap_ns = namespace(ctx.platform(), Some(ctx.app()), NamespaceKind::Snapshots);
        let bucket = |e: ObjectStoreError| RuntimeError::config("object_stores", e.to_string());
        let wal = provider.bucket(&wal_ns.bucket()).await.map_err(bucket)?;
        let snapshots = provider.bucket(&snap_ns.bucket()).await.map_err(bucket)?;
        let kv: Arc<dyn KvStore> = ctx.coordinator().clone();
        Ok(SqliteRole {
            spec,
            stores: ReplicationStores {
                wal,
                snapshots,
                registry: GenerationRegistry::new(kv, wal_ns),
            },
            standby: tokio::sync::Mutex::new(None),
            replicator: Mutex::new(None),
            term_token: Mutex::new(None),
            audit: ctx.shared.audit.clone(),
            app: ctx.app().to_string(),
        })
    }

    /// Opens the role, retrying while the buckets cannot be opened (the store restarting): the
    /// app cannot campaign without its database. `None` if `stop` fires first.
    pub(crate) async fn open_retrying(
        ctx: &AppContext,
        spec: &SqliteSpec,
        provider: &dyn ObjectStores,
        retry: Duration,
        stop: &CancellationToken,
    ) -> Option<SqliteRole> {
        loop {
            match SqliteRole::open(ctx, spec.clone(), provider).await {
                Ok(role) => return Some(role),
                Err(e) => {
                    tracing::warn!(app = %ctx.app(), error = %e, "cannot open the database's buckets yet; retrying");
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return None,
                _ = tokio::time::sleep(retry) => {}
            }
        }
    }

    /// The running replicator, while this node is the primary.
    pub(crate) fn replicator(&self) -> Option<Replicator> {
        self.replicator
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The app's snapshots (taken by the replicator while this node is primary).
    /// Where a snapshot is restored for the admin API before its bytes are sent: beside the
    /// database, on the same filesystem.
    pub(crate) fn scratch_path(&self, id: &str) -> PathBuf {
        let mut p = self.spec.path.clone().into_os_string();
        p.push(format!(".restore-{id}"));
        p.into()
    }

    pub(crate) fn snapshots(&self) -> Snapshots {
        Snapshots::new(
            self.stores.wal.clone(),
            self.stores.snapshots.clone(),
            self.replicator(),
        )
    }

    /// Stops the replicator of this node's term, if one runs, shipping what is committed (it
    /// retries until shipped or the term ends), and discards the local primary copy: whatever
    /// it holds beyond what was shipped belongs to a term that ended. Called before a graceful
    /// resign, so the successor promotes with every commit of the term.
    ///
    /// A tail that could not be shipped is not hidden: the loss is audited (`wal_tail_lost`)
    /// and the database is kept aside at `{path}.unshipped-{token}` for an operator.
    pub(crate) async fn stop_primary(&self) -> Result<(), BoxError> {
        let replicator = self
            .replicator
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let token = self
            .term_token
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(r) = replicator {
            match r.stop().await {
                Ok(()) => wal_sqlite::discard_database(&self.spec.path)?,
                Err(wal_sqlite::ReplicationError::TailNotShipped {
                    shipped,
                    segments,
                    transactions,
                    reason,
                }) => {
                    let aside = self.keep_aside(token)?;
                    let detail = format!(
                        "{segments} segment(s), {transactions} transaction(s) after {} not shipped ({reason}); database kept at {}",
                        shipped.map_or_else(|| "the start".to_owned(), |p| p.to_string()),
                        aside.display()
                    );
                    tracing::error!(app = %self.app, %detail, "the end of the term's WAL was not shipped");
                    self.audit.record(
                        AuditRecord::new(AuditKind::WalTailLost)
                            .app(&self.app)
                            .maybe_token(token.map(FencingToken::new))
                            .detail(detail),
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the replicator ended with an error");
                    wal_sqlite::discard_database(&self.spec.path)?;
                }
            }
        }
        Ok(())
    }

    /// Moves the primary database (and its WAL and shared-memory files) aside.
    fn keep_aside(&self, token: Option<u64>) -> Result<PathBuf, BoxError> {
        let suffix = format!(".unshipped-{}", token.unwrap_or(0));
        let mut aside = self.spec.path.clone().into_os_string();
        aside.push(&suffix);
        let aside = PathBuf::from(aside);
        for extra in ["", "-wal", "-shm"] {
            let mut from = self.spec.path.clone().into_os_string();
            from.push(extra);
            let mut to = aside.clone().into_os_string();
            to.push(extra);
            match std::fs::rename(&from, &to) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(aside)
    }

    /// Becomes (or stays) a standby following into the replica.
    pub(crate) async fn follow(&self) -> Result<(), BoxError> {
        self.stop_primary().await?;
        let mut standby = self.standby.lock().await;
        if standby.is_none() {
            *standby = Some(self.start_standby().await?);
        }
        Ok(())
    }

    /// A standby following into the replica path.
    async fn start_standby(&self) -> Result<Standby, BoxError> {
        let standby = Standby::start(
            &self.spec.replica_path,
            StandbyConfig::default(),
            self.stores.clone(),
        )
        .await?;
        Ok(standby)
    }

    /// Stops replication on this node (at shutdown): the replicator ships what it can, the
    /// standby stops where it is.
    pub(crate) async fn close(&self) {
        if let Err(e) = self.stop_primary().await {
            tracing::warn!(error = %e, "stopping the database's replication failed");
        }
        if let Some(standby) = self.standby.lock().await.take()
            && let Err(e) = standby.stop().await
        {
            tracing::warn!(error = %e, "the standby ended with an error");
        }
    }

    /// Promotes the replica to primary under the term of `active`.
    pub(crate) async fn promote(
        &self,
        active: &ActiveContext,
        session: coord_client::Session,
    ) -> Result<(), BoxError> {
        let fence = active
            .fence
            .clone()
            .ok_or("an active-passive term always has a fence")?;
        let standby = match self.standby.lock().await.take() {
            Some(s) => s,
            None => self.start_standby().await?,
        };
        let audit = active.app.shared.audit.clone();
        let app = active.app.app().to_string();
        let token = active.token;
        let observer: wal_sqlite::PromotionObserver = Arc::new(move |e: &PromotionEvent| {
            let kind = match e {
                PromotionEvent::Started { .. } => AuditKind::PromotionStarted,
                PromotionEvent::CatchupStarted { .. } => AuditKind::WalCatchupStarted,
                PromotionEvent::CatchupCompleted { .. } => AuditKind::WalCatchupCompleted,
                PromotionEvent::DatabaseVerified => AuditKind::DatabaseVerified,
                PromotionEvent::Completed { .. } => AuditKind::PromotionCompleted,
            };
            audit.record(AuditRecord::new(kind).app(&app).token(token));
        });
        let config = ReplicationConfig {
            snapshot_interval: self.spec.snapshot_interval,
            retention: self.spec.retention,
            ..ReplicationConfig::default()
        };
        let term = ReplicationTerm::from_session(active.token, fence, session);
        let options = wal_sqlite::PromotionOptions {
            accept_data_loss: self.spec.accept_data_loss,
        };
        let promoted = standby
            .promote_with(
                &self.spec.path,
                active.app.node().as_str(),
                config,
                term,
                Some(observer),
                options,
            )
            .await;
        let replicator = match promoted {
            Ok(r) => r,
            Err(e @ wal_sqlite::ReplicationError::MissingSegment { .. }) => {
                let detail = format!(
                    "{e}: promoting would lose acknowledged commits; the node stays a standby (accept_data_loss_on_promotion overrides)"
                );
                tracing::error!(app = %self.app, %detail, "promotion refused");
                self.audit.record(
                    AuditRecord::new(AuditKind::PromotionRefused)
                        .app(&self.app)
                        .token(active.token)
                        .detail(detail),
                );
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        };
        *self.replicator.lock().unwrap_or_else(|p| p.into_inner()) = Some(replicator);
        *self.term_token.lock().unwrap_or_else(|p| p.into_inner()) = Some(active.token.get());
        Ok(())
    }

    /// Resolves when the replicator of the current term stops by itself (fenced out).
    pub(crate) async fn fenced_out(&self) {
        match self.replicator() {
            Some(r) => r.stopped().await,
            None => std::future::pending().await,
        }
    }
}
