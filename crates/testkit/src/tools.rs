//! The third-party programs the tests and the demo run, where to find them, and which versions
//! are good enough.
//!
//! Lookup order for each [`Tool`]: its override variable (`CLUSTER_NATS_SERVER`, ...), then the
//! project-local `.tools/bin` and `.tools/venv/bin`, then `PATH`. A binary that is found but too
//! old (or in a known-bad range) is refused with a message saying why. `cargo xtask deps` uses the
//! same rules to decide what to install, so what it accepts is exactly what the tests accept.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A program the test harness or the demo needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tool {
    /// `nats-server`, 2.11 or newer (per-message TTL).
    NatsServer,
    /// `etcd`, 3.4.x or 3.5.3+ (3.5.0-3.5.2 can corrupt a member killed under load, etcd#13766).
    Etcd,
    /// `etcdctl`, same rule as `etcd`.
    Etcdctl,
    /// `redis-server`, 6.2 or newer.
    RedisServer,
    /// `protoc`, needed by the etcd client's build script.
    Protoc,
    /// `litestream`, 0.5 or newer, used only by side-by-side benchmarks.
    Litestream,
}

/// A dotted version number, compared numerically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    /// Major part.
    pub major: u32,
    /// Minor part.
    pub minor: u32,
    /// Patch part.
    pub patch: u32,
}

impl Version {
    /// A version from its three parts.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }

    /// The first `X.Y[.Z]` found in `text`, ignoring a leading `v`.
    pub fn find_in(text: &str) -> Option<Self> {
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i].is_ascii_digit()
                && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'v')
            {
                let rest = &text[i..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                    .unwrap_or(rest.len());
                let parts: Vec<u32> = rest[..end]
                    .split('.')
                    .filter(|p| !p.is_empty())
                    .map_while(|p| p.parse().ok())
                    .collect();
                if parts.len() >= 2 {
                    return Some(Self::new(
                        parts[0],
                        parts[1],
                        parts.get(2).copied().unwrap_or(0),
                    ));
                }
                i += end.max(1);
            } else {
                i += 1;
            }
        }
        None
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Why a tool could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// Nothing by that name was found anywhere the lookup searches.
    #[error(
        "{tool} not found (looked in ${var}, .tools/ and PATH); run `cargo xtask deps` to install it"
    )]
    NotFound {
        /// The program.
        tool: Tool,
        /// Its override variable.
        var: &'static str,
    },
    /// The binary exists but did not report a version we could read.
    #[error("{tool} at {path} did not report a readable version: {output}")]
    UnreadableVersion {
        /// The program.
        tool: Tool,
        /// Where it was found.
        path: PathBuf,
        /// What it printed.
        output: String,
    },
    /// The binary is older than required or in a known-bad range.
    #[error(
        "{tool} {version} at {path} is refused: {reason}; run `cargo xtask deps` or set ${var}"
    )]
    Refused {
        /// The program.
        tool: Tool,
        /// Where it was found.
        path: PathBuf,
        /// The version it reported.
        version: Version,
        /// Why it is not good enough.
        reason: &'static str,
        /// Its override variable.
        var: &'static str,
    },
}

/// A tool that was found and accepted.
#[derive(Debug, Clone)]
pub struct Located {
    /// The program.
    pub tool: Tool,
    /// Its absolute path.
    pub path: PathBuf,
    /// The version it reported.
    pub version: Version,
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.binary_name())
    }
}

impl Tool {
    /// Every tool, in the order `cargo xtask deps` checks them.
    pub const ALL: [Tool; 6] = [
        Tool::Protoc,
        Tool::Etcd,
        Tool::Etcdctl,
        Tool::NatsServer,
        Tool::RedisServer,
        Tool::Litestream,
    ];

