//! One Prometheus port per local node: the lowest free port from a base.
//!
//! Every local node is a node-service process on this machine, so two nodes can never share a
//! metrics port: the second could not bind it. (They used to try: a `NODE_METRICS_PORT` in
//! the manager's environment was inherited by every node, and all but the first died as they
//! started.) So the local provider hands each node a port of its own, `--metrics-port P`, and
//! keeps `NODE_METRICS_PORT` out of the nodes' environment:
//!
//! - P is the lowest port from the base (`--node-metrics-port-base`, else the inherited
//!   `NODE_METRICS_PORT`, see `Config::node_metrics_port_base`) that no other node of this
//!   manager holds and that can be bound right now on the node's address: a port another
//!   program (or an adopted node of an earlier run) listens on is skipped. Node 1 of a fresh
//!   platform gets the base, node 2 base + 1, and a released node's port is used again;
//! - a port is held from the node's start until it is stopped or found gone;
//! - a node is never lost over its metrics: when none of the [`SCAN`] ports from the base
//!   is free, it starts without metrics (said in the log), and when the port was taken in the
//!   instant between the check and the node's bind (the node then exits as it starts), the
//!   provider starts it once more without metrics (see `api/local.rs`).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Mutex, PoisonError};

/// How many ports from the base are tried before a node goes without metrics.
pub const SCAN: u16 = 1024;

/// The metrics ports the local provider's nodes hold.
#[derive(Debug)]
pub struct NodeMetricsPorts {
    base: u16,
    host: IpAddr,
    /// Node id → its port.
    held: Mutex<HashMap<String, u16>>,
}

impl NodeMetricsPorts {
    /// Ports from `base` on loopback (where local nodes listen).
    pub fn from(base: u16) -> NodeMetricsPorts {
        NodeMetricsPorts {
            base,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            held: Mutex::new(HashMap::new()),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, u16>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The port node `node_id` serves its metrics on: held for it until [`Self::release`];
    /// `None` when no port of the range is free (the node then has none; logged).
    pub fn claim(&self, node_id: &str) -> Option<u16> {
        let mut held = self.held();
        if let Some(&port) = held.get(node_id) {
            return Some(port);
        }
        let end = self.base.saturating_add(SCAN - 1);
        let free = (self.base..=end).find(|port| {
            !held.values().any(|p| p == port)
                && std::net::TcpListener::bind((self.host, *port)).is_ok()
        });
        match free {
            Some(port) => {
                held.insert(node_id.to_string(), port);
                Some(port)
            }
            None => {
                tracing::warn!(
                    node_id,
                    from = self.base,
                    to = end,
                    "no free metrics port for the node: it starts without metrics"
                );
                None
            }
        }
    }

    /// Lets go of the node's port (it stopped, or will start without metrics).
    pub fn release(&self, node_id: &str) {
        self.held().remove(node_id);
    }

    /// The port node `node_id` holds.
    pub fn of(&self, node_id: &str) -> Option<u16> {
        self.held().get(node_id).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A base with `n` free ports from it, as far as this test can tell.
    fn free_run(n: u16) -> u16 {
        loop {
            let base = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            if base.checked_add(n).is_some()
                && (base..base + n).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
            {
                return base;
            }
        }
    }

    #[test]
    fn each_node_gets_its_own_port_and_a_taken_one_is_skipped() {
        let base = free_run(4);
        let ports = NodeMetricsPorts::from(base);
        assert_eq!(ports.claim("n-1"), Some(base));
        assert_eq!(
            ports.claim("n-1"),
            Some(base),
            "the same node keeps its port"
        );
        // Another program listens on base + 1.
        let other = std::net::TcpListener::bind(("127.0.0.1", base + 1)).unwrap();
        assert_eq!(ports.claim("n-2"), Some(base + 2));
        drop(other);
        assert_eq!(ports.claim("n-3"), Some(base + 1), "the lowest free one");
        ports.release("n-1");
        assert_eq!(ports.of("n-1"), None);
        assert_eq!(
            ports.claim("n-4"),
            Some(base),
            "a released port is used again"
        );
        assert_eq!(ports.of("n-2"), Some(base + 2));
    }

    #[test]
    fn a_node_goes_without_metrics_when_the_range_is_full() {
        let ports = NodeMetricsPorts::from(u16::MAX);
        // The one port of the range (65535) is held by a node, so the next has none.
        let first = ports.claim("n-1");
        if first.is_some() {
            assert_eq!(ports.claim("n-2"), None);
        }
    }
}
