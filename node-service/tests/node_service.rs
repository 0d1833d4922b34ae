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
use support::{Served, children_running, container_service_bin, exists, serve, state, threads};
use tonic::transport::Channel;

struct Node {
    client: NodeServiceClient<Channel>,
    trigger: Trigger,
    task: tokio::task::JoinHandle<Result<(), faas_node_service::Error>>,
}

impl Node {
    async fn start() -> Node {
        let mut config = Config::local();
        config.node_id = Some("node-1".into());
        config.warm_pool = 0;
        let Served {
            client,
            trigger,
            task,
        } = serve(config).await;
        Node {
            client,
            trigger,
            task,
        }
    }

    async fn stop(self) {
        self.trigger.trigger();
        self.task.await.unwrap().unwrap();
    }

    async fn create(&self, function: &str, handler: &str) -> Result<String, tonic::Status> {
        self.client
            .clone()
            .create_container(pb::CreateContainerRequest {
                request_id: "req".into(),
                name: function.into(),
                function_meta: Some(meta(function, handler, 256 << 20, 0)),
            })
            .await
            .map(|r| r.into_inner().container_id)
    }

    async fn invoke(
        &self,
        container_id: &str,
        event: &[u8],
        meta: Option<pb::FunctionMeta>,
    ) -> Result<Vec<pb::InvokeFunctionReply>, tonic::Status> {
        let mut stream = self
            .client
            .clone()
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
    assert_eq!(n.total_memory_in_bytes, 3_221_225_472);
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

    node.client
        .clone()
        .remove_container(pb::RemoveContainerRequest {
            request_id: "r".into(),
            container_id: id.clone(),
        })
        .await
        .unwrap();
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
    let err = node
        .client
        .clone()
        .remove_container(pb::RemoveContainerRequest {
            request_id: "r".into(),
            container_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    let mut client = node.client.clone();
    for m in [
        None,
        Some(meta("f", "", 1, 0)),
        Some(meta("f", "hello", 0, 0)),
        Some(meta("", "hello", 1, 0)),
    ] {
        let err = client
            .create_container(pb::CreateContainerRequest {
                request_id: "r".into(),
                name: "x".into(),
                function_meta: m,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    }
    let err = node
        .create(&unique("f"), "no-such-handler")
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("failed to start"),
        "{}",
        err.message()
    );

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

#[tokio::test]
async fn a_killed_container_is_reported_exited_and_dead() {
    let node = Node::start().await;
    let function = unique("victim");
    let id = node.create(&function, "hello").await.unwrap();
    assert!(
        node.invoke(&id, b"", None).await.is_ok(),
        "a channel is cached"
    );
    let pid = the_pid_of(&function);
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // Wait for the kernel to finish the kill (every thread gone: a zombie, or reaped), not
    // for a time. The leader thread shows `Z` while other threads may still be exiting.
    while exists(pid) && (state(pid) != Some('Z') || threads(pid) > 1) {
        tokio::task::yield_now().await;
    }

    let replies = node.invoke(&id, b"", None).await.unwrap();
    let footer = replies.last().unwrap().footer.as_ref().expect("a footer");
    assert!(
        footer.error.starts_with("ContainerExited: "),
        "{}",
        footer.error
    );
    assert!(footer.error.contains("process exited"), "{}", footer.error);
    assert!(!replies[0].header.as_ref().unwrap().handled);
    assert!(!exists(pid), "the dead container was reaped");

    let err = node.invoke(&id, b"", None).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(err.message().contains("is dead"), "{}", err.message());
    assert!(
        node.stats()
            .await
            .container_stats_list
            .iter()
            .all(|c| c.container_id != id)
    );
    node.client
        .clone()
        .remove_container(pb::RemoveContainerRequest {
            request_id: "r".into(),
            container_id: id,
        })
        .await
        .expect("a dead container can be removed");
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
