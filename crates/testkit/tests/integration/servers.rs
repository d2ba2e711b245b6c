//! Each real server starts, answers a real client, keeps its data across stop/restart, and pauses.

use std::time::Duration;

use async_nats::jetstream;
use testkit::{EtcdServer, NatsServer, RedisServer};

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
async fn nats_jetstream_round_trip_survives_restart_and_pause() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let mut nats = NatsServer::start_with(testkit::NatsOptions::durable())
        .await
        .unwrap();
    assert!(nats.version() >= testkit::tools::Version::new(2, 11, 0));

    {
        tracing::info!("publish through JetStream and read it back");
        let client = async_nats::connect(nats.url()).await.unwrap();
        let js = jetstream::new(client);
        let stream = js
            .create_stream(jetstream::stream::Config {
                name: "ORDERS".into(),
                subjects: vec!["orders.>".into()],
                ..Default::default()
            })
            .await
            .unwrap();
        let ack = js
            .publish("orders.1", "first".into())
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!(ack.sequence, 1);
        let msg = stream.get_raw_message(1).await.unwrap();
        assert_eq!(&msg.payload[..], b"first");
    }

    let port = nats.client_addr();
    {
        tracing::info!("restart keeps the port and the stream");
        nats.stop();
        assert!(
            !testkit::probe::tcp_accepts(port).await,
            "stopped server still accepts"
        );
        nats.restart().await.unwrap();
        assert_eq!(nats.client_addr(), port);
        let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
        let stream = js.get_stream("ORDERS").await.unwrap();
        assert_eq!(
            &stream.get_raw_message(1).await.unwrap().payload[..],
            b"first"
        );
    }

    {
        tracing::info!("a paused server answers nothing; resumed, it answers again");
        let client = async_nats::ConnectOptions::new()
            .request_timeout(Some(Duration::from_millis(300)))
            .connect(nats.url())
            .await
            .unwrap();
        let js = jetstream::new(client);
        nats.pause().unwrap();
        assert!(
            js.get_stream("ORDERS").await.is_err(),
            "paused server answered"
        );
        nats.resume().unwrap();
        let mut answered = false;
        for _ in 0..50 {
            if js.get_stream("ORDERS").await.is_ok() {
                answered = true;
                break;
            }
        }
        assert!(answered, "resumed server never answered");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_put_get_survives_restart_and_kill() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let mut etcd = EtcdServer::start().await.unwrap();
    let v = etcd.version();
    assert!(
        v.major == 3 && !(v.minor == 5 && v.patch <= 2),
        "bad etcd {v}"
    );

    tracing::info!("put and get with etcdctl");
    let put = etcdctl(&etcd.url(), &["put", "greeting", "hello"]).await;
    assert!(put.status.success(), "{put:?}");
    let get = etcdctl(&etcd.url(), &["get", "greeting", "--print-value-only"]).await;
    assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), "hello");

    tracing::info!("graceful restart keeps the data");
    etcd.stop();
    etcd.restart().await.unwrap();
    let get = etcdctl(&etcd.url(), &["get", "greeting", "--print-value-only"]).await;
    assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), "hello");

    tracing::info!("SIGKILL and restart keeps acknowledged writes");
    let put = etcdctl(&etcd.url(), &["put", "after", "kill"]).await;
    assert!(put.status.success());
    etcd.kill();
    etcd.restart().await.unwrap();
    let get = etcdctl(&etcd.url(), &["get", "after", "--print-value-only"]).await;
    assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), "kill");

    tracing::info!("paused, requests time out");
    etcd.pause().unwrap();
    let get = etcdctl(&etcd.url(), &["get", "after"]).await;
    assert!(!get.status.success(), "paused etcd answered");
    etcd.resume().unwrap();
    let get = etcdctl(&etcd.url(), &["get", "after", "--print-value-only"]).await;
    assert!(get.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_set_get_survives_restart() {
    testkit::init_tracing();
    let _slot = testkit::test_slot().await;
    let mut redis_server = RedisServer::start().await.unwrap();
    let client = redis::Client::open(redis_server.url()).unwrap();

    tracing::info!("SET and GET");
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async(&mut conn)
        .await
        .unwrap();
    let v: String = redis::cmd("GET")
        .arg("k")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(v, "v");

    tracing::info!("SIGKILL and restart: the append-only file kept the write");
    redis_server.kill();
    redis_server.restart().await.unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let v: String = redis::cmd("GET")
        .arg("k")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(v, "v");
}
