//! `FaultProxy`: a TCP proxy whose behaviour a test switches at run time.
//!
//! Put one between a client and a server (or between cluster members) and choose a [`Mode`]:
//! pass bytes through, add latency, refuse new connections, or blackhole (accept and never
//! answer: bytes are held, as a partitioned network holds them, and flow again on heal).
//! [`FaultProxy::cut`] resets every open connection at once.
//!
//! An ambiguous commit, applied at the server but its reply lost, comes from
//! [`FaultProxy::lose_reply_after`]: the first request carrying every given byte pattern is
//! forwarded, its connection then delivers nothing more to the client and is reset a moment
//! later, so the client sees its call fail after the server applied it.
//!
//! For cluster partitions the proxy can tell which process opened a connection: given the pids
//! of the members, it looks the connecting socket up in `/proc` and applies a per-origin rule, so
//! a member can be cut off in both directions with one inbound proxy per member.
//!
//! The proxy runs on testkit's own runtime, so it keeps real time even when a test pauses
//! tokio's clock, and it keeps running while the test's runtime is busy.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Forward everything.
    #[default]
    Pass,
    /// Forward everything, each chunk delivered this long after it was read.
    Latency(Duration),
    /// Refuse new connections; open ones keep flowing.
    Refuse,
    /// Accept new connections but never answer; hold all bytes of open ones until the mode changes.
    Blackhole,
}

/// The proxy's current rules: a default mode and overrides per origin label.
#[derive(Debug, Clone, Default)]
struct Rules {
    default: Mode,
    by_origin: HashMap<String, Mode>,
}

impl Rules {
    fn mode_for(&self, origin: Option<&str>) -> Mode {
        origin
            .and_then(|o| self.by_origin.get(o))
            .copied()
            .unwrap_or(self.default)
    }
}

struct Connection {
    origin: Option<String>,
    cancel: CancellationToken,
}

struct Shared {
    rules: watch::Sender<Rules>,
    upstream: Mutex<SocketAddr>,
    listen: SocketAddr,
    connections: Mutex<HashMap<u64, Connection>>,
    next_id: AtomicU64,
    /// pid -> origin label, for connections from known processes.
    origins: Mutex<HashMap<u32, String>>,
    accepted: AtomicU64,
    shutdown: CancellationToken,
    /// When a chunk last went from the server to a client.
    last_reply: Mutex<Option<std::time::Instant>>,
    /// An armed lost-reply fault: the byte patterns a request must carry, and how long its
    /// connection lives on (delivering nothing) before it is reset.
    reply_trap: Mutex<Option<(Vec<Vec<u8>>, Duration)>>,
    /// How many lost-reply faults fired.
    replies_lost: AtomicU64,
}

/// Which way a pump copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Client to server.
    Up,
    /// Server to client.
    Down,
}

/// A TCP proxy with switchable faults. Dropping it closes the listener and every connection.
pub struct FaultProxy {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("listen", &self.shared.listen)
            .field("upstream", &self.upstream())
            .field("mode", &self.mode())
            .finish()
    }
}

