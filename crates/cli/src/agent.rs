//! `cluster agent`: compose the node from its config and run it until SIGTERM or SIGINT.

use crate::compose::compose;
use crate::config::AgentConfig;
use crate::exit::Failure;

/// Runs the node until a stop signal, then leaves the cluster gracefully (hooks, drains,
/// releases, within `timing.shutdown_timeout`).
pub async fn run(config: AgentConfig) -> Result<(), Failure> {
    let composed = compose(&config).await?;
    tracing::info!(
        platform = %config.platform.name,
        node = %config.node.id,
        coordination = config.coordination.backend(),
        http = %config.node.http_addr,
        data_dir = %config.node.data_dir.display(),
        apps = ?composed.apps,
        not_placed = ?composed.not_placed,
        "agent starting"
    );
    let result = composed.platform.run(stop_signal()).await;
    composed.checks.cancel();
    match result {
        Ok(()) => {
            tracing::info!("agent stopped");
            Ok(())
        }
        Err(e) => Err(runtime_failure(e)),
    }
}

/// The exit class of a runtime error: a store that cannot be reached is 3, a refusal (the
/// node id in use) 4, a bad setting 2.
fn runtime_failure(e: cluster_runtime::RuntimeError) -> Failure {
    use cluster_core::coordination::CoordError;
    use cluster_core::error::Retryable;
    use cluster_runtime::RuntimeError;
    let text = e.to_string();
    match e {
        RuntimeError::Config(_) | RuntimeError::Id(_) => Failure::Config(text),
        RuntimeError::Coord(CoordError::NodeIdInUse { .. }) => Failure::Refused(text),
        RuntimeError::Coord(c) if c.is_retryable() => Failure::Unreachable(text),
        RuntimeError::Http(_) => Failure::Config(format!("node.http_addr: {text}")),
        RuntimeError::Timeout(_) => Failure::TimedOut(text),
        _ => Failure::Other(text),
    }
}

/// SIGTERM or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the agent runs until killed.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: leaving the cluster"),
        _ = int.recv() => tracing::info!("SIGINT: leaving the cluster"),
    }
}
