//! A real `nats-server` with JetStream, alone or as a 3-node cluster behind fault proxies.

use std::net::SocketAddr;
use std::path::Path;

use crate::fault_proxy::{FaultProxy, Mode};
use crate::probe;
use crate::server::{DataDir, StartError, Supervised, with_port_retries};
use crate::tools::{Tool, Version};

/// How a NATS server is configured.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// Enable JetStream (default true).
    pub jetstream: bool,
    /// `sync_interval: always`: fsync every JetStream write before acknowledging it. Needed for a
    /// single server to keep acknowledged writes across a crash (the default fsyncs every 2 min).
    pub sync_always: bool,
    /// Extra top-level configuration appended verbatim.
    pub extra_config: String,
}

impl Default for NatsOptions {
    fn default() -> Self {
        Self {
            jetstream: true,
            sync_always: false,
            extra_config: String::new(),
        }
    }
}

impl NatsOptions {
    /// Options for a durable single server: JetStream with `sync_interval: always`.
    pub fn durable() -> Self {
        Self {
            sync_always: true,
            ..Self::default()
        }
    }
}

/// The cluster part of a member's configuration.
#[derive(Debug, Clone)]
struct ClusterConf {
    name: String,
    server_name: String,
    listen_port: Option<u16>,
    advertise: SocketAddr,
    routes: Vec<SocketAddr>,
}

/// The ports a running server listens on.
#[derive(Debug, Clone, Copy)]
struct Ports {
    client: u16,
    monitor: u16,
    cluster: Option<u16>,
}

/// A real nats-server on loopback, killed and its data removed on drop.
#[derive(Debug)]
pub struct NatsServer {
    dir: DataDir,
    options: NatsOptions,
    cluster: Option<ClusterConf>,
    ports: Option<Ports>,
    process: Supervised,
}

impl NatsServer {
    /// Starts a single JetStream server with default options.
    pub async fn start() -> Result<Self, StartError> {
        Self::start_with(NatsOptions::default()).await
    }

    /// Starts a single server with `options`.
    pub async fn start_with(options: NatsOptions) -> Result<Self, StartError> {
        let mut server = Self::prepare(options, None)?;
        server.first_start().await?;
        Ok(server)
    }

    fn prepare(options: NatsOptions, cluster: Option<ClusterConf>) -> Result<Self, StartError> {
        let dir = DataDir::new("nats")?;
        let config = dir.path().join("nats.conf");
        let process = Supervised::new(
            "nats-server",
            Tool::NatsServer,
            vec!["-c".into(), config.display().to_string()],
            dir.path().join("server.log"),
        )?;
        Ok(Self {
            dir,
            options,
            cluster,
            ports: None,
            process,
        })
    }

    /// First start: every port is `-1` (the server picks), and the ports file says which it took.
    /// A lone server is ready when `/healthz` passes; a cluster member when it accepts clients
    /// (JetStream health needs a quorum, awaited once every member is up).
    async fn first_start(&mut self) -> Result<(), StartError> {
        self.write_config()?;
        let ports_dir = self.dir.path().join("ports");
        let _ = std::fs::remove_dir_all(&ports_dir);
        std::fs::create_dir_all(&ports_dir).map_err(|e| StartError::io("creating ports dir", e))?;
        let member = self.cluster.is_some();
        let mut found: Option<Ports> = None;
        self.process
            .launch(|| {
                if found.is_none() {
                    found = read_ports_file(&ports_dir, member);
                }
                let ports = found;
                async move {
                    match ports {
                        Some(p) if member => {
                            probe::tcp_accepts(SocketAddr::from(([127, 0, 0, 1], p.client))).await
                        }
                        Some(p) => healthz(p.monitor).await,
                        None => false,
                    }
                }
            })
            .await?;
        self.ports = found;
        if let (Some(c), Some(p)) = (self.cluster.as_mut(), found) {
            c.listen_port = p.cluster;
        }
        // Pin the ports so a restart comes back on the same ones.
        self.write_config()
    }