/// testkit's own runtime for proxies: independent of the test's runtime and of paused time.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("testkit-proxy")
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => panic!("testkit: cannot build the proxy runtime: {e}"),
        }
    })
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port forwarding to `upstream`.
    pub fn start(upstream: SocketAddr) -> io::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        Self::from_listener(listener, upstream)
    }

    /// Starts a proxy on a given loopback port (0 for any) forwarding to `upstream`.
    pub fn start_on(port: u16, upstream: SocketAddr) -> io::Result<Self> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
        Self::from_listener(listener, upstream)
    }

    fn from_listener(listener: std::net::TcpListener, upstream: SocketAddr) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        let listen = listener.local_addr()?;
        let (rules, _) = watch::channel(Rules::default());
        let shared = Arc::new(Shared {
            rules,
            upstream: Mutex::new(upstream),
            listen,
            connections: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            origins: Mutex::new(HashMap::new()),
            accepted: AtomicU64::new(0),
            shutdown: CancellationToken::new(),
            last_reply: Mutex::new(None),
            reply_trap: Mutex::new(None),
            replies_lost: AtomicU64::new(0),
        });
        let rt = runtime();
        let listener = {
            let _guard = rt.enter();
            TcpListener::from_std(listener)?
        };
        rt.spawn(accept_loop(shared.clone(), Some(listener)));
        Ok(Self { shared })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.shared.listen
    }

    /// The proxy's address as a URL with `scheme`, e.g. `http://127.0.0.1:1234`.
    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.shared.listen)
    }

    /// Where traffic goes.
    pub fn upstream(&self) -> SocketAddr {
        *lock(&self.shared.upstream)
    }

    /// Points new connections at another upstream (open ones keep theirs).
    pub fn set_upstream(&self, upstream: SocketAddr) {
        *lock(&self.shared.upstream) = upstream;
    }

    /// The default mode.
    pub fn mode(&self) -> Mode {
        self.shared.rules.borrow().default
    }

    /// Sets the default mode for every connection without an origin rule.
    pub fn set_mode(&self, mode: Mode) {
        self.shared.rules.send_modify(|r| r.default = mode);
    }

    /// Forward everything again, for every origin.
    pub fn heal(&self) {
        self.shared.rules.send_modify(|r| {
            r.default = Mode::Pass;
            r.by_origin.clear();
        });
    }

    /// Adds latency to every chunk.
    pub fn set_latency(&self, latency: Duration) {
        self.set_mode(Mode::Latency(latency));
    }

    /// Tells the proxy which processes may connect, so it can apply per-origin rules.
    pub fn set_known_origin(&self, pid: u32, label: &str) {
        let mut origins = lock(&self.shared.origins);
        origins.retain(|_, l| l != label);
        origins.insert(pid, label.to_owned());
    }

    /// Sets the mode for connections opened by the process labelled `label`.
    pub fn set_origin_mode(&self, label: &str, mode: Mode) {
        self.shared.rules.send_modify(|r| {
            r.by_origin.insert(label.to_owned(), mode);
        });
    }

    /// Resets every open connection (both sides see a reset).
    pub fn cut(&self) {
        for (_, conn) in lock(&self.shared.connections).drain() {
            conn.cancel.cancel();
        }
    }

    /// Resets the open connections opened by the process labelled `label`.
    pub fn cut_origin(&self, label: &str) {
        lock(&self.shared.connections).retain(|_, conn| {
            let hit = conn.origin.as_deref() == Some(label);
            if hit {
                conn.cancel.cancel();
            }
            !hit
        });
    }

    /// How many connections are open through the proxy.
    pub fn open_connections(&self) -> usize {
        lock(&self.shared.connections).len()
    }

    /// How many connections the proxy has accepted since it started.
    pub fn accepted_connections(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// How long ago bytes last went from the server to a client (`None` before the first).
    /// On a connection that carries only a lease's keep-alives, that is the age of the last
    /// acknowledged keep-alive.
    pub fn last_reply_age(&self) -> Option<Duration> {
        lock(&self.shared.last_reply).map(|at| at.elapsed())
    }

    /// Arms one ambiguous commit: the next chunk from a client that contains every pattern of
    /// `patterns` is forwarded to the server, then its connection delivers nothing more to the
    /// client (the reply is lost) and is reset after `reset_after`, as a link that died right
    /// after the request went out. Other connections are untouched. One-shot: it fires once;
    /// [`FaultProxy::replies_lost`] counts the faults that fired.
    pub fn lose_reply_after(&self, patterns: &[&[u8]], reset_after: Duration) {
        let patterns = patterns.iter().map(|p| p.to_vec()).collect();
        *lock(&self.shared.reply_trap) = Some((patterns, reset_after));
    }

    /// How many lost-reply faults armed with [`FaultProxy::lose_reply_after`] fired.
    pub fn replies_lost(&self) -> u64 {
        self.shared.replies_lost.load(Ordering::Relaxed)
    }
}

