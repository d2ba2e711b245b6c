//! Executes plans step by step in a model of the ownership store and checks safety at every step.

use std::collections::BTreeMap;
use std::collections::HashMap;

use proptest::prelude::*;

use super::*;
use crate::ids::FencingToken;
use crate::rebalance::HandoffStep;
use crate::rebalance::OwnershipTable;
use crate::rebalance::PartitionOwner;
use crate::rebalance::StepAction;
use crate::ring::HashRing;
use crate::ring::LoadBound;
use crate::ring::PartitionRing;
use crate::ring::RingConfig;

/// One claim on a partition as the store and the world see it.
#[derive(Debug, Clone)]
struct Holder {
    node: NodeId,
    token: FencingToken,
    /// Released claims and expired leases are no longer valid.
    valid: bool,
}

#[derive(Debug, Default)]
struct Model {
    holders: Vec<Vec<Holder>>,
    /// Partitions allowed to be unowned right now: between their release (or expiry) and
    /// claim, or unowned from the start until their claim.
    may_be_unowned: Vec<bool>,
    newest_token: u64,
}

impl Model {
    fn new(current: &OwnershipTable) -> Model {
        let mut model = Model::default();
        for (_, owner) in current.iter() {
            match owner {
                // A failed owner may be a paused zombie: its token stays valid until expiry.
                Some(o) => {
                    model.newest_token = model.newest_token.max(o.token.get());
                    model.holders.push(vec![Holder {
                        node: o.node.clone(),
                        token: o.token,
                        valid: true,
                    }]);
                    model.may_be_unowned.push(false);
                }
                None => {
                    model.holders.push(Vec::new());
                    model.may_be_unowned.push(true);
                }
            }
        }
        model
    }

    fn valid_holder(&self, p: usize) -> Option<&Holder> {
        self.holders[p].iter().find(|h| h.valid)
    }

    fn apply(&mut self, step: &HandoffStep<'_>) -> Result<(), TestCaseError> {
        let p = step.partition.0 as usize;
        match step.action {
            StepAction::StopIntake | StepAction::Drain | StepAction::TransferQueued => {
                let holder = self.valid_holder(p);
                prop_assert_eq!(holder.map(|h| &h.node), Some(step.actor), "{:?}", step);
            }
            StepAction::Release { token } => {
                let holder = self.holders[p]
                    .iter_mut()
                    .find(|h| h.valid && h.token == token && &h.node == step.actor);
                prop_assert!(holder.is_some(), "release by a non-holder: {:?}", step);
                if let Some(h) = holder {
                    h.valid = false;
                }
                self.may_be_unowned[p] = true;
            }
            StepAction::AwaitLeaseExpiry { token } => {
                let holder = self.holders[p].iter_mut().find(|h| h.token == token);
                prop_assert!(holder.is_some(), "no lease to wait for: {:?}", step);
                if let Some(h) = holder {
                    h.valid = false;
                }
                self.may_be_unowned[p] = true;
            }
            StepAction::Claim { above } => {
                let newest_here = self.holders[p].iter().map(|h| h.token).max();
                prop_assert_eq!(above, newest_here.unwrap_or(FencingToken::ZERO));
                // The store issues a token larger than any it issued before.
                self.newest_token += 1;
                let token = FencingToken::new(self.newest_token);
                prop_assert!(token > above);
                self.holders[p].push(Holder {
                    node: step.actor.clone(),
                    token,
                    valid: true,
                });
                self.may_be_unowned[p] = false;
            }
            StepAction::AdoptQueued => {
                let holder = self.valid_holder(p);
                prop_assert_eq!(holder.map(|h| &h.node), Some(step.actor));
            }
        }
        Ok(())
    }

    fn check_invariants(&self) -> Result<(), TestCaseError> {
        for (p, holders) in self.holders.iter().enumerate() {
            let valid = holders.iter().filter(|h| h.valid).count();
            prop_assert!(valid <= 1, "partition {} has {} valid owners", p, valid);
            if valid == 0 {
                prop_assert!(
                    self.may_be_unowned[p],
                    "partition {} unowned outside a handoff",
                    p
                );
            }
        }
        Ok(())
    }
}

