//! `cluster config check` and `cluster init`: exit codes and messages.

use crate::{run, stderr, stdout};

/// Environment variables given to one run.
type Env<'a> = &'a [(&'a str, &'a str)];

const GOOD: &str = "[node]\nid = \"n1\"\ndata_dir = \"data\"\n[coordination]\nbackend = \"mem\"\n\
                    [[app]]\nname = \"web\"\nmode = \"active_passive\"\n";

#[test]
fn bad_files_and_variables_exit_2_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, Env<'_>, &str)] = &[
        (
            "[[app]]\nname = \"a\"\nmode = \"ringg\"",
            &[],
            "app[1].mode: \"ringg\" is not one of active_passive, pool, replicas, ring",
        ),
        (
            "",
            &[("CLUSTER_NODE__IDD", "x")],
            "environment variable CLUSTER_NODE__IDD: names no config field (node.idd)",
        ),
        (
            "",
            &[("CLUSTER_TIMING__LEASE_TTL", "100ms")],
            "timing.lease_ttl:",
        ),
        (
            "[bus]\nbackend = \"mem\"\n[coordination.etcd]\n",
            &[("CLUSTER_COORDINATION__BACKEND", "etcd")],
            "bus.backend:",
        ),
        ("this is not toml", &[], "cluster.toml"),
    ];
    for (extra, env, expected) in cases {
        let file = dir.path().join("cluster.toml");
        std::fs::write(&file, format!("{GOOD}{extra}")).unwrap();
        let out = run(dir.path(), &["config", "check", "cluster.toml"], env);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{extra} {env:?}: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(expected),
            "{extra} {env:?}: {}",
            stderr(&out)
        );
    }
    // Variables without a level separator are the admin commands', not config.
    std::fs::write(dir.path().join("cluster.toml"), GOOD).unwrap();
    let out = run(
        dir.path(),
        &["config", "check", "cluster.toml"],
        &[("CLUSTER_ADDR", "http://x"), ("CLUSTER_TOKEN", "t")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn the_environment_beats_the_file_and_a_flag_beats_both() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cluster.toml"), GOOD).unwrap();
    let out = run(
        dir.path(),
        &["config", "check", "cluster.toml"],
        &[("CLUSTER_NODE__ID", "n7")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("node n7 "), "{}", stdout(&out));
    let out = run(
        dir.path(),
        &["config", "check", "cluster.toml", "--set", "node.id=n9"],
        &[("CLUSTER_NODE__ID", "n7")],
    );
    assert!(stdout(&out).contains("node n9 "), "{}", stdout(&out));
}

#[test]
fn init_writes_a_file_that_passes_check_and_keeps_an_existing_one() {
    let dir = tempfile::tempdir().unwrap();
    for (args, file) in [
        (&["init"][..], "cluster.toml"),
        (&["init", "--dev", "dev.toml"][..], "dev.toml"),
    ] {
        let out = run(dir.path(), args, &[]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let out = run(dir.path(), &["config", "check", file], &[]);
        assert_eq!(out.status.code(), Some(0), "{file}: {}", stderr(&out));
    }
    let out = run(dir.path(), &["init"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    let out = run(dir.path(), &["init", "--force"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn usage_errors_exit_2_and_help_names_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["agent", "--no-such-flag"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(dir.path(), &["agent"], &[]);
    assert_eq!(out.status.code(), Some(2), "no config and no --dev");
    assert!(stderr(&out).contains("--config"), "{}", stderr(&out));
    let out = run(dir.path(), &["--help"], &[]);
    for command in ["agent", "config", "init"] {
        assert!(stdout(&out).contains(command), "{}", stdout(&out));
    }
}
