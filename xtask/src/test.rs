//! `cargo xtask test`: the one command that says whether the tree is good.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn step(name: &str, mut cmd: Command) -> anyhow::Result<()> {
    println!("xtask test: {name}");
    let status = cmd.status().with_context(|| format!("running {name}"))?;
    if !status.success() {
        bail!("{name} failed ({status})");
    }
    Ok(())
}

fn has_nextest() -> bool {
    cargo()
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs deps, the lints, and the tests; then checks that no server outlived the run.
pub(crate) fn run(no_lint: bool, extra: &[String]) -> anyhow::Result<()> {
    crate::deps::run()?;
    if !no_lint {
        let mut fmt = cargo();
        fmt.args(["fmt", "--all", "--", "--check"]);
        step("cargo fmt --check", fmt)?;
        let mut clippy = cargo();
        clippy.args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]);
        step("cargo clippy -D warnings", clippy)?;
    }

    let pids_dir = target_dir().join(format!("testkit-pids-{}", std::process::id()));
    std::fs::create_dir_all(&pids_dir).context("creating the server registry directory")?;

    let outcome = if has_nextest() {
        let mut tests = cargo();
        tests
            .args(["nextest", "run", "--workspace", "--no-fail-fast"])
            .args(extra)
            .env(testkit::process::PIDS_DIR_VAR, &pids_dir);
        step("cargo nextest run", tests).and_then(|()| {
            if extra.is_empty() {
                let mut doc = cargo();
                doc.args(["test", "--workspace", "--doc"]);
                step("cargo test --doc", doc)
            } else {
                Ok(())
            }
        })
    } else {
        println!("xtask test: cargo-nextest not found, using cargo test");
        let mut tests = cargo();
        tests
            .args(["test", "--workspace", "--no-fail-fast"])
            .args(extra)
            .env(testkit::process::PIDS_DIR_VAR, &pids_dir);
        step("cargo test", tests)
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
    println!("xtask test: all checks passed");
    Ok(())
}

/// The cargo target directory.
pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| testkit::tools::workspace_root().join("target"))
}
