//! A Consul **test server**: an in-process implementation of the parts of Consul's HTTP API the
//! coordination adapter uses, written from Consul's API documentation because no Consul binary
//! can be installed here. It is not Consul and not a mock of one: it keeps the documented
//! semantics, including the inconvenient ones, so an adapter that passes against it has met
//! them.
//!
//! What it implements (single datacenter, single server, KV and sessions only):
//!
//! - **Index**: a raft index that only grows; `X-Consul-Index` on every read. Single-key reads
//!   answer with the KV table's index, prefix reads with the newest index under the prefix
//!   (entries and tombstones), so a prefix index goes backwards when tombstones are reaped
//!   ([`ConsulServer::reap_tombstones`]), as Consul's blocking-query guide warns.
//! - **KV** (`/v1/kv/<key>`): `GET` with `recurse`, `keys`, `separator`, `raw` (404 when
//!   nothing matches); `PUT` with `flags`, `cas` (0 = create only), `acquire`, `release`
//!   (answer `true`/`false`); `DELETE` with `recurse` and `cas`. Entries carry `CreateIndex`,
//!   `ModifyIndex`, `LockIndex`, `Flags`, `Session`. Values up to 512 kB.
//! - **Sessions** (`/v1/session/create|renew|destroy|info|list|node`): TTL between the
//!   configured minimum ([`ConsulOptions::session_ttl_min`], 10 s as in Consul by default) and
//!   24 h; `Behavior` release or delete; `LockDelay` 15 s by default (0 disables, 60 s at
//!   most); `Checks`/`NodeChecks` default to `serfHealth`, `[]` means TTL only. A session
//!   expires anywhere between its TTL and twice its TTL after its last renewal (randomised:
//!   Consul only promises the lower bound). [`ConsulServer::leader_change`] restarts every
//!   session's TTL timer, as a new Consul leader does; so does [`ConsulServer::restart`].
//! - **Lock-delay**: when a session is invalidated (expiry or destroy), the keys it held cannot
//!   be acquired again for its lock-delay.
//! - **Blocking queries** (`?index=&wait=`): answer when the index passes `index`, or after
//!   `wait` (5 min by default, 10 min at most) plus a random extra of up to `wait/16`.
//! - **Transactions** (`/v1/txn`): KV verbs `set`, `cas`, `lock`, `unlock`, `get`,
//!   `get-or-empty`, `get-tree`, `check-index`, `check-session`, `check-not-exists`, `delete`,
//!   `delete-tree`, `delete-cas`; 200 with `Results` or 409 with `Errors` (`OpIndex`, `What`);
//!   at most 128 operations.
//! - **ACL**: with [`ConsulOptions::acl_token`] set, a request without that token
//!   (`X-Consul-Token`, `Authorization: Bearer` or `?token=`) gets 403.
//! - **Datacenter**: `?dc=` naming another datacenter gets "No path to datacenter".
//! - **Outages**: [`ConsulServer::stop`] closes the port and every open connection, keeping the
//!   state; [`ConsulServer::restart`] serves again on the same port.
//!
//! It runs on testkit's own runtime, so it keeps real time and keeps answering while a test
//! blocks or pauses its own clock.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let consul = testkit::ConsulServer::start(testkit::ConsulOptions::default())?;
//! println!("Consul test server at {}", consul.url());
//! # Ok(()) }
//! ```

mod duration;
mod http;
mod store;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use http::Shared;
use store::Store;

/// How the Consul test server is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsulOptions {
    /// The ACL token every request must present; `None` for no ACLs.
    pub acl_token: Option<String>,
    /// The datacenter's name (`dc1`).
    pub datacenter: String,
    /// The agent's node name, the default node of sessions.
    pub node_name: String,
    /// The shortest session TTL accepted (Consul's `session_ttl_min`, 10 s); lower it for fast
    /// tests.
    pub session_ttl_min: Duration,
}

impl Default for ConsulOptions {
    fn default() -> Self {
        ConsulOptions {
            acl_token: None,
            datacenter: "dc1".to_owned(),
            node_name: "testkit-consul".to_owned(),
            session_ttl_min: Duration::from_secs(10),
        }
    }
}

/// How often the server looks for sessions whose TTL timer fired.
const EXPIRY_SWEEP: Duration = Duration::from_millis(20);

