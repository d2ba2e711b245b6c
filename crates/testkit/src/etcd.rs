//! A real `etcd`, alone or as a 3-member cluster whose peer traffic goes through fault proxies.

use std::net::SocketAddr;
use std::path::Path;

use crate::fault_proxy::{FaultProxy, Mode};
use crate::probe::{self, free_port};
use crate::server::{DataDir, StartError, Supervised, with_port_retries};
use crate::tools::{Tool, Version};

/// A real etcd member on loopback, killed and its data removed on drop.
#[derive(Debug)]
pub struct EtcdServer {
    dir: DataDir,
    client_port: u16,
    peer_port: u16,
    process: Supervised,
}

/// The peer-facing part of a member's command line.
struct PeerConf {
    name: String,
    advertise_peer: String,
    initial_cluster: String,
    token: String,
}

impl EtcdServer {
    /// Starts a single-member etcd and waits until `/health` says it serves.
    pub async fn start() -> Result<Self, StartError> {
        with_port_retries(|| async {
            let mut server = Self::prepare(None)?;
            let client_port = server.client_port;
            server.process.launch(|| healthy(client_port)).await?;
            Ok(server)
        })
        .await
    }

    fn prepare(peer: Option<(PeerConf, u16)>) -> Result<Self, StartError> {
        let dir = DataDir::new("etcd")?;
        let client_port = free_port().map_err(|e| StartError::io("finding a free port", e))?;
        let (peer, peer_port) = match peer {
            Some((conf, port)) => (conf, port),
            None => {
                let port = free_port().map_err(|e| StartError::io("finding a free port", e))?;
                let url = format!("http://127.0.0.1:{port}");
                (
                    PeerConf {
                        name: "n0".into(),
                        advertise_peer: url.clone(),
                        initial_cluster: format!("n0={url}"),
                        token: format!("testkit-{}-{client_port}", std::process::id()),
                    },
                    port,
                )
            }
        };
        let client_url = format!("http://127.0.0.1:{client_port}");
        let args = vec![
            format!("--name={}", peer.name),
            format!("--data-dir={}", dir.path().join("data").display()),
            format!("--listen-client-urls={client_url}"),
            format!("--advertise-client-urls={client_url}"),
            format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
            format!("--initial-advertise-peer-urls={}", peer.advertise_peer),
            format!("--initial-cluster={}", peer.initial_cluster),
            "--initial-cluster-state=new".into(),
            format!("--initial-cluster-token={}", peer.token),
            // Loopback round trips are sub-millisecond: elect quickly after a member dies.
            "--heartbeat-interval=50".into(),
            "--election-timeout=500".into(),
            "--logger=zap".into(),
            "--log-outputs=stderr".into(),
        ];
        let process = Supervised::new(
            &format!("etcd {}", peer.name),
            Tool::Etcd,
            args,
            dir.path().join("server.log"),
        )?;
        Ok(Self {
            dir,
            client_port,
            peer_port,
            process,
        })
    }

    /// The client URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.client_addr())
    }

    /// The client address.
    pub fn client_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.client_port))
    }

    /// The address this member listens on for peers.
    pub fn peer_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.peer_port))
    }

    /// The server's version.
    pub fn version(&self) -> Version {
        self.process.tool().version
    }

    /// The data directory.
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

    /// Graceful stop, keeping ports and data for [`restart`](Self::restart).
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// SIGKILL, keeping ports and data.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts again on the same ports with the same data and waits until it serves.
    pub async fn restart(&mut self) -> Result<(), StartError> {
        self.process.stop();
        let client_port = self.client_port;
        self.process.launch(|| healthy(client_port)).await
    }

    /// Starts again without waiting for health (a lone cluster member cannot be healthy).
    async fn restart_listening(&mut self) -> Result<(), StartError> {
        self.process.stop();
        let addr = self.client_addr();
        self.process.launch(|| probe::tcp_accepts(addr)).await
    }

    /// SIGSTOP.
    pub fn pause(&self) -> std::io::Result<()> {
        self.process.pause()
    }

    /// SIGCONT.
    pub fn resume(&self) -> std::io::Result<()> {
        self.process.resume()
    }

    /// `POST /v3/maintenance/status`: this member's id and the leader it knows of.
    pub async fn status(&self) -> Option<(String, String)> {
        let (code, body) = probe::http_request(
            self.client_addr(),
            "POST",
            "/v3/maintenance/status",
            Some("{}"),
        )
        .await?;
        if code != 200 {
            return None;
        }
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        let me = json.get("header")?.get("member_id")?.as_str()?.to_owned();
        let leader = json.get("leader")?.as_str()?.to_owned();
        Some((me, leader))
    }

    /// Whether this member is the raft leader.
    pub async fn is_leader(&self) -> bool {
        self.status().await.is_some_and(|(me, leader)| me == leader)
    }
}

