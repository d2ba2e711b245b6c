//! The process backend and its supervisor, with real processes.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use backends::{LogFileSpec, ProcessBackend, ProcessSpec, RestartPolicy, SupervisorCommand};
use cluster_core::backend::{Backend, BackendEvent, BackendState, StartRequest};
use cluster_core::backoff::Backoff;
use futures::StreamExt;

const SUPERVISOR: &str = env!("CARGO_BIN_EXE_cluster-supervise");

fn supervisor() -> SupervisorCommand {
    SupervisorCommand {
        program: SUPERVISOR.into(),
        leading_args: Vec::new(),
    }
}

fn sh(script: &str, log: &Path) -> ProcessSpec {
    let mut spec = ProcessSpec::new("sh");
    spec.args = vec!["-c".into(), script.into()];
    spec.grace = Duration::from_millis(300);
    spec.log_file = Some(LogFileSpec {
        path: log.to_owned(),
        max_bytes: 1 << 20,
        keep: 1,
    });
    spec
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

async fn until(what: &str, mut check: impl FnMut() -> bool) {
    testkit::eventually(what, Duration::from_secs(20), || {
        let ok = check();
        async move { ok }
    })
    .await;
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forked_grandchild_dies_with_its_service() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("grandchild.pid");
    let script = format!(
        "sleep 300 & echo $! > {}; exec sleep 300",
        pid_file.display()
    );
    let b = ProcessBackend::new("web", sh(&script, &dir.path().join("log")), supervisor());
    b.start(StartRequest::default()).await.unwrap();
    until("the grandchild wrote its pid", || {
        read(&pid_file).trim().parse::<i32>().is_ok()
    })
    .await;
    let grandchild: i32 = read(&pid_file).trim().parse().unwrap();
    let BackendState::Running { pid: Some(service) } = b.state() else {
        panic!("not running: {:?}", b.state());
    };
    assert!(alive(grandchild) && alive(service as i32));
    b.stop().await.unwrap();
    assert!(!alive(service as i32), "the service outlived stop()");
    assert!(!alive(grandchild), "the grandchild outlived stop()");
    assert_eq!(b.state(), BackendState::Stopped);
    // Idempotent both ways.
    b.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_ignoring_sigterm_is_killed_after_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let script = "trap 'echo term-ignored' TERM; echo ready; while :; do sleep 0.05; done";
    let b = ProcessBackend::new("web", sh(script, &log), supervisor());
    b.start(StartRequest::default()).await.unwrap();
    b.start(StartRequest::default()).await.unwrap();
    until("the service is ready", || {
        read(&log).contains("stdout ready")
    })
    .await;
    let BackendState::Running { pid: Some(pid) } = b.state() else {
        panic!("not running: {:?}", b.state());
    };
    b.stop().await.unwrap();
    assert!(
        read(&log).contains("stdout term-ignored"),
        "the service saw SIGTERM and went on: {}",
        read(&log)
    );
    assert!(!alive(pid as i32), "SIGKILL after the grace ended it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_back_off_then_the_backend_fails() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = sh("echo run; exit 3", &dir.path().join("log"));
    spec.restart = RestartPolicy::OnFailure;
    spec.max_restarts = 3;
    spec.backoff = Backoff::new(Duration::from_millis(20), Duration::from_millis(100));
    let b = ProcessBackend::new("web", spec, supervisor());
    let mut events = b.events();
    let mut states = b.states();
    b.start(StartRequest::default()).await.unwrap();
    let failed = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(s) = states.next().await {
            if let BackendState::Failed { reason } = s {
                return reason;
            }
        }
        panic!("the state stream ended");
    })
    .await
    .expect("the backend never failed");
    assert!(failed.contains("exit status 3"), "{failed}");
    assert_eq!(b.restarts(), 3);
    let mut seen = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(200), events.next()).await {
        seen.push(e);
    }
    let starts = seen
        .iter()
        .filter(|e| matches!(e, BackendEvent::Started { .. }))
        .count();
    let restarting: Vec<bool> = seen
        .iter()
        .filter_map(|e| match e {
            BackendEvent::Exited { restarting, .. } => Some(*restarting),
            _ => None,
        })
        .collect();
    assert_eq!(starts, 4, "{seen:?}");
    assert_eq!(restarting, [true, true, true, false], "{seen:?}");
    assert_eq!(
        seen.last(),
        Some(&BackendEvent::RestartsExhausted { restarts: 3 })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_lines_carry_the_app_and_the_stream() {
    let captured = Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    {
        let captured = captured.clone();
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || Capture(captured.clone()))
            .init();
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let mut spec = sh(
        "echo hello from the service; echo oops >&2; sleep 300",
        &log,
    );
    spec.restart = RestartPolicy::Never;
    let b = ProcessBackend::new("ledger", spec, supervisor());
    b.start(StartRequest::default()).await.unwrap();
    until("both lines logged", || read(&log).contains("stderr oops")).await;
    b.stop().await.unwrap();
    let text = String::from_utf8_lossy(&captured.lock().unwrap()).into_owned();
    let line = |needle: &str| {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in:\n{text}"))
            .to_owned()
    };
    let out = line("hello from the service");
    assert!(
        out.contains("app=\"ledger\"") && out.contains("stream=\"stdout\""),
        "{out}"
    );
    let err = line("oops");
    assert!(err.contains("stream=\"stderr\""), "{err}");
    assert!(read(&log).contains("stdout hello from the service"));
}

struct Capture(Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_runs_as_the_configured_user() {
    // SAFETY: plain getter.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test needs root, as an agent that runs services as other users does"
    );
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let mut spec = sh("id -u; sleep 300", &log);
    spec.user = Some("nobody".into());
    let b = ProcessBackend::new("web", spec, supervisor());
    b.start(StartRequest::default()).await.unwrap();
    until("the service printed its uid", || {
        read(&log).contains("stdout ")
    })
    .await;
    b.stop().await.unwrap();
    assert!(read(&log).contains("stdout 65534"), "{}", read(&log));

    let mut bad = ProcessSpec::new("true");
    bad.user = Some("no-such-user-here".into());
    let err = ProcessBackend::new("web", bad, supervisor())
        .start(StartRequest::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no user"), "{err}");
}

/// A fenced `sleep 300` with a 5 s grace.
const FENCED_SLEEP: &[&str] = &[
    "--app",
    "t",
    "--grace-ms",
    "5000",
    "--fenced",
    "--",
    "sleep",
    "300",
];

/// The supervisor process alone, fed by hand.
struct Supervised {
    child: std::process::Child,
    input: Option<std::process::ChildStdin>,
    reports: std::sync::mpsc::Receiver<String>,
}

impl Supervised {
    fn start(args: &[&str]) -> Supervised {
        let mut child = Command::new(SUPERVISOR)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let input = child.stdin.take();
        let out = child.stdout.take().unwrap();
        let (tx, reports) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Supervised {
            child,
            input,
            reports,
        }
    }

    fn send(&mut self, line: &str) {
        let input = self.input.as_mut().unwrap();
        writeln!(input, "{line}").unwrap();
        input.flush().unwrap();
    }

    /// Reports up to and including the one starting with `word`.
    fn until(&self, word: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let line = self
                .reports
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("no {word:?} report; saw {seen:?}"));
            let done = line.starts_with(word);
            seen.push(line);
            if done {
                return seen;
            }
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_supervisor_kills_at_the_last_fed_deadline_when_the_feed_stops() {
    let mut s = Supervised::start(FENCED_SLEEP);
    let deadline = backends::boottime::after(Duration::from_millis(500));
    s.send(&format!("deadline {deadline}"));
    // Then nothing: the agent is frozen, its pipe open.
    let started = s.until("started");
    let pid: i32 = started.last().unwrap()["started ".len()..].parse().unwrap();
    let reports = s.until("exited");
    let killed = reports
        .iter()
        .find(|r| r.starts_with("killed the term's deadline passed"))
        .unwrap_or_else(|| panic!("{reports:?}"));
    let at: u64 = killed
        .rsplit(' ')
        .next()
        .unwrap()
        .trim_end_matches(')')
        .parse()
        .unwrap();
    assert!(at >= deadline, "killed before its deadline: {killed}");
    assert!(
        at < deadline + 1_000_000_000,
        "killed {} ms after its deadline, past any lease margin",
        (at - deadline) / 1_000_000
    );
    assert_eq!(reports.last().unwrap(), "exited killed by signal 9");
    assert!(!alive(pid));
}

#[test]
fn a_closed_input_stops_the_service_at_once() {
    let mut s = Supervised::start(&["--app", "t", "--grace-ms", "5000", "--", "sleep", "300"]);
    s.until("started");
    s.input = None; // the agent died
    let reports = s.until("exited");
    assert_eq!(
        reports.last().unwrap(),
        "exited killed by signal 15",
        "{reports:?}"
    );
}

#[test]
fn lost_kills_the_service_now() {
    let mut s = Supervised::start(FENCED_SLEEP);
    let deadline = backends::boottime::after(Duration::from_secs(60));
    s.send(&format!("deadline {deadline}"));
    s.until("started");
    s.send("lost");
    let reports = s.until("exited");
    assert!(
        reports.iter().any(|r| r == "killed the term ended"),
        "{reports:?}"
    );
    assert_eq!(reports.last().unwrap(), "exited killed by signal 9");
}

#[test]
fn a_fenced_service_never_starts_without_a_deadline() {
    let mut s = Supervised::start(&["--app", "t", "--fenced", "--", "sleep", "300"]);
    s.input = None;
    let reports = s.until("failed");
    assert_eq!(reports, ["failed no deadline was fed; not started"]);
    let mut s = Supervised::start(&["--app", "t", "--fenced", "--", "sleep", "300"]);
    s.send(&format!("deadline {}", backends::boottime::now_ns()));
    let reports = s.until("failed");
    assert_eq!(reports, ["failed the fed deadline had passed; not started"]);
}
