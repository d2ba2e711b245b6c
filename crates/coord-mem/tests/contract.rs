//! coord-mem against the coordination contract suite.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cluster_core::coordination::Coordinator;
use cluster_core::ids::Revision;
use coord_mem::{LinkMode, MemCoordinator};
use testkit::coordination::{ClientFault, CoordHarness, TimingProfile};

const CALL_TIMEOUT: Duration = Duration::from_millis(500);

struct MemHarness {
    store: MemCoordinator,
}

struct MemFault(MemCoordinator);

impl ClientFault for MemFault {
    fn blackhole(&self) {
        self.0.link().set_mode(LinkMode::Blackhole);
    }

    fn heal(&self) {
        self.0.link().set_mode(LinkMode::Pass);
    }
}

#[async_trait]
impl CoordHarness for MemHarness {
    async fn client(&self) -> Arc<dyn Coordinator> {
        Arc::new(self.store.connect())
    }

    async fn faultable_client(&self) -> (Arc<dyn Coordinator>, Box<dyn ClientFault>) {
        let handle = self.store.connect();
        (Arc::new(handle.clone()), Box::new(MemFault(handle)))
    }

    async fn stop_store(&mut self) {
        self.store.set_store_down(true);
    }

    async fn start_store(&mut self) {
        self.store.set_store_down(false);
    }

    async fn compact(&self, revision: Revision) -> bool {
        self.store.compact(revision);
        true
    }

    fn timing(&self) -> TimingProfile {
        TimingProfile {
            ttl: Duration::from_millis(1500),
            margin: Duration::from_millis(500),
            expiry_factor: 1,
            call_timeout: CALL_TIMEOUT,
        }
    }
}

async fn harness() -> MemHarness {
    MemHarness {
        store: MemCoordinator::new().with_call_timeout(CALL_TIMEOUT),
    }
}

testkit::coordination_contract_suite!(harness());

/// One write of the model test.
#[derive(Debug, Clone)]
enum Op {
    Put { key: usize, expect: Cond },
    Delete { key: usize, expect: Cond },
}

/// The condition, relative to the key's state at the time of the write.
#[derive(Debug, Clone, Copy)]
enum Cond {
    Any,
    Absent,
    /// Its current revision (or 1 when absent).
    Current,
    /// A revision it does not have now.
    Stale,
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    let cond = prop_oneof![
        Just(Cond::Any),
        Just(Cond::Absent),
        Just(Cond::Current),
        Just(Cond::Stale)
    ];
    (0usize..3, cond, proptest::bool::ANY).prop_map(|(key, expect, put)| {
        if put {
            Op::Put { key, expect }
        } else {
            Op::Delete { key, expect }
        }
    })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// coord-mem's conditional writes against a model of the port's contract: a write commits
    /// exactly when its condition holds, a refused one is a `Conflict` that changes nothing, a
    /// key's revisions only grow, and reads see every committed write.
    #[test]
    fn kv_writes_follow_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        use cluster_core::coordination::{CoordError, Expect, KvStore};
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let store = MemCoordinator::new().connect();
            let ns = testkit::coordination::fresh_namespace(cluster_core::naming::NamespaceKind::Kv);
            let keys: Vec<_> = (0..3).map(|i| testkit::coordination::key(&ns, &format!("k{i}"))).collect();
            // The model: each key's value and revision, and the highest revision it ever had.
            let mut model: Vec<Option<(Vec<u8>, Revision)>> = vec![None; 3];
            let mut highest = [Revision(0); 3];
            for (step, op) in ops.into_iter().enumerate() {
                let (k, cond, is_put) = match op {
                    Op::Put { key, expect } => (key, expect, true),
                    Op::Delete { key, expect } => (key, expect, false),
                };
                let current = model[k].as_ref().map(|(_, r)| *r);
                let expect = match cond {
                    Cond::Any => Expect::Any,
                    Cond::Absent => Expect::Absent,
                    Cond::Current => Expect::Revision(current.unwrap_or(Revision(1))),
                    Cond::Stale => Expect::Revision(Revision(current.map_or(1, |r| r.0 + 1))),
                };
                let holds = match expect {
                    Expect::Any => true,
                    Expect::Absent => current.is_none(),
                    Expect::Revision(r) => current == Some(r),
                };
                if is_put {
                    let value = format!("v{step}").into_bytes();
                    match store.put(&keys[k], value.clone(), expect, None).await {
                        Ok(rev) => {
                            assert!(holds, "step {step}: put under {expect:?} committed on {current:?}");
                            assert!(rev > highest[k], "step {step}: revision {rev:?} not above {:?}", highest[k]);
                            highest[k] = rev;
                            model[k] = Some((value, rev));
                        }
                        Err(CoordError::Conflict { .. }) => {
                            assert!(!holds, "step {step}: put under {expect:?} refused on {current:?}");
                        }
                        Err(e) => panic!("step {step}: {e}"),
                    }
                } else {
                    match store.delete(&keys[k], expect).await {
                        Ok(deleted) => {
                            assert!(holds, "step {step}: delete under {expect:?} ran on {current:?}");
                            assert_eq!(deleted, current.is_some() && holds, "step {step}");
                            if holds {
                                model[k] = None;
                            }
                        }
                        Err(CoordError::Conflict { .. }) => {
                            assert!(!holds, "step {step}: delete under {expect:?} refused on {current:?}");
                        }
                        Err(e) => panic!("step {step}: {e}"),
                    }
                }
                for (i, key) in keys.iter().enumerate() {
                    let seen = store.get(key).await.unwrap().map(|e| (e.value, e.revision));
                    assert_eq!(seen, model[i], "step {step}: key {i} differs from the model");
                }
            }
        });
    }
}