/// Whether `haystack` contains `needle`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Whether the armed lost-reply fault matches `chunk`; disarms it and returns how long the
/// connection lives on if it does.
fn spring_trap(shared: &Shared, chunk: &[u8]) -> Option<Duration> {
    let mut trap = lock(&shared.reply_trap);
    let (patterns, reset_after) = trap.as_ref()?;
    if !patterns.iter().all(|p| contains(chunk, p)) {
        return None;
    }
    let reset_after = *reset_after;
    *trap = None;
    shared.replies_lost.fetch_add(1, Ordering::Relaxed);
    Some(reset_after)
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
        self.cut();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn accept_loop(shared: Arc<Shared>, mut listener: Option<TcpListener>) {
    let mut rules = shared.rules.subscribe();
    loop {
        let refusing = rules.borrow_and_update().default == Mode::Refuse;
        if refusing {
            // Refuse by not listening at all: clients get ECONNREFUSED, as from a dead port.
            listener = None;
            tokio::select! {
                _ = shared.shutdown.cancelled() => return,
                changed = rules.changed() => if changed.is_err() { return },
            }
            continue;
        }
        let current = match listener.take() {
            Some(l) => l,
            None => match rebind(shared.listen).await {
                Some(l) => l,
                None => return,
            },
        };
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            changed = rules.changed() => {
                if changed.is_err() { return }
                listener = Some(current);
            }
            accepted = current.accept() => {
                listener = Some(current);
                if let Ok((client, peer)) = accepted {
                    shared.accepted.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(handle_connection(shared.clone(), client, peer));
                }
            }
        }
    }
}

async fn rebind(addr: SocketAddr) -> Option<TcpListener> {
    for _ in 0..200 {
        let socket = TcpSocket::new_v4().ok()?;
        let _ = socket.set_reuseaddr(true);
        if socket.bind(addr).is_ok()
            && let Ok(listener) = socket.listen(1024)
        {
            return Some(listener);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tracing::error!(%addr, "fault proxy could not listen again on its port");
    None
}

async fn handle_connection(shared: Arc<Shared>, client: TcpStream, peer: SocketAddr) {
    let _ = client.set_nodelay(true);
    let origin = resolve_origin(&shared, peer).await;
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let cancel = shared.shutdown.child_token();
    lock(&shared.connections).insert(
        id,
        Connection {
            origin: origin.clone(),
            cancel: cancel.clone(),
        },
    );
    let mut rules = shared.rules.subscribe();
    let result = async {
        // Before connecting upstream: a refused origin is reset, a blackholed one waits.
        loop {
            let mode = rules.borrow_and_update().mode_for(origin.as_deref());
            match mode {
                Mode::Refuse => {
                    let _ = client.set_zero_linger();
                    return Ok(());
                }
                Mode::Blackhole => {}
                Mode::Pass | Mode::Latency(_) => break,
            }
            tokio::select! {
                _ = cancel.cancelled() => {
                    let _ = client.set_zero_linger();
                    return Ok(());
                }
                changed = rules.changed() => if changed.is_err() { return Ok(()) },
            }
        }
        let upstream_addr = *lock(&shared.upstream);
        let upstream = TcpStream::connect(upstream_addr).await?;
        let _ = upstream.set_nodelay(true);
        let (client_read, client_write) = client.into_split();
        let (upstream_read, upstream_write) = upstream.into_split();
        let replies_lost = std::sync::atomic::AtomicBool::new(false);
        let link = Link {
            shared: &shared,
            origin: origin.as_deref(),
            cancel: &cancel,
            replies_lost: &replies_lost,
        };
        let up = pump(client_read, upstream_write, &link, Direction::Up);
        let down = pump(upstream_read, client_write, &link, Direction::Down);
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = async { tokio::join!(up, down) } => {}
        }
        Ok::<(), io::Error>(())
    }
    .await;
    if let Err(e) = result {
        tracing::trace!(%peer, error = %e, "fault proxy connection ended");
    }
    lock(&shared.connections).remove(&id);
}

/// What both directions of one proxied connection share.
struct Link<'a> {
    shared: &'a Shared,
    origin: Option<&'a str>,
    cancel: &'a CancellationToken,
    /// Set once a lost-reply fault fired on this connection: nothing more reaches the client.
    replies_lost: &'a std::sync::atomic::AtomicBool,
}

