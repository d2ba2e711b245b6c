//! Child processes that die with the test that started them.
//!
//! Every server is spawned by one long-lived thread (not a tokio worker, which may exit while the
//! test goes on) with `PR_SET_PDEATHSIG=SIGKILL`, so the kernel kills it when that thread, and so
//! the test process, dies, even by SIGKILL. Each server leads its own process group, so signals
//! reach everything it started. When `CLUSTER_TESTKIT_PIDS_DIR` is set (by `cargo xtask test`),
//! each live server is recorded there and struck off when reaped; anything still recorded and
//! alive at the end of the run is a leak that xtask reports.

use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The environment variable naming the directory where live server pids are recorded.
pub const PIDS_DIR_VAR: &str = "CLUSTER_TESTKIT_PIDS_DIR";

type SpawnReply = mpsc::Sender<io::Result<Child>>;

fn spawner() -> &'static mpsc::Sender<(Command, SpawnReply)> {
    static SPAWNER: OnceLock<mpsc::Sender<(Command, SpawnReply)>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<(Command, SpawnReply)>();
        // The thread never returns while the process lives: PDEATHSIG is tied to the thread
        // that forked the child, so this must outlive every server.
        let spawned = std::thread::Builder::new()
            .name("testkit-spawner".into())
            .spawn(move || {
                while let Ok((mut cmd, reply)) = rx.recv() {
                    let _ = reply.send(cmd.spawn());
                }
                // Senders are in a static and never dropped, so this is unreachable in practice;
                // park instead of exiting so children keep their parent thread.
                loop {
                    std::thread::park();
                }
            });
        if let Err(e) = spawned {
            panic!("testkit: cannot start the spawner thread: {e}");
        }
        tx
    })
}

/// Spawns `cmd` in its own process group, to be killed by the kernel if this process dies.
pub fn spawn_supervised(mut cmd: Command) -> io::Result<Child> {
    let parent = std::process::id() as libc::pid_t;
    cmd.process_group(0);
    // SAFETY: the closure only calls async-signal-safe functions (prctl, getppid, _exit).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let (tx, rx) = mpsc::channel();
    spawner()
        .send((cmd, tx))
        .map_err(|_| io::Error::other("testkit spawner thread is gone"))?;
    let child = rx
        .recv()
        .map_err(|_| io::Error::other("testkit spawner thread did not answer"))??;
    record_pid(child.id());
    Ok(child)
}

/// A running server process and the files it writes.
#[derive(Debug)]
pub struct ServerProcess {
    name: String,
    child: Option<Child>,
    log_path: PathBuf,
}

impl ServerProcess {
    /// Starts `program` with `args`, stdout and stderr appended to `log_path`.
    pub fn start(name: &str, program: &Path, args: &[String], log_path: &Path) -> io::Result<Self> {
        let mut cmd = Command::new(program);
        cmd.args(args);
        Self::spawn(name, cmd, log_path)
    }

