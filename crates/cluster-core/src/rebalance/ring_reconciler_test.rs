//! The reconciler's rules one by one, and a simulation of nodes executing its commands against
//! a model store with lost replies, lost requests, stale views and expiring sessions: never two
//! valid holders of a partition, and once faults stop, every partition held by its target.

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;

fn node(n: usize) -> NodeId {
    NodeId::new(format!("n{n}")).unwrap()
}

fn lease(n: &str) -> LeaseId {
    LeaseId::new(n)
}

fn claim(owner: &NodeId, token: u64, lease: &LeaseId) -> Option<SeenClaim> {
    Some(SeenClaim {
        owner: owner.clone(),
        token: FencingToken::new(token),
        lease: lease.clone(),
    })
}

fn held(token: u64, lease: &LeaseId, handing_off: bool) -> HeldPartition {
    HeldPartition {
        token: FencingToken::new(token),
        lease: lease.clone(),
        handing_off,
    }
}

fn run(
    me: &NodeId,
    session: Option<&LeaseId>,
    target: &[Option<NodeId>],
    claims: &[Option<SeenClaim>],
    held: &BTreeMap<u32, HeldPartition>,
) -> Vec<RingCommand> {
    reconcile(&RingObservation {
        me,
        session,
        target,
        claims,
        held,
        backing_off: &BTreeSet::new(),
        retired: &BTreeMap::new(),
    })
}

#[test]
fn a_lost_session_drops_every_held_partition_handoffs_included_and_claims_nothing() {
    let (a, l1) = (node(0), lease("l1"));
    let target = vec![Some(a.clone()), Some(node(1)), Some(a.clone())];
    let claims = vec![claim(&a, 5, &l1), claim(&a, 6, &l1), None];
    let held: BTreeMap<u32, HeldPartition> =
        [(0, held(5, &l1, false)), (1, held(6, &l1, true))].into();
    let commands = run(&a, None, &target, &claims, &held);
    assert_eq!(
        commands,
        vec![
            RingCommand::Drop {
                partition: PartitionId(0),
                token: FencingToken::new(5)
            },
            RingCommand::Drop {
                partition: PartitionId(1),
                token: FencingToken::new(6)
            },
        ]
    );
}

#[test]
fn a_held_partition_under_an_older_session_is_dropped_even_if_the_store_still_shows_it() {
    let (a, old, new) = (node(0), lease("old"), lease("new"));
    let target = vec![Some(a.clone())];
    let claims = vec![claim(&a, 5, &old)];
    let held: BTreeMap<u32, HeldPartition> = [(0, held(5, &old, false))].into();
    let commands = run(&a, Some(&new), &target, &claims, &held);
    assert!(
        matches!(commands[..], [RingCommand::Drop { .. }]),
        "{commands:?}"
    );
}

#[test]
fn a_claim_gone_from_the_store_is_dropped_or_cut_while_handing_off() {
    let (a, b, l1) = (node(0), node(1), lease("l1"));
    let target = vec![Some(a.clone()), Some(b.clone())];
    let claims = vec![claim(&b, 9, &lease("lb")), None];
    let held: BTreeMap<u32, HeldPartition> =
        [(0, held(5, &l1, false)), (1, held(6, &l1, true))].into();
    let commands = run(&a, Some(&l1), &target, &claims, &held);
    assert_eq!(
        commands,
        vec![
            RingCommand::Drop {
                partition: PartitionId(0),
                token: FencingToken::new(5)
            },
            RingCommand::Cut {
                partition: PartitionId(1)
            },
        ]
    );
}

#[test]
fn our_claim_under_our_lease_is_adopted_if_wanted_and_released_otherwise() {
    let (a, b, l1) = (node(0), node(1), lease("l1"));
    let target = vec![Some(a.clone()), Some(b.clone()), Some(a.clone())];
    let claims = vec![
        claim(&a, 5, &l1),
        claim(&a, 6, &l1),
        claim(&a, 7, &lease("old")),
    ];
    let commands = run(&a, Some(&l1), &target, &claims, &BTreeMap::new());
    assert_eq!(
        commands,
        vec![
            RingCommand::Adopt {
                partition: PartitionId(0),
                token: FencingToken::new(5)
            },
            RingCommand::ReleaseStray {
                partition: PartitionId(1),
                token: FencingToken::new(6)
            },
        ],
        "a claim under an older lease is left to expire with it"
    );
}

#[test]
fn a_claim_this_node_let_go_of_is_never_adopted_again_but_may_be_released() {
    let (a, l1) = (node(0), lease("l1"));
    let target = vec![Some(a.clone())];
    let claims = vec![claim(&a, 5, &l1)];
    let retired = BTreeMap::from([(0, FencingToken::new(5))]);
    let commands = reconcile(&RingObservation {
        me: &a,
        session: Some(&l1),
        target: &target,
        claims: &claims,
        held: &BTreeMap::new(),
        backing_off: &BTreeSet::new(),
        retired: &retired,
    });
    assert_eq!(
        commands,
        vec![RingCommand::ReleaseStray {
            partition: PartitionId(0),
            token: FencingToken::new(5)
        }]
    );
}

