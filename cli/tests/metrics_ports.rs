//! `faas up --metrics` as a platform: every component serves Prometheus text on the port it
//! was given, and every node on one of its own from the base up; `--http-port` reaches the
//! API server. What each serves parses as the exposition format and is exactly what the
//! README's "Metrics" table lists for that component (a container service, run here beside
//! the platform with its own `--metrics-port`, included).

mod support;

use std::collections::BTreeSet;

use clap::Parser;
use faas_cli::platform::{MetricsPorts, PlatformOptions};
use faas_common::metrics::exposition;
use support::observe::scrape;

/// Every metric name of the README's "Metrics" table (the first column of its rows).
fn documented() -> BTreeSet<String> {
    let readme = include_str!("../../README.md");
    let section = readme
        .split_once("\n## Metrics\n")
        .expect("README.md has a \"## Metrics\" section")
        .1;
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`'))
        .map(|(name, _)| name.to_string())
        .collect()
}

/// The names `text` exposes (a counter's with `_total`), checked to parse.
fn exposed(who: &str, text: &str) -> BTreeSet<String> {
    let families =
        exposition::parse(text).unwrap_or_else(|e| panic!("{who}: not the format: {e}\n{text}"));
    families
        .iter()
        .map(exposition::Family::query_name)
        .collect()
}

/// `who`'s exposed names are the README's names that start with `prefix`: every exposed
/// name is listed, and every listed one is exposed unless its row says it appears only after
/// its event (a `†`).
fn agree(who: &str, prefix: &str, text: &str) -> Result<(), String> {
    let exposed = exposed(who, text);
    let listed: BTreeSet<String> = documented()
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect();
    let after_event = after_event();
    let not_listed: Vec<_> = exposed.difference(&listed).collect();
    let not_exposed: Vec<_> = listed
        .difference(&exposed)
        .filter(|n| !after_event.contains(*n))
        .collect();
    if listed.is_empty() || !not_listed.is_empty() || !not_exposed.is_empty() {
        return Err(format!(
            "{who}: exposed but not in README.md's Metrics table: {not_listed:?}; in the table \
             but not exposed: {not_exposed:?}"
        ));
    }
    Ok(())
}

/// The README's metrics that appear only once their event happened (`†` in their row).
fn after_event() -> BTreeSet<String> {
    let readme = include_str!("../../README.md");
    readme
        .lines()
        .filter(|l| l.starts_with("| `faas_") && l.contains('†'))
        .filter_map(|l| l.strip_prefix("| `")?.split_once('`'))
        .map(|(name, _)| name.to_string())
        .collect()
}

#[test]
fn the_grafana_dashboard_queries_only_documented_metrics() {
    let names = documented();
    let dashboard = include_str!("../../deploy/grafana/faas-dashboard.json");
    let json: serde_json::Value = serde_json::from_str(dashboard).expect("the dashboard is JSON");
    assert!(json["panels"].as_array().is_some_and(|p| p.len() >= 10));
    let mut used = BTreeSet::new();
    let mut rest = dashboard;
    while let Some(at) = rest.find("faas_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        used.insert(name.trim_end_matches("_bucket").to_string());
    }
    let unknown: Vec<_> = used.difference(&names).collect();
    assert!(unknown.is_empty(), "not in README.md's table: {unknown:?}");
    for wanted in [
        "faas_node_service_cold_start_seconds",
        "faas_scheduler_scheduling_latency_seconds",
    ] {
        assert!(used.contains(wanted), "the dashboard shows no {wanted}");
    }
}

#[derive(Parser)]
struct ContainerCli {
    #[command(flatten)]
    config: faas_container_service::Config,
}

