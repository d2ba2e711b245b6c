use proptest::prelude::*;

use super::*;

fn t(s: u64) -> MonoTime {
    MonoTime::from_duration(Duration::from_secs(s))
}

fn thresholds() -> HealthThresholds {
    HealthThresholds::new(Duration::from_secs(5), Duration::from_secs(15), 2).unwrap()
}

#[test]
fn thresholds_are_validated() {
    assert_eq!(
        HealthThresholds::new(Duration::ZERO, Duration::from_secs(1), 1),
        Err(HealthConfigError::ZeroSuspectAfter)
    );
    assert!(matches!(
        HealthThresholds::new(Duration::from_secs(5), Duration::from_secs(5), 1),
        Err(HealthConfigError::DeadNotAfterSuspect { .. })
    ));
    assert_eq!(
        HealthThresholds::new(Duration::from_secs(1), Duration::from_secs(2), 0),
        Err(HealthConfigError::ZeroJoinHeartbeats)
    );
    assert_eq!(HealthThresholds::default().validate(), Ok(()));
}

#[test]
fn full_lifecycle_reports_each_transition() {
    let mut node = NodeHealth::joining(thresholds(), t(0));
    assert_eq!(node.observe(Observation::Heartbeat { at: t(1) }), None);
    assert_eq!(
        node.observe(Observation::Heartbeat { at: t(2) }),
        Some(HealthTransition {
            from: HealthState::Joining,
            to: HealthState::Alive
        })
    );
    assert_eq!(node.observe(Observation::Tick { now: t(6) }), None);
    assert_eq!(
        node.observe(Observation::Tick { now: t(7) })
            .map(|tr| tr.to),
        Some(HealthState::Suspect)
    );
    assert_eq!(
        node.observe(Observation::Heartbeat { at: t(8) })
            .map(|tr| tr.to),
        Some(HealthState::Alive)
    );
    assert_eq!(
        node.observe(Observation::Tick { now: t(30) }),
        Some(HealthTransition {
            from: HealthState::Alive,
            to: HealthState::Dead
        })
    );
}

#[test]
fn a_joining_node_that_goes_silent_dies_without_being_suspect() {
    let mut node = NodeHealth::joining(thresholds(), t(0));
    assert_eq!(node.observe(Observation::Tick { now: t(10) }), None);
    assert_eq!(node.state(), HealthState::Joining);
    assert_eq!(
        node.observe(Observation::Tick { now: t(15) })
            .map(|tr| tr.to),
        Some(HealthState::Dead)
    );
}

#[test]
fn leave_is_final() {
    let mut node = NodeHealth::joining(thresholds(), t(0));
    assert_eq!(
        node.observe(Observation::LeaveAnnounced).map(|tr| tr.to),
        Some(HealthState::Left)
    );
    assert_eq!(node.observe(Observation::Heartbeat { at: t(1) }), None);
    assert_eq!(node.observe(Observation::Tick { now: t(100) }), None);
    assert_eq!(node.state(), HealthState::Left);
}

fn arb_observation() -> impl Strategy<Value = (u8, u64)> {
    (0u8..10, 0u64..8)
}

proptest! {
    #[test]
    fn final_states_stay_final_and_dead_means_silent(steps in proptest::collection::vec(arb_observation(), 1..60)) {
        let th = thresholds();
        let mut node = NodeHealth::joining(th, t(0));
        let mut now = 0u64;
        let mut final_state: Option<HealthState> = None;
        for (kind, advance) in steps {
            now += advance;
            let obs = match kind {
                0 => Observation::LeaveAnnounced,
                1..=4 => Observation::Heartbeat { at: t(now) },
                _ => Observation::Tick { now: t(now) },
            };
            let before = node.state();
            let transition = node.observe(obs);
            if let Some(tr) = transition {
                prop_assert_eq!(tr.from, before);
                prop_assert_eq!(tr.to, node.state());
                prop_assert!(tr.from != tr.to);
            }
            if let Some(f) = final_state {
                prop_assert_eq!(node.state(), f);
                prop_assert!(transition.is_none());
            }
            if node.state() == HealthState::Dead {
                // Only declared dead after a full dead_after of silence.
                prop_assert!(t(now).saturating_duration_since(node.last_heard()) >= th.dead_after);
            }
            if node.state().is_final() {
                final_state.get_or_insert(node.state());
            }
        }
    }
}
