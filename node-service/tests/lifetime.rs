//! The `node-service` binary's start and end, as a parent process sees them: every listener
//! is bound before the readiness line (a taken port is an early exit with one line, never
//! "ready, then dead"), and `--orphan-timeout-ms` stops a node nobody calls, its containers
//! with it.
//!
//! The orphan timeout's rule (calls restart it, work under way holds the node) is tested
//! with tokio's paused clock in `service::orphan`; here the real process shows the wiring:
//! it exits by itself, cleanly, saying why, and leaves no container process behind.

mod support;

use std::process::Stdio;
use std::time::Duration;

use faas_proto::node_admin::DescribeNodeRequest;
use faas_proto::node_admin::node_admin_client::NodeAdminClient;
use faas_proto::nodeservoceproto as pb;
use pb::node_service_client::NodeServiceClient;
use support::{children_running, container_service_bin, exists, free_port};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

/// How long the tests wait for an event before they fail.
const PATIENCE: Duration = Duration::from_secs(30);

/// Short, but long enough for the test's first calls to reach a node that has just announced
/// itself on a busy machine (the node would otherwise stop before it is called).
const ORPHAN_TIMEOUT_MS: &str = "2000";

fn node_service() -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_node-service"));
    cmd.env("FAAS_CONTAINER_SERVICE_BIN", container_service_bin())
        .env_remove("NODE_ORPHAN_TIMEOUT_MS")
        .env_remove("NODE_METRICS_PORT")
        // CI sets RUST_BACKTRACE=1, which makes anyhow print a backtrace after the message.
        .env("RUST_BACKTRACE", "0")
        .env_remove("RUST_LIB_BACKTRACE")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

#[tokio::test]
async fn a_node_nobody_calls_stops_by_itself_and_leaves_no_container() {
    let metrics_port = free_port();
    let mut child = node_service()
        .args(["--port", "0", "--warm-pool", "0"])
        .args(["--orphan-timeout-ms", ORPHAN_TIMEOUT_MS])
        .args(["--metrics-port", &metrics_port.to_string()])
        .spawn()
        .unwrap();
    let node_pid = child.id().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let log = tokio::spawn(async move {
        let mut text = String::new();
        stderr.read_to_string(&mut text).await.unwrap();
        text
    });
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = tokio::time::timeout(PATIENCE, async {
        while let Some(line) = stdout.next_line().await.unwrap() {
            if let Some(addr) = faas_common::serve::parse_announce(&line) {
                return addr;
            }
        }
        panic!("the node exited without announcing");
    })
    .await
    .expect("the node announced");
    tokio::net::TcpStream::connect(("127.0.0.1", metrics_port))
        .await
        .expect("the metrics port listens once the node is announced");

    let channel = faas_common::serve::connect(&addr.to_string())
        .await
        .unwrap();
    // One call on each service the node serves; each is stamped (the log counts them).
    tonic_health::pb::health_client::HealthClient::new(channel.clone())
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap();
    NodeAdminClient::new(channel.clone())
        .describe_node(DescribeNodeRequest {})
        .await
        .unwrap();
    let mut client = NodeServiceClient::new(channel);
    let function = format!("orphaned-{}", uuid::Uuid::new_v4().simple());
    client
        .create_container(pb::CreateContainerRequest {
            request_id: "r".into(),
            name: "x".into(),
            function_meta: Some(pb::FunctionMeta {
                function_name: function.clone(),
                handler: "hello".into(),
                timeout_in_ms: 0,
                memory_in_bytes: 64 << 20,
            }),
        })
        .await
        .unwrap();
    let containers = children_running(node_pid, &function);
    assert_eq!(containers.len(), 1, "the container is the node's child");

    // No more calls: the node stops by itself.
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("the node stopped by itself")
        .unwrap();
    assert!(status.success(), "a clean stop: {status}");
    assert!(
        !exists(containers[0]),
        "the container was stopped and reaped before the node exited"
    );
    let log = without_colours(&log.await.unwrap());
    assert!(
        log.contains("no gRPC call for --orphan-timeout-ms"),
        "it says why: {log}"
    );
    assert!(
        log.contains("calls_heard=3"),
        "health, NodeAdmin and NodeService calls were heard: {log}"
    );
    assert!(log.contains("node service stopped"), "{log}");
}

/// `text` without the terminal colour sequences (`ESC [ ... m`) of the log.
fn without_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| *c == 'm');
        } else {
            out.push(c);
        }
    }
    out
}

/// Runs the binary to its end with `args`; returns (stdout, the non-empty stderr lines).
async fn run_to_end(args: &[&str]) -> (String, Vec<String>) {
    let out = tokio::time::timeout(
        PATIENCE,
        node_service()
            .args(["--warm-pool", "0"])
            .args(args)
            .output(),
    )
    .await
    .expect("the node exits at once")
    .unwrap();
    assert!(!out.status.success(), "{args:?} was accepted");
    let stderr = String::from_utf8_lossy(&out.stderr);
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect(),
    )
}

#[tokio::test]
async fn a_taken_port_is_an_early_exit_before_the_readiness_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    for (args, flag) in [
        (
            ["--port", "0", "--metrics-port", port.as_str()],
            "--metrics-port",
        ),
        (["--port", port.as_str(), "--metrics-port", "0"], "--port"),
    ] {
        let (stdout, stderr) = run_to_end(&args).await;
        assert!(stdout.is_empty(), "announced before failing: {stdout}");
        assert_eq!(stderr.len(), 1, "one line: {stderr:?}");
        let line = &stderr[0];
        assert!(
            line.contains(&format!("cannot listen on 127.0.0.1:{port} ({flag})")),
            "{line}"
        );
        assert!(line.contains("in use"), "{line}");
    }
    drop(taken);
}
