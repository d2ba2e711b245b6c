//! Three-member clusters come up, survive a killed member, and can cut one member off.

use std::time::Duration;

use async_nats::jetstream;
use testkit::{EtcdCluster, NatsCluster, eventually};

async fn etcdctl(endpoint: &str, args: &[&str]) -> std::process::Output {
    let tool = testkit::tools::Tool::Etcdctl.locate().expect("etcdctl");
    tokio::process::Command::new(tool.path)
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg("--command-timeout=2s")
        .args(args)
        .output()
        .await
        .expect("run etcdctl")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_cluster_elects_again_after_leader_kill_and_isolates_a_member() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let mut cluster = EtcdCluster::start(3).await.unwrap();

    let leader = {
        tracing::info!("three members agree on a leader and replicate a write");
        let leader = cluster.leader().await.expect("a leader");
        let put = etcdctl(&cluster.member(leader).url(), &["put", "k", "1"]).await;
        assert!(put.status.success());
        for m in cluster.members() {
            let get = etcdctl(&m.url(), &["get", "k", "--print-value-only"]).await;
            assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), "1");
        }
        leader
    };

    {
        tracing::info!("kill the leader: the other two elect a new one and keep serving");
        cluster.kill(leader);
        let survivor = (leader + 1) % 3;
        let url = cluster.member(survivor).url();
        eventually(
            "writes succeed without the old leader",
            Duration::from_secs(30),
            || {
                let url = url.clone();
                async move { etcdctl(&url, &["put", "k", "2"]).await.status.success() }
            },
        )
        .await;
        cluster.restart(leader).await.unwrap();
        let url = cluster.member(leader).url();
        eventually(
            "restarted member catches up",
            Duration::from_secs(30),
            || {
                let url = url.clone();
                async move {
                    let get = etcdctl(&url, &["get", "k", "--print-value-only"]).await;
                    String::from_utf8_lossy(&get.stdout).trim() == "2"
                }
            },
        )
        .await;
    }

    {
        tracing::info!("isolate one member: it cannot commit, the other two can");
        let victim = 0;
        cluster.isolate(victim);
        let victim_url = cluster.member(victim).url();
        eventually(
            "isolated member refuses linearizable writes",
            Duration::from_secs(30),
            || {
                let url = victim_url.clone();
                async move { !etcdctl(&url, &["put", "iso", "x"]).await.status.success() }
            },
        )
        .await;
        let other = cluster.member(1).url();
        eventually("majority keeps committing", Duration::from_secs(30), || {
            let url = other.clone();
            async move {
                etcdctl(&url, &["put", "majority", "y"])
                    .await
                    .status
                    .success()
            }
        })
        .await;
        cluster.heal();
        eventually(
            "healed member serves the majority's write",
            Duration::from_secs(30),
            || {
                let url = victim_url.clone();
                async move {
                    let get = etcdctl(&url, &["get", "majority", "--print-value-only"]).await;
                    String::from_utf8_lossy(&get.stdout).trim() == "y"
                }
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_cluster_replicates_and_isolates_a_member() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let mut cluster = NatsCluster::start(3).await.unwrap();

    {
        tracing::info!("a stream with three replicas takes a write");
        let client = async_nats::ConnectOptions::new()
            .ignore_discovered_servers()
            .connect(cluster.member(0).url())
            .await
            .unwrap();
        let js = jetstream::new(client);
        js.create_stream(jetstream::stream::Config {
            name: "R3".into(),
            subjects: vec!["r3.>".into()],
            num_replicas: 3,
            ..Default::default()
        })
        .await
        .unwrap();
        js.publish("r3.a", "one".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    {
        tracing::info!("isolate member 2: its routes drop; heal: they come back");
        let routes = |i: usize| {
            let member = cluster.member(i);
            async move {
                member
                    .monitor_json("/routez")
                    .await
                    .and_then(|v| v.get("num_routes")?.as_u64())
                    .unwrap_or(0)
            }
        };
        assert!(routes(2).await > 0);
        cluster.isolate(2);
        eventually(
            "isolated member has no routes",
            Duration::from_secs(30),
            || async { routes(2).await == 0 },
        )
        .await;
        cluster.heal();
        eventually(
            "isolated member routes again",
            Duration::from_secs(30),
            || async { routes(2).await > 0 },
        )
        .await;
    }

    {
        tracing::info!("kill a member: the stream still takes writes from a survivor");
        cluster.kill(1);
        let client = async_nats::ConnectOptions::new()
            .ignore_discovered_servers()
            .connect(cluster.member(0).url())
            .await
            .unwrap();
        let js = jetstream::new(client);
        eventually(
            "publish acknowledged with one member down",
            Duration::from_secs(30),
            || {
                let js = js.clone();
                async move {
                    match js.publish("r3.b", "two".into()).await {
                        Ok(ack) => ack.await.is_ok(),
                        Err(_) => false,
                    }
                }
            },
        )
        .await;
        cluster.restart(1).await.unwrap();
    }
}
