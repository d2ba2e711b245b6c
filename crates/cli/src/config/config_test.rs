use super::*;

const BASE: &str = r#"
[node]
id = "n1"
data_dir = "/tmp/x"

[coordination]
backend = "mem"
"#;

fn load_text(text: &str, env: &[(&str, &str)], sets: &[&str]) -> Result<AgentConfig, ConfigErrors> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster.toml");
    std::fs::write(&file, text).unwrap();
    load(&Sources {
        file: Some(file),
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        sets: sets.iter().map(|s| (*s).to_owned()).collect(),
        dev: None,
    })
}

fn fields(text: &str, env: &[(&str, &str)]) -> Vec<String> {
    match load_text(text, env, &[]) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.into_iter().map(|e| e.field.into_owned()).collect(),
    }
}

#[test]
fn the_smallest_file_passes_with_defaults() {
    let c = load_text(BASE, &[], &[]).unwrap();
    assert_eq!(c.platform.name, "cluster");
    assert_eq!(c.node.http_addr.to_string(), "127.0.0.1:7600");
    assert_eq!(c.node.advertise, "127.0.0.1:7600");
    assert!(c.bus.is_none() && c.apps.is_empty());
}

/// Each bad file names the field that is wrong, and only that one.
#[test]
fn each_mistake_is_named_by_its_field_path() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "[[app]]\nname = \"a\"\nmode = \"ringg\"",
            "app[0].mode",
            "is not one of active_passive, pool, replicas, ring",
        ),
        ("[[app]]\nname = \"a\"", "app[0].mode", "missing"),
        (
            "[[app]]\nname = \"a\"\nmode = \"ring\"",
            "app[0].partitions",
            "needs partitions",
        ),
        (
            "[[app]]\nname = \"a\"\nmode = \"ring\"\npartitions = 0",
            "app[0].partitions",
            "at least 1",
        ),
        (
            "[[app]]\nname = \"a\"\nmode = \"pool\"\npartitions = 4",
            "app[0].partitions",
            "only a ring app",
        ),
        (
            "[[app]]\nname = \"a\"\nmode = \"replicas\"",
            "app[0].replicas",
            "needs replicas",
        ),
        (
            "[[app]]\nname = \"a\"\nmode = \"pool\"\n[[app]]\nname = \"a\"\nmode = \"pool\"",
            "app[1].name",
            "is already app[0]",
        ),
        (
            "[[app]]\nname = \"a b\"\nmode = \"pool\"",
            "app[0].name",
            "",
        ),
        (
            "[[app]]\nname = \"a\"\nmode = \"pool\"\n[app.sqlite]\npath = \"a.db\"",
            "app[0].sqlite",
            "active-passive",
        ),
        (
            "[[app]]\nname = \"a\"\nmode = \"active_passive\"\n[app.sqlite]\nkeep_snapshots = 2",
            "app[0].sqlite.path",
            "missing",
        ),
        (
            "[[app]]\nname = \"a\"\nmode = \"pool\"\nmodee = 1",
            "app[0].modee",
            "unknown field",
        ),
        (
            "[[app]]\nname = \"a\"\nmode = \"pool\"\n[[app.health]]\nname = \"h\"\nkind = \"icmp\"",
            "app[0].health[0].kind",
            "is not one of http, tcp, command",
        ),
        (
            "[[app]]\nname = \"a\"\nmode = \"pool\"\n[[app.health]]\nname = \"h\"\nkind = \"http\"\nurl = \"localhost\"",
            "app[0].health[0].url",
            "http://",
        ),
        (
            "[[app]]\nname = \"a\"\nmode = \"pool\"\n[[app.health]]\nname = \"h\"\nkind = \"tcp\"\naddress = \"x:1\"\ndepends_on = [\"db\"]",
            "app[0].health[0].depends_on",
            "\"db\"",
        ),
        (
            "[[app]]\nname = \"a\"\nmode = \"pool\"\n[[app.health]]\nname = \"h\"\nkind = \"tcp\"\naddress = \"x:1\"\ninterval = \"1s\"\ntimeout = \"2s\"",
            "app[0].health[0].timeout",
            "at most the interval",
        ),
        (
            "[timing]\nlease_ttl = \"100ms\"",
            "timing.lease_ttl",
            "too short",
        ),
        (
            "[timing]\nlease_ttl = \"10s\"\nlease_margin = \"10s\"",
            "timing.lease_margin",
            "before the lease can expire",
        ),
        ("[timing]\nlease_ttl = \"soon\"", "timing.lease_ttl", ""),
        (
            "[timing]\nheartbeat = \"1s\"\nlease_margin = \"1s\"",
            "timing.heartbeat",
            "not both",
        ),
        (
            "[timing]\nlease_ttl = \"10s\"\nheartbeat = \"4s\"",
            "timing.heartbeat",
            "below the lease ttl",
        ),
        (
            "[node]\nhttp_addr = \"localhost\"",
            "node.http_addr",
            "IP:port",
        ),
        ("[node]\nidd = \"x\"", "node.idd", "unknown field"),
        (
            "[platform]\nmax_concurrent_moves = 0",
            "platform.max_concurrent_moves",
            "at least 1",
        ),
        (
            "[bus]\nbackend = \"kafka\"",
            "bus.backend",
            "is not one of nats, mem",
        ),
        (
            "[bus]\nbackend = \"nats\"\n[bus.nats]\nurll = \"x\"",
            "bus.nats.urll",
            "unknown field `urll`",
        ),
    ];
    for (extra, field, reason) in cases {
        let text = format!("{BASE}\n{extra}");
        // [node] may appear twice: merge by overriding the base's section.
        let text = if extra.starts_with("[node]") {
            extra.replace("[node]", "[node]\nid = \"n1\"\ndata_dir = \"/tmp/x\"")
                + "\n[coordination]\nbackend = \"mem\"\n"
        } else {
            text
        };
        let errors = match load_text(&text, &[], &[]) {
            Ok(_) => panic!("accepted a bad file ({field}):\n{text}"),
            Err(e) => e.0,
        };
        assert_eq!(
            errors.iter().map(|e| e.field.as_ref()).collect::<Vec<_>>(),
            [*field],
            "{text}"
        );
        assert!(
            errors[0].reason.contains(reason),
            "{field}: {}",
            errors[0].reason
        );
    }
}