/// How long a restart retries binding the old port.
const REBIND_TIMEOUT: Duration = Duration::from_secs(10);

/// testkit's runtime for Consul test servers: real time, independent of the test's runtime.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("testkit-consul")
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => panic!("testkit: cannot build the Consul test server runtime: {e}"),
        }
    })
}

/// A running Consul test server on a loopback port. Dropping it stops it.
#[derive(Debug)]
pub struct ConsulServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    serving: Option<CancellationToken>,
    sweeper: CancellationToken,
}

impl ConsulServer {
    /// Starts a server on a free loopback port.
    pub fn start(options: ConsulOptions) -> std::io::Result<ConsulServer> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let (changes, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            store: std::sync::Mutex::new(Store::new()),
            changes,
            options,
            serving: AtomicBool::new(false),
            blocked: std::sync::atomic::AtomicUsize::new(0),
        });
        let sweeper = CancellationToken::new();
        runtime().spawn(sweep_expired_sessions(shared.clone(), sweeper.clone()));
        let mut server = ConsulServer {
            shared,
            addr,
            serving: None,
            sweeper,
        };
        server.serve(listener)?;
        tracing::info!(%addr, "Consul test server started");
        Ok(server)
    }

    fn serve(&mut self, listener: std::net::TcpListener) -> std::io::Result<()> {
        listener.set_nonblocking(true)?;
        let listener = {
            let _guard = runtime().enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let cancel = CancellationToken::new();
        self.shared.serving.store(true, Ordering::SeqCst);
        runtime().spawn(http::serve(self.shared.clone(), listener, cancel.clone()));
        self.serving = Some(cancel);
        Ok(())
    }

    /// The HTTP address, e.g. `127.0.0.1:41234` (the form of `CONSUL_HTTP_ADDR`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The options it runs with.
    pub fn options(&self) -> &ConsulOptions {
        &self.shared.options
    }

    /// Whether it is serving (not stopped).
    pub fn is_running(&self) -> bool {
        self.serving.is_some()
    }

    /// Closes the port and every open connection (blocking queries included); the state is
    /// kept, and sessions do not expire while the server is down.
    pub fn stop(&mut self) {
        if let Some(cancel) = self.serving.take() {
            self.shared.serving.store(false, Ordering::SeqCst);
            cancel.cancel();
            tracing::info!(addr = %self.addr, "Consul test server stopped");
        }
    }

    /// Serves again on the same port with the same state. As after an election, every
    /// session's TTL timer starts again.
    pub async fn restart(&mut self) -> std::io::Result<()> {
        if self.serving.is_some() {
            return Ok(());
        }
        let deadline = Instant::now() + REBIND_TIMEOUT;
        let listener = loop {
            match std::net::TcpListener::bind(self.addr) {
                Ok(listener) => break listener,
                Err(e)
                    if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(e),
            }
        };
        self.leader_change();
        self.serve(listener)?;
        tracing::info!(addr = %self.addr, "Consul test server restarted");
        Ok(())
    }

    /// Simulates a change of Consul leader: every session's TTL timer starts again from now, so
    /// an unrenewed session lives longer than its TTL said.
    pub fn leader_change(&self) {
        let now = Instant::now();
        self.shared.with_store(|s| s.reset_session_timers(now));
    }

    /// Reaps every KV tombstone, as Consul does some time after deletes. Prefix indexes may go
    /// backwards afterwards.
    pub fn reap_tombstones(&self) {
        self.shared.with_store(Store::reap_tombstones);
    }

    /// How many blocking queries are waiting for a change now: a test that needs a query to
    /// be parked at the server waits for this rather than sleeping.
    pub fn blocking_queries(&self) -> usize {
        self.shared.blocked.load(Ordering::SeqCst)
    }

    /// The current raft index.
    pub fn index(&self) -> u64 {
        self.shared.with_store(|s| s.raft_index())
    }
}

impl Drop for ConsulServer {
    fn drop(&mut self) {
        self.stop();
        self.sweeper.cancel();
    }
}

async fn sweep_expired_sessions(shared: Arc<Shared>, cancel: CancellationToken) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(EXPIRY_SWEEP) => {}
        }
        if shared.serving() {
            let now = Instant::now();
            let expired = shared.with_store(|s| s.expire_sessions(now));
            if expired {
                tracing::debug!("Consul test server: sessions expired");
            }
        }
    }
}
