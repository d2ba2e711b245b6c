use super::*;
use crate::event::dead_letter::DeadLetterReason;

fn mark(epoch: u64, sequence: u64) -> OrderMark {
    OrderMark::new(FencingToken::new(epoch), sequence)
}

fn at(epoch: u64, sequence: u64, stream_sequence: u64) -> EventPosition {
    EventPosition {
        mark: mark(epoch, sequence),
        stream_sequence,
    }
}

fn applied(epoch: u64, sequence: u64) -> KeyRecord {
    KeyRecord {
        applied: Some(mark(epoch, sequence)),
        held_at: None,
    }
}

#[test]
fn marks_order_by_epoch_then_sequence() {
    assert!(mark(1, 100) < mark(2, 1));
    assert!(mark(2, 1) < mark(2, 2));
    assert_eq!(mark(3, 3).cmp(&mark(3, 3)), Ordering::Equal);
}

#[test]
fn first_event_of_a_key_applies() {
    assert_eq!(
        decide(None, &KeyRecord::default(), &at(1, 1, 1)),
        ApplyDecision::Apply
    );
}

#[test]
fn later_marks_apply_and_gaps_are_fine() {
    assert_eq!(
        decide(None, &applied(1, 5), &at(1, 6, 9)),
        ApplyDecision::Apply
    );
    assert_eq!(
        decide(None, &applied(1, 5), &at(1, 1000, 9)),
        ApplyDecision::Apply
    );
    assert_eq!(
        decide(None, &applied(1, 5), &at(2, 1, 9)),
        ApplyDecision::Apply,
        "new owner restarts its sequence"
    );
}

#[test]
fn redelivered_and_superseded_events_are_duplicates() {
    assert_eq!(
        decide(None, &applied(1, 5), &at(1, 5, 9)),
        ApplyDecision::Duplicate
    );
    assert_eq!(
        decide(None, &applied(1, 5), &at(1, 4, 9)),
        ApplyDecision::Duplicate
    );
}

#[test]
fn older_epochs_are_stale_whatever_their_sequence() {
    assert_eq!(
        decide(None, &applied(7, 1), &at(6, 500, 9)),
        ApplyDecision::StaleEpoch {
            applied: mark(7, 1)
        }
    );
}

#[test]
fn a_hold_blocks_only_later_events_of_the_key() {
    let held = KeyRecord {
        applied: Some(mark(1, 1)),
        held_at: Some(10),
    };
    assert_eq!(
        decide(None, &held, &at(1, 2, 10)),
        ApplyDecision::Apply,
        "the held event itself retries"
    );
    assert_eq!(
        decide(None, &held, &at(1, 3, 11)),
        ApplyDecision::HeldBehind { blocker: 10 }
    );
    assert_eq!(
        decide(None, &held, &at(1, 1, 5)),
        ApplyDecision::Duplicate,
        "earlier positions are not held"
    );
}

#[test]
fn an_epoch_below_the_shards_high_water_is_stale_for_every_key_and_none() {
    let shard = Some(FencingToken::new(10));
    let stale = ApplyDecision::StaleShardEpoch {
        high_water: FencingToken::new(10),
    };
    assert_eq!(
        decide(shard, &KeyRecord::default(), &at(9, 1, 20)),
        stale,
        "a key never seen, under an older epoch of its shard"
    );
    assert_eq!(decide(shard, &applied(9, 3), &at(9, 4, 20)), stale);
    assert_eq!(decide_unkeyed(shard, FencingToken::new(9), false), stale);
    assert_eq!(
        decide(shard, &applied(9, 3), &at(9, 3, 20)),
        ApplyDecision::Duplicate,
        "a redelivery of an applied event is still a duplicate"
    );
    assert_eq!(
        decide_unkeyed(shard, FencingToken::new(9), true),
        ApplyDecision::Duplicate
    );
    assert_eq!(
        decide(shard, &KeyRecord::default(), &at(10, 1, 20)),
        ApplyDecision::Apply
    );
    assert_eq!(
        decide(shard, &applied(9, 3), &at(11, 1, 20)),
        ApplyDecision::Apply
    );
    assert_eq!(
        decide_unkeyed(shard, FencingToken::new(10), false),
        ApplyDecision::Apply
    );
    let held = KeyRecord {
        applied: None,
        held_at: Some(5),
    };
    assert_eq!(
        decide(shard, &held, &at(9, 1, 20)),
        stale,
        "a stale event is not kept waiting behind a hold"
    );
}

#[test]
fn unkeyed_events_dedup_on_their_id() {
    assert_eq!(
        decide_unkeyed(None, FencingToken::new(1), false),
        ApplyDecision::Apply
    );
    assert_eq!(
        decide_unkeyed(None, FencingToken::new(1), true),
        ApplyDecision::Duplicate
    );
}

#[test]
fn retries_back_off_then_dead_letter_before_max_deliver() {
    let p = RedeliveryPolicy {
        handler_attempts: 3,
        max_deliver: 10,
        initial_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(250),
    };
    assert_eq!(
        p.after_failure(1),
        RetryDecision::RetryAfter(Duration::from_millis(100))
    );
    assert_eq!(
        p.after_failure(2),
        RetryDecision::RetryAfter(Duration::from_millis(200))
    );
    assert_eq!(
        p.after_failure(3),
        RetryDecision::DeadLetter(DeadLetterReason::HandlerFailed)
    );
    assert!(matches!(p.while_held(5), RetryDecision::RetryAfter(_)));
    assert_eq!(
        p.while_held(9),
        RetryDecision::DeadLetter(DeadLetterReason::MaxDeliveries)
    );
    let patient = RedeliveryPolicy {
        handler_attempts: 100,
        ..p
    };
    assert_eq!(
        patient.after_failure(9),
        RetryDecision::DeadLetter(DeadLetterReason::MaxDeliveries)
    );
}
