//! Membership: the node's session and registration (join, rejoin after a lost session), its
//! member record, and the watch that publishes members and runs member hooks.

use std::collections::BTreeMap;
use std::time::Duration;

use cluster_core::backoff::Backoff;
use cluster_core::coordination::{MemberInfo, MembershipEvent};
use cluster_core::ids::NodeId;
use cluster_core::naming::{Namespace, NamespaceKind, namespace};
use coord_client::{LostReason, Session};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::audit::{Audit, AuditKind, AuditRecord};
use crate::context::MemberChange;
use crate::error::RuntimeError;
use crate::hooks::run_optional;
use crate::metric_definitions;
use crate::ring::{APPS_META, LEAVING_META};

use super::*;

impl Platform {
    pub(super) fn members_ns(&self) -> Namespace {
        namespace(&self.inner.name, None, NamespaceKind::Members)
    }

    pub(super) fn member_record(&self, leaving: bool) -> MemberInfo {
        let apps = self.inner.registered_apps();
        let mut metadata = BTreeMap::new();
        metadata.insert(
            APPS_META.to_owned(),
            apps.iter()
                .map(|a| a.app.name.to_string())
                .collect::<Vec<_>>()
                .join(","),
        );
        for a in apps.iter() {
            metadata.insert(format!("weight.{}", a.app.name), a.app.weight.to_string());
        }
        if leaving {
            metadata.insert(LEAVING_META.to_owned(), "true".to_owned());
        }
        metadata.insert("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned());
        MemberInfo {
            node: self.inner.node.clone(),
            address: self.inner.address.clone(),
            labels: self.inner.labels.clone(),
            metadata,
        }
    }

    /// Opens a session and registers the node; `NodeIdInUse` is returned as is.
    pub(super) async fn join(&self) -> Result<Session, RuntimeError> {
        let inner = &self.inner;
        let session = Session::open(
            inner.coord.clone(),
            inner.node.clone(),
            inner.timing.lease(),
        )
        .await?;
        let record = self.member_record(false);
        if let Err(e) = inner
            .coord
            .register(&self.members_ns(), &record, session.lease())
            .await
        {
            let _ = session.close(inner.coord.as_ref()).await;
            return Err(e.into());
        }
        inner.sessions.set(Some(session.clone()));
        inner.state.send_replace(NodeState::Joined);
        metrics::gauge!(metric_definitions::SESSION_ALIVE).set(1.0);
        tracing::info!(node = %inner.node, lease = %session.lease(), "joined");
        Ok(session)
    }

    /// Keeps the node joined: on session loss, waits for the store and joins again.
    pub(super) async fn keep_joined(self, mut session: Session, stop: CancellationToken) {
        let inner = &self.inner;
        loop {
            let reason = tokio::select! {
                _ = stop.cancelled() => return,
                r = session.lost() => r,
            };
            if reason == LostReason::Closed && stop.is_cancelled() {
                return;
            }
            inner.sessions.set(None);
            metrics::gauge!(metric_definitions::SESSION_ALIVE).set(0.0);
            metrics::counter!(metric_definitions::SESSIONS_LOST, "reason" => match reason {
                LostReason::Expired => "expired",
                LostReason::Revoked => "revoked",
                LostReason::Closed => "closed",
            })
            .increment(1);
            inner.state.send_replace(NodeState::Rejoining);
            tracing::warn!(node = %inner.node, ?reason, "session lost; rejoining when the store answers");
            let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
            let mut delay = backoff.initial;
            session = loop {
                if stop.is_cancelled() {
                    return;
                }
                match self.join().await {
                    Ok(s) => break s,
                    Err(e) => {
                        // Our previous lease may still be alive at the store (NodeIdInUse until
                        // it expires); keep trying.
                        tracing::debug!(error = %e, "rejoin failed; retrying");
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep(delay) => {}
                        }
                        delay = backoff.after(delay);
                    }
                }
            };
        }
    }

    /// Watches membership: publishes it, runs member hooks, records joins and leaves.
    pub(super) async fn watch_members(self, audit: Audit, stop: CancellationToken) {
        let inner = &self.inner;
        let ns = self.members_ns();
        loop {
            let stream = tokio::select! {
                _ = stop.cancelled() => return,
                s = inner.coord.watch_members(&ns) => s,
            };
            let Ok(mut stream) = stream else {
                tokio::time::sleep(crate::timing::pace::STORE_RETRY).await;
                continue;
            };
            loop {
                let event = tokio::select! {
                    _ = stop.cancelled() => return,
                    e = stream.next() => e,
                };
                let Some(Ok(event)) = event else { break };
                let (joined, left) = match event {
                    MembershipEvent::Snapshot(all) => {
                        let before = inner.members.borrow().clone();
                        let now: BTreeMap<NodeId, MemberInfo> =
                            all.into_iter().map(|m| (m.node.clone(), m)).collect();
                        let joined: Vec<MemberInfo> = now
                            .values()
                            .filter(|m| !before.contains_key(&m.node))
                            .cloned()
                            .collect();
                        let left: Vec<MemberInfo> = before
                            .values()
                            .filter(|m| !now.contains_key(&m.node))
                            .cloned()
                            .collect();
                        inner.members.send_replace(now);
                        (joined, left)
                    }
                    MembershipEvent::Joined(m) => {
                        inner.members.send_modify(|all| {
                            all.insert(m.node.clone(), m.clone());
                        });
                        (vec![m], vec![])
                    }
                    MembershipEvent::Updated(m) => {
                        inner.members.send_modify(|all| {
                            all.insert(m.node.clone(), m);
                        });
                        (vec![], vec![])
                    }
                    MembershipEvent::Left(node) => {
                        let mut gone = None;
                        inner.members.send_modify(|all| gone = all.remove(&node));
                        (vec![], gone.into_iter().collect())
                    }
                };
                metrics::gauge!(metric_definitions::MEMBERS)
                    .set(inner.members.borrow().len() as f64);
                for m in joined {
                    audit.record(
                        AuditRecord::new(AuditKind::MemberJoined).detail(m.node.to_string()),
                    );
                    self.member_hooks(&m, true).await;
                }
                for m in left {
                    audit
                        .record(AuditRecord::new(AuditKind::MemberLeft).detail(m.node.to_string()));
                    self.member_hooks(&m, false).await;
                }
            }
        }
    }

    pub(super) async fn member_hooks(&self, member: &MemberInfo, joined: bool) {
        let apps = self.inner.registered_apps();
        for a in apps {
            let change = MemberChange {
                app: a.ctx.clone(),
                member: member.clone(),
            };
            let timeout = a.app.hook_timeout.unwrap_or(self.inner.timing.hook_timeout);
            let name = a.app.name.to_string();
            let hook = if joined {
                &a.app.hooks.on_member_join
            } else {
                &a.app.hooks.on_member_leave
            };
            let label = if joined {
                "on_member_join"
            } else {
                "on_member_leave"
            };
            let _ = run_optional(hook, &name, label, change, timeout).await;
        }
    }
}
