//! This node's own health state, from cluster-core's node health machine.
//!
//! Other nodes cannot see a node's lease renewals, so they only see members come and go. A node
//! judges itself: every acknowledged renewal is a heartbeat; two heartbeats without one make it
//! `suspect`; reaching its renew deadline (the session is lost) makes it `dead` for that session;
//! a new session starts it `joining` again; a graceful leave makes it `left`. A failing critical
//! health check shows it `suspect` too.

use std::time::Duration;

use cluster_core::node_health::{HealthState, HealthThresholds, NodeHealth, Observation};
use coord_client::mono_now;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::health::HealthStatus;
use crate::platform::{NodeState, Platform};

/// Follows the node's session and lifecycle and publishes its health state.
pub(crate) async fn track(
    platform: Platform,
    tx: watch::Sender<HealthState>,
    stop: CancellationToken,
) {
    let timing = platform.timing();
    let heartbeat = timing.heartbeat();
    let thresholds = HealthThresholds {
        suspect_after: heartbeat * 2,
        dead_after: timing.lease_ttl - timing.lease_margin,
        join_heartbeats: 1,
    };
    let mut health = NodeHealth::joining(thresholds, mono_now());
    let mut last_deadline = None;
    let mut tick = tokio::time::interval(Duration::from_millis(100).min(heartbeat));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = mono_now();
        let state = platform.state();
        if matches!(state, NodeState::Leaving | NodeState::Stopped) {
            health.observe(Observation::LeaveAnnounced);
        } else {
            let deadline = platform.session_deadline();
            if health.state().is_final() && deadline.is_some() && deadline != last_deadline {
                // A new session after a lost one: a new life.
                health = NodeHealth::joining(thresholds, now);
            }
            if deadline.is_some() && deadline != last_deadline {
                health.observe(Observation::Heartbeat { at: now });
            } else {
                health.observe(Observation::Tick { now });
            }
            last_deadline = deadline;
        }
        let mut shown = health.state();
        if shown == HealthState::Alive && platform.health().status() == HealthStatus::Unhealthy {
            shown = HealthState::Suspect;
        }
        tx.send_if_modified(|s| {
            let changed = *s != shown;
            *s = shown;
            changed
        });
    }
}
