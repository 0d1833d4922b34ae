//! `faas up --metrics` as a platform: every component serves Prometheus text on the port it
//! was given, and every node on one of its own from the base up; `--http-port` reaches the
//! API server.

mod support;

use faas_cli::platform::{MetricsPorts, PlatformOptions};
use support::observe::scrape;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_component_and_every_node_serves_metrics_on_its_own_port() {
    // Five ports free now, all different (held together, then let go).
    let held: Vec<_> = (0..5)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let free: Vec<u16> = held
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    drop(held);
    let ports = MetricsPorts {
        apiserver: free[0],
        scheduler: free[1],
        resource_manager: free[2],
        nodes_from: free[3],
    };
    let http_port = free[4];
    let (platform, _api) = support::start(PlatformOptions {
        ready_nodes: 3,
        max_nodes: 3,
        metrics: Some(ports),
        http_port,
        ..support::small_options()
    })
    .await;
    let mut expect = vec![
        ("apiserver".to_string(), ports.apiserver, "faas_apiserver"),
        (
            "scheduler".to_string(),
            ports.scheduler,
            "scheduler_acquire_wait_seconds",
        ),
        (
            "resource-manager".to_string(),
            ports.resource_manager,
            "faas_resource_manager",
        ),
    ];
    // The nodes start as the resource manager fills its pool; each is told its own port.
    let deadline = faas_common::clock::tokio_instant() + std::time::Duration::from_secs(60);
    let nodes = loop {
        let nodes = support::procs::nodes();
        if nodes.len() == 3 || faas_common::clock::tokio_instant() > deadline {
            break nodes;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let mut node_ports = Vec::new();
    for node in &nodes {
        let port = support::procs::flag(node.pid, "--metrics-port")
            .and_then(|p| p.parse::<u16>().ok())
            .unwrap_or_else(|| panic!("{} has no --metrics-port", node.node_id));
        node_ports.push(port);
        expect.push((node.node_id.clone(), port, "faas_node_service_containers_running"));
    }
    let http = tokio::net::TcpStream::connect(("127.0.0.1", http_port)).await;
    let mut results = Vec::new();
    for (who, port, metric) in expect {
        // A node serves once it has announced itself; give a starting one a moment.
        let mut reply = scrape(port).await;
        while reply.is_none() && faas_common::clock::tokio_instant() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            reply = scrape(port).await;
        }
        results.push((who, port, metric, reply));
    }
    platform.stop().await.unwrap();
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    node_ports.sort();
    node_ports.dedup();
    assert_eq!(node_ports.len(), 3, "one port per node: {nodes:?}");
    assert!(
        node_ports.iter().all(|p| *p >= ports.nodes_from),
        "{node_ports:?}"
    );
    for (who, port, metric, reply) in results {
        let reply = reply.unwrap_or_else(|| panic!("{who}: no metrics on {port}"));
        assert!(reply.contains(metric), "{who} on {port}: {reply}");
    }
    http.expect("the API server serves HTTP on the port faas up gives it");
}
