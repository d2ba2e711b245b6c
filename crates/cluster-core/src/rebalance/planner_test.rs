use super::*;
use crate::ids::FencingToken;
use crate::rebalance::OwnershipTable;
use crate::rebalance::PartitionOwner;
use crate::rebalance::StepAction;

fn id(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

fn owned_by(owners: &[&str]) -> OwnershipTable {
    OwnershipTable::from_owners(owners.iter().enumerate().map(|(p, o)| {
        (!o.is_empty()).then(|| PartitionOwner {
            node: id(o),
            token: FencingToken::new(100 + p as u64),
        })
    }))
}

fn planner(cap: usize) -> RebalancePlanner {
    RebalancePlanner::new(PlanConstraints {
        max_concurrent_moves: cap,
    })
    .unwrap()
}

#[test]
fn bad_input_is_refused_with_typed_errors() {
    assert_eq!(
        RebalancePlanner::new(PlanConstraints {
            max_concurrent_moves: 0
        })
        .unwrap_err(),
        PlanError::ZeroConcurrency
    );
    let dup = [Member::active(id("a"), 1), Member::active(id("a"), 2)];
    assert_eq!(
        planner(1).plan(&owned_by(&["a"]), &dup).unwrap_err(),
        PlanError::DuplicateMember { node: id("a") }
    );
    let none = [Member::leaving(id("a"))];
    assert_eq!(
        planner(1).plan(&owned_by(&["a", "a"]), &none).unwrap_err(),
        PlanError::NoEligibleMember { partitions: 2 }
    );
}

#[test]
fn a_balanced_cluster_needs_no_moves() {
    let members = [Member::active(id("a"), 1), Member::active(id("b"), 1)];
    let plan = planner(4)
        .plan(&owned_by(&["a", "b", "a", "b"]), &members)
        .unwrap();
    assert!(plan.is_empty());
    assert_eq!(plan.target_of(&id("a")), 2);
}

#[test]
fn join_takes_exactly_the_surplus_with_full_handoffs() {
    let current = owned_by(&["a", "a", "a", "b", "b", "b"]);
    let members = [
        Member::active(id("a"), 1),
        Member::active(id("b"), 1),
        Member::active(id("c"), 1),
    ];
    let plan = planner(1).plan(&current, &members).unwrap();
    assert_eq!(plan.moves().len(), 2);
    assert!(plan.moves().iter().all(|m| m.kind == MoveKind::Join));
    assert!(plan.moves().iter().all(|m| m.to == id("c")));
    assert_eq!(plan.waves().count(), 2);

    let m = &plan.moves()[0];
    let steps: Vec<_> = m.steps().collect();
    let from = m.from.clone().unwrap();
    assert_eq!(
        steps
            .iter()
            .map(|s| (s.actor.as_str(), s.action))
            .collect::<Vec<_>>(),
        vec![
            (from.node.as_str(), StepAction::StopIntake),
            (from.node.as_str(), StepAction::Drain),
            (from.node.as_str(), StepAction::TransferQueued),
            (
                from.node.as_str(),
                StepAction::Release { token: from.token }
            ),
            ("c", StepAction::Claim { above: from.token }),
        ]
    );
}

#[test]
fn failure_waits_for_lease_expiry_and_never_drains() {
    let current = owned_by(&["a", "b", "a", "b"]);
    let members = [Member::active(id("a"), 1), Member::failed(id("b"))];
    let plan = planner(8).plan(&current, &members).unwrap();
    assert_eq!(plan.moves().len(), 2);
    for m in plan.moves() {
        assert_eq!(m.kind, MoveKind::Failover);
        let actions: Vec<_> = m.steps().map(|s| s.action).collect();
        let token = m.released_token();
        assert_eq!(
            actions,
            vec![
                StepAction::AwaitLeaseExpiry { token },
                StepAction::Claim { above: token },
                StepAction::AdoptQueued,
            ]
        );
        assert!(m.steps().all(|s| s.actor == &id("a")));
    }
}

#[test]
fn unknown_owners_fail_over_and_unowned_partitions_are_claimed_first() {
    let current = owned_by(&["a", "", "ghost", "a", "a", "a"]);
    let members = [Member::active(id("a"), 1), Member::leaving(id("z"))];
    let plan = planner(8).plan(&current, &members).unwrap();
    let kinds: Vec<_> = plan
        .moves()
        .iter()
        .map(|m| (m.partition.0, m.kind))
        .collect();
    assert_eq!(kinds, vec![(1, MoveKind::Initial), (2, MoveKind::Failover)]);
    assert_eq!(plan.moves()[0].steps().count(), 1);
}

#[test]
fn leave_moves_come_before_rebalancing_and_spread_over_receivers() {
    let current = owned_by(&["a", "a", "a", "a", "b", "b", "c", "c", "c", "c"]);
    let members = [
        Member::active(id("a"), 1),
        Member::active(id("b"), 1),
        Member::leaving(id("c")),
        Member::active(id("d"), 1),
    ];
    let plan = planner(2).plan(&current, &members).unwrap();
    let leaves = plan
        .moves()
        .iter()
        .take_while(|m| m.kind == MoveKind::Leave)
        .count();
    assert_eq!(leaves, 4);
    let first_wave = plan.waves().next().unwrap();
    assert_ne!(first_wave[0].to, first_wave[1].to);
    // a: 4 -> 3 (or 4), b: 2 -> 3, d: 0 -> 3 (or 4); c: 4 -> 0.
    let final_counts = plan.final_assignment(&current);
    let counts = final_counts.counts();
    assert_eq!(counts.get(&id("c")), None);
    for (node, target) in plan.targets() {
        assert_eq!(counts.get(node).copied().unwrap_or(0), *target);
    }
}

#[test]
fn weights_shape_targets() {
    let current = OwnershipTable::unowned(100);
    let members = [Member::active(id("a"), 1), Member::active(id("b"), 3)];
    let plan = planner(100).plan(&current, &members).unwrap();
    assert_eq!(plan.target_of(&id("a")), 25);
    assert_eq!(plan.target_of(&id("b")), 75);
    assert_eq!(plan.moves().len(), 100);
    assert!(plan.moves().iter().all(|m| m.kind == MoveKind::Initial));
}

#[test]
fn plan_to_moves_exactly_the_differing_partitions() {
    let current = owned_by(&["a", "a", "", "b", "x"]);
    let members = [
        Member::active(id("a"), 1),
        Member::leaving(id("b")),
        Member::active(id("c"), 1),
    ];
    let desired = Assignment::from_owners(["a", "c", "c", "a", "c"].iter().map(|n| Some(id(n))));
    let plan = planner(2).plan_to(&current, &desired, &members).unwrap();
    let moves: Vec<(u32, MoveKind)> = plan
        .moves()
        .iter()
        .map(|m| (m.partition.0, m.kind))
        .collect();
    // Unowned and orphaned first, then the leave, then the join.
    assert_eq!(
        moves,
        vec![
            (2, MoveKind::Initial),
            (4, MoveKind::Failover),
            (3, MoveKind::Leave),
            (1, MoveKind::Join),
        ]
    );
    assert_eq!(plan.target_of(&id("c")), 3);
    assert_eq!(plan.final_assignment(&current), desired);
}

#[test]
fn plan_to_refuses_impossible_targets() {
    let current = owned_by(&["a", "a"]);
    let members = [Member::active(id("a"), 1), Member::failed(id("f"))];
    let p = planner(1);
    let short = Assignment::from_owners([Some(id("a"))]);
    assert_eq!(
        p.plan_to(&current, &short, &members).unwrap_err(),
        PlanError::PartitionCountMismatch {
            current: 2,
            desired: 1
        }
    );
    let hole = Assignment::from_owners([Some(id("a")), None]);
    assert_eq!(
        p.plan_to(&current, &hole, &members).unwrap_err(),
        PlanError::UnassignedPartition {
            partition: PartitionId(1)
        }
    );
    let to_failed = Assignment::from_owners([Some(id("a")), Some(id("f"))]);
    assert_eq!(
        p.plan_to(&current, &to_failed, &members).unwrap_err(),
        PlanError::IneligibleOwner {
            partition: PartitionId(1),
            node: id("f")
        }
    );
}
