//! `cargo xtask test`: the one command that says whether the tree is good.
//!
//! Every step is timed, and so is every test binary (from nextest's JUnit report), so a suite's
//! CI budget is measured, not guessed: the table is printed at the end, also when a step fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Wall time per step, in the order they ran.
#[derive(Default)]
struct Timings {
    steps: Vec<(String, Duration)>,
}

impl Timings {
    /// Runs `cmd` as step `name`, timing it; fails if it fails.
    fn step(&mut self, name: &str, mut cmd: Command) -> anyhow::Result<()> {
        println!("xtask test: {name}");
        let started = Instant::now();
        let status = cmd.status().with_context(|| format!("running {name}"));
        self.steps.push((name.to_owned(), started.elapsed()));
        let status = status?;
        if !status.success() {
            bail!("{name} failed ({status})");
        }
        Ok(())
    }

    /// Times `f` as step `name`.
    fn time<T>(&mut self, name: &str, f: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let out = f();
        self.steps.push((name.to_owned(), started.elapsed()));
        out
    }

    fn print(&self, total: Duration) {
        println!("xtask test: wall time per step");
        for (name, took) in &self.steps {
            println!("  {:>8}  {name}", secs(*took));
        }
        println!("  {:>8}  total", secs(total));
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn has_nextest() -> bool {
    cargo()
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs deps, the lints, the docs and the tests; then checks that no server outlived the run.
/// Prints the wall time of every step and of every test binary.
pub(crate) fn run(no_lint: bool, extra: &[String]) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut timings = Timings::default();
    // A run that stops before the tests must not print the previous run's per-binary times.
    let _ = std::fs::remove_file(junit_path());
    let outcome = run_steps(&mut timings, no_lint, extra);
    if let Err(e) = print_suites() {
        println!("xtask test: no per-binary times ({e:#})");
    }
    timings.print(started.elapsed());
    outcome?;
    println!("xtask test: all checks passed");
    Ok(())
}

fn run_steps(timings: &mut Timings, no_lint: bool, extra: &[String]) -> anyhow::Result<()> {
    timings.time("deps", crate::deps::run)?;
    if !no_lint {
        let mut fmt = cargo();
        fmt.args(["fmt", "--all", "--", "--check"]);
        timings.step("cargo fmt --check", fmt)?;
        let mut clippy = cargo();
        clippy.args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]);
        timings.step("cargo clippy -D warnings", clippy)?;
        // The workspace build unifies features; the runtime without its optional SQLite
        // replication is a build of its own.
        let mut lean = cargo();
        lean.args([
            "clippy",
            "-p",
            "cluster-runtime",
            "--lib",
            "--no-default-features",
            "--",
            "-D",
            "warnings",
        ]);
        timings.step("cargo clippy cluster-runtime without sqlite", lean)?;
        // rustdoc's lints (broken intra-doc links among them) only run when the docs are built.
        let mut doc = cargo();
        doc.args(["doc", "--no-deps", "--workspace", "--quiet"])
            .env("RUSTDOCFLAGS", "-D warnings");
        timings.step("cargo doc -D warnings", doc)?;
    }

    let pids_dir = target_dir().join(format!("testkit-pids-{}", std::process::id()));
    std::fs::create_dir_all(&pids_dir).context("creating the server registry directory")?;

    let outcome = if has_nextest() {
        // Built first on their own so the table tells build time from test time (a filtered
        // run builds what it needs as it goes).
        let built = if extra.is_empty() {
            let mut build = cargo();
            build.args(["nextest", "run", "--workspace", "--no-run"]);
            timings.step("build the tests", build)
        } else {
            Ok(())
        };
        built.and_then(|()| {
            let mut tests = cargo();
            tests
                .args(["nextest", "run", "--workspace", "--no-fail-fast"])
                .args(extra)
                .env(testkit::process::PIDS_DIR_VAR, &pids_dir);
            timings.step("cargo nextest run", tests).and_then(|()| {
                if extra.is_empty() {
                    let mut doc = cargo();
                    doc.args(["test", "--workspace", "--doc"]);
                    timings.step("cargo test --doc", doc)
                } else {
                    Ok(())
                }
            })
        })
    } else {
        println!("xtask test: cargo-nextest not found, using cargo test");
        let mut tests = cargo();
        tests
            .args(["test", "--workspace", "--no-fail-fast"])
            .args(extra)
            .env(testkit::process::PIDS_DIR_VAR, &pids_dir);
        timings.step("cargo test", tests)
    };

    let leaked = testkit::process::leaked_servers(&pids_dir);
    for server in &leaked {
        eprintln!(
            "xtask test: server still alive after the tests: pid {} {}",
            server.pid, server.cmdline
        );
        // SAFETY: plain syscall; we only signal processes our own tests started.
        unsafe {
            libc::kill(server.pid as libc::pid_t, libc::SIGKILL);
        }
    }
    let _ = std::fs::remove_dir_all(&pids_dir);
    outcome?;
    if !leaked.is_empty() {
        bail!(
            "{} server(s) outlived the tests (killed now); a test leaks its servers",
            leaked.len()
        );
    }
    Ok(())
}

