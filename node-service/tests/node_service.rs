//! Integration tests: the node service started in-process on 127.0.0.1:0 through `run`,
//! creating real `container-service` child processes.
//!
//! The container binary comes from [`support::container_service_bin`]. These tests run with
//! the warm pool off (every container is started for its create, so it can be found by its
//! `--function-name`); `tests/warm_pool.rs` covers the pool.
//!
//! Processes are checked from outside: a container's pid is found in `/proc` by its
//! `--function-name` (unique per test) among this process's children, and "gone" means
//! `/proc/PID` no longer exists (killed *and* reaped).

mod support;

use std::path::PathBuf;
use std::time::Duration;

use faas_common::shutdown::Trigger;
use faas_node_service::Config;
use faas_proto::nodeservoceproto as pb;
use pb::node_service_client::NodeServiceClient;
use support::{
    Served, children_running, connections_to, container_service_bin, exists, kill, listening_port,
    serve, state, until_closed,
};
use tonic::transport::Channel;

struct Node {
    client: NodeServiceClient<Channel>,
    channel: Channel,
    trigger: Trigger,
    task: tokio::task::JoinHandle<Result<(), faas_node_service::Error>>,
}

impl Node {
    async fn start() -> Node {
        Node::start_with(Config::local()).await
    }

    async fn start_with(mut config: Config) -> Node {
        config.node_id = Some("node-1".into());
        config.warm_pool = 0;
        let Served {
            client,
            channel,
            trigger,
            task,
        } = serve(config).await;
        Node {
            client,
            channel,
            trigger,
            task,
        }
    }

    async fn stop(self) {
        self.trigger.trigger();
        self.task.await.unwrap().unwrap();
    }

    async fn create(&self, function: &str, handler: &str) -> Result<String, tonic::Status> {
        self.create_sized(function, handler, 256 << 20).await
    }

    async fn create_sized(
        &self,
        function: &str,
        handler: &str,
        memory: i64,
    ) -> Result<String, tonic::Status> {
        self.client
            .clone()
            .create_container(pb::CreateContainerRequest {
                request_id: "req".into(),
                name: function.into(),
                function_meta: Some(meta(function, handler, memory, 0)),
            })
            .await
            .map(|r| r.into_inner().container_id)
    }

    async fn remove(&self, container_id: &str) -> Result<(), tonic::Status> {
        self.client
            .clone()
            .remove_container(pb::RemoveContainerRequest {
                request_id: "r".into(),
                container_id: container_id.into(),
            })
            .await
            .map(|_| ())
    }

