use super::*;

fn subjects() -> Subjects {
    Subjects::new("prod").unwrap()
}

fn token(s: &str) -> SubjectToken {
    SubjectToken::new(s).unwrap()
}

#[test]
fn every_subject_renders_as_documented() {
    let s = subjects();
    assert_eq!(
        s.lifecycle(
            1,
            LifecycleKind::Workflow,
            PartitionId(3),
            &token("completed")
        )
        .as_str(),
        "prod.v1.lifecycle.workflow.p3.completed"
    );
    assert_eq!(
        s.platform(1, &token("joined")).as_str(),
        "prod.v1.platform.joined"
    );
    assert_eq!(s.audit(&token("claims")).as_str(), "prod.audit.claims");
    assert_eq!(
        s.rpc(&token("jobs"), &token("run")).as_str(),
        "prod.rpc.jobs.run"
    );
    assert_eq!(
        s.dead_letter(DeadLetterReason::StaleEpoch).as_str(),
        "prod.deadletter.stale_epoch"
    );
    assert_eq!(s.all_lifecycle().as_str(), "prod.*.lifecycle.>");
}

#[test]
fn dots_wildcards_and_spaces_are_errors_not_levels() {
    for bad in ["a.b", "*", ">", "a b", "a\tb", "", "é", "a>b"] {
        assert!(SubjectToken::new(bad).is_err(), "{bad:?} accepted");
        assert!(Subjects::new(bad).is_err(), "prefix {bad:?} accepted");
    }
    let long = "x".repeat(MAX_TOKEN_LEN + 1);
    assert!(matches!(
        SubjectToken::new(long),
        Err(SubjectError::TooLong { .. })
    ));
    assert!(matches!(
        SubjectToken::new("a.b"),
        Err(SubjectError::BadCharacter {
            found: '.',
            position: 1,
            ..
        })
    ));
}

#[test]
fn filters_match_what_nats_would_match() {
    let s = subjects();
    let task_started = s.lifecycle(2, LifecycleKind::Task, PartitionId(7), &token("started"));
    let job_done = s.lifecycle(1, LifecycleKind::Job, PartitionId(8), &token("done"));
    let shard7 = s.lifecycle_filter(
        Level::Any,
        Level::Any,
        Level::Is(PartitionId(7)),
        Level::Any,
    );
    assert_eq!(shard7.as_str(), "prod.*.lifecycle.*.p7.*");
    assert!(shard7.matches(task_started.as_str()));
    assert!(!shard7.matches(job_done.as_str()));
    assert!(s.all_lifecycle().matches(job_done.as_str()));
    assert!(!s.all_lifecycle().matches("prod.audit.claims"));
    assert!(!s.all_platform().matches(task_started.as_str()));
    assert!(s.all_dead_letters().matches("prod.deadletter.malformed"));
    let exact = SubjectFilter::from(task_started.clone());
    assert!(exact.matches(task_started.as_str()));
    assert!(!exact.matches("prod.v2.lifecycle.task.p7.started.extra"));
}

#[test]
fn lifecycle_subjects_parse_back() {
    let s = subjects();
    let subject = s.lifecycle(
        3,
        LifecycleKind::Ownership,
        PartitionId(12),
        &token("moved"),
    );
    let parsed = s.parse_lifecycle(subject.as_str()).unwrap();
    assert_eq!(parsed.major, 3);
    assert_eq!(parsed.kind, LifecycleKind::Ownership);
    assert_eq!(parsed.shard, PartitionId(12));
    assert_eq!(parsed.event, token("moved"));
    assert_eq!(subject.major(), Some(3));
    for bad in [
        "prod.v1.lifecycle.task.p1",
        "other.v1.lifecycle.task.p1.x",
        "prod.1.lifecycle.task.p1.x",
        "prod.v1.lifecycle.thing.p1.x",
        "prod.v1.lifecycle.task.7.x",
    ] {
        assert!(s.parse_lifecycle(bad).is_err(), "{bad} parsed");
    }
}
