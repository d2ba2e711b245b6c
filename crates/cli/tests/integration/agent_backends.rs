//! `cluster agent` on each coordination backend: it starts from a config file, leads its
//! active-passive app, owns every partition of its ring app, and leaves on SIGTERM with exit 0.

use std::path::Path;
use std::time::Duration;

use testkit::process::ServerProcess;
use testkit::{ConsulOptions, ConsulServer, EtcdServer, NatsServer};

const APPS: &str = "[[app]]\nname = \"web\"\nmode = \"active_passive\"\n\n\
                    [[app]]\nname = \"jobs\"\nmode = \"ring\"\npartitions = 4\n";

fn config(dir: &Path, port: u16, sections: &str) -> std::path::PathBuf {
    let file = dir.join("cluster.toml");
    let text = format!(
        "[platform]\nname = \"t\"\n\n[node]\nid = \"n1\"\ndata_dir = \"{}\"\nhttp_addr = \"127.0.0.1:{port}\"\n\n\
         [timing]\nlease_ttl = \"10s\"\nlease_margin = \"2s\"\n\n{sections}\n{APPS}",
        dir.join("data").display()
    );
    std::fs::write(&file, text).unwrap();
    file
}

fn start(dir: &Path, args: &[String]) -> ServerProcess {
    ServerProcess::start(
        "cluster agent",
        Path::new(env!("CARGO_BIN_EXE_cluster")),
        args,
        &dir.join("agent.log"),
    )
    .unwrap()
}

/// Waits until the agent on `port` leads `web` and owns all of `jobs`, then stops it with
/// SIGTERM and expects a clean exit.
async fn serves_then_leaves(mut agent: ServerProcess, port: u16) {
    let url = format!("http://127.0.0.1:{port}/status");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let mut last = serde_json::Value::Null;
    let ready = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Ok(r) = http.get(&url).send().await
                && let Ok(status) = r.json::<serde_json::Value>().await
            {
                let apps = status["apps"].as_array().cloned().unwrap_or_default();
                let app = |name: &str| apps.iter().find(|a| a["app"] == name).cloned();
                let web_active = app("web").is_some_and(|a| a["role"]["role"] == "active");
                let jobs_owned = app("jobs")
                    .is_some_and(|a| a["partitions"].as_object().is_some_and(|p| p.len() == 4));
                if web_active && jobs_owned && status["node"] == "n1" {
                    return;
                }
                last = status;
            }
            assert!(agent.is_running(), "the agent exited:\n{}", agent.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        ready.is_ok(),
        "never served; last status {last}\n{}",
        agent.log()
    );
    let status = agent.terminate(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM: {status:?}\n{}",
        agent.log()
    );
    assert!(agent.log().contains("agent stopped"), "{}", agent.log());
}

/// Starts an agent whose store and bus are `sections` and checks it serves, then leaves.
async fn agent_on(sections: &str) {
    let dir = tempfile::tempdir().unwrap();
    let port = testkit::probe::free_port().unwrap();
    let file = config(dir.path(), port, sections);
    let agent = start(
        dir.path(),
        &[
            "agent".into(),
            "--config".into(),
            file.display().to_string(),
        ],
    );
    serves_then_leaves(agent, port).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_runs_on_etcd() {
    let _slot = testkit::test_slot().await;
    let etcd = EtcdServer::start()
        .await
        .expect("etcd (cargo xtask deps installs it)");
    agent_on(&format!(
        "[coordination]\nbackend = \"etcd\"\n[coordination.etcd]\nendpoints = [\"{}\"]\n",
        etcd.url()
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_runs_on_nats_for_the_store_and_the_bus() {
    let _slot = testkit::test_slot().await;
    let nats = NatsServer::start()
        .await
        .expect("nats-server (cargo xtask deps installs it)");
    agent_on(&format!(
        "[coordination]\nbackend = \"nats\"\n[coordination.nats]\nservers = [\"{0}\"]\n\n\
         [bus]\nbackend = \"nats\"\n[bus.nats]\nurl = \"{0}\"\n",
        nats.url()
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_runs_on_consul() {
    let _slot = testkit::test_slot().await;
    let consul = ConsulServer::start(ConsulOptions::default()).unwrap();
    agent_on(&format!(
        "[coordination]\nbackend = \"consul\"\n[coordination.consul]\naddress = \"{}\"\n",
        consul.url()
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dev_agent_needs_no_server_and_takes_env_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let port = testkit::probe::free_port().unwrap();
    // No file: --dev's sample apps are web (active-passive) and jobs (16 partitions); the
    // environment names the port and the ring's size.
    let mut cmd = crate::cluster();
    cmd.args(["agent", "--dev"])
        .env("CLUSTER_NODE__HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("CLUSTER_NODE__ID", "n1")
        .env("CLUSTER_APP__1__PARTITIONS", "4")
        .env("CLUSTER_NODE__DATA_DIR", dir.path().join("data"));
    let agent =
        ServerProcess::spawn("cluster agent --dev", cmd, &dir.path().join("agent.log")).unwrap();
    serves_then_leaves(agent, port).await;
}