#[test]
fn the_store_and_bus_are_checked_with_their_adapters_rules() {
    let no_backend = "[node]\nid = \"n1\"\ndata_dir = \"/x\"";
    assert_eq!(fields(no_backend, &[]), ["coordination.backend"]);
    let etcd = format!(
        "{no_backend}\n[coordination]\nbackend = \"etcd\"\n[coordination.etcd]\nendpoints = [\"127.0.0.1:2379\"]"
    );
    assert_eq!(fields(&etcd, &[]), ["coordination.etcd.endpoints"]);
    let etcd_ok = format!(
        "{no_backend}\n[coordination]\nbackend = \"etcd\"\n[coordination.etcd]\ncall_timeout = \"1500ms\""
    );
    let c = load_text(&etcd_ok, &[], &[]).unwrap();
    match c.coordination {
        Coordination::Etcd(e) => assert_eq!(e.call_timeout, Duration::from_millis(1500)),
        other => panic!("{other:?}"),
    }
    let mem_bus =
        format!("{no_backend}\n[coordination]\nbackend = \"consul\"\n[bus]\nbackend = \"mem\"");
    assert_eq!(fields(&mem_bus, &[]), ["bus.backend"]);
    let sqlite_without_stores = format!(
        "{no_backend}\n[coordination]\nbackend = \"etcd\"\n[[app]]\nname = \"l\"\nmode = \"active_passive\"\n[app.sqlite]\npath = \"l.db\""
    );
    assert_eq!(fields(&sqlite_without_stores, &[]), ["app[0].sqlite"]);
}

#[test]
fn every_error_is_listed_at_once() {
    let text = "[node]\nhttp_addr = \"nowhere\"\n[coordination]\nbackend = \"zookeeper\"\n\
                [[app]]\nname = \"a\"\nmode = \"ringg\"\n[[app]]\nmode = \"pool\"\ncolour = \"red\"";
    let got = fields(text, &[]);
    for field in [
        "node.id",
        "node.data_dir",
        "node.http_addr",
        "coordination.backend",
        "app[0].mode",
        "app[1].name",
        "app[1].colour",
    ] {
        assert!(
            got.iter().any(|f| f == field),
            "{field} missing from {got:?}"
        );
    }
}

