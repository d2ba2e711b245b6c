//! What every real server in testkit shares: a data directory, a supervised process, a start that
//! waits for a readiness probe, and stop / kill / restart / pause / resume.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::process::ServerProcess;
use crate::tools::{Located, Tool, ToolError};

/// How long a server may take to answer its readiness probe.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a graceful stop waits before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// How many times a first start is retried with fresh ports when a port was taken.
pub(crate) const PORT_RETRIES: usize = 5;

/// Why a server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The binary is missing or refused.
    #[error(transparent)]
    Tool(#[from] ToolError),
    /// Spawning or preparing files failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The server exited during start; `log` is the end of its log.
    #[error("{server} exited during start{}:\n{log}", if *.addr_in_use { " (address in use)" } else { "" })]
    Exited {
        /// Which server.
        server: String,
        /// Whether the log says a port was taken.
        addr_in_use: bool,
        /// The end of its log.
        log: String,
    },
    /// The server did not answer its readiness probe in time.
    #[error("{server} did not become ready within {timeout:?}:\n{log}")]
    Timeout {
        /// Which server.
        server: String,
        /// How long we waited.
        timeout: Duration,
        /// The end of its log.
        log: String,
    },
}

impl StartError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }

    /// Whether a retry with other ports may succeed.
    pub fn is_addr_in_use(&self) -> bool {
        matches!(
            self,
            Self::Exited {
                addr_in_use: true,
                ..
            }
        )
    }
}

/// A data directory that is removed on drop unless `CLUSTER_TESTKIT_KEEP` is set.
#[derive(Debug)]
pub struct DataDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl DataDir {
    /// Creates a fresh temporary directory named after `kind` and the owning process.
    ///
    /// Directories left by test processes that were killed (no destructor ran) are swept first.
    pub fn new(kind: &str) -> Result<Self, StartError> {
        sweep_orphaned_dirs();
        let dir = tempfile::Builder::new()
            .prefix(&format!("{DIR_PREFIX}{}-{kind}-", std::process::id()))
            .tempdir()
            .map_err(|e| StartError::io("creating a temporary directory", e))?;
        let path = dir.path().to_path_buf();
        Ok(Self {
            dir: Some(dir),
            path,
        })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if std::env::var_os("CLUSTER_TESTKIT_KEEP").is_some()
            && let Some(dir) = self.dir.take()
        {
            let kept = dir.keep();
            eprintln!("testkit: kept {}", kept.display());
        }
    }
}

const DIR_PREFIX: &str = "cluster-testkit-";

/// Removes temporary directories whose owning test process no longer exists.
fn sweep_orphaned_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(owner) = name
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if crate::process::process_start_time(owner).is_none() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A supervised server process with a fixed command line, restartable with the same ports and data.
#[derive(Debug)]
pub struct Supervised {
    name: String,
    tool: Located,
    args: Vec<String>,
    log_path: PathBuf,
    process: Option<ServerProcess>,
}

impl Supervised {
    /// Prepares (does not start) `tool` with `args`, logging to `log_path`.
    pub fn new(
        name: &str,
        tool: Tool,
        args: Vec<String>,
        log_path: PathBuf,
    ) -> Result<Self, StartError> {
        Ok(Self {
            name: name.to_owned(),
            tool: tool.locate()?,
            args,
            log_path,
            process: None,
        })
    }

    /// The server's display name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The binary and its version.
    pub fn tool(&self) -> &Located {
        &self.tool
    }

    /// Replaces the command line used by the next start.
    pub fn set_args(&mut self, args: Vec<String>) {
        self.args = args;
    }

    /// Spawns the process and waits until `probe` says it is ready.
    pub async fn launch<F, Fut>(&mut self, mut probe: F) -> Result<(), StartError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        if self.process.is_some() {
            return Ok(());
        }
        let process = ServerProcess::start(&self.name, &self.tool.path, &self.args, &self.log_path)
            .map_err(|e| StartError::io(format!("spawning {}", self.tool.path.display()), e))?;
        self.process = Some(process);
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        loop {
            if probe().await {
                return Ok(());
            }
            let exited = self.process.as_mut().is_some_and(|p| !p.is_running());
            if exited || std::time::Instant::now() >= deadline {
                let log = self.log_tail();
                self.kill();
                return Err(if exited {
                    StartError::Exited {
                        server: self.name.clone(),
                        addr_in_use: log.contains("address already in use"),
                        log,
                    }
                } else {
                    StartError::Timeout {
                        server: self.name.clone(),
                        timeout: START_TIMEOUT,
                        log,
                    }
                });
            }
            // A probe interval, not a sleep standing in for readiness.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether the process is running (it may be paused).
    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(ServerProcess::is_running)
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(ServerProcess::pid)
    }

    /// Graceful stop (SIGTERM, then SIGKILL after [`STOP_GRACE`]). Data is kept.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop(STOP_GRACE);
        }
    }

    /// SIGKILL, as a crash. Data is kept.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }

    /// SIGSTOP.
    pub fn pause(&self) -> std::io::Result<()> {
        self.running()?.pause()
    }

    /// SIGCONT.
    pub fn resume(&self) -> std::io::Result<()> {
        self.running()?.resume()
    }

    fn running(&self) -> std::io::Result<&ServerProcess> {
        self.process
            .as_ref()
            .ok_or_else(|| std::io::Error::other(format!("{} is not running", self.name)))
    }

    /// The whole log of every run so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The last lines of the log, for error messages.
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// Retries `start` with fresh ports while it fails because a port was taken.
pub(crate) async fn with_port_retries<T, F, Fut>(mut start: F) -> Result<T, StartError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StartError>>,
{
    let mut attempt = 0;
    loop {
        match start().await {
            Err(e) if e.is_addr_in_use() && attempt + 1 < PORT_RETRIES => {
                attempt += 1;
                tracing::debug!(attempt, "port taken, retrying with fresh ports");
            }
            other => return other,
        }
    }
}
