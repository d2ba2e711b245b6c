//! The process backend: the app's service is a command, run under `cluster supervise` (see
//! [`crate::supervisor`]), restarted by policy, its output logged with `app` and `stream`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use cluster_core::backend::{
    Backend, BackendError, BackendEvent, BackendState, SafeDeadline, StartRequest,
};
use cluster_core::backoff::Backoff;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{Mutex, broadcast, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::log_file::{LogFileSpec, RotatingFile};
use crate::protocol::{Command, Report};
use crate::supervisor::SupervisorArgs;
use crate::{boottime, metric_definitions as m};

const KIND: &str = "process";

/// When an exited service is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Never: an exit ends the backend (and the term).
    Never,
    /// After a failed exit (status not 0, or killed).
    #[default]
    OnFailure,
    /// After any exit.
    Always,
}

/// What to run and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    /// The program.
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment.
    pub env: BTreeMap<String, String>,
    /// Its working directory.
    pub working_dir: Option<PathBuf>,
    /// The user it runs as (the agent must run as root).
    pub user: Option<String>,
    /// How long a graceful stop may take before SIGKILL.
    pub grace: Duration,
    /// When it is restarted.
    pub restart: RestartPolicy,
    /// At most this many restarts within `restart_window`; one more fails the backend.
    pub max_restarts: u32,
    /// The window `max_restarts` counts in.
    pub restart_window: Duration,
    /// The pause before each restart (jittered over its upper half).
    pub backoff: Backoff,
    /// Also write the output to this file.
    pub log_file: Option<LogFileSpec>,
}

impl ProcessSpec {
    /// `command` with defaults: grace 10 s, restart on failure at most 5 times a minute, backoff
    /// from 500 ms to 30 s.
    pub fn new(command: impl Into<String>) -> ProcessSpec {
        ProcessSpec {
            command: command.into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            working_dir: None,
            user: None,
            grace: Duration::from_secs(10),
            restart: RestartPolicy::OnFailure,
            max_restarts: 5,
            restart_window: Duration::from_secs(60),
            backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(30)),
            log_file: None,
        }
    }
}

/// How to start the supervisor: a program and the arguments before its own
/// (`cluster` + `supervise`, or the `cluster-supervise` binary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisorCommand {
    /// The program.
    pub program: PathBuf,
    /// Its leading arguments.
    pub leading_args: Vec<String>,
}

/// The process backend of one app on this node. Dropping it closes the supervisor's input,
/// which stops the service.
#[derive(Clone)]
pub struct ProcessBackend {
    inner: Arc<Inner>,
}

struct Inner {
    app: String,
    spec: ProcessSpec,
    supervisor: SupervisorCommand,
    state: watch::Sender<BackendState>,
    events: broadcast::Sender<BackendEvent>,
    restarts: AtomicU32,
    run: Mutex<Option<Run>>,
}

struct Run {
    stop: CancellationToken,
    done: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for ProcessBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessBackend")
            .field("app", &self.inner.app)
            .field("command", &self.inner.spec.command)
            .field("state", &*self.inner.state.borrow())
            .finish()
    }
}

impl ProcessBackend {
    /// The backend of `app` running `spec` under `supervisor`.
    pub fn new(app: &str, spec: ProcessSpec, supervisor: SupervisorCommand) -> ProcessBackend {
        ProcessBackend {
            inner: Arc::new(Inner {
                app: app.to_owned(),
                spec,
                supervisor,
                state: watch::channel(BackendState::Stopped).0,
                events: broadcast::channel(256).0,
                restarts: AtomicU32::new(0),
                run: Mutex::new(None),
            }),
        }
    }
}

impl Inner {
    fn set_state(&self, state: BackendState) {
        for name in BackendState::NAMES {
            let v = if name == state.name() { 1.0 } else { 0.0 };
            metrics::gauge!(m::BACKEND_STATE, "app" => self.app.clone(), "backend" => KIND, "state" => name).set(v);
        }
        self.state.send_replace(state);
    }

    fn event(&self, e: BackendEvent) {
        let _ = self.events.send(e);
    }

    fn failed(&self, reason: String) -> BackendError {
        BackendError::Failed {
            backend: KIND,
            reason,
        }
    }
}

#[async_trait]
impl Backend for ProcessBackend {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn start(&self, request: StartRequest) -> Result<(), BackendError> {
        let mut run = self.inner.run.lock().await;
        if let Some(r) = run.as_ref()
            && !r.done.is_finished()
        {
            return Ok(());
        }
        self.inner.restarts.store(0, Ordering::SeqCst);
        let stop = CancellationToken::new();
        let (started_tx, started_rx) = oneshot::channel();
        let done = tokio::spawn(run_loop(
            self.inner.clone(),
            request,
            stop.clone(),
            started_tx,
        ));
        *run = Some(Run { stop, done });
        drop(run);
        match started_rx.await {
            Ok(result) => result,
            Err(_) => Err(self
                .inner
                .failed("the service ended before it started".into())),
        }
    }

