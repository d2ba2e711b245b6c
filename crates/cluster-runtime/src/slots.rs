//! Pool mode (every node active) and replicas mode (exactly n active, each on a fenced slot).
//!
//! Replicas: slot `i` is an ownership claim on `slot-{i}` in the app's claims namespace, bound to
//! the node's lease. A node holds at most one slot; it claims the lowest free one, runs
//! `on_active` with the slot's token, and waits on a watch of the slots when all are taken.

use std::sync::Arc;
use std::time::Duration;

use cluster_core::coordination::{
    CoordError, Key, KeyPrefix, OwnershipClaim, WatchEvent, WatchStart, WatchTarget,
};
use cluster_core::ids::FencingToken;
use cluster_core::naming::{NamespaceKind, namespace};
use coord_client::Session;
use futures::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::app::AppHooks;
use crate::context::{ActiveContext, AppContext, TermAuthority};
use crate::election::Role;
use crate::hooks::run_optional;
use crate::service::ServiceRole;
use crate::sessions::{Under, under};

/// Pool mode: active from the node's first session until it stops, store outages included.
pub(crate) async fn drive_pool(
    ctx: AppContext,
    hooks: Arc<AppHooks>,
    timeout: Duration,
    role_tx: watch::Sender<Role>,
    service: Option<Arc<ServiceRole>>,
    stop: CancellationToken,
) {
    let app = ctx.app().to_string();
    let _ = run_optional(&hooks.on_passive, &app, "on_passive", ctx.clone(), timeout).await;
    role_tx.send_replace(Role::Passive);
    loop {
        let Some(session) = ctx.shared.sessions.next_live(&stop).await else {
            break;
        };
        let cancel = CancellationToken::new();
        role_tx.send_replace(Role::Active {
            token: FencingToken::ZERO,
        });
        let active = ActiveContext {
            app: ctx.clone(),
            token: FencingToken::ZERO,
            fence: None,
            cancel: cancel.clone(),
            slot: None,
        };
        // A pool's service is unfenced: it outlives a store outage or a paused agent, not the
        // agent itself.
        let ok =
            ServiceRole::start_or_roll_back(service.as_deref(), &ctx, FencingToken::ZERO, None)
                .await
                && run_optional(&hooks.on_active, &app, "on_active", active, timeout)
                    .await
                    .is_ok();
        let stopping = if ok {
            // Pool work holds nothing in the store: a store outage (a lost session) does not
            // stop it; only the node stopping (or its service failing) does.
            tokio::select! {
                _ = stop.cancelled() => true,
                _ = ServiceRole::failed_if_any(service.as_deref()) => false,
            }
        } else {
            stop.is_cancelled()
        };
        cancel.cancel();
        if let Some(svc) = &service {
            svc.stop(&ctx, None).await;
        }
        role_tx.send_replace(Role::Passive);
        let _ = run_optional(&hooks.on_passive, &app, "on_passive", ctx.clone(), timeout).await;
        if stopping {
            break;
        }
        if !ok {
            // A failed on_active waits for the next session instead of spinning.
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = session.lost() => {}
            }
        } else {
            // The service failed: start it again after a pause.
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(crate::timing::pace::SLOT_RECLAIM) => {}
            }
        }
    }
    role_tx.send_replace(Role::Stopped);
}

fn slot_key(ctx: &AppContext, slot: u32) -> Result<Key, CoordError> {
    let ns = namespace(ctx.platform(), Some(ctx.app()), NamespaceKind::Claims);
    Key::new(ns, format!("slot-{slot}"))
}

