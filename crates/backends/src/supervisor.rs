//! `cluster supervise`: the parent of one run of an app's service, in a process of its own.
//!
//! The agent starts it with the service's command and feeds it, over stdin, the last moment the
//! service may run (see [`crate::protocol`]). It keeps that promise by itself: when the fed
//! deadline passes (the agent is frozen or hung and feeds no more), it kills the service's whole
//! process group at that deadline, before another node can take the lease; when its input ends
//! (the agent died), it stops the service at once. It is the service's child subreaper, so it
//! exits only once every process of the service is gone.
//!
//! It uses threads and blocking calls only, and its control loop never writes to the agent
//! itself: a frozen agent that stops reading cannot hold up a kill.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command as Process, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::boottime;
use crate::protocol::{Command, Report};

/// How the supervisor runs the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisorArgs {
    /// The app, for messages.
    pub app: String,
    /// How long a graceful stop may take before SIGKILL.
    pub grace: Duration,
    /// Whether the service runs under a term's deadline (then it starts only once one is fed).
    pub fenced: bool,
    /// The user to run as (the agent must be root).
    pub user: Option<String>,
    /// The working directory.
    pub dir: Option<PathBuf>,
    /// The program.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
}

impl SupervisorArgs {
    /// The arguments that make `cluster supervise` (or `cluster-supervise`) run `self`.
    pub fn to_args(&self) -> Vec<String> {
        let mut out = vec![
            "--app".into(),
            self.app.clone(),
            "--grace-ms".into(),
            self.grace.as_millis().to_string(),
        ];
        if self.fenced {
            out.push("--fenced".into());
        }
        if let Some(u) = &self.user {
            out.extend(["--user".into(), u.clone()]);
        }
        if let Some(d) = &self.dir {
            out.extend(["--dir".into(), d.display().to_string()]);
        }
        out.push("--".into());
        out.push(self.program.clone());
        out.extend(self.args.iter().cloned());
        out
    }

    /// Parses what [`to_args`](Self::to_args) writes.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<SupervisorArgs, String> {
        let mut it = args.into_iter();
        let mut parsed = SupervisorArgs {
            app: String::new(),
            grace: Duration::from_secs(10),
            fenced: false,
            user: None,
            dir: None,
            program: String::new(),
            args: Vec::new(),
        };
        while let Some(a) = it.next() {
            let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
            match a.as_str() {
                "--app" => parsed.app = value("--app")?,
                "--grace-ms" => {
                    let v = value("--grace-ms")?;
                    parsed.grace = Duration::from_millis(
                        v.parse()
                            .map_err(|_| format!("--grace-ms: {v:?} is not a number"))?,
                    );
                }
                "--fenced" => parsed.fenced = true,
                "--user" => parsed.user = Some(value("--user")?),
                "--dir" => parsed.dir = Some(value("--dir")?.into()),
                "--" => {
                    parsed.program = it.next().ok_or("no program after --")?;
                    parsed.args = it.collect();
                    return Ok(parsed);
                }
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Err("no program: cluster supervise [OPTIONS] -- PROGRAM [ARGS...]".into())
    }
}

enum Event {
    Command(Command),
    InputClosed,
    Exited(ExitStatus),
}

/// A uid and gid for `user`.
fn lookup_user(user: &str) -> Result<(u32, u32), String> {
    let name = std::ffi::CString::new(user).map_err(|_| format!("bad user name {user:?}"))?;
    // SAFETY: getpwnam reads a NUL-terminated name; the result is used before any other call
    // to the passwd functions on this thread.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(format!("no user {user:?}"));
    }
    // SAFETY: non-null pointer from getpwnam.
    Ok(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

fn signal_group(pgid: u32, signal: libc::c_int) {
    // SAFETY: plain syscall; a negative pid addresses the service's process group.
    unsafe {
        libc::kill(-(pgid as libc::pid_t), signal);
    }
}

/// Describes an exit as the reports do.
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "exited".into(),
    }
}