    async fn stop(&self) -> Result<(), BackendError> {
        let run = self.inner.run.lock().await.take();
        if let Some(run) = run {
            run.stop.cancel();
            run.done.await.map_err(|e| BackendError::Stop {
                backend: KIND,
                reason: e.to_string(),
            })?;
        }
        Ok(())
    }

    fn state(&self) -> BackendState {
        self.inner.state.borrow().clone()
    }

    fn states(&self) -> BoxStream<'static, BackendState> {
        tokio_stream_of(self.inner.state.subscribe())
    }

    fn events(&self) -> BoxStream<'static, BackendEvent> {
        let rx = self.inner.events.subscribe();
        futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(e) => return Some((e, rx)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .boxed()
    }

    fn restarts(&self) -> u32 {
        self.inner.restarts.load(Ordering::SeqCst)
    }
}

fn tokio_stream_of(mut rx: watch::Receiver<BackendState>) -> BoxStream<'static, BackendState> {
    let first = rx.borrow_and_update().clone();
    futures::stream::once(async move { first })
        .chain(futures::stream::unfold(rx, |mut rx| async move {
            rx.changed().await.ok()?;
            let s = rx.borrow_and_update().clone();
            Some((s, rx))
        }))
        .boxed()
}

/// How one run of the supervisor ended.
enum RunEnd {
    /// The service exited by itself (or was killed at its deadline).
    Exited { status: String, success: bool },
    /// It could not be started.
    Failed(String),
    /// `stop` asked for it.
    Stopped,
}

async fn run_loop(
    inner: Arc<Inner>,
    request: StartRequest,
    stop: CancellationToken,
    started_tx: oneshot::Sender<Result<(), BackendError>>,
) {
    let mut started_tx = Some(started_tx);
    let mut restarts_at: Vec<u64> = Vec::new();
    let mut attempt = 0u32;
    let app = inner.app.clone();
    let mut log = inner.spec.log_file.clone().and_then(|spec| {
        RotatingFile::open(spec)
            .map_err(|e| tracing::warn!(app, error = %e, "cannot open the service's log file"))
            .ok()
    });
    loop {
        inner.set_state(BackendState::Starting);
        let began = boottime::now_ns();
        let end = run_once(&inner, &request, &stop, &mut started_tx, &mut log).await;
        let (status, success) = match end {
            RunEnd::Stopped => {
                inner.set_state(BackendState::Stopped);
                inner.event(BackendEvent::Stopped);
                return;
            }
            RunEnd::Failed(reason) => {
                if let Some(tx) = started_tx.take() {
                    let _ = tx.send(Err(BackendError::Start {
                        backend: KIND,
                        reason: reason.clone(),
                    }));
                }
                inner.set_state(BackendState::Failed { reason });
                return;
            }
            RunEnd::Exited { status, success } => (status, success),
        };
        let term_over = request.fence.as_ref().is_some_and(|f| f().is_none());
        let wanted = match inner.spec.restart {
            RestartPolicy::Never => false,
            RestartPolicy::OnFailure => !success,
            RestartPolicy::Always => true,
        };
        let now = boottime::now_ns();
        let window = u64::try_from(inner.spec.restart_window.as_nanos()).unwrap_or(u64::MAX);
        restarts_at.retain(|t| now.saturating_sub(*t) < window);
        let exhausted = restarts_at.len() as u32 >= inner.spec.max_restarts;
        let restarting = wanted && !term_over && !exhausted && !stop.is_cancelled();
        tracing::info!(app, status, restarting, "service exited");
        inner.event(BackendEvent::Exited {
            status: status.clone(),
            success,
            restarting,
        });
        if let Some(tx) = started_tx.take() {
            // It never reported running: the start failed.
            let _ = tx.send(Err(inner.failed(format!("exited before it ran: {status}"))));
            inner.set_state(BackendState::Failed { reason: status });
            return;
        }
        if !restarting {
            if term_over {
                inner.set_state(BackendState::Stopped);
            } else if wanted && exhausted {
                inner.event(BackendEvent::RestartsExhausted {
                    restarts: restarts_at.len() as u32,
                });
                inner.set_state(BackendState::Failed {
                    reason: format!(
                        "{status}; {} restarts within {:?}",
                        restarts_at.len(),
                        inner.spec.restart_window
                    ),
                });
            } else if wanted || !success {
                inner.set_state(BackendState::Failed { reason: status });
            } else {
                inner.set_state(BackendState::Stopped);
            }
            return;
        }
        // A run that lasted a whole window starts the backoff over.
        if now.saturating_sub(began) >= window {
            attempt = 0;
        }
        attempt += 1;
        restarts_at.push(now);
        inner.restarts.fetch_add(1, Ordering::SeqCst);
        metrics::counter!(m::BACKEND_RESTARTS, "app" => app.clone(), "backend" => KIND)
            .increment(1);
        inner.set_state(BackendState::Restarting { attempt });
        let pause = inner.spec.backoff.jittered(attempt, fastrand::f64());
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.cancelled() => {
                inner.set_state(BackendState::Stopped);
                inner.event(BackendEvent::Stopped);
                return;
            }
        }
    }
}

