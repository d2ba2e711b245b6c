//! The `cluster` binary's library: the agent's configuration ([`config`]), the composition root
//! that turns it into adapters and a running platform ([`compose`], [`agent`]), the config
//! template ([`init`]) and the exit codes every command shares ([`exit`]).
#![warn(missing_docs)]
#![warn(clippy::unwrap_used)]

pub mod admin;
pub mod agent;
pub mod compose;
pub mod config;
pub mod exit;
pub mod init;
pub mod probe;