#[test]
fn free_targeted_partitions_are_claimed_and_others_handed_off() {
    let (a, b, l1) = (node(0), node(1), lease("l1"));
    let target = vec![Some(a.clone()), Some(b.clone()), Some(a.clone()), None];
    let claims = vec![None, claim(&a, 6, &l1), claim(&b, 7, &lease("lb")), None];
    let held: BTreeMap<u32, HeldPartition> = [(1, held(6, &l1, false))].into();
    let commands = run(&a, Some(&l1), &target, &claims, &held);
    assert_eq!(
        commands,
        vec![
            RingCommand::Claim {
                partition: PartitionId(0)
            },
            RingCommand::Handoff {
                partition: PartitionId(1),
                token: FencingToken::new(6),
                to: b.clone()
            },
        ]
    );
    let backing_off = BTreeSet::from([0]);
    let commands = reconcile(&RingObservation {
        me: &a,
        session: Some(&l1),
        target: &target,
        claims: &claims,
        held: &held,
        backing_off: &backing_off,
        retired: &BTreeMap::new(),
    });
    assert!(!commands.contains(&RingCommand::Claim {
        partition: PartitionId(0)
    }));
}

// ---- simulation ----------------------------------------------------------------------------

const NODES: usize = 2;
const PARTITIONS: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    /// Node reconciles on the store's current view, or on the view it last read.
    Reconcile { node: usize, fresh: bool },
    /// The node's session is lost (its tokens fire at once).
    LoseSession(usize),
    /// The store expires the leases no node holds any more.
    ExpireAtStore,
    /// The node opens a new session.
    Rejoin(usize),
    /// The planner moves partition `p` to node `to`.
    Retarget { p: usize, to: usize },
    /// The node's next claim is applied but its reply is lost.
    LoseNextClaimReply(usize),
    /// The node's next release never reaches the store.
    LoseNextRelease(usize),
    /// The node's handoff of `p`, if any, runs its steps to the end.
    FinishHandoff { node: usize, p: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..NODES, any::<bool>()).prop_map(|(node, fresh)| Op::Reconcile { node, fresh }),
        1 => (0..NODES).prop_map(Op::LoseSession),
        1 => Just(Op::ExpireAtStore),
        1 => (0..NODES).prop_map(Op::Rejoin),
        2 => (0..PARTITIONS, 0..NODES).prop_map(|(p, to)| Op::Retarget { p, to }),
        1 => (0..NODES).prop_map(Op::LoseNextClaimReply),
        1 => (0..NODES).prop_map(Op::LoseNextRelease),
        2 => (0..NODES, 0..PARTITIONS).prop_map(|(node, p)| Op::FinishHandoff { node, p }),
    ]
}

#[derive(Debug, Clone)]
struct SimNode {
    id: NodeId,
    session: Option<LeaseId>,
    held: BTreeMap<u32, HeldPartition>,
    retired: BTreeMap<u32, FencingToken>,
    /// The store's claims as this node last read them.
    view: Vec<Option<SeenClaim>>,
    lose_claim_reply: bool,
    lose_release: bool,
}

#[derive(Debug)]
struct Sim {
    nodes: Vec<SimNode>,
    claims: Vec<Option<SeenClaim>>,
    /// Leases the store still honours.
    live_leases: BTreeSet<LeaseId>,
    target: Vec<Option<NodeId>>,
    next_token: u64,
    next_lease: u64,
}

impl Sim {
    fn new() -> Sim {
        let mut sim = Sim {
            nodes: Vec::new(),
            claims: vec![None; PARTITIONS],
            live_leases: BTreeSet::new(),
            target: (0..PARTITIONS).map(|p| Some(node(p % NODES))).collect(),
            next_token: 1,
            next_lease: 1,
        };
        for n in 0..NODES {
            let lease = sim.grant();
            sim.nodes.push(SimNode {
                id: node(n),
                session: Some(lease),
                held: BTreeMap::new(),
                retired: BTreeMap::new(),
                view: vec![None; PARTITIONS],
                lose_claim_reply: false,
                lose_release: false,
            });
        }
        sim
    }

    fn grant(&mut self) -> LeaseId {
        let lease = LeaseId::new(format!("l{}", self.next_lease));
        self.next_lease += 1;
        self.live_leases.insert(lease.clone());
        lease
    }

