//! The health-check registry: checks with intervals, timeouts, dependencies, history and a
//! circuit breaker, rolled up into one status for `/health`, `/ready` and `on_health_change`.
//!
//! A check that fails 3 times in a row opens its breaker: it is not run again until a cooldown
//! of 5 intervals has passed, then runs once (half-open) and closes the breaker on success. A
//! check whose dependency is failing is not run and reports the dependency instead. The overall
//! status is `Unhealthy` if a critical check fails, `Degraded` if only non-critical ones do.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_core::clock::Clock;
use cluster_core::time::MonoTime;
use futures::future::BoxFuture;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::error::HookResult;

/// Failures in a row that open a check's breaker.
pub(crate) const BREAKER_THRESHOLD: u32 = 3;
const HISTORY: usize = 10;

/// The rolled-up health of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Every check passes.
    Healthy,
    /// A non-critical check fails.
    Degraded,
    /// A critical check fails.
    Unhealthy,
}

/// How and when a check runs.
#[derive(Debug, Clone)]
pub struct CheckSpec {
    /// The check's name.
    pub name: String,
    /// How often it runs.
    pub interval: Duration,
    /// How long one run may take.
    pub timeout: Duration,
    /// Checks that must pass for this one to be run.
    pub depends_on: Vec<String>,
    /// Whether a failure makes the node unhealthy (otherwise degraded).
    pub critical: bool,
}

impl CheckSpec {
    /// A critical check running every `interval` with a timeout of half of it.
    pub fn new(name: impl Into<String>, interval: Duration) -> Self {
        CheckSpec {
            name: name.into(),
            interval,
            timeout: interval / 2,
            depends_on: Vec::new(),
            critical: true,
        }
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs only while `check` passes.
    pub fn depends_on(mut self, check: impl Into<String>) -> Self {
        self.depends_on.push(check.into());
        self
    }

    /// Marks the check non-critical: failing makes the node degraded, not unhealthy.
    pub fn non_critical(mut self) -> Self {
        self.critical = false;
        self
    }
}

/// One run of a check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    /// Whether it passed.
    pub ok: bool,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// Milliseconds since the registry started.
    pub at_ms: u64,
}

/// What `/health` shows of one check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// The check.
    pub name: String,
    /// Whether its last result passed.
    pub ok: bool,
    /// Whether its breaker is open.
    pub breaker_open: bool,
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// Whether it is critical.
    pub critical: bool,
    /// Its last results, oldest first.
    pub history: Vec<CheckResult>,
}

type CheckFn = Arc<dyn Fn() -> BoxFuture<'static, HookResult> + Send + Sync>;

struct CheckState {
    spec: CheckSpec,
    history: VecDeque<CheckResult>,
    consecutive_failures: u32,
    breaker_open_until: Option<MonoTime>,
}

impl CheckState {
    fn ok(&self) -> bool {
        // A check that has not run yet does not count against the node.
        self.history.back().is_none_or(|r| r.ok)
    }
}

/// The registry of a node's health checks.
#[derive(Clone)]
pub struct HealthRegistry {
    checks: Arc<Mutex<BTreeMap<String, CheckState>>>,
    status: Arc<watch::Sender<HealthStatus>>,
    clock: Arc<dyn Clock>,
    started: MonoTime,
}

impl std::fmt::Debug for HealthRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthRegistry")
            .field("status", &*self.status.borrow())
            .finish()
    }
}

impl Default for HealthRegistry {
    /// A registry on tokio's clock.
    fn default() -> Self {
        HealthRegistry::new(Arc::new(coord_client::TokioClock))
    }
}

