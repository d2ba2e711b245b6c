//! Backends that run an app's workload: a process, a systemd unit or a docker container.
#![warn(clippy::unwrap_used)]