/// Copies one direction, honouring the mode for every chunk. Reading stops while blackholed,
/// so the sender's buffers fill as they would behind a dead link.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    link: &Link<'_>,
    direction: Direction,
) {
    let (shared, origin, cancel) = (link.shared, link.origin, link.cancel);
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(64);
    let reader = async {
        let mut rules = shared.rules.subscribe();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            while rules.borrow_and_update().mode_for(origin) == Mode::Blackhole {
                if rules.changed().await.is_err() {
                    return;
                }
            }
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if tx.send((Instant::now(), buf[..n].to_vec())).await.is_err() {
                return;
            }
        }
    };
    let writer = async {
        let mut rules = shared.rules.subscribe();
        while let Some((read_at, chunk)) = rx.recv().await {
            loop {
                let mode = rules.borrow_and_update().mode_for(origin);
                match mode {
                    Mode::Blackhole => {
                        if rules.changed().await.is_err() {
                            return;
                        }
                    }
                    Mode::Latency(latency) => {
                        tokio::time::sleep_until(read_at + latency).await;
                        break;
                    }
                    Mode::Pass | Mode::Refuse => break,
                }
            }
            match direction {
                Direction::Up => {
                    if let Some(reset_after) = spring_trap(shared, &chunk) {
                        link.replies_lost.store(true, Ordering::SeqCst);
                        let cancel = cancel.clone();
                        runtime().spawn(async move {
                            tokio::time::sleep(reset_after).await;
                            cancel.cancel();
                        });
                    }
                }
                Direction::Down => {
                    if link.replies_lost.load(Ordering::SeqCst) {
                        continue;
                    }
                    *lock(&shared.last_reply) = Some(std::time::Instant::now());
                }
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = async { tokio::join!(reader, writer) } => {}
    }
    if cancel.is_cancelled() {
        // A cut is a reset, not a clean close: both peers must see the connection die.
        let _ = from.as_ref().set_zero_linger();
        let _ = to.as_ref().set_zero_linger();
    }
}

/// Which known process opened the connection from `peer`, found through /proc.
async fn resolve_origin(shared: &Shared, peer: SocketAddr) -> Option<String> {
    let candidates: Vec<(u32, String)> = lock(&shared.origins)
        .iter()
        .map(|(pid, label)| (*pid, label.clone()))
        .collect();
    if candidates.is_empty() {
        return None;
    }
    let listen = shared.listen;
    tokio::task::spawn_blocking(move || {
        let inode = socket_inode(peer, listen)?;
        let needle = format!("socket:[{inode}]");
        candidates.into_iter().find_map(|(pid, label)| {
            let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
            fds.flatten()
                .any(|fd| {
                    std::fs::read_link(fd.path())
                        .is_ok_and(|target| target.as_os_str() == needle.as_str())
                })
                .then_some(label)
        })
    })
    .await
    .ok()
    .flatten()
}

/// The inode of the TCP socket whose local end is `local` and remote end is `remote`.
fn socket_inode(local: SocketAddr, remote: SocketAddr) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let want_local = proc_addr(local)?;
    let want_remote = proc_addr(remote)?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.len() > 9
            && fields[1].eq_ignore_ascii_case(&want_local)
            && fields[2].eq_ignore_ascii_case(&want_remote))
        .then(|| fields[9].parse().ok())
        .flatten()
    })
}

/// An IPv4 socket address as /proc/net/tcp writes it: the address in host byte order, hex.
fn proc_addr(addr: SocketAddr) -> Option<String> {
    match addr {
        SocketAddr::V4(v4) => {
            let ip = u32::from_ne_bytes(v4.ip().octets());
            Some(format!("{ip:08X}:{:04X}", v4.port()))
        }
        SocketAddr::V6(_) => None,
    }
}
