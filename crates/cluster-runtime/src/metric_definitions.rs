//! Every metric the runtime exports, by name. Names from the rollout checklist are kept exactly.

/// Ownership changes, by `reason` (`claimed`, `released`, `lost`, `handoff`).
pub const OWNERSHIP_CHANGES: &str = "cluster_ownership_changes_total";
/// Leadership changes seen by this node, by `app`.
pub const LEADER_CHANGES: &str = "cluster_leader_changes_total";
/// The fencing token of the current term this node leads, by `app` (0 when not leading).
pub const ELECTION_EPOCH: &str = "cluster_election_epoch";
/// Hook run time in seconds, by `hook`, `app` and `status`.
pub const HOOK_DURATION: &str = "cluster_hook_duration_seconds";
/// 1 while this node's session (lease) is alive.
pub const SESSION_ALIVE: &str = "cluster_session_alive";
/// Sessions lost, by `reason` (`expired`, `revoked`).
pub const SESSIONS_LOST: &str = "cluster_sessions_lost_total";
/// Live members seen by this node.
pub const MEMBERS: &str = "cluster_members";
/// Partitions this node owns, by `app`.
pub const OWNED_PARTITIONS: &str = "cluster_owned_partitions";
/// Audit events that could not be published (the queue was full).
pub const AUDIT_DROPPED: &str = "cluster_audit_dropped_total";
/// Health check results, by `check` and `status`.
pub const HEALTH_CHECKS: &str = "cluster_health_checks_total";
/// Graceful handoffs that released a partition before its outbox was drained, by `app`.
pub const OUTBOX_DRAIN_TIMEOUTS: &str = "cluster_outbox_drain_timeouts_total";
/// Seconds from winning an election to the term serving (database promoted, service ready,
/// `on_active` done), by `app`.
pub const FAILOVER_DURATION: &str = "cluster_failover_duration_seconds";