impl HealthRegistry {
    /// A registry whose breakers and result stamps run on `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        HealthRegistry {
            checks: Arc::default(),
            status: Arc::new(watch::channel(HealthStatus::Healthy).0),
            started: clock.now(),
            clock,
        }
    }

    /// The current overall status.
    pub fn status(&self) -> HealthStatus {
        *self.status.borrow()
    }

    /// A receiver of status changes.
    pub fn subscribe(&self) -> watch::Receiver<HealthStatus> {
        self.status.subscribe()
    }

    /// Every check's report.
    pub fn report(&self) -> Vec<CheckReport> {
        let now = self.clock.now();
        self.lock()
            .values()
            .map(|c| CheckReport {
                name: c.spec.name.clone(),
                ok: c.ok(),
                breaker_open: c.breaker_open_until.is_some_and(|t| t > now),
                consecutive_failures: c.consecutive_failures,
                critical: c.spec.critical,
                history: c.history.iter().cloned().collect(),
            })
            .collect()
    }

    /// Milliseconds since the registry started, on its clock: a result's stamp.
    fn since_start_ms(&self) -> u64 {
        self.clock
            .now()
            .saturating_duration_since(self.started)
            .as_millis() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, CheckState>> {
        self.checks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers `check` and runs it every `spec.interval` until `stop` fires.
    pub fn register<F, Fut>(&self, spec: CheckSpec, check: F, stop: CancellationToken)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HookResult> + Send + 'static,
    {
        let f: CheckFn = Arc::new(move || Box::pin(check()));
        let name = spec.name.clone();
        let interval = spec.interval;
        self.lock().insert(
            name.clone(),
            CheckState {
                spec,
                history: VecDeque::new(),
                consecutive_failures: 0,
                breaker_open_until: None,
            },
        );
        let registry = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = ticker.tick() => registry.run_once(&name, &f).await,
                }
            }
        });
    }

    /// Removes the check `name` (its loop ends with the stop token given to `register`): for
    /// checks that exist only while something runs, such as an app's service.
    pub fn remove(&self, name: &str) {
        let overall = {
            let mut checks = self.lock();
            checks.remove(name);
            rollup(&checks)
        };
        self.publish(overall);
    }

    /// Whether `name` has run and its last result passed.
    pub fn passing(&self, name: &str) -> bool {
        self.lock()
            .get(name)
            .is_some_and(|c| c.history.back().is_some_and(|r| r.ok))
    }

    /// Records a result for `name` from outside (for checks driven by events, not polling).
    pub fn set(&self, name: &str, result: Result<(), String>) {
        self.record(name, result);
    }

    async fn run_once(&self, name: &str, f: &CheckFn) {
        let (timeout, blocked) = {
            let checks = self.lock();
            let Some(state) = checks.get(name) else {
                return;
            };
            let now = self.clock.now();
            let failing_dep = state
                .spec
                .depends_on
                .iter()
                .find(|d| checks.get(*d).is_some_and(|c| !c.ok()))
                .cloned();
            let breaker = state.breaker_open_until.is_some_and(|t| t > now);
            (
                state.spec.timeout,
                failing_dep
                    .map(|d| Blocked::Dependency(format!("dependency {d} is failing")))
                    .or(breaker.then_some(Blocked::Breaker)),
            )
        };
        let result = match blocked {
            Some(Blocked::Breaker) => return, // the last real failure stands until the probe
            Some(Blocked::Dependency(reason)) => {
                self.record_blocked(name, reason);
                return;
            }
            None => match tokio::time::timeout(timeout, f()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("timed out after {timeout:?}")),
            },
        };
        self.record(name, result);
    }

    /// Records that `name` did not run because a dependency fails: it reports failing, but the
    /// skipped run is not a failure of its own (it neither opens nor extends its breaker).
    fn record_blocked(&self, name: &str, reason: String) {
        let at_ms = self.since_start_ms();
        let overall = {
            let mut checks = self.lock();
            let Some(state) = checks.get_mut(name) else {
                return;
            };
            push_history(
                state,
                CheckResult {
                    ok: false,
                    error: Some(reason),
                    at_ms,
                },
            );
            rollup(&checks)
        };
        self.publish(overall);
    }

    fn publish(&self, overall: HealthStatus) {
        self.status.send_if_modified(|s| {
            let changed = *s != overall;
            *s = overall;
            changed
        });
    }

    fn record(&self, name: &str, result: Result<(), String>) {
        let at_ms = self.since_start_ms();
        let overall = {
            let mut checks = self.lock();
            let Some(state) = checks.get_mut(name) else {
                return;
            };
            let ok = result.is_ok();
            metrics::counter!(crate::metric_definitions::HEALTH_CHECKS, "check" => name.to_owned(), "status" => if ok { "ok" } else { "fail" })
                .increment(1);
            push_history(
                state,
                CheckResult {
                    ok,
                    error: result.err(),
                    at_ms,
                },
            );
            if ok {
                state.consecutive_failures = 0;
                state.breaker_open_until = None;
            } else {
                state.consecutive_failures += 1;
                if state.consecutive_failures >= BREAKER_THRESHOLD {
                    state.breaker_open_until = Some(self.clock.now() + state.spec.interval * 5);
                }
            }
            rollup(&checks)
        };
        self.publish(overall);
    }
}

/// Why a scheduled run did not happen.
enum Blocked {
    /// The breaker is open and its cooldown has not passed.
    Breaker,
    /// A dependency fails (its description).
    Dependency(String),
}

fn push_history(state: &mut CheckState, result: CheckResult) {
    if state.history.len() == HISTORY {
        state.history.pop_front();
    }
    state.history.push_back(result);
}

