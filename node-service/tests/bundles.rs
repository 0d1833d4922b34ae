//! Integration tests of functions made of bundles (`bundle:<sha256>` handlers) with the
//! `process` runtime: the node service served in-process through `run`, its containers real
//! `container-service` child processes started with `--bundle`, running real user commands
//! (`/bin/cat` as an `exec` function).
//!
//! Each test writes its bundles into a temporary `--bundles-dir` under a fresh hash (the
//! node does not check the content against the hash: the API server makes them), and finds
//! its containers among this process's children by their `--bundle` argument. The one test
//! about the readiness deadline starts the real container service through a wrapper script
//! that waits a second first (`slow_container_service`): the node must allow the bundle's
//! start time on top of `--container-ready-timeout-ms`.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use faas_node_service::Config;
use faas_proto::nodeservoceproto as pb;
use support::{
    Served, children_with, container_service_bin, figure, free_port, metrics_text, serve,
    unbound_children,
};
use tonic::Code;

/// How long a condition the tests wait for may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(30);

/// One test at a time: the warm pool test counts this process's unbound children.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A temporary bundles directory, removed on drop.
struct BundlesDir(PathBuf);

impl BundlesDir {
    fn new() -> BundlesDir {
        let dir = std::env::temp_dir().join(format!("faas-bundles-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        BundlesDir(dir)
    }

    /// Writes a bundle whose `function.json` is `manifest`; returns its hash.
    fn add(&self, manifest: &str) -> String {
        let hash = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let dir = self.0.join(&hash);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("function.json"), manifest).unwrap();
        hash
    }

    fn path(&self, hash: &str) -> PathBuf {
        self.0.join(hash)
    }
}

impl Drop for BundlesDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const CAT: &str = r#"{"command": ["/bin/cat"], "protocol": "exec"}"#;

/// The number of containers the node reports.
async fn containers(node: &Served) -> usize {
    let request = pb::GetStatsRequest {
        request_id: "s".into(),
    };
    let reply = node.client.clone().get_stats(request).await.unwrap();
    reply.into_inner().container_stats_list.len()
}

fn config(bundles: Option<&BundlesDir>, warm_pool: usize) -> Config {
    let mut config = Config::local();
    config.node_id = Some("bundle-node".into());
    config.warm_pool = warm_pool;
    config.bundles_dir = bundles.map(|b| b.0.clone());
    config
}

fn meta(function: &str, handler: &str) -> pb::FunctionMeta {
    pb::FunctionMeta {
        function_name: function.into(),
        handler: handler.into(),
        timeout_in_ms: 0,
        memory_in_bytes: 128 << 20,
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

fn me() -> u32 {
    std::process::id()
}

/// This process's children started for the bundle at `dir` (`--bundle DIR`).
fn bundle_children(dir: &Path) -> Vec<u32> {
    children_with(me(), &format!("--bundle\0{}\0", dir.display()))
}

#[tokio::test]
async fn a_bundle_runs_in_a_container_service_started_with_bundle_never_from_the_pool() {
    let _serial = SERIAL.lock().await;
    let bundles = BundlesDir::new();
    let hash = bundles.add(CAT);
    let handler = format!("bundle:{hash}");
    let mut config = config(Some(&bundles), 1);
    let metrics_port = free_port();
    config.metrics_port = Some(metrics_port);
    let metrics = format!("127.0.0.1:{metrics_port}");
    let node = serve(config).await;
    let since = faas_common::clock::instant();
    let pool = loop {
        let ready = metrics_text(&metrics)
            .await
            .ok()
            .and_then(|t| figure(&t, "faas_node_service_warm_pool_ready"));
        if ready == Some(1) {
            break unbound_children(me());
        }
        assert!(since.elapsed() < PATIENCE, "the warm pool never filled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(pool.len(), 1, "one pool container: {pool:?}");

    let id = node.create(meta(&unique("cat"), &handler)).await.unwrap();
    let started = bundle_children(&bundles.path(&hash));
    assert_eq!(started.len(), 1, "one container started with --bundle");
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", started[0])).unwrap();
    assert!(
        !String::from_utf8_lossy(&cmdline).contains("--handler"),
        "no --handler beside --bundle"
    );
    let text = metrics_text(&metrics).await.unwrap();
    assert_eq!(
        (
            figure(&text, "faas_node_service_warm_pool_hits_total"),
            figure(&text, "faas_node_service_warm_pool_misses_total")
        ),
        (Some(0), Some(0)),
        "the pool was not asked"
    );
    assert_eq!(
        unbound_children(me()),
        pool,
        "the pool container is untouched"
    );

    let body = node
        .invoke_ok(&id, br#"{"n": 1}"#, meta("", &handler))
        .await;
    assert_eq!(body, br#"{"n": 1}"#, "cat echoes the event");
    assert_eq!(node.invoke_ok(&id, b"again", meta("", "")).await, b"again");
    node.stop().await;
    assert!(bundle_children(&bundles.path(&hash)).is_empty());
}

#[tokio::test]
async fn bundles_the_node_cannot_serve_are_refused_with_what_to_do() {
    let bundles = BundlesDir::new();
    let image = bundles.add(r#"{"command": ["/fn"], "protocol": "exec", "image": "fn:1"}"#);
    let node = serve(config(Some(&bundles), 0)).await;
    let function = unique("refused");
    let absent = "ab".repeat(32);
    let cases = [
        (
            "bundle:xyz".to_string(),
            Code::InvalidArgument,
            "64 lowercase hex digits",
        ),
        (
            format!("bundle:{}", absent.to_uppercase()),
            Code::InvalidArgument,
            "64 lowercase hex digits",
        ),
        (
            format!("bundle:{absent}"),
            Code::FailedPrecondition,
            "is not on this node: there is no",
        ),
        (
            format!("bundle:{image}"),
            Code::FailedPrecondition,
            "image functions run on the Docker runtime (--runtime docker)",
        ),
    ];
    for (handler, code, says) in cases {
        let err = node.create(meta(&function, &handler)).await.unwrap_err();
        assert_eq!(err.code(), code, "{handler}: {}", err.message());
        assert!(err.message().contains(says), "{handler}: {}", err.message());
    }
    let err = node
        .create(meta(&function, &format!("bundle:{absent}")))
        .await
        .unwrap_err();
    assert!(
        err.message()
            .ends_with("(is --bundles-dir the API server's DATA_DIR/bundles?)"),
        "{}",
        err.message()
    );
    assert!(children_with(me(), &format!("--function-name\0{function}\0")).is_empty());
    assert_eq!(containers(&node).await, 0);
    node.stop().await;

    // Without --bundles-dir, every bundle is refused, saying so.
    let node = serve(config(None, 0)).await;
    let err = node
        .create(meta(&function, &format!("bundle:{image}")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message()
            .contains("serves no bundles: start it with --bundles-dir"),
        "{}",
        err.message()
    );
    node.stop().await;

    // A --bundles-dir that is not a directory stops the node before it serves.
    let mut wrong = config(None, 0);
    wrong.bundles_dir = Some(bundles.0.join("missing"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (_trigger, shutdown) = faas_common::shutdown::channel();
    let err = faas_node_service::run(listener, wrong, shutdown)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--bundles-dir"), "{err}");
}

#[tokio::test]
async fn a_container_service_that_exits_while_starting_fails_the_create_with_its_reason() {
    let bundles = BundlesDir::new();
    let hash = bundles.add(r#"{"command": ["/nonexistent/serve"], "protocol": "http"}"#);
    let node = serve(config(Some(&bundles), 0)).await;
    let err = node
        .create(meta(&unique("broken"), &format!("bundle:{hash}")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
    let message = err.message();
    assert!(
        message.contains("the container service exited (exit status: 1) before it was ready: "),
        "{message}"
    );
    assert!(
        message.contains("\"/nonexistent/serve\""),
        "the reason: {message}"
    );
    assert!(!message.contains('\n'), "one line: {message}");
    assert!(
        bundle_children(&bundles.path(&hash)).is_empty(),
        "no process is left"
    );
    assert_eq!(containers(&node).await, 0);
    node.stop().await;
}

/// A script that waits `secs` seconds, then runs the real container service with its
/// arguments.
fn slow_container_service(dir: &Path, secs: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("slow-container-service");
    let real = container_service_bin();
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nsleep {secs}\nexec '{}' \"$@\"\n",
            real.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

#[tokio::test]
async fn a_bundle_gets_its_start_time_on_top_of_the_ready_timeout() {
    let bundles = BundlesDir::new();
    let hash =
        bundles.add(r#"{"command": ["/bin/cat"], "protocol": "exec", "start_timeout_ms": 30000}"#);
    let mut config = config(Some(&bundles), 0);
    // A built-in container must announce itself within 200 ms; it takes a second here.
    config.container_ready_timeout_ms = 200;
    config.container_service_bin = Some(slow_container_service(&bundles.0, 1));
    let node = serve(config).await;
    let err = node
        .create(meta(&unique("hello"), "hello"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{}", err.message());
    assert!(err.message().contains("was not ready"), "{}", err.message());
    // The bundle's container gets 200 ms + its 30 s.
    let handler = format!("bundle:{hash}");
    let id = node.create(meta(&unique("slow"), &handler)).await.unwrap();
    assert_eq!(
        node.invoke_ok(&id, b"late", meta("", &handler)).await,
        b"late"
    );
    node.stop().await;
}
