//! Agents running an active-passive app's service under the process backend, on etcd: a frozen
//! or killed leader's service stops before the new leader's starts, and a service that fails to
//! start on one node rolls its term back so another node leads.
//!
//! The service appends `wall-clock-ns node token` to a shared history file every 20 ms; the
//! order of those lines is what the tests check.

use std::path::{Path, PathBuf};
use std::time::Duration;

use testkit::EtcdServer;
use testkit::process::ServerProcess;

struct Agent {
    name: String,
    port: u16,
    process: ServerProcess,
}

impl Agent {
    fn start(dir: &Path, name: &str, etcd: &str, script: &str) -> Agent {
        let port = testkit::probe::free_port().unwrap();
        let data = dir.join(name);
        std::fs::create_dir_all(&data).unwrap();
        let file = data.join("cluster.toml");
        let text = format!(
            "[platform]\nname = \"svc\"\n\n[node]\nid = \"{name}\"\ndata_dir = \"{data}\"\n\
             http_addr = \"127.0.0.1:{port}\"\n\n[timing]\nlease_ttl = \"2s\"\nlease_margin = \"500ms\"\n\n\
             [coordination]\nbackend = \"etcd\"\n[coordination.etcd]\nendpoints = [\"{etcd}\"]\n\n\
             [[app]]\nname = \"web\"\nmode = \"active_passive\"\n\n\
             [app.backend]\nstart_timeout = \"10s\"\n\
             [app.backend.process]\ncommand = \"sh\"\nargs = [\"-c\", {script:?}]\ngrace = \"1s\"\n\
             restart = \"never\"\n",
            data = data.display(),
        );
        std::fs::write(&file, text).unwrap();
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
        Agent {
            name: name.to_owned(),
            port,
            process,
        }
    }

    async fn role(&self) -> Option<String> {
        let url = format!("http://127.0.0.1:{}/status", self.port);
        let status: serde_json::Value = reqwest::get(url).await.ok()?.json().await.ok()?;
        let app = status["apps"]
            .as_array()?
            .iter()
            .find(|a| a["app"] == "web")?
            .clone();
        app["role"]["role"].as_str().map(str::to_owned)
    }

    fn pid(&self) -> i32 {
        self.process.pid().expect("running") as i32
    }

    /// Waits until the agent's log shows `needle`; the panic shows the log.
    async fn wait_log(&self, needle: &str) {
        let limit = std::time::Instant::now() + Duration::from_secs(30);
        while !self.process.log().contains(needle) {
            assert!(
                std::time::Instant::now() < limit,
                "no {needle:?} in {}'s log:\n{}",
                self.name,
                self.process.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Signals the agent's own process only (its supervisors share its process group).
    fn signal(&self, signal: libc::c_int) {
        // SAFETY: plain syscall on a child we started.
        assert_eq!(unsafe { libc::kill(self.pid(), signal) }, 0);
    }
}

/// `(ns, node, token)` lines of the history file.
fn history(path: &Path) -> Vec<(u128, String, u64)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            Some((
                f.next()?.parse().ok()?,
                f.next()?.to_owned(),
                f.next()?.parse().ok()?,
            ))
        })
        .collect()
}

fn service(history: &Path) -> String {
    format!(
        "while :; do echo \"$(date +%s%N) $CLUSTER_NODE $CLUSTER_TOKEN\" >> {}; sleep 0.02; done",
        history.display()
    )
}

async fn leader_of(agents: &[&Agent]) -> usize {
    let limit = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        for (i, a) in agents.iter().enumerate() {
            if a.role().await.as_deref() == Some("active") {
                return i;
            }
        }
        assert!(std::time::Instant::now() < limit, "no agent leads web");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_for_lines(path: &Path, node: &str) {
    testkit::eventually(
        &format!("{node}'s service writes"),
        Duration::from_secs(30),
        || {
            let seen = history(path).iter().any(|(_, n, _)| n == node);
            async move { seen }
        },
    )
    .await;
}

/// Every line of `old`'s term precedes the first line of `new`'s.
fn old_term_ends_before_new_begins(lines: &[(u128, String, u64)], old: &str, new: &str) {
    let last_old = lines.iter().filter(|(_, n, _)| n == old).map(|l| l.0).max();
    let first_new = lines.iter().filter(|(_, n, _)| n == new).map(|l| l.0).min();
    let (Some(last_old), Some(first_new)) = (last_old, first_new) else {
        panic!("both services must have written: {lines:?}");
    };
    assert!(
        last_old < first_new,
        "{old}'s service wrote {} ms after {new}'s began",
        (last_old - first_new) / 1_000_000
    );
    let old_token = lines.iter().find(|(_, n, _)| n == old).map(|l| l.2);
    let new_token = lines.iter().find(|(_, n, _)| n == new).map(|l| l.2);
    assert!(new_token > old_token, "the new term's token is larger");
}

fn setup() -> (tempfile::TempDir, PathBuf) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history");
    (dir, history)
}

/// Two agents on one etcd, running the history-writing service.
struct Pair {
    _etcd: EtcdServer,
    _dir: tempfile::TempDir,
    history: PathBuf,
    leader: Agent,
    follower: Agent,
}