    fn write_config(&self) -> Result<(), StartError> {
        let dir = self.dir.path();
        let (client, monitor, cluster_port) = match self.ports {
            Some(p) => (p.client.to_string(), p.monitor.to_string(), p.cluster),
            None => ("-1".to_owned(), "-1".to_owned(), None),
        };
        let mut text = format!(
            "listen: \"127.0.0.1:{client}\"\nhttp: \"127.0.0.1:{monitor}\"\nports_file_dir: \"{}\"\n",
            dir.join("ports").display()
        );
        if self.options.jetstream {
            let sync = if self.options.sync_always {
                ", sync_interval: always"
            } else {
                ""
            };
            text.push_str(&format!(
                "jetstream {{ store_dir: \"{}\"{sync} }}\n",
                dir.join("jetstream").display()
            ));
        }
        if let Some(c) = &self.cluster {
            let listen = c
                .listen_port
                .or(cluster_port)
                .map_or("-1".to_owned(), |p| p.to_string());
            let routes: Vec<String> = c
                .routes
                .iter()
                .map(|r| format!("\"nats-route://{r}\""))
                .collect();
            text.push_str(&format!(
                "server_name: \"{}\"\nping_interval: \"1s\"\nping_max: 3\ncluster {{\n  name: \"{}\"\n  listen: \"127.0.0.1:{listen}\"\n  advertise: \"{}\"\n  no_advertise: true\n  connect_retries: 120\n  routes: [{}]\n}}\n",
                c.server_name,
                c.name,
                c.advertise,
                routes.join(", ")
            ));
        }
        text.push_str(&self.options.extra_config);
        std::fs::write(dir.join("nats.conf"), text)
            .map_err(|e| StartError::io("writing nats.conf", e))
    }

    fn ports(&self) -> Ports {
        self.ports.unwrap_or(Ports {
            client: 0,
            monitor: 0,
            cluster: None,
        })
    }

    /// The client URL, `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.client_addr())
    }

    /// The client address.
    pub fn client_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports().client))
    }

    /// The HTTP monitoring address (`/varz`, `/jsz`, `/healthz`).
    pub fn monitor_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports().monitor))
    }

    /// The route (cluster) listen address, for a cluster member.
    pub fn cluster_addr(&self) -> Option<SocketAddr> {
        self.ports()
            .cluster
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
    }

    /// The server's version.
    pub fn version(&self) -> Version {
        self.process.tool().version
    }

    /// The data directory (JetStream store, config, log).
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Graceful stop, keeping port and data for [`restart`](Self::restart).
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// SIGKILL, keeping port and data.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts again on the same ports with the same data, waiting until it answers.
    pub async fn restart(&mut self) -> Result<(), StartError> {
        self.process.stop();
        let monitor = self.ports().monitor;
        self.process.launch(|| healthz(monitor)).await
    }

    /// SIGSTOP: the server holds its connections and answers nothing.
    pub fn pause(&self) -> std::io::Result<()> {
        self.process.pause()
    }

    /// SIGCONT.
    pub fn resume(&self) -> std::io::Result<()> {
        self.process.resume()
    }

    /// The JSON of a monitoring endpoint such as `/jsz?consumers=true`.
    pub async fn monitor_json(&self, path: &str) -> Option<serde_json::Value> {
        let (status, body) = probe::http_get(self.monitor_addr(), path).await?;
        (status == 200).then(|| serde_json::from_str(&body).ok())?
    }

    /// How many JetStream consumers exist on this server (all streams, all accounts).
    pub async fn consumer_count(&self) -> Option<u64> {
        self.monitor_json("/jsz").await?.get("consumers")?.as_u64()
    }
}

/// Whether `/healthz` reports the server (and its JetStream) healthy.
async fn healthz(monitor: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], monitor));
    matches!(probe::http_get(addr, "/healthz").await, Some((200, _)))
}

fn read_ports_file(dir: &Path, want_cluster: bool) -> Option<Ports> {
    let entry = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(".ports"))?;
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(entry.path()).ok()?).ok()?;
    let port_of = |key: &str| -> Option<u16> {
        json.get(key)?
            .as_array()?
            .first()?
            .as_str()?
            .rsplit(':')
            .next()?
            .parse()
            .ok()
    };
    let cluster = port_of("cluster");
    if want_cluster && cluster.is_none() {
        return None;
    }
    Some(Ports {
        client: port_of("nats")?,
        monitor: port_of("monitoring")?,
        cluster,
    })
}

/// A JetStream cluster of real servers on loopback. Each member's route port sits behind a
/// [`FaultProxy`] whose address is the one advertised and dialled, so a member can be cut off
/// from its peers with [`isolate`](Self::isolate).
///
/// Test clients should connect to one member's [`NatsServer::url`] and ignore the servers the
/// cluster advertises (async-nats: `ignore_discovered_servers`), so they never bypass a fault.
#[derive(Debug)]
pub struct NatsCluster {
    members: Vec<NatsServer>,
    proxies: Vec<FaultProxy>,
}

