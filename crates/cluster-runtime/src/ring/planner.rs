//! The ring planner: while this node leads `ring-planner`, it publishes the target assignment.
//!
//! The target is the fair split of partitions over the live members that run the app (weighted,
//! within one partition of each share), planned from the previous target so a fair one stays
//! put, published one wave at a time (at most `max_concurrent_moves` handoffs in motion), and
//! fenced by the planner's term.

use std::collections::BTreeMap;

use cluster_core::coordination::{CoordError, Expect, Key, MemberInfo};
use cluster_core::ids::{FencingToken, NodeId};
use cluster_core::rebalance::{
    Member, OwnershipTable, PartitionOwner, PlanConstraints, RebalancePlanner,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{APPS_META, AssignmentRecord, LEAVING_META, RingSettings, RingView};
use super::{assignment_key, planner_key};
use crate::context::AppContext;
use crate::sessions::{Under, under};

/// The members that may own partitions of `app`, as the planner sees them.
fn ring_members(app: &str, members: &BTreeMap<NodeId, MemberInfo>) -> Vec<Member> {
    members
        .values()
        .filter(|m| {
            m.metadata
                .get(APPS_META)
                .is_some_and(|apps| apps.split(',').any(|a| a == app))
        })
        .map(|m| {
            if m.metadata.get(LEAVING_META).is_some_and(|v| v == "true") {
                Member::leaving(m.node.clone())
            } else {
                let weight = m
                    .metadata
                    .get(&format!("weight.{app}"))
                    .and_then(|w| w.parse().ok())
                    .unwrap_or(1);
                Member::active(m.node.clone(), weight)
            }
        })
        .collect()
}

/// The next target, planned from the previous one so that a fair target stays put.
///
/// The base is the previous target (or the current owners when there is none). The planner's
/// minimal plan from that base moves only what membership requires: partitions of failed or
/// leaving nodes, unowned ones, and the fewest needed to even out the load. Unowned and failed
/// partitions are assigned at once; handoffs (moves away from a live owner) are capped at
/// `max_moves` in flight, counting those already under way.
fn next_target(
    planner: &RebalancePlanner,
    previous: Option<&[Option<NodeId>]>,
    owners: &[Option<(NodeId, FencingToken)>],
    members: &[Member],
    max_moves: usize,
) -> Option<Vec<Option<NodeId>>> {
    let base: Vec<Option<NodeId>> = match previous {
        Some(p) if p.len() == owners.len() => p.to_vec(),
        _ => owners.iter().map(|o| o.clone().map(|(n, _)| n)).collect(),
    };
    let table = OwnershipTable::from_owners(base.iter().zip(owners).map(|(target, owner)| {
        target.clone().map(|node| PartitionOwner {
            token: owner
                .as_ref()
                .filter(|(n, _)| *n == node)
                .map_or(FencingToken::ZERO, |(_, t)| *t),
            node,
        })
    }));
    let plan = planner.plan(&table, members).ok()?;
    let live = |node: &NodeId| members.iter().any(|m| &m.id == node);
    let is_handoff = |p: usize, to: &NodeId| {
        owners[p]
            .as_ref()
            .is_some_and(|(owner, _)| owner != to && live(owner))
    };
    let mut target = base;
    let mut in_motion = target
        .iter()
        .enumerate()
        .filter(|(p, t)| t.as_ref().is_some_and(|t| is_handoff(*p, t)))
        .count();
    for m in plan.moves() {
        let p = m.partition.0 as usize;
        if p >= target.len() {
            continue;
        }
        let handoff = is_handoff(p, &m.to);
        if handoff && in_motion >= max_moves {
            continue;
        }
        target[p] = Some(m.to.clone());
        if handoff {
            in_motion += 1;
        }
    }
    Some(target)
}

/// The planner: while this node leads `ring-planner`, publish the next target on every change.
pub(super) async fn plan(
    ctx: AppContext,
    settings: RingSettings,
    mut members: watch::Receiver<BTreeMap<NodeId, MemberInfo>>,
    mut view: watch::Receiver<RingView>,
    stop: CancellationToken,
) {
    let app = ctx.app().to_string();
    let (Ok(key), Ok(target_key)) = (planner_key(&ctx), assignment_key(&ctx)) else {
        return;
    };
    let Ok(planner) = RebalancePlanner::new(PlanConstraints {
        max_concurrent_moves: settings.max_concurrent_moves.max(1),
    }) else {
        return;
    };
    loop {
        let Some(session) = ctx.shared.sessions.next_live(&stop).await else {
            return;
        };
        let term = match under(
            &session,
            &stop,
            ctx.coordinator()
                .campaign(&key, ctx.node().as_str(), session.lease()),
        )
        .await
        {
            Under::Stopped => return,
            Under::Lost => continue,
            Under::Done(t) => t,
        };
        let Ok(term) = term else {
            tokio::time::sleep(crate::timing::pace::STORE_RETRY).await;
            continue;
        };
        tracing::debug!(app, token = %term.token, "ring planner elected");
        // The planner is the only writer while it leads, so its own last target is the base of
        // the next one (the watch of the assignment may lag its own writes).
        let mut last: Option<Vec<Option<NodeId>>> = match stored(&ctx, &target_key).await {
            Ok(record) => record.map(|r| r.owners),
            Err(_) => continue,
        };
        let mut tick = tokio::time::interval(crate::timing::pace::RECONCILE_TICK);
        loop {
            if !session.is_alive() {
                break;
            }
            let owners = view.borrow_and_update().owners.clone();
            let eligible = ring_members(&app, &members.borrow_and_update());
            let cap = settings.max_concurrent_moves.max(1);
            if let Some(target) = next_target(&planner, last.as_deref(), &owners, &eligible, cap)
                && last.as_ref() != Some(&target)
            {
                match publish(&ctx, &target_key, &term.fence(), target.clone()).await {
                    Ok(()) => last = Some(target),
                    Err(e) => tracing::debug!(app, error = %e, "publishing the assignment failed"),
                }
            }
            tokio::select! {
                _ = stop.cancelled() => {
                    let _ = ctx.coordinator().resign(&term).await;
                    return;
                }
                _ = session.lost() => break,
                _ = members.changed() => {}
                _ = view.changed() => {}
                _ = tick.tick() => {}
            }
        }
    }
}

/// The stored target assignment, if any.
async fn stored(ctx: &AppContext, key: &Key) -> Result<Option<AssignmentRecord>, CoordError> {
    Ok(ctx
        .coordinator()
        .get(key)
        .await?
        .and_then(|e| serde_json::from_slice(&e.value).ok()))
}

/// Writes the target if it changed, fenced by the planner's term. The target sits next to the
/// planner's election key, so the fenced write is one store operation on every backend; a store
/// that cannot fence it at all gets a fence check and a compare-and-set on the target's revision.
async fn publish(
    ctx: &AppContext,
    key: &Key,
    fence: &cluster_core::coordination::Fence,
    owners: Vec<Option<NodeId>>,
) -> Result<(), CoordError> {
    let coord = ctx.coordinator();
    let current = coord.get(key).await?;
    let previous = current
        .as_ref()
        .and_then(|e| serde_json::from_slice::<AssignmentRecord>(&e.value).ok());
    if previous.as_ref().is_some_and(|r| r.owners == owners) {
        return Ok(());
    }
    let record = AssignmentRecord {
        version: previous.map_or(1, |r| r.version + 1),
        owners,
    };
    let value = serde_json::to_vec(&record).map_err(|e| CoordError::bad_request(e.to_string()))?;
    match coord.put_if_held(key, value.clone(), fence).await {
        Ok(_) => Ok(()),
        Err(CoordError::Unsupported { .. }) => {
            if !coord.fence_holds(fence).await? {
                return Err(CoordError::StaleToken {
                    resource: fence.key.path(),
                    presented: fence.token,
                    current: None,
                });
            }
            let expect = current.map_or(Expect::Absent, |e| Expect::Revision(e.revision));
            coord.put(key, value, expect, None).await.map(|_| ())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: &str) -> NodeId {
        NodeId::new(n).unwrap()
    }

    #[test]
    fn failed_owner_partitions_are_reassigned_at_once_and_a_fair_target_stays_put() {
        let planner = RebalancePlanner::new(PlanConstraints {
            max_concurrent_moves: 2,
        })
        .unwrap();
        let (a, b, c) = (node("a"), node("b"), node("c"));
        let previous: Vec<Option<NodeId>> =
            (0..6).map(|p| Some([&a, &b, &c][p % 3].clone())).collect();
        let owners: Vec<Option<(NodeId, FencingToken)>> = previous
            .iter()
            .map(|t| {
                t.clone()
                    .filter(|n| *n != a)
                    .map(|n| (n, FencingToken::new(5)))
            })
            .collect();
        let members = [Member::active(b.clone(), 1), Member::active(c.clone(), 1)];
        let target = next_target(&planner, Some(&previous), &owners, &members, 2).unwrap();
        assert!(target.iter().all(|t| t.as_ref() != Some(&a)), "{target:?}");
        for p in [1usize, 2, 4, 5] {
            assert_eq!(
                target[p], previous[p],
                "partition {p} of a live owner moved"
            );
        }
        let again = next_target(&planner, Some(&target), &owners, &members, 2).unwrap();
        assert_eq!(again, target, "a fair target must be stable");
    }

    #[test]
    fn handoffs_are_capped_but_unowned_partitions_are_not() {
        let planner = RebalancePlanner::new(PlanConstraints {
            max_concurrent_moves: 16,
        })
        .unwrap();
        let (a, b) = (node("a"), node("b"));
        let owners: Vec<Option<(NodeId, FencingToken)>> = (0..10)
            .map(|_| Some((a.clone(), FencingToken::new(1))))
            .collect();
        let previous: Vec<Option<NodeId>> = (0..10).map(|_| Some(a.clone())).collect();
        let members = [Member::active(a.clone(), 1), Member::active(b.clone(), 1)];
        let target = next_target(&planner, Some(&previous), &owners, &members, 2).unwrap();
        assert_eq!(
            target.iter().filter(|t| t.as_ref() == Some(&b)).count(),
            2,
            "{target:?}"
        );
        let unowned: Vec<Option<(NodeId, FencingToken)>> = vec![None; 10];
        let target = next_target(&planner, None, &unowned, &members, 2).unwrap();
        assert!(target.iter().all(Option::is_some));
    }
}