    async fn invoke(
        &self,
        container_id: &str,
        event: &[u8],
        meta: Option<pb::FunctionMeta>,
    ) -> Result<Vec<pb::InvokeFunctionReply>, tonic::Status> {
        invoke_on(self.client.clone(), container_id, event, meta).await
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

/// One InvokeFunction call through `client`, its reply stream collected.
async fn invoke_on(
    client: NodeServiceClient<Channel>,
    container_id: &str,
    event: &[u8],
    meta: Option<pb::FunctionMeta>,
) -> Result<Vec<pb::InvokeFunctionReply>, tonic::Status> {
    let mut stream = client
        .max_encoding_message_size(faas_common::serve::MAX_MESSAGE_BYTES)
        .invoke_function(pb::InvokeFunctionRequest {
            request_id: "req".into(),
            container_id: container_id.into(),
            event: event.to_vec(),
            function_meta: meta,
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(m) = stream.message().await? {
        out.push(m);
    }
    Ok(out)
}

fn meta(function: &str, handler: &str, memory: i64, timeout: i64) -> pb::FunctionMeta {
    pb::FunctionMeta {
        function_name: function.into(),
        handler: handler.into(),
        timeout_in_ms: timeout,
        memory_in_bytes: memory,
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Pids of this process's children running the function `function`.
fn pids_of(function: &str) -> Vec<u32> {
    children_running(std::process::id(), function)
}

fn the_pid_of(function: &str) -> u32 {
    let pids = pids_of(function);
    assert_eq!(pids.len(), 1, "one process for {function}: {pids:?}");
    pids[0]
}

#[tokio::test]
async fn create_invoke_stats_remove() {
    let node = Node::start().await;
    let function = unique("hello");
    let id = node.create(&function, "hello").await.unwrap();
    assert!(
        uuid::Uuid::parse_str(&id).is_ok(),
        "container id {id} is a uuid"
    );
    let pid = the_pid_of(&function);

    let replies = node.invoke(&id, br#"{"name":"Ada"}"#, None).await.unwrap();
    assert_eq!(replies.len(), 3, "header, body, footer: {replies:?}");
    let header = replies[0].header.as_ref().expect("header first");
    assert_eq!(header.status_code, "200");
    assert!(header.handled);
    assert!(header.error.is_empty());
    assert!(header.max_mem_usage_in_bytes > 0);
    assert_eq!(replies[1].body, br#"{"message":"Hello, Ada!"}"#);
    let footer = replies[2].footer.as_ref().expect("footer last");
    assert!(footer.duration_in_nanos > 0);
    assert_eq!(footer.error, "");

    let stats = node.stats().await;
    let c = stats
        .container_stats_list
        .iter()
        .find(|c| c.container_id == id)
        .expect("the container is in the stats");
    assert!(c.memory_usage_in_bytes > 0);
    assert_eq!(c.total_memory_in_bytes, 256 << 20);
    assert!(c.cpu_usage_pct >= 0.0);
    let n = stats.node_stats.unwrap();
    assert_eq!(
        n.total_memory_in_bytes,
        faas_common::units::CONTEST_NODE_BYTES as i64
    );
    assert!(
        n.memory_usage_in_bytes > c.memory_usage_in_bytes,
        "node includes its own RSS"
    );
    assert_eq!(
        n.available_memory_in_bytes,
        n.total_memory_in_bytes - n.memory_usage_in_bytes
    );
    assert!(n.disk_total_in_bytes > 0 && n.disk_total_inodes > 0);
    assert!(uuid::Uuid::parse_str(&stats.live_id).is_ok());
    assert!(
        exists(pid) && state(pid) != Some('Z'),
        "the container process runs"
    );

    node.remove(&id).await.unwrap();
    assert!(!exists(pid), "pid {pid} was killed and reaped");
    assert!(
        node.stats()
            .await
            .container_stats_list
            .iter()
            .all(|c| c.container_id != id)
    );
    let err = node.invoke(&id, b"", None).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    node.stop().await;
}

#[tokio::test]
async fn bad_requests_get_clear_codes() {
    let node = Node::start().await;
    let err = node.invoke("nope", b"", None).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert_eq!(err.message(), "container nope not found on node node-1");
    let err = node.invoke("", b"", None).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let err = node.remove("nope").await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    let mut client = node.client.clone();
    let function = unique("refused");
    for (name, m) in [
        ("x".to_string(), None),
        ("x".to_string(), Some(meta(&function, "", 1, 0))),
        ("x".to_string(), Some(meta(&function, "hello", 0, 0))),
        ("x".to_string(), Some(meta("", "hello", 1, 0))),
        (
            "x".to_string(),
            Some(meta(&function, "no-such-handler", 1, 0)),
        ),
        ("x".to_string(), Some(meta(&function, "hello", -1, 0))),
        (
            "x".to_string(),
            Some(meta(&function, "hello", 1_000_000_000_000_000_000, 0)),
        ),
        ("x".to_string(), Some(meta(&function, "hello", 1, -1))),
        (
            "x".to_string(),
            Some(meta(&function, "hello", 1, 86_400_001)),
        ),
        (
            "x".to_string(),
            Some(meta(&"f".repeat(1 << 20), "hello", 1, 0)),
        ),
        ("n".repeat(257), Some(meta(&function, "hello", 1, 0))),
    ] {
        let err = client
            .create_container(pb::CreateContainerRequest {
                request_id: "r".into(),
                name,
                function_meta: m,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert!(err.message().len() < 400, "{} bytes", err.message().len());
    }
    let err = node.create(&function, "no-such-handler").await.unwrap_err();
    assert_eq!(
        err.message(),
        "function_meta.handler \"no-such-handler\" is not a built-in handler; use one of \
         hello, echo, sleep, cpu, memory, spin"
    );
    assert!(pids_of(&function).is_empty(), "no process was started");

    let err = client
        .reserve(pb::ReserveRequest {
            request_id: "r".into(),
            owner_account_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    client
        .reserve(pb::ReserveRequest {
            request_id: "r".into(),
            owner_account_id: "acct-7".into(),
        })
        .await
        .unwrap();
    assert_eq!(node.stats().await.owner_account_id, "acct-7");
    node.stop().await;
}

#[tokio::test]
async fn a_function_failure_travels_in_the_stream() {
    let node = Node::start().await;
    let function = unique("sleepy");
    let id = node.create(&function, "sleep").await.unwrap();
    let replies = node
        .invoke(
            &id,
            br#"{"ms":600000}"#,
            Some(meta(&function, "sleep", 256 << 20, 50)),
        )
        .await
        .unwrap();
    let header = replies[0].header.as_ref().unwrap();
    assert_eq!(header.status_code, "500");
    assert_eq!(header.error, b"Timeout: function timed out after 50 ms");
    let footer = replies.last().unwrap().footer.as_ref().unwrap();
    assert_eq!(footer.error, "Timeout: function timed out after 50 ms");
    assert_eq!(footer.invoke_exception, "Timeout");

    let err = node
        .invoke(&id, b"", Some(meta("other", "sleep", 1, 0)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    node.stop().await;
}

fn error_code(status: &tonic::Status) -> Option<&str> {
    status
        .metadata()
        .get(faas_proto::meta::ERROR_CODE)
        .and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn a_container_killed_while_idle_is_unreachable_then_dead() {
    let node = Node::start().await;
    let function = unique("victim");
    let id = node.create(&function, "hello").await.unwrap();
    assert!(
        node.invoke(&id, b"", None).await.is_ok(),
        "a channel is cached"
    );
    let pid = the_pid_of(&function);
    let port = listening_port(pid);
    let open = connections_to(port);
    assert!(
        !open.is_empty(),
        "the node holds a connection to the container"
    );
    kill(pid).await;
    // Wait (for an event, not a time) until the node saw the connection close: the next call
    // must then connect afresh, and the connection is refused.
    until_closed(port, &open).await;

    let err = node.invoke(&id, b"", None).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert_eq!(error_code(&err), Some("ContainerUnreachable"), "{err:?}");
    assert!(
        err.message().contains("cannot be reached"),
        "{}",
        err.message()
    );
    assert!(!exists(pid), "the dead container was reaped");

    let err = node.invoke(&id, b"", None).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert_eq!(error_code(&err), Some("ContainerDead"));
    assert!(err.message().contains("is dead"), "{}", err.message());
    assert!(
        node.stats()
            .await
            .container_stats_list
            .iter()
            .all(|c| c.container_id != id)
    );
    node.remove(&id)
        .await
        .expect("a dead container can be removed");
    let err = node.invoke(&id, b"", None).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert_eq!(error_code(&err), Some("ContainerNotFound"));
    node.stop().await;
}

#[tokio::test]
async fn a_container_killed_during_a_call_is_a_container_exited_reply() {
    let node = Node::start().await;
    let function = unique("busy");
    let id = node.create(&function, "sleep").await.unwrap();
    let pid = the_pid_of(&function);
    // Watch the container directly to know when the call is running in it.
    let port = listening_port(pid);
    let mut watch = faas_proto::container::container_service_client::ContainerServiceClient::new(
        faas_common::serve::connect(&format!("127.0.0.1:{port}"))
            .await
            .unwrap(),
    );
    let call = {
        let (client, id) = (node.client.clone(), id.clone());
        tokio::spawn(async move { invoke_on(client, &id, br#"{"ms":600000}"#, None).await })
    };
    while watch
        .status(faas_proto::container::StatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .in_flight
        == 0
    {
        tokio::task::yield_now().await;
    }
    kill(pid).await;
    let replies = call.await.unwrap().expect("an ordinary reply");
    let footer = replies.last().unwrap().footer.as_ref().expect("a footer");
    assert_eq!(
        footer.invoke_exception, "ContainerExited",
        "{}",
        footer.error
    );
    assert!(!replies[0].header.as_ref().unwrap().handled);
    let err = node.invoke(&id, b"", None).await.unwrap_err();
    assert_eq!(error_code(&err), Some("ContainerDead"));
    node.stop().await;
}

#[tokio::test]
async fn a_six_mib_event_passes_the_node_and_the_container() {
    let node = Node::start().await;
    let id = node.create(&unique("echo"), "echo").await.unwrap();
    let event: Vec<u8> = (0..6 << 20).map(|i: u32| (i % 251) as u8).collect();
    let replies = node.invoke(&id, &event, None).await.unwrap();
    let footer = replies.last().unwrap().footer.as_ref().unwrap();
    assert_eq!(footer.error, "");
    let body: Vec<u8> = replies
        .iter()
        .flat_map(|r| r.body.iter().copied())
        .collect();
    assert!(
        body == event,
        "the body is the event ({} bytes)",
        body.len()
    );
    node.stop().await;
}

#[tokio::test]
async fn an_undecodable_request_is_an_invalid_argument() {
    let node = Node::start().await;
    for (path, message) in [
        (
            "/nodeservoceproto.NodeService/CreateContainer",
            "nodeservoceproto.CreateContainerRequest",
        ),
        (
            "/nodeservoceproto.NodeService/GetStats",
            "nodeservoceproto.GetStatsRequest",
        ),
    ] {
        faas_proto::codec::check_refuses_undecodable(node.channel.clone(), path, message)
            .await
            .unwrap();
    }
    node.stop().await;
}

#[tokio::test]
async fn a_node_refuses_containers_beyond_its_over_commit() {
    let mut config = Config::local();
    config.memory_bytes = 256 << 20;
    config.max_overcommit = 1.5;
    let node = Node::start_with(config).await;
    let function = unique("packed");
    let first = node
        .create_sized(&function, "hello", 256 << 20)
        .await
        .unwrap();
    let err = node
        .create_sized(&function, "hello", (128 << 20) + 1)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().contains("--max-overcommit"),
        "{}",
        err.message()
    );
    assert_eq!(pids_of(&function).len(), 1, "no process was started for it");
    node.create_sized(&function, "hello", 128 << 20)
        .await
        .expect("up to the limit itself");
    node.remove(&first).await.unwrap();
    node.create_sized(&function, "hello", 256 << 20)
        .await
        .expect("a removed container frees its memory");
    node.stop().await;
}

#[tokio::test]
async fn stopping_the_node_leaves_no_container_process() {
    let node = Node::start().await;
    let function = unique("many");
    for _ in 0..3 {
        node.create(&function, "sleep").await.unwrap();
    }
    let pids = pids_of(&function);
    assert_eq!(pids.len(), 3);
    node.stop().await;
    for pid in pids {
        assert!(!exists(pid), "container pid {pid} outlived the node");
    }
    assert!(pids_of(&function).is_empty());
}

#[tokio::test]
async fn the_cpu_of_a_busy_container_is_measured() {
    let node = Node::start().await;
    let function = unique("spinner");
    let id = node.create(&function, "spin").await.unwrap();
    node.stats().await; // first sample
    node.invoke(&id, br#"{"ms":300}"#, None).await.unwrap();
    let stats = node.stats().await;
    let c = stats
        .container_stats_list
        .iter()
        .find(|c| c.container_id == id)
        .unwrap();
    // 300 ms of a busy core leave ticks behind: some CPU was measured.
    assert!(c.cpu_usage_pct > 0.0, "{c:?}");
    assert!(stats.node_stats.unwrap().cpu_usage_pct >= c.cpu_usage_pct);
    node.stop().await;
}

#[tokio::test]
async fn the_binary_refuses_an_over_commit_below_one() {
    for value in ["0.5", "NaN", "inf"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_node-service"))
            .args(["--port", "0", "--warm-pool", "0", "--max-overcommit", value])
            .env("FAAS_CONTAINER_SERVICE_BIN", container_service_bin())
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "--max-overcommit {value} was accepted"
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--max-overcommit must be a number >= 1.0"),
            "{stderr}"
        );
        assert!(out.stdout.is_empty(), "announced before refusing");
    }
}

#[tokio::test]
async fn the_binary_stops_its_containers_on_sigterm() {
    let node_bin = PathBuf::from(env!("CARGO_BIN_EXE_node-service"));
    let mut cmd = tokio::process::Command::new(&node_bin);
    cmd.args(["--port", "0", "--warm-pool", "0"])
        .env("FAAS_CONTAINER_SERVICE_BIN", container_service_bin());
    let (mut child, addr) = faas_common::launch::Child::spawn_ready(cmd, Duration::from_secs(10))
        .await
        .unwrap();
    let node_pid = child.id().unwrap();
    let channel = faas_common::serve::connect(&addr.to_string())
        .await
        .unwrap();
    let mut client = NodeServiceClient::new(channel);
    let function = unique("orphan");
    client
        .create_container(pb::CreateContainerRequest {
            request_id: "r".into(),
            name: "x".into(),
            function_meta: Some(meta(&function, "hello", 64 << 20, 0)),
        })
        .await
        .unwrap();
    let container_pids = children_running(node_pid, &function);
    assert_eq!(container_pids.len(), 1, "the container is the node's child");
    child.stop(Duration::from_secs(10)).await; // SIGTERM, then wait
    assert!(child.has_exited());
    assert!(
        !exists(container_pids[0]),
        "the container outlived its node"
    );
}