/// One supervisor, from spawn to exit.
async fn run_once(
    inner: &Arc<Inner>,
    request: &StartRequest,
    stop: &CancellationToken,
    started_tx: &mut Option<oneshot::Sender<Result<(), BackendError>>>,
    log: &mut Option<RotatingFile>,
) -> RunEnd {
    let app = inner.app.as_str();
    let spec = &inner.spec;
    let args = SupervisorArgs {
        app: app.to_owned(),
        grace: spec.grace,
        fenced: request.fence.is_some(),
        user: spec.user.clone(),
        dir: spec.working_dir.clone(),
        program: spec.command.clone(),
        args: spec.args.clone(),
    };
    let mut cmd = tokio::process::Command::new(&inner.supervisor.program);
    cmd.args(&inner.supervisor.leading_args)
        .args(args.to_args())
        .envs(&spec.env)
        .envs(request.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        // The supervisor must outlive a killed agent long enough to stop the service.
        .kill_on_drop(false);
    let started_at = boottime::now_ns();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return RunEnd::Failed(format!(
                "cannot run the supervisor {}: {e}",
                inner.supervisor.program.display()
            ));
        }
    };
    let Some(stdin) = child.stdin.take() else {
        return RunEnd::Failed("the supervisor has no input".into());
    };
    let Some(stdout) = child.stdout.take() else {
        return RunEnd::Failed("the supervisor has no output".into());
    };
    let stdin = Arc::new(Mutex::new(stdin));
    let feed = request
        .fence
        .clone()
        .map(|fence| tokio::spawn(feed_deadline(stdin.clone(), fence)));
    let mut lines = BufReader::new(stdout).lines();
    let mut failed: Option<String> = None;
    let mut exited: Option<String> = None;
    let mut stopping = false;
    loop {
        let line = tokio::select! {
            line = lines.next_line() => line,
            _ = stop.cancelled(), if !stopping => {
                stopping = true;
                inner.set_state(BackendState::Stopping);
                let mut input = stdin.lock().await;
                let _ = input.write_all(format!("{}\n", Command::Stop.encode()).as_bytes()).await;
                let _ = input.flush().await;
                continue;
            }
        };
        let Ok(Some(line)) = line else { break };
        match Report::decode(&line) {
            Some(Report::Started(pid)) => {
                let took = boottime::now_ns().saturating_sub(started_at);
                metrics::histogram!(m::BACKEND_START_DURATION, "app" => app.to_owned(), "backend" => KIND)
                    .record(Duration::from_nanos(took).as_secs_f64());
                tracing::info!(app, pid, "service started");
                inner.set_state(BackendState::Running { pid: Some(pid) });
                inner.event(BackendEvent::Started { pid: Some(pid) });
                if let Some(tx) = started_tx.take() {
                    let _ = tx.send(Ok(()));
                }
            }
            Some(Report::Out(text)) => output(app, "stdout", &text, log),
            Some(Report::Err(text)) => output(app, "stderr", &text, log),
            Some(Report::Dropped(n)) => {
                tracing::warn!(
                    app,
                    lines = n,
                    "service output lost while the agent did not read"
                )
            }
            Some(Report::Killed(reason)) => tracing::warn!(app, reason, "service killed"),
            Some(Report::Failed(reason)) => failed = Some(reason),
            Some(Report::Exited(status)) => exited = Some(status),
            None => tracing::debug!(app, line, "unexpected supervisor output"),
        }
    }
    if let Some(feed) = feed {
        feed.abort();
    }
    let supervisor = child.wait().await;
    if let Some(reason) = failed {
        return RunEnd::Failed(reason);
    }
    if stopping {
        return RunEnd::Stopped;
    }
    let status = exited.unwrap_or_else(|| match supervisor {
        Ok(s) => format!("supervisor ended: {s}"),
        Err(e) => format!("supervisor lost: {e}"),
    });
    let success = status == "exit status 0";
    RunEnd::Exited { status, success }
}

/// Writes the term's deadline to the supervisor every 100 ms, on the clock it shares with us;
/// `lost` once the term is over.
async fn feed_deadline(stdin: Arc<Mutex<tokio::process::ChildStdin>>, fence: SafeDeadline) {
    loop {
        let command = match fence() {
            Some(left) => Command::Deadline(boottime::after(left)),
            None => Command::Lost,
        };
        let last = command == Command::Lost;
        {
            let mut input = stdin.lock().await;
            if input
                .write_all(format!("{}\n", command.encode()).as_bytes())
                .await
                .is_err()
                || input.flush().await.is_err()
            {
                return;
            }
        }
        if last {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn output(app: &str, stream: &'static str, text: &str, log: &mut Option<RotatingFile>) {
    tracing::info!(target: "service", app, stream, "{text}");
    if let Some(file) = log
        && let Err(e) = file.write_line(&format!("{stream} {text}"))
    {
        tracing::warn!(app, error = %e, "cannot write the service's log file");
    }
}
