//! The admin commands against running agents: given only an address and a token, they agree
//! with each agent's `/status`, move a term, write fenced keys, work a database's snapshots,
//! and exit with the code their failure means.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use testkit::EtcdServer;
use testkit::process::ServerProcess;

use crate::{run, stderr, stdout};

struct Node {
    port: u16,
    _process: ServerProcess,
}

fn agent(dir: &Path, name: &str, etcd: &str, token_file: &Path) -> Node {
    let port = testkit::probe::free_port().unwrap();
    let data = dir.join(name);
    std::fs::create_dir_all(&data).unwrap();
    let file = data.join("cluster.toml");
    std::fs::write(
        &file,
        format!(
            "[platform]\nname = \"adm\"\n[node]\nid = \"{name}\"\ndata_dir = \"{}\"\n\
             http_addr = \"127.0.0.1:{port}\"\n[timing]\nlease_ttl = \"2s\"\nlease_margin = \"500ms\"\n\
             [coordination]\nbackend = \"etcd\"\n[coordination.etcd]\nendpoints = [\"{etcd}\"]\n\
             [admin]\ntoken_file = \"{}\"\n\
             [[app]]\nname = \"web\"\nmode = \"active_passive\"\n\
             [[app]]\nname = \"jobs\"\nmode = \"ring\"\npartitions = 8\n",
            data.display(),
            token_file.display()
        ),
    )
    .unwrap();
    let process = ServerProcess::start(
        &format!("cluster agent {name}"),
        Path::new(env!("CARGO_BIN_EXE_cluster")),
        &[
            "agent".into(),
            "--config".into(),
            file.display().to_string(),
        ],
        &data.join("agent.log"),
    )
    .unwrap();
    Node {
        port,
        _process: process,
    }
}

fn addr(n: &Node) -> String {
    format!("127.0.0.1:{}", n.port)
}

async fn status(n: &Node) -> Option<serde_json::Value> {
    reqwest::get(format!("http://{}/status", addr(n)))
        .await
        .ok()?
        .json()
        .await
        .ok()
}

fn web(status: &serde_json::Value) -> serde_json::Value {
    status["apps"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["app"] == "web").cloned())
        .unwrap_or_default()
}

