use proptest::prelude::*;

use super::*;

/// 2024-01-01 00:00:00 UTC plus `minutes`.
fn wall(minutes: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_067_200 + minutes * 60)
}

fn request(cause: MigrationCause) -> MigrationRequest {
    MigrationRequest {
        cause,
        now: MonoTime::from_duration(Duration::from_secs(1_000)),
        wall: wall(0),
        last_migration_at: None,
        in_flight: 0,
        source_load: 1.0,
    }
}

fn policy() -> MigrationPolicy {
    MigrationPolicy {
        cooldown: Duration::from_secs(60),
        max_concurrent: 2,
        maintenance_windows: vec![MaintenanceWindow {
            start_minute: 120,
            duration_minutes: 60,
        }],
        load_threshold: 0.8,
    }
}

#[test]
fn validation_names_the_bad_field() {
    assert_eq!(MigrationPolicy::default().validate(), Ok(()));
    let mut p = policy();
    p.max_concurrent = 0;
    assert_eq!(p.validate(), Err(PolicyError::ZeroConcurrency));
    let mut p = policy();
    p.load_threshold = f64::NAN;
    assert!(matches!(
        p.validate(),
        Err(PolicyError::LoadThreshold { .. })
    ));
    let mut p = policy();
    p.maintenance_windows.push(MaintenanceWindow {
        start_minute: 1440,
        duration_minutes: 10,
    });
    assert_eq!(p.validate(), Err(PolicyError::Window { index: 1 }));
}

#[test]
fn voluntary_migrations_pass_every_rule_in_order() {
    let p = policy();
    let mut r = request(MigrationCause::Voluntary);

    // Outside the 02:00-03:00 window: opens in 120 minutes.
    assert_eq!(
        p.decide(&r),
        MigrationDecision::Defer(DeferReason::OutsideMaintenanceWindow {
            opens_in: Duration::from_secs(120 * 60)
        })
    );

    r.wall = wall(150);
    assert_eq!(p.decide(&r), MigrationDecision::Allow);

    r.last_migration_at = Some(r.now.saturating_sub(Duration::from_secs(20)));
    assert_eq!(
        p.decide(&r),
        MigrationDecision::Defer(DeferReason::Cooldown {
            remaining: Duration::from_secs(40)
        })
    );

    r.last_migration_at = None;
    r.source_load = 0.5;
    assert_eq!(
        p.decide(&r),
        MigrationDecision::Defer(DeferReason::BelowLoadThreshold {
            load: 0.5,
            threshold: 0.8
        })
    );

    r.in_flight = 2;
    assert_eq!(
        p.decide(&r),
        MigrationDecision::Defer(DeferReason::ConcurrencyLimit {
            in_flight: 2,
            max: 2
        })
    );
}

#[test]
fn forced_migrations_only_respect_the_concurrency_cap() {
    let p = policy();
    let mut r = request(MigrationCause::Forced);
    r.last_migration_at = Some(r.now);
    r.source_load = 0.0;
    assert_eq!(p.decide(&r), MigrationDecision::Allow);
    r.in_flight = 2;
    assert!(matches!(
        p.decide(&r),
        MigrationDecision::Defer(DeferReason::ConcurrencyLimit { .. })
    ));
}

#[test]
fn windows_wrap_past_midnight() {
    let p = MigrationPolicy {
        maintenance_windows: vec![MaintenanceWindow {
            start_minute: 23 * 60,
            duration_minutes: 120,
        }],
        load_threshold: 0.0,
        ..MigrationPolicy::default()
    };
    let mut r = request(MigrationCause::Voluntary);
    r.wall = wall(30); // 00:30, inside 23:00-01:00
    assert_eq!(p.decide(&r), MigrationDecision::Allow);
    r.wall = wall(60); // 01:00, closed; opens in 22 hours
    assert_eq!(
        p.decide(&r),
        MigrationDecision::Defer(DeferReason::OutsideMaintenanceWindow {
            opens_in: Duration::from_secs(22 * 3600)
        })
    );
}

proptest! {
    #[test]
    fn a_deferred_window_opens_exactly_when_promised(start in 0u16..1440, len in 1u16..1440, at in 0u64..10_000) {
        let p = MigrationPolicy {
            maintenance_windows: vec![MaintenanceWindow { start_minute: start, duration_minutes: len }],
            load_threshold: 0.0,
            ..MigrationPolicy::default()
        };
        let mut r = request(MigrationCause::Voluntary);
        r.wall = wall(at);
        if let MigrationDecision::Defer(DeferReason::OutsideMaintenanceWindow { opens_in }) = p.decide(&r) {
            prop_assert!(!opens_in.is_zero());
            r.wall = wall(at) + opens_in;
            prop_assert_eq!(p.decide(&r), MigrationDecision::Allow);
            r.wall = wall(at) + opens_in - Duration::from_secs(60);
            prop_assert!(p.decide(&r) != MigrationDecision::Allow);
        }
    }
}