    /// The store's release: only the holder's token deletes the claim.
    fn release(&mut self, p: usize, token: FencingToken) {
        if self.claims[p].as_ref().is_some_and(|c| c.token == token) {
            self.claims[p] = None;
        }
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Reconcile { node, fresh } => self.reconcile(node, fresh),
            Op::LoseSession(n) => {
                // The session's tokens fire: the node stops acting on anything it held.
                self.nodes[n].session = None;
            }
            Op::ExpireAtStore => {
                // Only leases no node still believes in may expire (the margin's guarantee).
                let believed: BTreeSet<LeaseId> = self
                    .nodes
                    .iter()
                    .filter_map(|n| n.session.clone())
                    .collect();
                self.live_leases.retain(|l| believed.contains(l));
                for c in &mut self.claims {
                    if c.as_ref().is_some_and(|c| !believed.contains(&c.lease)) {
                        *c = None;
                    }
                }
            }
            Op::Rejoin(n) => {
                if self.nodes[n].session.is_none() {
                    let lease = self.grant();
                    self.nodes[n].session = Some(lease);
                }
            }
            Op::Retarget { p, to } => self.target[p] = Some(node(to)),
            Op::LoseNextClaimReply(n) => self.nodes[n].lose_claim_reply = true,
            Op::LoseNextRelease(n) => self.nodes[n].lose_release = true,
            Op::FinishHandoff { node: n, p } => {
                let Some(h) = self.nodes[n].held.get(&(p as u32)).cloned() else {
                    return;
                };
                if !h.handing_off {
                    return;
                }
                // The source steps: stop intake, drain, transfer queued, release(token).
                self.nodes[n].held.remove(&(p as u32));
                self.nodes[n].retired.insert(p as u32, h.token);
                if std::mem::take(&mut self.nodes[n].lose_release) {
                    return;
                }
                self.release(p, h.token);
            }
        }
    }

    fn reconcile(&mut self, n: usize, fresh: bool) {
        if fresh {
            self.nodes[n].view = self.claims.clone();
        }
        let me = self.nodes[n].clone();
        let commands = reconcile(&RingObservation {
            me: &me.id,
            session: me.session.as_ref(),
            target: &self.target,
            claims: &me.view,
            held: &me.held,
            backing_off: &BTreeSet::new(),
            retired: &me.retired,
        });
        for command in commands {
            match command {
                RingCommand::Drop { partition, token } => {
                    self.nodes[n].held.remove(&partition.0);
                    self.nodes[n].retired.insert(partition.0, token);
                }
                RingCommand::Cut { .. } => {}
                RingCommand::Claim { partition } => {
                    let p = partition.0 as usize;
                    let Some(lease) = me.session.clone() else {
                        continue;
                    };
                    // The store's claim: create-if-absent, under a lease it still honours.
                    if self.claims[p].is_some() || !self.live_leases.contains(&lease) {
                        continue;
                    }
                    let token = FencingToken::new(self.next_token);
                    self.next_token += 1;
                    self.claims[p] = claim(&me.id, token.get(), &lease);
                    if std::mem::take(&mut self.nodes[n].lose_claim_reply) {
                        continue;
                    }
                    // The runtime records its own claim in its view at once.
                    self.nodes[n].view[p] = claim(&me.id, token.get(), &lease);
                    self.nodes[n]
                        .held
                        .insert(partition.0, held(token.get(), &lease, false));
                }
                RingCommand::Adopt { partition, token } => {
                    let Some(lease) = me.session.clone() else {
                        continue;
                    };
                    self.nodes[n]
                        .held
                        .insert(partition.0, held(token.get(), &lease, false));
                }
                RingCommand::ReleaseStray { partition, token } => {
                    self.nodes[n].retired.insert(partition.0, token);
                    if std::mem::take(&mut self.nodes[n].lose_release) {
                        continue;
                    }
                    self.release(partition.0 as usize, token);
                }
                RingCommand::Handoff { partition, .. } => {
                    if let Some(h) = self.nodes[n].held.get_mut(&partition.0) {
                        h.handing_off = true;
                    }
                }
            }
        }
    }

    /// A node may act for `p`: it holds it under the session it still has.
    fn valid_holders(&self, p: usize) -> Vec<&NodeId> {
        self.nodes
            .iter()
            .filter(|n| {
                n.held
                    .get(&(p as u32))
                    .is_some_and(|h| n.session.as_ref() == Some(&h.lease))
            })
            .map(|n| &n.id)
            .collect()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]
    #[test]
    fn never_two_valid_holders_and_every_partition_reaches_its_target(
        ops in proptest::collection::vec(op(), 0..80)
    ) {
        let mut sim = Sim::new();
        for op in &ops {
            sim.apply(op);
            for p in 0..PARTITIONS {
                let holders = sim.valid_holders(p);
                prop_assert!(holders.len() <= 1, "partition {} held by {:?} after {:?}", p, holders, op);
            }
        }
        // Faults stop: everyone rejoins, dead leases expire, views are fresh, handoffs finish.
        for n in 0..NODES {
            sim.apply(&Op::Rejoin(n));
            sim.nodes[n].lose_claim_reply = false;
            sim.nodes[n].lose_release = false;
        }
        sim.apply(&Op::ExpireAtStore);
        for _ in 0..4 {
            for n in 0..NODES {
                sim.apply(&Op::Reconcile { node: n, fresh: true });
                for p in 0..PARTITIONS {
                    sim.apply(&Op::FinishHandoff { node: n, p });
                }
            }
        }
        for p in 0..PARTITIONS {
            let target = sim.target[p].clone();
            prop_assert_eq!(sim.valid_holders(p), target.iter().collect::<Vec<_>>(), "partition {}", p);
            prop_assert_eq!(sim.claims[p].as_ref().map(|c| &c.owner), target.as_ref());
        }
    }
}