/// Runs the service to its end; the process's exit code (0 when the service exited with 0).
pub fn run(args: SupervisorArgs) -> i32 {
    // Reports go out through one writer thread; nothing else writes to stdout.
    let (report_tx, report_rx) = mpsc::sync_channel::<Report>(4096);
    let (written_tx, written_rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let mut out = std::io::stdout().lock();
        for r in report_rx {
            let last = matches!(r, Report::Exited(_) | Report::Failed(_));
            if writeln!(out, "{}", r.encode())
                .and_then(|_| out.flush())
                .is_err()
                || last
            {
                break;
            }
        }
        let _ = written_tx.send(());
    });
    let dropped = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let send = {
        let report_tx = report_tx.clone();
        let dropped = dropped.clone();
        move |r: Report| {
            if report_tx.try_send(r).is_err() {
                dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    };

    // SAFETY: prctl with constant arguments; makes orphaned descendants ours to reap.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
    let (tx, rx) = mpsc::channel::<Event>();
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let stdin = std::io::stdin().lock();
            for line in stdin.lines() {
                let Ok(line) = line else { break };
                if let Some(c) = Command::decode(&line)
                    && tx.send(Event::Command(c)).is_err()
                {
                    return;
                }
            }
            let _ = tx.send(Event::InputClosed);
        });
    }

    let mut deadline: Option<u64> = None;
    if args.fenced {
        // A fenced service runs only under a deadline it was given.
        let wait_until = boottime::after(Duration::from_secs(10));
        loop {
            let left = wait_until.saturating_sub(boottime::now_ns());
            match rx.recv_timeout(Duration::from_nanos(left)) {
                Ok(Event::Command(Command::Deadline(d))) => {
                    deadline = Some(d);
                    break;
                }
                Ok(Event::Command(Command::Stop | Command::Lost) | Event::InputClosed) | Err(_) => {
                    send(Report::Failed("no deadline was fed; not started".into()));
                    return finish(2, report_tx, written_rx);
                }
                Ok(Event::Exited(_)) => {}
            }
        }
        if deadline.is_some_and(|d| d <= boottime::now_ns()) {
            send(Report::Failed(
                "the fed deadline had passed; not started".into(),
            ));
            return finish(2, report_tx, written_rx);
        }
    }

    let mut cmd = Process::new(&args.program);
    cmd.args(&args.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(dir) = &args.dir {
        cmd.current_dir(dir);
    }
    if let Some(user) = &args.user {
        match lookup_user(user) {
            Ok((uid, gid)) => {
                cmd.uid(uid).gid(gid);
            }
            Err(e) => {
                send(Report::Failed(e));
                return finish(2, report_tx, written_rx);
            }
        }
    }
    // SAFETY: prctl is async-signal-safe; the service dies if this supervisor is killed.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            send(Report::Failed(format!("{}: {e}", args.program)));
            return finish(2, report_tx, written_rx);
        }
    };
    let pgid = child.id();
    send(Report::Started(pgid));
    for (pipe, is_err) in [
        (
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            false,
        ),
        (
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            true,
        ),
    ] {
        let Some(pipe) = pipe else { continue };
        let send = send.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut buf = Vec::new();
            while reader.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
                let line = String::from_utf8_lossy(&buf)
                    .trim_end_matches('\n')
                    .to_owned();
                send(if is_err {
                    Report::Err(line)
                } else {
                    Report::Out(line)
                });
                buf.clear();
            }
        });
    }
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = tx.send(Event::Exited(status));
            }
        });
    }

    // The control loop: only signals and timers, never a write that could block.
    let mut stop_by: Option<u64> = None;
    let mut killed = false;
    let status = loop {
        let limit = [deadline, stop_by].into_iter().flatten().min();
        let wait = match limit {
            Some(at) => Duration::from_nanos(at.saturating_sub(boottime::now_ns())),
            None => Duration::from_secs(3600),
        };
        match rx.recv_timeout(wait) {
            Ok(Event::Exited(status)) => break status,
            Ok(Event::Command(Command::Deadline(d))) => deadline = Some(d),
            Ok(Event::Command(Command::Lost)) => {
                signal_group(pgid, libc::SIGKILL);
                if !killed {
                    send(Report::Killed("the term ended".into()));
                }
                killed = true;
            }
            Ok(Event::Command(Command::Stop) | Event::InputClosed) => {
                if stop_by.is_none() {
                    signal_group(pgid, libc::SIGTERM);
                    stop_by = Some(boottime::after(args.grace));
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let now = boottime::now_ns();
                if !killed && deadline.is_some_and(|d| now >= d) {
                    signal_group(pgid, libc::SIGKILL);
                    send(Report::Killed(format!(
                        "the term's deadline passed (fed deadline {}, now {now})",
                        deadline.unwrap_or_default()
                    )));
                    killed = true;
                } else if !killed && stop_by.is_some_and(|s| now >= s) {
                    signal_group(pgid, libc::SIGKILL);
                    send(Report::Killed(format!(
                        "still running {:?} after SIGTERM",
                        args.grace
                    )));
                    killed = true;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {}
        }
    };
    // What the service left behind in its group goes with it; then every orphan we adopted is
    // reaped, so nothing of the service outlives this process.
    signal_group(pgid, libc::SIGKILL);
    reap_orphans(Duration::from_secs(2));
    let n = dropped.load(std::sync::atomic::Ordering::Relaxed);
    if n > 0 {
        let _ = report_tx.try_send(Report::Dropped(n));
    }
    let _ = report_tx.try_send(Report::Exited(describe(status)));
    finish(i32::from(!status.success()), report_tx, written_rx)
}

/// Waits for every remaining child (orphans adopted as subreaper), for at most `limit`.
fn reap_orphans(limit: Duration) {
    let until = boottime::after(limit);
    loop {
        let mut status = 0;
        // SAFETY: plain syscall on our own children.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid < 0 {
            return; // ECHILD: none left.
        }
        if pid == 0 {
            if boottime::now_ns() >= until {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Lets the writer flush up to the last report (an agent that stopped reading gets a second
/// at most).
fn finish(code: i32, reports: mpsc::SyncSender<Report>, written: mpsc::Receiver<()>) -> i32 {
    drop(reports);
    let _ = written.recv_timeout(Duration::from_secs(1));
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_round_trip() {
        let a = SupervisorArgs {
            app: "web".into(),
            grace: Duration::from_millis(1500),
            fenced: true,
            user: Some("nobody".into()),
            dir: Some("/srv".into()),
            program: "python3".into(),
            args: vec!["-m".into(), "http.server".into(), "--".into()],
        };
        assert_eq!(SupervisorArgs::parse(a.to_args()), Ok(a));
        assert!(SupervisorArgs::parse(["--app".to_owned()]).is_err());
        assert!(SupervisorArgs::parse(["--bogus".to_owned()]).is_err());
    }
}