/// Where nextest writes its JUnit report (`.config/nextest.toml`).
fn junit_path() -> PathBuf {
    target_dir()
        .join("nextest")
        .join("default")
        .join("junit.xml")
}

/// One test binary's figures from the JUnit report.
#[derive(Debug, Default, Clone, PartialEq)]
struct Suite {
    tests: usize,
    failed: usize,
    /// Sum of its tests' times: its wall time, as its integration tests run one at a time.
    total: Duration,
    slowest: Option<(String, Duration)>,
}

/// Prints each test binary's test count, summed time and slowest test, slowest binary first.
fn print_suites() -> anyhow::Result<()> {
    let path = junit_path();
    let xml =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", display(&path)))?;
    let suites = parse_junit(&xml);
    if suites.is_empty() {
        bail!("{} names no test", display(&path));
    }
    let mut rows: Vec<_> = suites.into_iter().collect();
    rows.sort_by(|a, b| b.1.total.cmp(&a.1.total).then(a.0.cmp(&b.0)));
    println!(
        "xtask test: time per test binary, and per area of an integration binary (sum of its tests), slowest first"
    );
    for (name, s) in rows {
        let failed = if s.failed > 0 {
            format!(", {} failed", s.failed)
        } else {
            String::new()
        };
        let slowest = s
            .slowest
            .map(|(t, d)| format!("; slowest {t} {}", secs(d)))
            .unwrap_or_default();
        println!(
            "  {:>8}  {name} ({} tests{failed}{slowest})",
            secs(s.total),
            s.tests
        );
    }
    Ok(())
}

fn display(path: &Path) -> String {
    path.strip_prefix(testkit::tools::workspace_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The value of attribute `name` in the tag text `tag`.
fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let len = tag[start..].find('"')?;
    Some(&tag[start..start + len])
}

/// Per test binary (`classname` of each `testcase`), and per module of a crate's `integration`
/// binary: count, failures, summed and slowest time.
fn parse_junit(xml: &str) -> BTreeMap<String, Suite> {
    let mut suites: BTreeMap<String, Suite> = BTreeMap::new();
    let mut rest = xml;
    while let Some(at) = rest.find("<testcase ") {
        rest = &rest[at..];
        let end = rest.find('>').unwrap_or(rest.len());
        let tag = &rest[..end];
        let self_closing = tag.ends_with('/');
        let body_end = if self_closing {
            end
        } else {
            rest.find("</testcase>").unwrap_or(end)
        };
        let failed = !self_closing && {
            let body = &rest[end..body_end];
            body.contains("<failure") || body.contains("<error")
        };
        if let (Some(class), Some(time)) = (attribute(tag, "classname"), attribute(tag, "time")) {
            let took = time
                .parse::<f64>()
                .ok()
                .filter(|t| t.is_finite() && *t >= 0.0)
                .map(Duration::from_secs_f64)
                .unwrap_or_default();
            let name = attribute(tag, "name").unwrap_or("?").to_owned();
            // One binary holds a crate's integration tests, a module per area: report areas.
            let group = match name.split_once("::") {
                Some((area, _)) if class.ends_with("::integration") => format!("{class}::{area}"),
                _ => class.to_owned(),
            };
            let suite = suites.entry(group).or_default();
            suite.tests += 1;
            suite.failed += usize::from(failed);
            suite.total += took;
            if suite.slowest.as_ref().is_none_or(|(_, d)| took > *d) {
                suite.slowest = Some((name, took));
            }
        }
        rest = &rest[end.max(1)..];
    }
    suites
}

/// The cargo target directory.
pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| testkit::tools::workspace_root().join("target"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junit_testcases_are_summed_per_binary_with_failures_and_the_slowest() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="nextest-run" tests="3" failures="1" errors="0">
  <testsuite name="cluster-runtime::t35_on_etcd" tests="2">
    <testcase name="a_claim" classname="cluster-runtime::t35_on_etcd" timestamp="x" time="0.600">
    </testcase>
    <testcase name="fails_over" classname="cluster-runtime::t35_on_etcd" time="12.250">
      <failure type="test failure">boom</failure>
    </testcase>
  </testsuite>
  <testsuite name="cluster-core" tests="1">
    <testcase name="ring::tests::unit" classname="cluster-core" time="0.010"/>
  </testsuite>
  <testsuite name="wal-sqlite::integration" tests="2">
    <testcase name="t20_restore::latest" classname="wal-sqlite::integration" time="1.0"/>
    <testcase name="t50_crash::kill" classname="wal-sqlite::integration" time="2.0"/>
  </testsuite>
</testsuites>"#;
        let suites = parse_junit(xml);
        assert_eq!(suites.len(), 4, "{suites:?}");
        assert_eq!(suites["wal-sqlite::integration::t50_crash"].tests, 1);
        let etcd = &suites["cluster-runtime::t35_on_etcd"];
        assert_eq!((etcd.tests, etcd.failed), (2, 1));
        assert_eq!(etcd.total, Duration::from_millis(12_850));
        assert_eq!(
            etcd.slowest,
            Some(("fails_over".to_owned(), Duration::from_millis(12_250)))
        );
        let core = &suites["cluster-core"];
        assert_eq!((core.tests, core.failed), (1, 0));
    }
}