/// The node leading `web` and its token, once every agent agrees on one.
async fn leader(nodes: &[Node]) -> (String, u64) {
    let limit = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut seen = Vec::new();
        for n in nodes {
            if let Some(s) = status(n).await {
                seen.push(web(&s)["leader"].clone());
            }
        }
        if seen.len() == nodes.len() && seen.iter().all(|l| l == &seen[0] && !l.is_null()) {
            return (
                seen[0]["node"].as_str().unwrap().to_owned(),
                seen[0]["token"].as_u64().unwrap(),
            );
        }
        assert!(
            std::time::Instant::now() < limit,
            "no agreed leader: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn json(o: &Output) -> serde_json::Value {
    assert_eq!(o.status.code(), Some(0), "{}", stderr(o));
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_act_through_any_agent_with_only_an_address_and_a_token() {
    let _slot = testkit::test_slot().await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let etcd = EtcdServer::start()
        .await
        .expect("etcd (cargo xtask deps installs it)");
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    let nodes: Vec<Node> = ["a", "b", "c"]
        .iter()
        .map(|n| agent(dir.path(), n, &etcd.url(), &token_file))
        .collect();
    let (first, token) = leader(&nodes).await;
    // A directory with no config: the commands need nothing but --addr and the token.
    let bare = tempfile::tempdir().unwrap();
    let cli = |args: &[&str]| run(bare.path(), args, &[("CLUSTER_TOKEN", "s3cret")]);

    for n in &nodes {
        let a = addr(n);
        let st = json(&cli(&["status", "--json", "--addr", &a]));
        let direct = status(n).await.unwrap();
        assert_eq!(st["node"], direct["node"]);
        assert_eq!(web(&st)["leader"], web(&direct)["leader"]);
        assert_eq!(web(&st)["role"], web(&direct)["role"]);
        let apps = json(&cli(&["app", "list", "--json", "--addr", &a]));
        assert_eq!(apps["apps"].as_array().unwrap().len(), 2);
        let listed = json(&cli(&["node", "list", "--json", "--addr", &a]));
        assert_eq!(listed["nodes"].as_array().unwrap().len(), 3);
        let one = json(&cli(&["app", "status", "web", "--json", "--addr", &a]));
        assert_eq!(one["leader"]["node"], first.as_str());
    }
    let table = cli(&["status", "--addr", &addr(&nodes[0])]);
    assert!(stdout(&table).contains("web") && stdout(&table).contains("jobs"));

    tracing::info!("a fenced write through a follower is forwarded to the leader");
    let mut follower = None;
    for n in &nodes {
        if status(n)
            .await
            .is_some_and(|s| web(&s)["role"]["role"] == "passive")
        {
            follower = Some(addr(n));
            break;
        }
    }
    let follower = follower.expect("a node that does not lead web");
    let put = json(&cli(&[
        "kv",
        "put",
        "web",
        "config/mode",
        "blue",
        "--term-token",
        &token.to_string(),
        "--json",
        "--addr",
        &follower,
    ]));
    assert_eq!(put["node"], first.as_str(), "the leader wrote it");
    let got = cli(&["kv", "get", "web", "config/mode", "--addr", &follower]);
    assert_eq!(stdout(&got).trim(), "blue");

    tracing::info!("stepdown through any agent moves the term to another node");
    let moved = json(&cli(&["stepdown", "web", "--json", "--addr", &follower]));
    assert_eq!(moved["node"], first.as_str());
    let (second, new_token) = {
        let limit = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (l, t) = leader(&nodes).await;
            if t > token {
                break (l, t);
            }
            assert!(std::time::Instant::now() < limit, "the term never moved");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    assert_ne!(second, first, "another node leads");
    assert!(new_token > token);

    tracing::info!("the old term's token is refused, naming both tokens (exit 4)");
    let stale = cli(&[
        "kv",
        "put",
        "web",
        "config/mode",
        "green",
        "--term-token",
        &token.to_string(),
        "--addr",
        &follower,
    ]);
    assert_eq!(stale.status.code(), Some(4), "{}", stderr(&stale));
    assert!(
        stderr(&stale).contains(&token.to_string())
            && stderr(&stale).contains(&new_token.to_string()),
        "{}",
        stderr(&stale)
    );
    assert_eq!(
        stdout(&cli(&[
            "kv",
            "get",
            "web",
            "config/mode",
            "--addr",
            &follower
        ]))
        .trim(),
        "blue"
    );

    tracing::info!("each exit code once");
    let a = addr(&nodes[0]);
    assert_eq!(cli(&["status", "--addr", &a]).status.code(), Some(0));
    let missing = cli(&["app", "status", "nope", "--addr", &a]);
    assert_eq!(missing.status.code(), Some(1), "{}", stderr(&missing));
    assert_eq!(cli(&["status", "--bogus"]).status.code(), Some(2));
    let closed = testkit::probe::free_port().unwrap();
    let unreachable = cli(&["status", "--addr", &format!("127.0.0.1:{closed}")]);
    assert_eq!(
        unreachable.status.code(),
        Some(3),
        "{}",
        stderr(&unreachable)
    );
    let refused = run(bare.path(), &["stepdown", "web", "--addr", &a], &[]);
    assert_eq!(refused.status.code(), Some(4), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("Bearer"), "{}", stderr(&refused));
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let timed_out = cli(&["status", "--timeout", "300ms", "--addr", &silent_addr]);
    assert_eq!(timed_out.status.code(), Some(5), "{}", stderr(&timed_out));
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dev_agent_syncs_and_snapshots_its_database_on_command() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let port = testkit::probe::free_port().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("dev.toml");
    std::fs::write(
        &file,
        "[[app]]\nname = \"ledger\"\nmode = \"active_passive\"\n[app.sqlite]\npath = \"ledger.db\"\n",
    )
    .unwrap();
    let mut cmd = crate::cluster();
    cmd.args(["agent", "--dev", "--config"])
        .arg(&file)
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(&data);
    let _agent =
        ServerProcess::spawn("cluster agent --dev", cmd, &dir.path().join("agent.log")).unwrap();
    let a = format!("127.0.0.1:{port}");
    let token_file = data.join("admin-token");
    testkit::eventually(
        "the dev agent wrote its token and leads",
        Duration::from_secs(30),
        || {
            let ready = token_file.exists();
            let a = a.clone();
            async move {
                ready
                    && reqwest::get(format!("http://{a}/status"))
                        .await
                        .ok()
                        .map(|r| r.status().is_success())
                        .unwrap_or(false)
            }
        },
    )
    .await;
    let tf = token_file.display().to_string();
    let cli = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--addr", &a, "--token-file", &tf, "--json"]);
        run(dir.path(), &all, &[])
    };
    testkit::eventually("the database is primary", Duration::from_secs(30), || {
        let ok = cli(&["db", "sync", "ledger"]).status.success();
        async move { ok }
    })
    .await;
    let created = json(&cli(&["snapshot", "create", "--app", "ledger"]));
    let id = created["snapshot"]["id"].as_str().unwrap().to_owned();
    let listed = json(&cli(&["snapshot", "list", "--app", "ledger"]));
    assert!(
        listed["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == id.as_str()),
        "{listed}"
    );
    let file = dir.path().join("restored.db");
    let f = file.display().to_string();
    json(&cli(&[
        "snapshot", "restore", &id, "--app", "ledger", "--to", &f,
    ]));
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.starts_with(b"SQLite format 3\0"), "a database file");
    let again = cli(&["snapshot", "restore", &id, "--app", "ledger", "--to", &f]);
    assert_eq!(
        again.status.code(),
        Some(2),
        "an existing file is not replaced"
    );
    json(&cli(&["snapshot", "delete", &id, "--app", "ledger"]));
    let gone = cli(&["snapshot", "delete", &id, "--app", "ledger"]);
    assert_eq!(gone.status.code(), Some(1), "{}", stderr(&gone));
}