    /// Starts `cmd` as prepared (arguments, environment, directory), stdout and stderr
    /// appended to `log_path`.
    pub fn spawn(name: &str, mut cmd: Command, log_path: &Path) -> io::Result<Self> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)?;
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = spawn_supervised(cmd)?;
        tracing::debug!(server = name, pid = child.id(), "started");
        Ok(Self {
            name: name.to_owned(),
            child: Some(child),
            log_path: log_path.to_owned(),
        })
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process has not exited.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The path of the server's log.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Sends `signal` to the whole process group.
    pub fn signal(&self, signal: libc::c_int) -> io::Result<()> {
        let Some(pid) = self.pid() else {
            return Err(io::Error::other(format!("{} is not running", self.name)));
        };
        // SAFETY: plain syscall; a negative pid addresses the process group we created.
        if unsafe { libc::kill(-(pid as libc::pid_t), signal) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// SIGSTOP: the server keeps its sockets but answers nothing. Returns once every thread of
    /// the server is stopped (a signal is delivered asynchronously: a thread running on another
    /// core could otherwise still answer a request sent after `pause` returned).
    pub fn pause(&self) -> io::Result<()> {
        self.signal(libc::SIGSTOP)?;
        let Some(pid) = self.pid() else {
            return Ok(());
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !all_threads_stopped(pid) {
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "{} did not stop within 5 s of SIGSTOP",
                    self.name
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    /// SIGCONT after [`pause`](Self::pause).
    pub fn resume(&self) -> io::Result<()> {
        self.signal(libc::SIGCONT)
    }

    /// SIGTERM, and the exit status if the process exits within `grace` (else it is killed
    /// and `None` is returned).
    pub fn terminate(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        let _ = self.signal(libc::SIGCONT);
        let _ = self.signal(libc::SIGTERM);
        let deadline = Instant::now() + grace;
        let mut status = None;
        while Instant::now() < deadline {
            if let Some(Ok(Some(s))) = self.child.as_mut().map(Child::try_wait) {
                status = Some(s);
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
        status
    }

    /// Graceful stop: SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub fn stop(&mut self, grace: Duration) {
        if self.child.is_none() {
            return;
        }
        let _ = self.signal(libc::SIGCONT);
        let _ = self.signal(libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !self.is_running() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
    }

    /// SIGKILL the process group and reap the process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id();
            // SAFETY: plain syscall on our own process group.
            unsafe {
                libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
            }
            let _ = child.kill();
            let _ = child.wait();
            forget_pid(pid);
            tracing::debug!(server = %self.name, pid, "stopped");
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn pids_dir() -> Option<PathBuf> {
    std::env::var_os(PIDS_DIR_VAR)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The kernel's start time of `pid` (field 22 of /proc/PID/stat), which tells a recycled pid apart.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: split after the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

fn is_zombie(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let after = stat[stat.rfind(')')? + 1..].trim_start().to_owned();
            after.chars().next()
        })
        .is_some_and(|state| state == 'Z' || state == 'X')
}

fn record_pid(pid: u32) {
    let Some(dir) = pids_dir() else { return };
    let start = process_start_time(pid).unwrap_or(0);
    let cmdline = fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default();
    let _ = fs::create_dir_all(&dir);
    let _ = fs::write(dir.join(pid.to_string()), format!("{start}\n{cmdline}\n"));
}

fn forget_pid(pid: u32) {
    if let Some(dir) = pids_dir() {
        let _ = fs::remove_file(dir.join(pid.to_string()));
    }
}

/// A server recorded in a pids directory that is still alive.
#[derive(Debug, Clone)]
pub struct LeakedServer {
    /// Its pid.
    pub pid: u32,
    /// Its command line when it started.
    pub cmdline: String,
}

/// Lists the recorded servers in `dir` that are still alive (same pid and same start time).
pub fn leaked_servers(dir: &Path) -> Vec<LeakedServer> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut leaked = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let text = fs::read_to_string(entry.path()).unwrap_or_default();
        let mut lines = text.lines();
        let recorded_start: u64 = lines.next().and_then(|l| l.parse().ok()).unwrap_or(0);
        let cmdline = lines.next().unwrap_or_default().to_owned();
        if process_start_time(pid).is_some_and(|start| start == recorded_start) && !is_zombie(pid) {
            leaked.push(LeakedServer { pid, cmdline });
        }
    }
    leaked
}

/// Whether every thread of `pid` is in the stopped state (`T`, or `t` when traced), from
/// `/proc/<pid>/task/*/stat`.
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|task| {
        fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
            // The state follows the command name, which is in parentheses and may hold spaces.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state == "T" || state == "t")
        })
    })
}

/// The name libtest knows test `name` of the module at `module` by (pass `module_path!()`):
/// the module path without the test binary's crate name, as `--exact` wants it when a test
/// re-runs its own binary for a child role.
pub fn test_name(module: &str, name: &str) -> String {
    match module.split_once("::") {
        Some((_, path)) => format!("{path}::{name}"),
        None => name.to_owned(),
    }
}
