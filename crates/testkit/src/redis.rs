//! A real `redis-server` on loopback, with an append-only file so data survives a restart.

use std::net::SocketAddr;
use std::path::Path;

use crate::probe::{self, free_port};
use crate::server::{DataDir, StartError, Supervised, with_port_retries};
use crate::tools::{Tool, Version};

/// A real Redis server, killed and its data removed on drop.
#[derive(Debug)]
pub struct RedisServer {
    dir: DataDir,
    port: u16,
    process: Supervised,
}

impl RedisServer {
    /// Starts a server (AOF with `appendfsync always`) and waits until it answers PING.
    pub async fn start() -> Result<Self, StartError> {
        with_port_retries(|| async {
            let dir = DataDir::new("redis")?;
            let port = free_port().map_err(|e| StartError::io("finding a free port", e))?;
            let args = vec![
                "--port".into(),
                port.to_string(),
                "--bind".into(),
                "127.0.0.1".into(),
                "--dir".into(),
                dir.path().display().to_string(),
                "--appendonly".into(),
                "yes".into(),
                "--appendfsync".into(),
                "always".into(),
                "--save".into(),
                String::new(),
                "--daemonize".into(),
                "no".into(),
                "--protected-mode".into(),
                "no".into(),
            ];
            let process = Supervised::new(
                "redis-server",
                Tool::RedisServer,
                args,
                dir.path().join("server.log"),
            )?;
            let mut server = Self { dir, port, process };
            let addr = server.addr();
            server.process.launch(|| probe::redis_ping(addr)).await?;
            Ok(server)
        })
        .await
    }

    /// The URL, `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr())
    }

    /// The address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The server's version.
    pub fn version(&self) -> Version {
        self.process.tool().version
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Graceful stop, keeping port and data.
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// SIGKILL, keeping port and data.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts again on the same port with the same data.
    pub async fn restart(&mut self) -> Result<(), StartError> {
        self.process.stop();
        let addr = self.addr();
        self.process.launch(|| probe::redis_ping(addr)).await
    }

    /// SIGSTOP.
    pub fn pause(&self) -> std::io::Result<()> {
        self.process.pause()
    }

    /// SIGCONT.
    pub fn resume(&self) -> std::io::Result<()> {
        self.process.resume()
    }
}
