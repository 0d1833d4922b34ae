//! A node that cannot start is a start failure, never a ready node, and is retried with a
//! back-off rather than in a loop.
//!
//! The node here is the real node service with its metrics port taken: it cannot bind it and
//! exits as it starts. It is run through a small wrapper script that adds `--metrics-port`;
//! this test lives in its own test process because executing a script just written races
//! with other tests' forks (ETXTBSY).

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use faas_resource_manager::Config;
use support::{Manager, eventually, node_processes, node_service_bin, reserve, test_config};
use tonic::Code;

const STARTS: &str = "faas_resource_manager_node_starts_total";
const EXITED_AT_START: &str = "faas_resource_manager_node_start_failures_total{reason=\"exited\"}";
const READY: &str = "faas_resource_manager_nodes{state=\"ready\"}";

/// Waits until `sample` reads at least `value`.
async fn at_least(rm: &Manager, sample: &str, value: f64) {
    eventually(sample, Duration::from_secs(30), || async {
        match rm.metric(sample).await {
            n if n >= value => Ok(()),
            n => Err(n.to_string()),
        }
    })
    .await
}

/// A file removed when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A script that runs the node service with `--metrics-port port` before its other arguments.
fn node_service_with_metrics_port(port: u16) -> TempFile {
    let path = std::env::temp_dir().join(format!(
        "faas-rm-test-node-{}-{port}.sh",
        std::process::id()
    ));
    let script = format!(
        "#!/bin/sh\nexec '{}' --metrics-port {port} \"$@\"\n",
        node_service_bin().display()
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    TempFile(path)
}

#[tokio::test]
async fn a_node_whose_metrics_port_is_taken_is_a_start_failure_retried_with_a_back_off() {
    let prefix = "portclash";
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let script = node_service_with_metrics_port(taken.local_addr().unwrap().port());
    let rm = Manager::start_with(Config {
        node_service_bin: Some(script.0.clone()),
        // No refill delay: only the back-off keeps the retries apart.
        refill_delay_ms: 0,
        ..test_config(prefix, 1, 1)
    })
    .await;
    at_least(&rm, EXITED_AT_START, 1.0).await;
    assert_eq!(rm.metric(READY).await, 0.0, "never reported ready");

    // Retried (after the first back-off, 1 s)...
    at_least(&rm, EXITED_AT_START, 2.0).await;
    // ...and then held back 2 s: within the next 1.5 s no third start may begin. Without a
    // back-off a zero refill delay would restart it dozens of times.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let starts = rm.metric(STARTS).await;
    assert!(
        starts <= 3.0,
        "{starts} starts: the retries are not backed off"
    );
    assert_eq!(rm.metric(READY).await, 0.0);

    // Nothing to hand out.
    rm.wait_serving().await;
    let mut client = rm.client().await;
    let err = reserve(&mut client, "acct").await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");

    rm.stop().await;
    assert!(node_processes(prefix).is_empty());
}