async fn healthy(client_port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], client_port));
    match probe::http_get(addr, "/health").await {
        Some((200, body)) => body.contains("\"health\":\"true\""),
        _ => false,
    }
}

/// An etcd cluster on loopback. Each member advertises a [`FaultProxy`] in front of its peer
/// port, so every raft connection to it goes through the proxy and a member can be cut off from
/// its peers with [`isolate`](Self::isolate).
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<EtcdServer>,
    proxies: Vec<FaultProxy>,
}

impl EtcdCluster {
    /// Starts `size` members and waits until every one reports health (a leader exists).
    pub async fn start(size: usize) -> Result<Self, StartError> {
        with_port_retries(|| Self::try_start(size)).await
    }

    async fn try_start(size: usize) -> Result<Self, StartError> {
        let io = |e| StartError::io("preparing etcd cluster ports", e);
        let peer_ports: Vec<u16> = (0..size)
            .map(|_| free_port())
            .collect::<Result<_, _>>()
            .map_err(io)?;
        let proxies: Vec<FaultProxy> = peer_ports
            .iter()
            .map(|p| FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], *p))))
            .collect::<Result<_, _>>()
            .map_err(io)?;
        let initial_cluster = proxies
            .iter()
            .enumerate()
            .map(|(i, p)| format!("n{i}={}", p.url("http")))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("testkit-{}-{}", std::process::id(), peer_ports[0]);
        let mut members = Vec::with_capacity(size);
        for (i, proxy) in proxies.iter().enumerate() {
            let conf = PeerConf {
                name: format!("n{i}"),
                advertise_peer: proxy.url("http"),
                initial_cluster: initial_cluster.clone(),
                token: token.clone(),
            };
            members.push(EtcdServer::prepare(Some((conf, peer_ports[i])))?);
        }
        for member in &mut members {
            let addr = member.client_addr();
            member.process.launch(|| probe::tcp_accepts(addr)).await?;
        }
        let cluster = Self { members, proxies };
        cluster.refresh_origins();
        for member in &cluster.members {
            let port = member.client_port;
            let deadline = std::time::Instant::now() + crate::server::START_TIMEOUT;
            while !healthy(port).await {
                if std::time::Instant::now() >= deadline {
                    return Err(StartError::Timeout {
                        server: member.process.name().to_owned(),
                        timeout: crate::server::START_TIMEOUT,
                        log: member.process.log_tail(),
                    });
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
        Ok(cluster)
    }

    fn refresh_origins(&self) {
        for (i, member) in self.members.iter().enumerate() {
            if let Some(pid) = member.pid() {
                for proxy in &self.proxies {
                    proxy.set_known_origin(pid, &format!("member-{i}"));
                }
            }
        }
    }

    /// The members.
    pub fn members(&self) -> &[EtcdServer] {
        &self.members
    }

    /// One member.
    pub fn member(&self, i: usize) -> &EtcdServer {
        &self.members[i]
    }

    /// The proxy in front of member `i`'s peer port.
    pub fn peer_proxy(&self, i: usize) -> &FaultProxy {
        &self.proxies[i]
    }

    /// Every member's client URL.
    pub fn urls(&self) -> Vec<String> {
        self.members.iter().map(EtcdServer::url).collect()
    }

    /// The index of the current raft leader, if the members agree on one.
    pub async fn leader(&self) -> Option<usize> {
        for (i, m) in self.members.iter().enumerate() {
            if m.is_leader().await {
                return Some(i);
            }
        }
        None
    }

    /// SIGKILL member `i`, keeping its data.
    pub fn kill(&mut self, i: usize) {
        self.members[i].kill();
    }

    /// Restarts member `i` with its data; it rejoins through its proxy.
    pub async fn restart(&mut self, i: usize) -> Result<(), StartError> {
        self.members[i].restart_listening().await?;
        self.refresh_origins();
        Ok(())
    }

    /// Cuts member `i` off from its peers in both directions.
    pub fn isolate(&self, i: usize) {
        let label = format!("member-{i}");
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
