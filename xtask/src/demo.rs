//! `cargo xtask demo`: the main job, end to end on real servers.

use anyhow::Context;

/// Starts NATS (JetStream) and etcd, prints their endpoints and versions, and stops them.
pub(crate) fn run(hold: bool) -> anyhow::Result<()> {
    crate::deps::run()?;
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    runtime.block_on(async {
        let nats = testkit::NatsServer::start()
            .await
            .context("starting nats-server")?;
        let etcd = testkit::EtcdServer::start()
            .await
            .context("starting etcd")?;
        println!(
            "demo: nats-server {} (JetStream) at {}",
            nats.version(),
            nats.url()
        );
        println!("demo: etcd {} at {}", etcd.version(), etcd.url());
        if hold {
            println!("demo: holding the servers; Ctrl-C to stop");
            tokio::signal::ctrl_c()
                .await
                .context("waiting for Ctrl-C")?;
        }
        println!("demo: stopping");
        Ok(())
    })
}
