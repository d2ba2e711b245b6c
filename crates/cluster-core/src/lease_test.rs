use proptest::prelude::*;

use super::*;

const TTL: Duration = Duration::from_secs(10);
const MARGIN: Duration = Duration::from_secs(2);

fn t(ms: u64) -> MonoTime {
    MonoTime::from_millis(ms)
}

fn timing() -> LeaseTiming {
    LeaseTiming::new(TTL, MARGIN).unwrap()
}

fn lease_sent_at(ms: u64) -> Lease {
    Lease::granted(
        NodeId::new("n1").unwrap(),
        timing(),
        RenewalAck {
            sent_at: t(ms),
            ttl: TTL,
        },
    )
    .unwrap()
}

#[test]
fn timing_validation_names_the_bad_field() {
    assert_eq!(
        LeaseTiming::new(Duration::ZERO, MARGIN),
        Err(LeaseTimingError::ZeroTtl)
    );
    assert_eq!(
        LeaseTiming::new(TTL, Duration::ZERO),
        Err(LeaseTimingError::ZeroMargin)
    );
    let err = LeaseTiming::new(TTL, TTL).unwrap_err();
    assert_eq!(
        err,
        LeaseTimingError::MarginNotBelowTtl {
            ttl: TTL,
            margin: TTL
        }
    );
    assert!(err.to_string().contains("margin"));
    assert_eq!(
        timing().renew_interval(),
        Duration::from_nanos(2_666_666_666)
    );
}

#[test]
fn states_follow_the_deadlines() {
    let mut lease = lease_sent_at(1_000);
    assert_eq!(lease.safe_until(), t(9_000));
    assert_eq!(lease.expires_at(), t(11_000));
    assert_eq!(lease.observe(t(8_999)), LeaseState::Valid);
    assert_eq!(lease.observe(t(9_000)), LeaseState::RenewDeadlinePassed);
    assert!(!LeaseState::RenewDeadlinePassed.may_act());
    assert_eq!(lease.observe(t(11_000)), LeaseState::Lost);
    // An earlier "now" after losing does not revive it.
    assert_eq!(lease.observe(t(5_000)), LeaseState::Lost);
    assert!(lease.is_lost());
}

#[test]
fn renewals_only_move_deadlines_forward() {
    let mut lease = lease_sent_at(1_000);
    let old = RenewalAck {
        sent_at: t(500),
        ttl: TTL,
    };
    assert_eq!(lease.renewed(old, t(2_000)), Ok(LeaseState::Valid));
    assert_eq!(lease.expires_at(), t(11_000));

    let newer = RenewalAck {
        sent_at: t(4_000),
        ttl: TTL,
    };
    assert_eq!(lease.renewed(newer, t(4_100)), Ok(LeaseState::Valid));
    assert_eq!(lease.expires_at(), t(14_000));
    assert_eq!(lease.renew_at(), t(4_000) + timing().renew_interval());
}

#[test]
fn renewal_after_deadline_but_before_expiry_restores_validity() {
    let mut lease = lease_sent_at(0);
    assert_eq!(lease.observe(t(9_500)), LeaseState::RenewDeadlinePassed);
    let ack = RenewalAck {
        sent_at: t(9_400),
        ttl: TTL,
    };
    assert_eq!(lease.renewed(ack, t(9_600)), Ok(LeaseState::Valid));
}

#[test]
fn late_renewal_never_revives_a_lost_lease() {
    let mut lease = lease_sent_at(0);
    let ack = RenewalAck {
        sent_at: t(9_000),
        ttl: TTL,
    };
    // The ack is processed only after expiry: the lease is lost whatever the ack says.
    let err = lease.renewed(ack, t(10_000)).unwrap_err();
    assert!(matches!(err, LeaseError::Lost { .. }));
    assert_eq!(lease.observe(t(10_001)), LeaseState::Lost);
}

#[test]
fn bad_acks_are_refused() {
    let mut lease = lease_sent_at(0);
    let future = RenewalAck {
        sent_at: t(5_000),
        ttl: TTL,
    };
    assert!(matches!(
        lease.renewed(future, t(1_000)),
        Err(LeaseError::SentInFuture { .. })
    ));
    let short = RenewalAck {
        sent_at: t(1_000),
        ttl: MARGIN,
    };
    assert!(matches!(
        lease.renewed(short, t(1_000)),
        Err(LeaseError::Timing(
            LeaseTimingError::MarginNotBelowTtl { .. }
        ))
    ));
}

#[derive(Debug, Clone)]
enum Step {
    Advance(u64),
    Ack { age: u64, ttl_ms: u64 },
    Revoke,
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u64..6_000).prop_map(Step::Advance),
        4 => (0u64..12_000, 1_000u64..20_000).prop_map(|(age, ttl_ms)| Step::Ack { age, ttl_ms }),
        1 => Just(Step::Revoke),
    ]
}

proptest! {
    #[test]
    fn lost_leases_never_come_back(steps in proptest::collection::vec(arb_step(), 1..80)) {
        let mut lease = lease_sent_at(0);
        let mut now = 0u64;
        let mut seen_lost = false;
        // Every acked send time + granted ttl, to check that Valid is always covered by one.
        let mut covered_until = TTL.as_millis() as u64;
        for step in steps {
            match step {
                Step::Advance(d) => now += d,
                Step::Ack { age, ttl_ms } => {
                    let sent = now.saturating_sub(age);
                    let ack = RenewalAck { sent_at: t(sent), ttl: Duration::from_millis(ttl_ms) };
                    let result = lease.renewed(ack, t(now));
                    if seen_lost {
                        prop_assert!(
                            matches!(result, Err(LeaseError::Lost { .. })),
                            "a lost lease accepted a renewal"
                        );
                    }
                    if result.is_ok() {
                        covered_until = covered_until.max(sent + ttl_ms);
                    }
                }
                Step::Revoke => lease.mark_lost(),
            }
            let state = lease.observe(t(now));
            if seen_lost {
                prop_assert_eq!(state, LeaseState::Lost);
            }
            if state == LeaseState::Lost {
                seen_lost = true;
            }
            if state == LeaseState::Valid {
                // Safety: acting is allowed only with a full margin before a possible expiry.
                prop_assert!(now + MARGIN.as_millis() as u64 <= covered_until);
                prop_assert!(now < covered_until);
            }
        }
    }
}
