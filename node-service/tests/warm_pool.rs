//! Integration tests of the warm pool with the `process` runtime: the node service started
//! in-process through `run`, its containers real `container-service` child processes.
//!
//! The pool's state is read from the node's Prometheus endpoint (`faas_node_service_warm_pool_*`), its
//! containers from `/proc`: a pool container is a child of this process started with
//! `--unbound` (it keeps that command line once bound), a container started for a create
//! carries `--function-name NAME`. The tests run one at a time so that every unbound child
//! of this process belongs to the test's own node.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use faas_common::shutdown::Trigger;
use faas_node_service::Config;
use faas_proto::nodeservoceproto as pb;
use pb::node_service_client::NodeServiceClient;
use support::{
    Served, children_running, container_service_bin, exists, free_port, kill, serve,
    unbound_children,
};
use tonic::transport::Channel;

/// One test at a time: the unbound children of this process are the running test's pool.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long a condition the tests wait for may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(30);

struct Node {
    client: NodeServiceClient<Channel>,
    metrics: String,
    trigger: Trigger,
    task: tokio::task::JoinHandle<Result<(), faas_node_service::Error>>,
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

fn meta(function: &str, handler: &str, memory: i64) -> pb::FunctionMeta {
    pb::FunctionMeta {
        function_name: function.into(),
        handler: handler.into(),
        timeout_in_ms: 0,
        memory_in_bytes: memory,
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

fn me() -> u32 {
    std::process::id()
}

impl Node {
    async fn start(warm_pool: usize) -> Node {
        let serial = SERIAL.lock().await;
        let mut config = Config::local();
        config.node_id = Some("pool-node".into());
        config.warm_pool = warm_pool;
        let metrics_port = free_port();
        config.metrics_port = Some(metrics_port);
        let Served {
            client,
            trigger,
            task,
            ..
        } = serve(config).await;
        Node {
            client,
            metrics: format!("127.0.0.1:{metrics_port}"),
            trigger,
            task,
            _serial: serial,
        }
    }

    async fn stop(self) {
        self.trigger.trigger();
        self.task.await.unwrap().unwrap();
    }

    /// The node's `/metrics` text.
    async fn metrics_text(&self) -> std::io::Result<String> {
        support::metrics_text(&self.metrics).await
    }

    /// One figure from the node's `/metrics`.
    async fn metric(&self, name: &str) -> u64 {
        let text = self.metrics_text().await.unwrap();
        support::figure(&text, name).unwrap_or_else(|| panic!("no {name} in the metrics:\n{text}"))
    }

    /// Waits until the pool holds `n` ready containers (the metrics endpoint may not listen
    /// yet when the node has just started).
    async fn until_ready(&self, n: u64) {
        let since = faas_common::clock::instant();
        while self.metrics_text().await.is_err() {
            assert!(since.elapsed() < PATIENCE, "no metrics endpoint");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        while self.metric("faas_node_service_warm_pool_ready").await != n {
            assert!(
                since.elapsed() < PATIENCE,
                "the pool never had {n} ready containers"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn create(&self, function: &str, handler: &str) -> String {
        self.client
            .clone()
            .create_container(pb::CreateContainerRequest {
                request_id: "req".into(),
                name: function.into(),
                function_meta: Some(meta(function, handler, 256 << 20)),
            })
            .await
            .unwrap()
            .into_inner()
            .container_id
    }

    async fn invoke(&self, container_id: &str, event: &[u8]) -> Vec<pb::InvokeFunctionReply> {
        let mut stream = self
            .client
            .clone()
            .invoke_function(pb::InvokeFunctionRequest {
                request_id: "req".into(),
                container_id: container_id.into(),
                event: event.to_vec(),
                function_meta: None,
            })
            .await
            .unwrap()
            .into_inner();
        let mut out = Vec::new();
        while let Some(m) = stream.message().await.unwrap() {
            out.push(m);
        }
        out
    }

    async fn stats(&self) -> pb::GetStatsReply {
        self.client
            .clone()
            .get_stats(pb::GetStatsRequest {
                request_id: "s".into(),
            })
            .await
            .unwrap()
            .into_inner()
    }
}

#[tokio::test]
async fn a_create_is_served_by_a_container_started_before_it() {
    let node = Node::start(2).await;
    node.until_ready(2).await;
    assert_eq!(node.metric("faas_node_service_warm_pool_size").await, 2);
    let before = unbound_children(me());
    assert_eq!(before.len(), 2, "two pool processes: {before:?}");
    assert!(
        node.stats().await.container_stats_list.is_empty(),
        "pool containers are not containers"
    );

    let function = unique("pooled");
    let id = node.create(&function, "hello").await;
    assert_eq!(
        node.metric("faas_node_service_warm_pool_hits_total").await,
        1
    );
    assert_eq!(
        node.metric("faas_node_service_warm_pool_misses_total")
            .await,
        0
    );
    assert!(
        children_running(me(), &function).is_empty(),
        "no process was started for the create"
    );
    let replies = node.invoke(&id, br#"{"name":"Ada"}"#).await;
    assert_eq!(replies[1].body, br#"{"message":"Hello, Ada!"}"#);

    // The pool refills; the container that served is one of the two started before.
    node.until_ready(2).await;
    let after = unbound_children(me());
    assert_eq!(
        after.len(),
        3,
        "two in the pool and the bound one: {after:?}"
    );
    assert!(
        before.iter().all(|p| after.contains(p)),
        "{before:?} {after:?}"
    );

    // GetStats lists the container with its function's limit, and no pool container.
    let stats = node.stats().await;
    let listed: Vec<_> = stats
        .container_stats_list
        .iter()
        .map(|c| (c.container_id.as_str(), c.total_memory_in_bytes))
        .collect();
    assert_eq!(listed, vec![(id.as_str(), 256 << 20)]);

    node.stop().await;
    for pid in after {
        assert!(!exists(pid), "pool process {pid} outlived the node");
    }
}

#[tokio::test]
async fn what_dies_in_the_pool_is_replaced_and_creates_still_succeed() {
    let node = Node::start(2).await;
    node.until_ready(2).await;

    // A pool container that dies is noticed by GetStats, reaped and replaced.
    let first = unbound_children(me());
    kill(first[0]).await;
    assert!(node.stats().await.container_stats_list.is_empty());
    node.until_ready(2).await;
    assert_eq!(
        node.metric("faas_node_service_warm_pool_discarded_total")
            .await,
        1
    );
    let since = faas_common::clock::instant();
    while exists(first[0]) {
        assert!(
            since.elapsed() < PATIENCE,
            "the dead pool process was never reaped"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // With every pool container dead, a create binds none and starts a container instead.
    let pool = unbound_children(me());
    assert_eq!(pool.len(), 2, "{pool:?}");
    for pid in &pool {
        kill(*pid).await;
    }
    let function = unique("fallback");
    let id = node.create(&function, "echo").await;
    assert_eq!(children_running(me(), &function).len(), 1, "started for it");
    assert_eq!(
        node.metric("faas_node_service_warm_pool_misses_total")
            .await,
        1
    );
    assert_eq!(
        node.metric("faas_node_service_warm_pool_discarded_total")
            .await,
        3
    );
    assert_eq!(
        node.invoke(&id, b"still works").await[1].body,
        b"still works"
    );

    // The pool is whole again and serves the next create.
    node.until_ready(2).await;
    let function = unique("again");
    let again = node.create(&function, "echo").await;
    assert!(children_running(me(), &function).is_empty());
    assert_eq!(
        node.metric("faas_node_service_warm_pool_hits_total").await,
        1
    );
    let mut listed: Vec<_> = node
        .stats()
        .await
        .container_stats_list
        .into_iter()
        .map(|c| c.container_id)
        .collect();
    listed.sort();
    let mut expected = vec![id, again];
    expected.sort();
    assert_eq!(listed, expected);

    let all = unbound_children(me());
    node.stop().await;
    for pid in all.into_iter().chain(pool) {
        assert!(!exists(pid), "pool process {pid} outlived the node");
    }
}

#[tokio::test]
async fn a_bad_handler_is_refused_before_the_pool_is_touched() {
    let node = Node::start(1).await;
    node.until_ready(1).await;
    let pool = unbound_children(me());
    let err = node
        .client
        .clone()
        .create_container(pb::CreateContainerRequest {
            request_id: "r".into(),
            name: "x".into(),
            function_meta: Some(meta(&unique("bad"), "no-such-handler", 64 << 20)),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("is not a built-in handler"),
        "{}",
        err.message()
    );
    assert_eq!(node.metric("faas_node_service_warm_pool_ready").await, 1);
    assert_eq!(
        node.metric("faas_node_service_warm_pool_misses_total")
            .await,
        0,
        "not even asked"
    );
    assert_eq!(
        node.metric("faas_node_service_warm_pool_discarded_total")
            .await,
        0
    );
    assert_eq!(unbound_children(me()), pool, "the pool container was kept");
    node.stop().await;
}

#[tokio::test]
async fn the_binary_stops_its_pool_on_sigterm() {
    let _serial = SERIAL.lock().await;
    let node_bin = PathBuf::from(env!("CARGO_BIN_EXE_node-service"));
    let mut cmd = tokio::process::Command::new(&node_bin);
    cmd.args(["--port", "0"])
        .env("FAAS_WARM_POOL", "2")
        .env("FAAS_CONTAINER_SERVICE_BIN", container_service_bin());
    let (mut child, _addr) = faas_common::launch::Child::spawn_ready(cmd, Duration::from_secs(10))
        .await
        .unwrap();
    let node_pid = child.id().unwrap();
    let since = faas_common::clock::instant();
    while unbound_children(node_pid).len() < 2 {
        assert!(since.elapsed() < PATIENCE, "the pool never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let pool = unbound_children(node_pid);
    child.stop(Duration::from_secs(10)).await; // SIGTERM, then wait
    assert!(child.has_exited());
    for pid in pool {
        assert!(!exists(pid), "pool process {pid} outlived its node");
    }
}

#[tokio::test]
async fn the_binary_refuses_a_huge_pool() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_node-service"))
        .args(["--warm-pool", "1000"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--warm-pool must be at most 64"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "announced before refusing");
}