/// Claims the lowest free slot, or `None` if all are held.
async fn claim_free_slot(
    ctx: &AppContext,
    slots: u32,
    session: &Session,
) -> Result<Option<(u32, OwnershipClaim)>, CoordError> {
    for slot in 0..slots {
        match ctx
            .coordinator()
            .claim(&slot_key(ctx, slot)?, ctx.node(), session.lease())
            .await
        {
            Ok(claim) => return Ok(Some((slot, claim))),
            Err(CoordError::Conflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Waits until a watched key under `prefix` is deleted (a slot may be free), or `give_up` fires.
async fn wait_for_delete(ctx: &AppContext, prefix: KeyPrefix, give_up: &Session) {
    let Ok(mut watch) = ctx
        .coordinator()
        .watch(WatchTarget::Prefix(prefix), WatchStart::Now)
        .await
    else {
        tokio::time::sleep(crate::timing::pace::STORE_RETRY).await;
        return;
    };
    let _snapshot = watch.next().await;
    loop {
        tokio::select! {
            _ = give_up.lost() => return,
            event = watch.next() => match event {
                Some(Ok(WatchEvent::Delete { .. })) | Some(Ok(WatchEvent::Snapshot { .. })) | None | Some(Err(_)) => return,
                Some(Ok(WatchEvent::Put(_))) => {}
            },
        }
    }
}

/// Resolves when the claim's key no longer holds this claim (deleted or taken over). The claim
/// is read back through the adapter ([`claim_from_entry`]): on stores whose renewals rewrite the
/// key (NATS KV) the revision moves while the claim's token stays.
///
/// [`claim_from_entry`]: cluster_core::coordination::ClaimStore::claim_from_entry
async fn claim_gone(ctx: &AppContext, claim: &OwnershipClaim) {
    let Ok(mut watch) = ctx
        .coordinator()
        .watch(WatchTarget::Key(claim.resource.clone()), WatchStart::Now)
        .await
    else {
        return std::future::pending().await;
    };
    let coord = ctx.coordinator();
    let ours = |e: &cluster_core::coordination::KvEntry| {
        coord
            .claim_from_entry(e)
            .is_some_and(|c| c.token == claim.token && c.owner == claim.owner)
    };
    while let Some(event) = watch.next().await {
        let gone = match event {
            Ok(WatchEvent::Snapshot { entries, .. }) => !entries.iter().any(ours),
            Ok(WatchEvent::Delete { .. }) => true,
            Ok(WatchEvent::Put(e)) => !ours(&e),
            Err(_) => false,
        };
        if gone {
            return;
        }
    }
    std::future::pending().await
}

/// Replicas mode: hold one of `slots` fenced slots and be active while holding it.
pub(crate) async fn drive_replicas(
    ctx: AppContext,
    hooks: Arc<AppHooks>,
    timeout: Duration,
    slots: u32,
    role_tx: watch::Sender<Role>,
    service: Option<Arc<ServiceRole>>,
    stop: CancellationToken,
) {
    let app = ctx.app().to_string();
    let prefix = KeyPrefix::all(namespace(
        ctx.platform(),
        Some(ctx.app()),
        NamespaceKind::Claims,
    ));
    let _ = run_optional(&hooks.on_passive, &app, "on_passive", ctx.clone(), timeout).await;
    role_tx.send_replace(Role::Passive);
    loop {
        let Some(session) = ctx.shared.sessions.next_live(&stop).await else {
            break;
        };
        let claimed = match under(&session, &stop, claim_free_slot(&ctx, slots, &session)).await {
            Under::Stopped => break,
            Under::Lost => continue,
            Under::Done(c) => c,
        };
        let (slot, claim) = match claimed {
            Ok(Some(held)) => held,
            Ok(None) => {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = wait_for_delete(&ctx, prefix.clone(), &session) => continue,
                }
            }
            Err(e) => {
                tracing::debug!(app, error = %e, "slot claim failed; retrying");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(crate::timing::pace::STORE_RETRY) => continue,
                }
            }
        };
        // Fires with the session, or when the slot's claim ends for any other reason.
        let cancel = session.child_token();
        ctx.shared.set_term(Some(TermAuthority {
            lease: session.lease().clone(),
            cancel: cancel.clone(),
            token: claim.token,
            fence: claim.fence(),
        }));
        role_tx.send_replace(Role::Active { token: claim.token });
        let active = ActiveContext {
            app: ctx.clone(),
            token: claim.token,
            fence: Some(claim.fence()),
            cancel: cancel.clone(),
            slot: Some(slot),
        };
        // A slot's service is fenced by the session that holds the slot's claim.
        let ok =
            ServiceRole::start_or_roll_back(service.as_deref(), &ctx, claim.token, Some(&session))
                .await
                && run_optional(&hooks.on_active, &app, "on_active", active, timeout)
                    .await
                    .is_ok();
        let stopping = if ok {
            tokio::select! {
                _ = stop.cancelled() => true,
                _ = session.lost() => false,
                _ = claim_gone(&ctx, &claim) => false,
                _ = ServiceRole::failed_if_any(service.as_deref()) => false,
            }
        } else {
            stop.is_cancelled()
        };
        cancel.cancel();
        if let Some(svc) = &service {
            svc.stop(&ctx, Some(claim.token)).await;
        }
        ctx.shared.set_term(None);
        role_tx.send_replace(Role::Passive);
        if session.is_alive() {
            let _ = ctx.coordinator().release(&claim).await;
        }
        let _ = run_optional(&hooks.on_passive, &app, "on_passive", ctx.clone(), timeout).await;
        if stopping {
            break;
        }
        if !ok {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(crate::timing::pace::SLOT_RECLAIM) => {}
            }
        }
    }
    role_tx.send_replace(Role::Stopped);
}