/// Starts a pair, waits for the leader's service, sends `fault` to the leader's agent (its own
/// process only) and returns once the follower's service writes.
async fn fail_over_after(fault: libc::c_int) -> Pair {
    let etcd = EtcdServer::start()
        .await
        .expect("etcd (cargo xtask deps installs it)");
    let (dir, path) = setup();
    let a = Agent::start(dir.path(), "a", &etcd.url(), &service(&path));
    let b = Agent::start(dir.path(), "b", &etcd.url(), &service(&path));
    let l = leader_of(&[&a, &b]).await;
    let (leader, follower) = if l == 0 { (a, b) } else { (b, a) };
    wait_for_lines(&path, &leader.name).await;
    leader.signal(fault);
    testkit::eventually("the follower leads", Duration::from_secs(30), || async {
        follower.role().await.as_deref() == Some("active")
    })
    .await;
    wait_for_lines(&path, &follower.name).await;
    Pair {
        _etcd: etcd,
        _dir: dir,
        history: path,
        leader,
        follower,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leaders_service_is_killed_by_its_deadline_before_the_new_one_starts() {
    let _slot = testkit::test_slot().await;
    // The leader's agent (not its service) is frozen past the TTL.
    let p = fail_over_after(libc::SIGSTOP).await;
    p.leader.signal(libc::SIGCONT);
    testkit::eventually(
        "the thawed agent stands by",
        Duration::from_secs(30),
        || async { p.leader.role().await.as_deref() == Some("passive") },
    )
    .await;
    p.leader.wait_log("the term's deadline passed").await;
    old_term_ends_before_new_begins(&history(&p.history), &p.leader.name, &p.follower.name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leaders_service_stops_before_the_new_one_starts() {
    let _slot = testkit::test_slot().await;
    // The leader's agent is SIGKILLed; its supervisor sees its input close.
    let p = fail_over_after(libc::SIGKILL).await;
    old_term_ends_before_new_begins(&history(&p.history), &p.leader.name, &p.follower.name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_failing_on_one_node_rolls_back_and_another_node_leads() {
    let _slot = testkit::test_slot().await;
    let etcd = EtcdServer::start()
        .await
        .expect("etcd (cargo xtask deps installs it)");
    let (dir, path) = setup();
    let failing_on_a = format!(
        "if [ \"$CLUSTER_NODE\" = a ]; then echo cannot start here >&2; exit 1; fi; {}",
        service(&path)
    );
    let a = Agent::start(dir.path(), "a", &etcd.url(), &failing_on_a);
    a.wait_log("failover_rolled_back").await;
    let b = Agent::start(dir.path(), "b", &etcd.url(), &failing_on_a);
    testkit::eventually("b leads", Duration::from_secs(30), || async {
        b.role().await.as_deref() == Some("active")
    })
    .await;
    wait_for_lines(&path, "b").await;
    assert!(history(&path).iter().all(|(_, n, _)| n == "b"));
    // One of a's terms, undone in reverse: the service stopped, then the term released.
    let log = a.process.log();
    let at = |needle: &str| {
        log.find(needle)
            .unwrap_or_else(|| panic!("no {needle} in a's log:\n{log}"))
    };
    assert!(at("audit=\"leader_acquired\"") < at("audit=\"failover_rolled_back\""));
    assert!(at("audit=\"failover_rolled_back\"") < at("audit=\"backend_stopped\""));
    assert!(at("audit=\"backend_stopped\"") < at("audit=\"leader_released\""));
    assert!(
        log.contains("cannot start here"),
        "the service's stderr is logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_term_promotes_its_database_before_its_service_starts_and_is_ready() {
    let (dir, _) = setup();
    let port = testkit::probe::free_port().unwrap();
    let file = dir.path().join("dev.toml");
    std::fs::write(
        &file,
        "[[app]]\nname = \"ledger\"\nmode = \"active_passive\"\n[app.sqlite]\npath = \"ledger.db\"\n\
         [app.backend.process]\ncommand = \"sh\"\nargs = [\"-c\", \"echo serving; exec sleep 300\"]\n\
         [[app.health]]\nname = \"up\"\nkind = \"command\"\ncommand = [\"true\"]\ninterval = \"100ms\"\n",
    )
    .unwrap();
    let mut cmd = crate::cluster();
    cmd.args(["agent", "--dev", "--config"])
        .arg(&file)
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.path().join("data"));
    let agent = Agent {
        name: "dev".into(),
        port,
        process: ServerProcess::spawn("cluster agent --dev", cmd, &dir.path().join("agent.log"))
            .unwrap(),
    };
    agent.wait_log("audit=\"backend_started\"").await;
    let log = agent.process.log();
    let at = |needle: &str| {
        log.find(needle)
            .unwrap_or_else(|| panic!("no {needle} in the log:\n{log}"))
    };
    assert!(at("audit=\"promotion_completed\"") < at("service started"));
    assert!(at("service started") < at("audit=\"backend_started\""));
    assert!(log.contains("serving"), "the service's output is logged");
}