#[test]
fn flags_beat_the_environment_which_beats_the_file() {
    let text = format!("{BASE}\n[[app]]\nname = \"a\"\nmode = \"pool\"");
    let env = [
        ("CLUSTER_NODE__ID", "from-env"),
        ("CLUSTER_APP__0__MODE", "ring"),
        ("CLUSTER_APP__0__PARTITIONS", "8"),
    ];
    let c = load_text(&text, &env, &[]).unwrap();
    assert_eq!(c.node.id, "from-env");
    assert_eq!(
        c.apps[0].mode,
        AppModeConfig::Ring {
            partitions: 8,
            weight: 1
        }
    );
    let c = load_text(&text, &env, &["node.id=from-flag"]).unwrap();
    assert_eq!(c.node.id, "from-flag");
    // A number where a name is meant is still a name.
    let c = load_text(&text, &[("CLUSTER_NODE__ID", "7")], &[]).unwrap();
    assert_eq!(c.node.id, "7");
}

#[test]
fn a_variable_naming_no_field_is_an_error_naming_the_variable() {
    let got = load_text(
        BASE,
        &[
            ("CLUSTER_NODE__IDD", "x"),
            ("CLUSTER_ADDR", "http://a"),
            ("CLUSTER_TOKEN", "t"),
        ],
        &[],
    )
    .unwrap_err()
    .0;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].field, "environment variable CLUSTER_NODE__IDD");
    assert!(got[0].reason.contains("node.idd"), "{}", got[0].reason);
    let got = load_text(BASE, &[], &["nodes.id=x"]).unwrap_err().0;
    assert_eq!(got[0].field, "--set nodes.id=x");
}

#[test]
fn dev_fills_in_a_node_and_refuses_another_store() {
    let dev = Some(DevDefaults {
        data_dir: "/tmp/dev".into(),
    });
    let c = load(&Sources {
        dev: dev.clone(),
        ..Sources::default()
    })
    .unwrap();
    assert_eq!(c.node.id, "dev");
    assert!(matches!(c.coordination, Coordination::Mem));
    assert!(matches!(c.bus, Some(Bus::Mem)));
    assert_eq!(c.apps.len(), 2, "the sample apps");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "[coordination]\nbackend = \"etcd\"").unwrap();
    let err = load(&Sources {
        file: Some(file),
        dev,
        ..Sources::default()
    })
    .unwrap_err();
    assert_eq!(err.0[0].field, "coordination.backend");
    assert!(err.0[0].reason.contains("--dev"));
}

#[test]
fn placement_rules_match_node_labels() {
    let text = format!(
        "{BASE}\n[[app]]\nname = \"a\"\nmode = \"pool\"\n[app.placement]\non_label = {{ zone = \"b\" }}"
    );
    let c = load_text(&text, &[("CLUSTER_NODE__LABELS__ZONE", "a")], &[]).unwrap();
    assert!(!c.apps[0].placed_on(&c.node.labels));
    let c = load_text(&text, &[("CLUSTER_NODE__LABELS__ZONE", "b")], &[]).unwrap();
    assert!(c.apps[0].placed_on(&c.node.labels));
}

#[test]
fn a_backend_is_checked_and_refused_on_a_ring_app() {
    let app = |mode: &str, process: &str| {
        format!("{BASE}\n[[app]]\nname = \"a\"\n{mode}\n[app.backend.process]\n{process}")
    };
    let ok = load_text(
        &app(
            "mode = \"pool\"",
            "command = \"sleep\"\nargs = [\"60\"]\nrestart = \"always\"\ngrace = \"2s\"",
        ),
        &[],
        &[],
    )
    .unwrap();
    let backend = ok.apps[0].backend.as_ref().unwrap();
    assert_eq!(backend.process.command, "sleep");
    assert_eq!(backend.process.restart, backends::RestartPolicy::Always);
    assert_eq!(backend.process.grace, Duration::from_secs(2));
    assert_eq!(
        fields(
            &app("mode = \"ring\"\npartitions = 4", "command = \"x\""),
            &[]
        ),
        ["app[0].backend"]
    );
    assert_eq!(
        fields(&app("mode = \"pool\"", "args = [\"x\"]"), &[]),
        ["app[0].backend.process.command"]
    );
    assert_eq!(
        fields(
            &app(
                "mode = \"pool\"",
                "command = \"x\"\nrestart = \"sometimes\""
            ),
            &[]
        ),
        ["app[0].backend.process.restart"]
    );
    assert_eq!(
        fields(
            &format!(
                "{BASE}\n[[app]]\nname = \"a\"\nmode = \"pool\"\n[app.backend]\nstart_timeout = \"5s\""
            ),
            &[]
        ),
        ["app[0].backend"]
    );
}
