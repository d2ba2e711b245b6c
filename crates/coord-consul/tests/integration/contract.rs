//! coord-consul against the coordination contract suite.
//!
//! By default against testkit's Consul test server (sessions may be as short as 1 s there, so
//! the suite runs with a 2 s TTL and Consul's expiry factor of 2). With `CONSUL_HTTP_ADDR` set
//! (and `CONSUL_HTTP_TOKEN`, `CONSUL_CACERT` as Consul's tools read them), the same cases run
//! against that real Consul instead, with its default 10 s minimum TTL; every client then goes
//! through a `FaultProxy` so "the store is down" can be simulated by refusing and cutting
//! connections.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cluster_core::coordination::Coordinator;
use cluster_core::ids::Revision;
use coord_consul::{ConsulConfig, ConsulCoordinator};
use testkit::coordination::{ClientFault, CoordHarness, TimingProfile};
use testkit::{ConsulOptions, ConsulServer, FaultProxy, Mode};

enum Store {
    /// testkit's Consul test server, stopped and restarted for outages.
    TestServer(ConsulServer),
    /// A real Consul (`CONSUL_HTTP_ADDR`) behind a proxy that can refuse and cut connections.
    Real {
        config: ConsulConfig,
        proxy: FaultProxy,
    },
}

struct ConsulHarness {
    store: Store,
}

impl ConsulHarness {
    fn base_config(&self) -> ConsulConfig {
        match &self.store {
            Store::TestServer(_) => ConsulConfig {
                session_ttl_min: Duration::from_secs(1),
                lock_delay: Duration::from_secs(1),
                lock_delay_retry: Duration::from_millis(100),
                call_timeout: Duration::from_secs(1),
                connect_timeout: Duration::from_secs(1),
                watch_wait: Duration::from_secs(30),
                ..ConsulConfig::default()
            },
            Store::Real { config, .. } => ConsulConfig {
                lock_delay: Duration::from_secs(1),
                lock_delay_retry: Duration::from_millis(250),
                watch_wait: Duration::from_secs(30),
                ..config.clone()
            },
        }
    }

    /// Where clients connect: the test server, or the proxy in front of the real Consul.
    fn store_addr(&self) -> SocketAddr {
        match &self.store {
            Store::TestServer(server) => server.addr(),
            Store::Real { proxy, .. } => proxy.addr(),
        }
    }

    fn config_for(&self, addr: SocketAddr) -> ConsulConfig {
        let base = self.base_config();
        let scheme = if base.base_url().starts_with("https://") {
            "https"
        } else {
            "http"
        };
        ConsulConfig {
            address: format!("{scheme}://{addr}"),
            ..base
        }
    }

    fn coordinator(&self, addr: SocketAddr) -> Arc<dyn Coordinator> {
        Arc::new(ConsulCoordinator::new(self.config_for(addr)).unwrap())
    }
}

#[async_trait]
impl CoordHarness for ConsulHarness {
    async fn client(&self) -> Arc<dyn Coordinator> {
        self.coordinator(self.store_addr())
    }

    async fn faultable_client(&self) -> (Arc<dyn Coordinator>, Box<dyn ClientFault>) {
        let proxy = FaultProxy::start(self.store_addr()).unwrap();
        (self.coordinator(proxy.addr()), Box::new(proxy))
    }

    async fn stop_store(&mut self) {
        match &mut self.store {
            Store::TestServer(server) => server.stop(),
            Store::Real { proxy, .. } => {
                proxy.set_mode(Mode::Refuse);
                proxy.cut();
            }
        }
    }

    async fn start_store(&mut self) {
        match &mut self.store {
            Store::TestServer(server) => server.restart().await.unwrap(),
            Store::Real { proxy, .. } => proxy.set_mode(Mode::Pass),
        }
    }

    async fn compact(&self, _revision: Revision) -> bool {
        // Consul keeps no history to compact.
        false
    }

    fn timing(&self) -> TimingProfile {
        match &self.store {
            Store::TestServer(_) => TimingProfile {
                ttl: Duration::from_secs(2),
                margin: Duration::from_millis(700),
                expiry_factor: 2,
                call_timeout: Duration::from_secs(1),
            },
            Store::Real { config, .. } => TimingProfile {
                ttl: config.session_ttl_min,
                margin: Duration::from_secs(2),
                expiry_factor: 2,
                call_timeout: config.call_timeout,
            },
        }
    }
}

async fn harness() -> ConsulHarness {
    match ConsulConfig::from_env() {
        Some(config) => {
            let upstream = config
                .base_url()
                .split_once("://")
                .map(|(_, hostport)| hostport.to_owned())
                .and_then(|hostport| hostport.to_socket_addrs().ok()?.next())
                .unwrap_or_else(|| {
                    panic!("CONSUL_HTTP_ADDR {:?} does not resolve", config.address)
                });
            tracing::info!(%upstream, "contract suite against a real Consul");
            ConsulHarness {
                store: Store::Real {
                    proxy: FaultProxy::start(upstream).unwrap(),
                    config,
                },
            }
        }
        None => ConsulHarness {
            store: Store::TestServer(
                ConsulServer::start(ConsulOptions {
                    session_ttl_min: Duration::from_secs(1),
                    ..ConsulOptions::default()
                })
                .unwrap(),
            ),
        },
    }
}

testkit::coordination_contract_suite!(harness());
