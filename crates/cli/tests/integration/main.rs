//! The `cluster` binary, run as users run it (`CARGO_BIN_EXE_cluster`), against real servers.
#![allow(clippy::disallowed_methods)]

mod admin_cmds;
mod agent_backends;
mod config_cmd;
mod service_failover;

use std::path::Path;
use std::process::Output;

/// The built binary.
pub(crate) fn cluster() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cluster"));
    // The test's own CLUSTER_* variables (xtask's) must not reach the agent's config.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CLUSTER_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Runs `cluster args...` with `env`, in `dir`.
pub(crate) fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = cluster();
    cmd.current_dir(dir).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run the cluster binary")
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