#[test]
fn the_readme_table_follows_the_naming_scheme() {
    let names = documented();
    assert!(names.len() > 40, "{names:?}");
    let prefixes = [
        "faas_apiserver_",
        "faas_scheduler_",
        "faas_resource_manager_",
        "faas_node_service_",
        "faas_container_service_",
    ];
    for name in &names {
        assert!(
            prefixes.iter().any(|p| name.starts_with(p)),
            "{name}: not faas_<component>_"
        );
        assert!(
            !name.ends_with("_ms") && !name.ends_with("_millis") && !name.contains("_mib"),
            "{name}: base units (seconds, bytes)"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_component_and_every_node_serves_the_documented_metrics_on_its_own_port() {
    // Six ports free now, all different (held together, then let go).
    let held: Vec<_> = (0..6)
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
    let container_metrics = free[5];
    let container = ContainerCli::try_parse_from([
        "container-service",
        "--host",
        "127.0.0.1",
        "--unbound",
        "--metrics-port",
        &container_metrics.to_string(),
    ])
    .unwrap()
    .config;
    let (stop_container, container_stop) = faas_common::shutdown::channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let container = tokio::spawn(faas_container_service::run(
        listener,
        container,
        container_stop,
    ));
    let (platform, api) = support::start(PlatformOptions {
        ready_nodes: 3,
        max_nodes: 3,
        metrics: Some(ports),
        http_port,
        ..support::small_options()
    })
    .await;
    let mut expect = vec![
        ("apiserver".to_string(), ports.apiserver, "faas_apiserver_"),
        ("scheduler".to_string(), ports.scheduler, "faas_scheduler_"),
        (
            "resource-manager".to_string(),
            ports.resource_manager,
            "faas_resource_manager_",
        ),
        (
            "container-service".to_string(),
            container_metrics,
            "faas_container_service_",
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
        expect.push((node.node_id.clone(), port, "faas_node_service_"));
    }
    let http = tokio::net::TcpStream::connect(("127.0.0.1", http_port)).await;
    // One call (a cold start): the figures labelled by function or outcome appear.
    let called = api.invoke("metrics-test", "hello", b"{}".to_vec()).await;
    // Topics and chains: `hello` follows a topic and chains to `echo`; one emit, then the
    // asynchronous call below, make both counters appear.
    let events = api.event_admin();
    events
        .clone()
        .set_chain(faas_proto::events::SetChainRequest {
            function: "hello".into(),
            on_success: "echo".into(),
            on_failure: String::new(),
        })
        .await
        .expect("a chain is set");
    events
        .clone()
        .subscribe(faas_proto::events::SubscribeRequest {
            topic: "metrics".into(),
            function: "hello".into(),
            filter: Vec::new(),
        })
        .await
        .expect("a subscription is made");
    api.events()
        .emit(faas_proto::events::EmitRequest {
            topic: "metrics".into(),
            event: b"{}".to_vec(),
            account_id: "metrics-test".into(),
            idempotency_key: String::new(),
        })
        .await
        .expect("an emit is accepted");
    // One asynchronous call: the queue's figures of `hello` appear.
    api.invocations()
        .invoke_async(faas_proto::invoke::InvokeAsyncRequest {
            function_name: "hello".into(),
            account_id: "metrics-test".into(),
            event: b"{}".to_vec(),
            ..Default::default()
        })
        .await
        .expect("an asynchronous call is accepted");
    let mut results = Vec::new();
    for (who, port, prefix) in expect {
        // A node serves once it has announced itself, and a call's return may still be on
        // its way to the scheduler: look again until the names agree or time is up.
        let mut verdict = Err(format!("{who}: no metrics on {port}"));
        while faas_common::clock::tokio_instant() < deadline {
            if let Some(text) = scrape(port).await {
                verdict = agree(&who, prefix, &text);
                if verdict.is_ok() {
                    break;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        results.push(verdict);
    }
    platform.stop().await.unwrap();
    stop_container.trigger();
    container.await.unwrap().unwrap();
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    node_ports.sort();
    node_ports.dedup();
    assert_eq!(node_ports.len(), 3, "one port per node: {nodes:?}");
    assert!(
        node_ports.iter().all(|p| *p >= ports.nodes_from),
        "{node_ports:?}"
    );
    called.expect("hello answers");
    for verdict in results {
        verdict.unwrap();
    }
    http.expect("the API server serves HTTP on the port faas up gives it");
}