    /// The file name of the executable.
    pub const fn binary_name(self) -> &'static str {
        match self {
            Tool::NatsServer => "nats-server",
            Tool::Etcd => "etcd",
            Tool::Etcdctl => "etcdctl",
            Tool::RedisServer => "redis-server",
            Tool::Protoc => "protoc",
            Tool::Litestream => "litestream",
        }
    }

    /// The environment variable that overrides the lookup.
    pub const fn override_var(self) -> &'static str {
        match self {
            Tool::NatsServer => "CLUSTER_NATS_SERVER",
            Tool::Etcd => "CLUSTER_ETCD",
            Tool::Etcdctl => "CLUSTER_ETCDCTL",
            Tool::RedisServer => "CLUSTER_REDIS_SERVER",
            Tool::Protoc => "PROTOC",
            Tool::Litestream => "CLUSTER_LITESTREAM",
        }
    }

    /// The arguments that make the binary print its version.
    pub const fn version_args(self) -> &'static [&'static str] {
        match self {
            Tool::NatsServer | Tool::Etcd | Tool::RedisServer | Tool::Protoc => &["--version"],
            Tool::Etcdctl | Tool::Litestream => &["version"],
        }
    }

    /// The oldest acceptable version, and a known-bad range `[from, to]` if any.
    pub const fn policy(self) -> (Version, Option<(Version, Version)>) {
        match self {
            Tool::NatsServer => (Version::new(2, 11, 0), None),
            Tool::Etcd | Tool::Etcdctl => (
                Version::new(3, 4, 0),
                Some((Version::new(3, 5, 0), Version::new(3, 5, 2))),
            ),
            Tool::RedisServer => (Version::new(6, 2, 0), None),
            Tool::Protoc => (Version::new(3, 15, 0), None),
            Tool::Litestream => (Version::new(0, 5, 0), None),
        }
    }

    /// Whether `version` is acceptable, and why not when it is not.
    pub fn judge(self, version: Version) -> Result<(), &'static str> {
        let (min, bad) = self.policy();
        if version < min {
            return Err(match self {
                Tool::NatsServer => "older than 2.11, which per-message TTL needs",
                Tool::Etcd | Tool::Etcdctl => "older than 3.4",
                Tool::RedisServer => "older than 6.2",
                Tool::Protoc => "older than 3.15",
                Tool::Litestream => "older than 0.5",
            });
        }
        if let Some((from, to)) = bad
            && version >= from
            && version <= to
        {
            return Err(
                "etcd 3.5.0-3.5.2 can corrupt a member killed under write load (etcd#13766)",
            );
        }
        Ok(())
    }

    /// Finds the binary and checks its version.
    pub fn locate(self) -> Result<Located, ToolError> {
        let path = self.find().ok_or(ToolError::NotFound {
            tool: self,
            var: self.override_var(),
        })?;
        let output = Command::new(&path)
            .args(self.version_args())
            .env("ETCDCTL_API", "3")
            .output()
            .map(|o| {
                let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
                s.push_str(&String::from_utf8_lossy(&o.stderr));
                s
            })
            .unwrap_or_else(|e| e.to_string());
        let version = Version::find_in(&output).ok_or_else(|| ToolError::UnreadableVersion {
            tool: self,
            path: path.clone(),
            output: output.trim().to_owned(),
        })?;
        self.judge(version)
            .and_then(|()| self.check_companions(&path))
            .map_err(|reason| ToolError::Refused {
                tool: self,
                path: path.clone(),
                version,
                reason,
                var: self.override_var(),
            })?;
        Ok(Located {
            tool: self,
            path,
            version,
        })
    }

    /// Checks files a tool needs besides its binary.
    ///
    /// protoc needs the well-known types (`google/protobuf/descriptor.proto`), which Debian ships
    /// in `libprotobuf-dev`, next to its own `include/` directory.
    fn check_companions(self, path: &Path) -> Result<(), &'static str> {
        if self != Tool::Protoc {
            return Ok(());
        }
        let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        let found = path
            .ancestors()
            .skip(2)
            .take(1)
            .map(|prefix| prefix.join("include/google/protobuf/descriptor.proto"))
            .chain(std::iter::once(PathBuf::from(
                "/usr/include/google/protobuf/descriptor.proto",
            )))
            .any(|p| p.is_file());
        if found {
            Ok(())
        } else {
            Err(
                "the well-known .proto files (google/protobuf/descriptor.proto, Debian's libprotobuf-dev) are missing",
            )
        }
    }

    /// The first candidate path that exists, without checking its version.
    pub fn find(self) -> Option<PathBuf> {
        if let Some(p) = std::env::var_os(self.override_var()).filter(|v| !v.is_empty()) {
            let p = PathBuf::from(p);
            return if p.is_file() {
                Some(p)
            } else {
                which(Path::new(&p))
            };
        }
        let tools = tools_dir();
        for dir in [tools.join("bin"), tools.join("venv").join("bin")] {
            let candidate = dir.join(self.binary_name());
            if is_executable(&candidate) {
                return Some(candidate);
            }
        }
        which(Path::new(self.binary_name()))
    }
}

/// The project-local tools directory: `$CLUSTER_TOOLS_DIR`, or `.tools/` at the workspace root.
pub fn tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CLUSTER_TOOLS_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    workspace_root().join(".tools")
}

/// The workspace root, found from this crate's manifest directory.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest.to_path_buf())
}

fn which(name: &Path) -> Option<PathBuf> {
    if name.components().count() > 1 {
        return is_executable(name).then(|| name.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_versions_as_each_tool_prints_them() {
        let cases = [
            ("nats-server: v2.15.1", Version::new(2, 15, 1)),
            (
                "etcd Version: 3.4.23\nGit SHA: Not provided",
                Version::new(3, 4, 23),
            ),
            (
                "etcdctl version: 3.4.23\nAPI version: 3.4",
                Version::new(3, 4, 23),
            ),
            (
                "Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64",
                Version::new(7, 0, 15),
            ),
            ("libprotoc 3.21.12", Version::new(3, 21, 12)),
            ("v0.5.17", Version::new(0, 5, 17)),
        ];
        for (text, want) in cases {
            assert_eq!(Version::find_in(text), Some(want), "{text}");
        }
        assert_eq!(Version::find_in("no digits here"), None);
    }

    #[test]
    fn refuses_old_and_known_bad_versions() {
        assert!(Tool::NatsServer.judge(Version::new(2, 9, 10)).is_err());
        assert!(Tool::NatsServer.judge(Version::new(2, 11, 0)).is_ok());
        assert!(Tool::Etcd.judge(Version::new(3, 4, 23)).is_ok());
        assert!(Tool::Etcd.judge(Version::new(3, 5, 1)).is_err());
        assert!(Tool::Etcd.judge(Version::new(3, 5, 2)).is_err());
        assert!(Tool::Etcd.judge(Version::new(3, 5, 3)).is_ok());
        assert!(Tool::Etcd.judge(Version::new(3, 3, 9)).is_err());
        assert!(Tool::RedisServer.judge(Version::new(5, 0, 0)).is_err());
    }
}
