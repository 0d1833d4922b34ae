//! The Prometheus ports of a local platform ([`super::PlatformOptions::metrics`]): one for
//! each component, and one for each node from a base up (see the resource manager's
//! `--node-metrics-port-base`: a node takes the lowest free port, so a port some other
//! program holds is skipped and never kills the node).

/// The Prometheus ports of `faas up --metrics` (0: that component serves none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricsPorts {
    pub apiserver: u16,
    pub scheduler: u16,
    pub resource_manager: u16,
    /// Nodes serve on the lowest free port from this one up, one port each.
    pub nodes_from: u16,
}

impl MetricsPorts {
    /// The documented ports: each component's gRPC port + 1, nodes from 10700 up.
    pub const DEFAULT: MetricsPorts = MetricsPorts {
        apiserver: 10501,
        scheduler: 10601,
        resource_manager: 10401,
        nodes_from: 10700,
    };

    /// The lines `faas up` prints about them.
    pub fn describe(&self, host: &str) -> Vec<String> {
        let at = |port: u16| match port {
            0 => "off".to_string(),
            port => format!("http://{host}:{port}/metrics"),
        };
        vec![
            format!("apiserver {}", at(self.apiserver)),
            format!("scheduler {}", at(self.scheduler)),
            format!("resource-manager {}", at(self.resource_manager)),
            match self.nodes_from {
                0 => "nodes off".to_string(),
                port => format!(
                    "nodes one port each, the lowest free from {port} up (the resource \
                     manager logs which node has which)"
                ),
            },
        ]
    }
}
