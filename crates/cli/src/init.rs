//! `cluster init`: a commented configuration that passes `cluster config check` as written.

use std::path::Path;

use crate::exit::Failure;

/// A three-node production layout on etcd and NATS (edit the addresses and the node id).
pub const PRODUCTION: &str = r#"# cluster agent configuration. Check it with `cluster config check FILE`.
# Every field can be overridden: CLUSTER_NODE__ID=n2 (environment), --set node.id=n2 (flag).
# Durations are written as "500ms", "10s", "1m 30s".

[platform]
# Nodes with the same platform name on the same store form one cluster.
name = "main"

[node]
# Unique in the platform: letters, digits, '.', '_', '-'.
id = "n1"
# Where this node keeps its files (replicas, snapshots, service data).
data_dir = "/var/lib/cluster"
# /health, /ready, /status and /metrics.
http_addr = "127.0.0.1:7600"
# The address other nodes and the CLI reach this agent at (defaults to http_addr).
# advertise = "10.0.0.1:7600"
# Matched by placement rules ([app.placement] on_label).
labels = { zone = "a" }

[timing]
# A paused or cut-off node stops acting lease_ttl - lease_margin after its last renewal.
lease_ttl = "10s"
lease_margin = "2s"
hook_timeout = "5s"
shutdown_timeout = "30s"
drain_timeout = "10s"

[coordination]
# One of etcd, consul, nats, mem (mem: one node, in this process only).
backend = "etcd"

[coordination.etcd]
endpoints = ["http://127.0.0.1:2379"]
call_timeout = "2s"

# [coordination.consul]
# address = "127.0.0.1:8500"

# [coordination.nats]
# servers = ["nats://127.0.0.1:4222"]

[bus]
# The event bus: nats (JetStream), or mem with the mem store.
backend = "nats"
# Copies of each object-store bucket (3 on a NATS cluster).
object_replicas = 1

[bus.nats]
url = "nats://127.0.0.1:4222"

[admin]
# The token mutating admin calls (cluster stepdown, kv put, snapshot create...) must carry.
token_file = "/etc/cluster/admin-token"

# One leader at a time, the others standing by, with a replicated SQLite database.
[[app]]
name = "ledger"
mode = "active_passive"

[app.sqlite]
# Relative paths are under node.data_dir.
path = "ledger/ledger.db"
snapshot_interval = "1h"
keep_snapshots = 3

[[app.health]]
name = "port"
kind = "tcp"
address = "127.0.0.1:8080"
interval = "5s"
timeout = "1s"

# Work spread over the nodes by partition.
[[app]]
name = "jobs"
mode = "ring"
partitions = 64

# Only on nodes labelled zone = "a".
[app.placement]
on_label = { zone = "a" }
"#;

/// One node on the in-memory store and bus: `cluster agent --dev --config FILE`.
pub const DEV: &str = r#"# cluster agent configuration for one development node: no server to run.
# Start it with `cluster agent --dev --config FILE` (or just `cluster agent --dev`).
# Durations are written as "500ms", "10s", "1m 30s".

[platform]
name = "dev"

[node]
id = "dev"
data_dir = ".cluster-dev"
http_addr = "127.0.0.1:7600"

[coordination]
backend = "mem"

[bus]
backend = "mem"

[[app]]
name = "web"
mode = "active_passive"

[[app]]
name = "jobs"
mode = "ring"
partitions = 16
"#;

/// Writes the template to `path`, refusing to replace a file unless `force`.
pub fn write(path: &Path, dev: bool, force: bool) -> Result<(), Failure> {
    if path.exists() && !force {
        return Err(Failure::Config(format!(
            "{} exists; --force replaces it",
            path.display()
        )));
    }
    let text = if dev { DEV } else { PRODUCTION };
    std::fs::write(path, text)
        .map_err(|e| Failure::Other(format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use crate::config::{Coordination, Sources, load};

    fn check(text: &str) -> crate::config::AgentConfig {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cluster.toml");
        std::fs::write(&file, text).unwrap();
        load(&Sources {
            file: Some(file),
            ..Sources::default()
        })
        .unwrap_or_else(|e| panic!("the template does not pass its own check:\n{e}"))
    }

    #[test]
    fn both_templates_pass_the_check() {
        let prod = check(super::PRODUCTION);
        assert!(matches!(prod.coordination, Coordination::Etcd(_)));
        assert_eq!(prod.apps.len(), 2);
        assert!(prod.apps[0].sqlite.is_some());
        assert_eq!(prod.apps[0].health.len(), 1);
        let dev = check(super::DEV);
        assert!(matches!(dev.coordination, Coordination::Mem));
    }
}
