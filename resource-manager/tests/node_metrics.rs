//! Local nodes serve their Prometheus metrics each on a port of its own, with real
//! node-service processes: from `--node-metrics-port-base` up, a port some other program
//! holds skipped; and from an inherited `NODE_METRICS_PORT`, which used to be handed to every
//! node so that all but one died at start (they cannot all bind one port).
//!
//! One test, in its own test process: it sets `NODE_METRICS_PORT` in this process's
//! environment (as a user's shell would), which nothing else here may read at the same time.

mod support;

use std::time::Duration;

use faas_resource_manager::Config;
use support::{Manager, node_processes, scrape, test_config};

const START_FAILURES: &str = "faas_resource_manager_node_start_failures_total";
const READY: &str = "faas_resource_manager_nodes{state=\"ready\"}";

/// A port with `n` free ports from it (as far as can be told now).
fn free_run(n: u16) -> u16 {
    loop {
        let base = support::free_port();
        if base.checked_add(n).is_some()
            && (base..base + n).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
        {
            return base;
        }
    }
}

/// Each live node of `prefix`: its id, the `--metrics-port` on its command line, and whether
/// `NODE_METRICS_PORT` is in its environment.
fn node_ports(prefix: &str) -> Vec<(String, Option<u16>, bool)> {
    let mut nodes: Vec<_> = node_processes(prefix)
        .into_iter()
        .map(|(pid, id)| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let port = args
                .iter()
                .position(|a| a == "--metrics-port")
                .and_then(|i| args.get(i + 1)?.parse().ok());
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let inherited = environ
                .split(|b| *b == 0)
                .any(|v| v.starts_with(b"NODE_METRICS_PORT="));
            (id, port, inherited)
        })
        .collect();
    nodes.sort();
    nodes
}

/// Starts a manager with three ready nodes, checks that all three started at the first try,
/// each serving metrics on its own port, and returns those ports in node order.
async fn three_nodes_with_metrics(config: Config) -> Vec<u16> {
    let prefix = config.node_id_prefix.clone();
    let rm = Manager::start_with(config).await;
    rm.wait_serving().await;
    rm.wait_metric(READY, 3.0, Duration::from_secs(30)).await;
    assert_eq!(
        rm.metric(START_FAILURES).await,
        0.0,
        "no node died at start"
    );
    let nodes = node_ports(&prefix);
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    let mut ports = Vec::new();
    for (id, port, inherited) in &nodes {
        assert!(!inherited, "{id} inherited NODE_METRICS_PORT");
        let port = port.unwrap_or_else(|| panic!("{id} got no --metrics-port: {nodes:?}"));
        let text = scrape(port).await;
        assert!(
            text.starts_with("HTTP/1.1 200")
                && text.contains("faas_node_service_containers_running"),
            "{id} on {port}: {text}"
        );
        ports.push(port);
    }
    rm.stop().await;
    ports
}

#[test]
fn every_local_node_serves_metrics_on_a_port_of_its_own() {
    // As `NODE_METRICS_PORT=P faas up` would have it.
    let inherited = free_run(4);
    support::inherit_node_metrics_port(inherited);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    // From the flag (it wins over the variable); another program holds base + 1.
    let base = free_run(5);
    let taken = std::net::TcpListener::bind(("127.0.0.1", base + 1)).unwrap();
    let mut ports = runtime.block_on(three_nodes_with_metrics(Config {
        node_metrics_port_base: Some(base),
        ..test_config("metricsflag", 3, 3)
    }));
    ports.sort();
    assert_eq!(ports, [base, base + 2, base + 3]);
    drop(taken);

    // NODE_METRICS_PORT alone: no node dies, each has its own port from it up.
    let mut ports = runtime.block_on(three_nodes_with_metrics(test_config("metricsenv", 3, 3)));
    ports.sort();
    assert_eq!(ports, [inherited, inherited + 1, inherited + 2]);
}