fn rollup(checks: &BTreeMap<String, CheckState>) -> HealthStatus {
    checks.values().fold(HealthStatus::Healthy, |acc, c| {
        let s = match (c.ok(), c.spec.critical) {
            (true, _) => HealthStatus::Healthy,
            (false, true) => HealthStatus::Unhealthy,
            (false, false) => HealthStatus::Degraded,
        };
        acc.max(s)
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn the_breaker_runs_on_the_injected_clock() {
        let clock = Arc::new(cluster_core::clock::ManualClock::new());
        let registry = HealthRegistry::new(clock.clone());
        let stop = CancellationToken::new();
        let interval = Duration::from_secs(60);
        registry.register(
            CheckSpec::new("db", interval),
            || async { Ok(()) },
            stop.clone(),
        );
        stop.cancel();
        for _ in 0..BREAKER_THRESHOLD {
            registry.set("db", Err("down".into()));
        }
        let breaker_open = |r: &HealthRegistry| r.report().iter().any(|c| c.breaker_open);
        assert!(breaker_open(&registry), "three failures open the breaker");
        clock.advance(interval * 5 - Duration::from_millis(1));
        assert!(
            breaker_open(&registry),
            "it stays open for five intervals of the clock"
        );
        clock.advance(Duration::from_millis(1));
        assert!(
            !breaker_open(&registry),
            "and closes when the clock says so"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn breaker_opens_after_three_failures_and_dependents_wait() {
        let registry = HealthRegistry::default();
        let stop = CancellationToken::new();
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        registry.register(
            CheckSpec::new("db", Duration::from_secs(1)),
            move || {
                counted.fetch_add(1, Ordering::SeqCst);
                async { Err("down".into()) }
            },
            stop.clone(),
        );
        registry.register(
            CheckSpec::new("api", Duration::from_secs(1))
                .depends_on("db")
                .non_critical(),
            || async { Ok(()) },
            stop.clone(),
        );
        tokio::time::sleep(Duration::from_millis(3500)).await;
        assert_eq!(registry.status(), HealthStatus::Unhealthy);
        let report = registry.report();
        let db = report.iter().find(|r| r.name == "db").unwrap();
        assert!(db.breaker_open);
        let api = report.iter().find(|r| r.name == "api").unwrap();
        assert!(!api.ok, "a check whose dependency fails reports failing");
        assert!(
            api.history
                .last()
                .unwrap()
                .error
                .as_deref()
                .unwrap()
                .contains("dependency db")
        );
        let before = runs.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            before,
            "an open breaker does not run the check"
        );
        stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_breaker_probes_after_its_cooldown_and_closes_on_success() {
        let registry = HealthRegistry::default();
        let stop = CancellationToken::new();
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        // Fails its first 3 runs, then passes.
        registry.register(
            CheckSpec::new("db", Duration::from_secs(1)),
            move || {
                let n = counted.fetch_add(1, Ordering::SeqCst);
                async move { if n < 3 { Err("down".into()) } else { Ok(()) } }
            },
            stop.clone(),
        );
        registry.register(
            CheckSpec::new("api", Duration::from_secs(1)).depends_on("db"),
            || async { Ok(()) },
            stop.clone(),
        );
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert_eq!(registry.status(), HealthStatus::Unhealthy);
        assert!(
            registry
                .report()
                .iter()
                .any(|r| r.name == "db" && r.breaker_open)
        );
        // The cooldown is 5 intervals from the third failure (t = 2 s): nothing runs before it
        // ends, then the probe runs and passes.
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            3,
            "no run while the breaker is open"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(runs.load(Ordering::SeqCst) >= 4, "the half-open probe ran");
        let report = registry.report();
        let db = report.iter().find(|r| r.name == "db").unwrap();
        assert!(db.ok && !db.breaker_open && db.consecutive_failures == 0);
        let api = report.iter().find(|r| r.name == "api").unwrap();
        assert!(
            api.ok,
            "the dependent check runs again once its dependency passes"
        );
        assert_eq!(api.consecutive_failures, 0, "skipped runs are not failures");
        assert_eq!(registry.status(), HealthStatus::Healthy);
        stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn non_critical_failures_degrade() {
        let registry = HealthRegistry::default();
        registry.register(
            CheckSpec::new("cache", Duration::from_secs(1)).non_critical(),
            || async { Err("miss".into()) },
            CancellationToken::new(),
        );
        let mut status = registry.subscribe();
        status.changed().await.unwrap();
        assert_eq!(*status.borrow(), HealthStatus::Degraded);
    }
}