fn arb_case() -> impl Strategy<Value = (Vec<Member>, OwnershipTable, usize, Vec<usize>)> {
    let members = proptest::collection::vec((1u32..4, 0u8..10), 1..8).prop_map(|spec| {
        spec.into_iter()
            .enumerate()
            .map(|(i, (weight, status))| {
                let id = NodeId::new(format!("n{i}")).unwrap();
                match status {
                    0 => Member::failed(id),
                    1 => Member::leaving(id),
                    2 => Member::active(id, 0),
                    _ => Member::active(id, weight),
                }
            })
            .collect::<Vec<_>>()
    });
    // Owners index into members, one past for a node that is not a member, two past for none.
    let owners = proptest::collection::vec((0usize..10, 1u64..1000), 0..60);
    (
        members,
        owners,
        1usize..6,
        proptest::collection::vec(any::<usize>(), 0..400),
    )
        .prop_map(|(members, owners, cap, choices)| {
            let table = OwnershipTable::from_owners(owners.into_iter().map(|(o, token)| {
                let node = match o {
                    o if o < members.len() => Some(members[o].id.clone()),
                    o if o == members.len() => Some(NodeId::new("gone").unwrap()),
                    _ => None,
                };
                node.map(|node| PartitionOwner {
                    node,
                    token: FencingToken::new(token),
                })
            }));
            (members, table, cap, choices)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn no_step_of_any_plan_has_two_valid_owners((members, current, cap, choices) in arb_case()) {
        let planner = RebalancePlanner::new(PlanConstraints { max_concurrent_moves: cap }).unwrap();
        let plan = match planner.plan(&current, &members) {
            Ok(plan) => plan,
            Err(PlanError::NoEligibleMember { .. }) => {
                prop_assert!(!members.iter().any(Member::is_eligible));
                return Ok(());
            }
            Err(other) => return Err(TestCaseError::fail(format!("{other}"))),
        };
        let model = execute(&plan, &current, cap, choices)?;
        check_final(&plan, &current, &model)?;
    }

    #[test]
    fn plans_are_minimal_and_fair((members, current, cap, _c) in arb_case()) {
        let planner = RebalancePlanner::new(PlanConstraints { max_concurrent_moves: cap }).unwrap();
        let Ok(plan) = planner.plan(&current, &members) else { return Ok(()); };

        // moves of owned partitions == sum over nodes of max(0, current_i - target_i)
        let mut held: HashMap<&NodeId, u32> = HashMap::new();
        for (_, o) in current.iter() {
            if let Some(o) = o {
                *held.entry(&o.node).or_default() += 1;
            }
        }
        let expected: u32 = held
            .iter()
            .map(|(node, &c)| c.saturating_sub(plan.target_of(node)))
            .sum();
        let owned_moves = plan.moves().iter().filter(|m| m.from.is_some()).count() as u32;
        prop_assert_eq!(owned_moves, expected);
        let claims = plan.moves().iter().filter(|m| m.from.is_none()).count();
        prop_assert_eq!(claims, current.iter().filter(|(_, o)| o.is_none()).count());

        // No partition moves twice; every target is within one of the weighted share.
        let mut seen = std::collections::HashSet::new();
        prop_assert!(plan.moves().iter().all(|m| seen.insert(m.partition)));
        let weight_sum: u64 = members.iter().filter(|m| m.is_eligible()).map(|m| u64::from(m.weight)).sum();
        for m in &members {
            let share = if m.is_eligible() {
                f64::from(current.len()) * f64::from(m.weight) / weight_sum as f64
            } else {
                0.0
            };
            let target = f64::from(plan.target_of(&m.id));
            prop_assert!((target - share).abs() < 1.0, "{} target {} share {}", m.id, target, share);
        }
    }
}

/// Runs a plan in the model: waves in order, the steps of one wave's moves interleaved as
/// `choices` dictate (each move's own steps in order); checks invariants after every step.
fn execute(
    plan: &RebalancePlan,
    current: &OwnershipTable,
    cap: usize,
    choices: Vec<usize>,
) -> Result<Model, TestCaseError> {
    let mut model = Model::new(current);
    model.check_invariants()?;
    let mut choice = choices.into_iter().cycle();
    for wave in plan.waves() {
        prop_assert!(wave.len() <= cap);
        let mut pending: Vec<Vec<HandoffStep<'_>>> = wave
            .iter()
            .map(|m| {
                let mut s: Vec<_> = m.steps().collect();
                s.reverse();
                s
            })
            .collect();
        while !pending.is_empty() {
            let i = choice.next().unwrap_or(0) % pending.len();
            if let Some(step) = pending[i].pop() {
                model.apply(&step)?;
                model.check_invariants()?;
            }
            if pending[i].is_empty() {
                pending.swap_remove(i);
            }
        }
    }
    Ok(model)
}

/// Everything ends owned, once, matching the plan's targets.
fn check_final(
    plan: &RebalancePlan,
    current: &OwnershipTable,
    model: &Model,
) -> Result<(), TestCaseError> {
    let mut counts: BTreeMap<&NodeId, u32> = BTreeMap::new();
    for p in 0..current.len() as usize {
        let holder = model.valid_holder(p);
        prop_assert!(holder.is_some(), "partition {} ends unowned", p);
        if let Some(h) = holder {
            *counts.entry(&h.node).or_default() += 1;
        }
    }
    for (node, target) in plan.targets() {
        prop_assert_eq!(counts.get(node).copied().unwrap_or(0), *target);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn plans_to_a_ring_assignment_are_safe_and_exact((members, current, cap, choices) in arb_case()) {
        let eligible: Vec<&Member> = members.iter().filter(|m| m.is_eligible()).collect();
        if eligible.is_empty() || current.is_empty() {
            return Ok(());
        }
        let ring = HashRing::with_nodes(
            RingConfig { vnodes_per_weight: 8 },
            eligible.iter().map(|m| (m.id.clone(), m.weight)),
        ).unwrap();
        let desired = PartitionRing::new(ring, current.len(), Some(LoadBound::new(0.25).unwrap()))
            .unwrap()
            .assignment();
        let planner = RebalancePlanner::new(PlanConstraints { max_concurrent_moves: cap }).unwrap();
        let plan = planner.plan_to(&current, &desired, &members).unwrap();

        // Exactly the partitions whose owner differs move.
        let differing = desired.moved_from(&current.assignment()).count();
        prop_assert_eq!(plan.moves().len(), differing);
        let model = execute(&plan, &current, cap, choices)?;
        check_final(&plan, &current, &model)?;
        prop_assert_eq!(plan.final_assignment(&current), desired);
    }
}
