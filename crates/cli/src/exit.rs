//! The exit codes every `cluster` command uses.
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | done |
//! | 1 | any other failure (not found, a store error) |
//! | 2 | usage or configuration error |
//! | 3 | a server or agent could not be reached |
//! | 4 | refused (authentication, policy, a stale token, a hook) |
//! | 5 | timed out |

use std::process::ExitCode;

/// Why a command failed, which decides its exit code.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Usage or configuration (exit 2).
    #[error("{0}")]
    Config(String),
    /// A server or agent could not be reached (exit 3).
    #[error("{0}")]
    Unreachable(String),
    /// Refused (exit 4).
    #[error("{0}")]
    Refused(String),
    /// Timed out (exit 5).
    #[error("{0}")]
    TimedOut(String),
    /// Anything else (exit 1).
    #[error("{0}")]
    Other(String),
}

impl Failure {
    /// The process exit code.
    pub fn code(&self) -> u8 {
        match self {
            Failure::Other(_) => 1,
            Failure::Config(_) => 2,
            Failure::Unreachable(_) => 3,
            Failure::Refused(_) => 4,
            Failure::TimedOut(_) => 5,
        }
    }

    /// As a process exit code.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code())
    }
}