impl NatsCluster {
    /// Starts `size` members (3 for a real quorum) and waits until all are healthy.
    pub async fn start(size: usize) -> Result<Self, StartError> {
        Self::start_with(size, NatsOptions::default()).await
    }

    /// Starts `size` members with `options`.
    pub async fn start_with(size: usize, options: NatsOptions) -> Result<Self, StartError> {
        with_port_retries(|| Self::try_start(size, options.clone())).await
    }

    async fn try_start(size: usize, options: NatsOptions) -> Result<Self, StartError> {
        // Proxies first: their addresses go into every member's routes and advertise.
        let placeholder = SocketAddr::from(([127, 0, 0, 1], 9));
        let proxies = (0..size)
            .map(|_| FaultProxy::start(placeholder))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StartError::io("starting fault proxies", e))?;
        let cluster_name = format!("testkit-{}", std::process::id());
        let mut members = Vec::with_capacity(size);
        for (i, proxy) in proxies.iter().enumerate() {
            let routes = proxies
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, p)| p.addr())
                .collect();
            let conf = ClusterConf {
                name: cluster_name.clone(),
                server_name: format!("n{i}"),
                listen_port: None,
                advertise: proxy.addr(),
                routes,
            };
            members.push(NatsServer::prepare(options.clone(), Some(conf))?);
        }
        // Start every member before waiting on any: JetStream is healthy only with a quorum.
        let starts = members.iter_mut().map(NatsServer::first_start);
        let results = futures::future::join_all(starts).await;
        for r in results {
            r?;
        }
        let cluster = Self { members, proxies };
        cluster.refresh_proxies();
        for member in &cluster.members {
            let monitor = member.ports().monitor;
            wait_healthy(monitor).await?;
        }
        Ok(cluster)
    }

    /// Points each proxy at its member's route port and teaches every proxy the member pids.
    fn refresh_proxies(&self) {
        for (i, (member, proxy)) in self.members.iter().zip(&self.proxies).enumerate() {
            if let Some(addr) = member.cluster_addr() {
                proxy.set_upstream(addr);
            }
            if let Some(pid) = member.pid() {
                for p in &self.proxies {
                    p.set_known_origin(pid, &member_label(i));
                }
            }
        }
    }

    /// The members.
    pub fn members(&self) -> &[NatsServer] {
        &self.members
    }

    /// One member.
    pub fn member(&self, i: usize) -> &NatsServer {
        &self.members[i]
    }

    /// The proxy in front of member `i`'s route port.
    pub fn route_proxy(&self, i: usize) -> &FaultProxy {
        &self.proxies[i]
    }

    /// Every member's client URL, comma-separated, for clients that may use any of them.
    pub fn urls(&self) -> String {
        self.members
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// SIGKILL member `i`, keeping its data.
    pub fn kill(&mut self, i: usize) {
        self.members[i].kill();
    }

    /// Restarts member `i` on its ports with its data and waits until it is healthy.
    pub async fn restart(&mut self, i: usize) -> Result<(), StartError> {
        self.members[i].restart().await?;
        self.refresh_proxies();
        Ok(())
    }

    /// Cuts member `i` off from its peers in both directions (held, not closed, like a dead link).
    pub fn isolate(&self, i: usize) {
        let label = member_label(i);
        for (j, proxy) in self.proxies.iter().enumerate() {
            if j == i {
                proxy.set_mode(Mode::Blackhole);
            } else {
                proxy.set_origin_mode(&label, Mode::Blackhole);
            }
        }
    }

    /// Reconnects every member.
    pub fn heal(&self) {
        for proxy in &self.proxies {
            proxy.heal();
        }
    }
}

fn member_label(i: usize) -> String {
    format!("member-{i}")
}

async fn wait_healthy(monitor: u16) -> Result<(), StartError> {
    let deadline = std::time::Instant::now() + crate::server::START_TIMEOUT;
    while std::time::Instant::now() < deadline {
        if healthz(monitor).await {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Err(StartError::Timeout {
        server: format!("nats cluster member (monitor port {monitor})"),
        timeout: crate::server::START_TIMEOUT,
        log: String::new(),
    })
}
