//! Integration tests of `faas.node.v1.NodeAdmin/DescribeNode`: the node service started
//! in-process on 127.0.0.1:0 through `run`, its containers real `container-service` child
//! processes, described over gRPC on the same port as the contest's `NodeService`.
//!
//! "A call is running in the container" is read from the container service itself (its
//! `Status.in_flight`, on its own port found through `/proc`), so the test looks at the
//! node's count while the call is known to be under way, instead of guessing a time. Wall
//! times are checked to lie between readings of the clock taken before and after the event.

mod support;

use std::time::Duration;

use faas_common::clock::now_ms;
use faas_node_service::Config;
use faas_proto::container::StatusRequest;
use faas_proto::container::container_service_client::ContainerServiceClient;
use faas_proto::node_admin::node_admin_client::NodeAdminClient;
use faas_proto::node_admin::{ContainerInfo, DescribeNodeReply, DescribeNodeRequest};
use faas_proto::nodeservoceproto as pb;
use pb::node_service_client::NodeServiceClient;
use support::{children_running, kill, listening_port, serve};
use tonic::transport::Channel;

/// How long a condition the test waits for may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(30);

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

async fn describe(admin: &NodeAdminClient<Channel>) -> DescribeNodeReply {
    admin
        .clone()
        .describe_node(DescribeNodeRequest {})
        .await
        .unwrap()
        .into_inner()
}

async fn container(admin: &NodeAdminClient<Channel>, id: &str) -> ContainerInfo {
    describe(admin)
        .await
        .containers
        .into_iter()
        .find(|c| c.container_id == id)
        .unwrap_or_else(|| panic!("container {id} is not described"))
}

/// (function, handler, memory, timeout) of a described container.
fn function_of(c: &ContainerInfo) -> (&str, &str, i64, i64) {
    (
        c.function_name.as_str(),
        c.handler.as_str(),
        c.memory_in_bytes,
        c.timeout_in_ms,
    )
}

async fn create(
    client: &NodeServiceClient<Channel>,
    function: &str,
    handler: &str,
    memory: i64,
    timeout: i64,
) -> String {
    client
        .clone()
        .create_container(pb::CreateContainerRequest {
            request_id: "req".into(),
            name: function.into(),
            function_meta: Some(pb::FunctionMeta {
                function_name: function.into(),
                handler: handler.into(),
                timeout_in_ms: timeout,
                memory_in_bytes: memory,
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .container_id
}

/// Starts one `sleep` call of `ms` in container `id`; returns the task that collects its
/// reply stream (its footer's error, "" on success).
fn start_sleep(
    client: &NodeServiceClient<Channel>,
    id: &str,
    ms: u64,
) -> tokio::task::JoinHandle<String> {
    let (mut client, id) = (client.clone(), id.to_string());
    tokio::spawn(async move {
        let mut stream = client
            .invoke_function(pb::InvokeFunctionRequest {
                request_id: "sleep".into(),
                container_id: id,
                event: format!(r#"{{"ms":{ms}}}"#).into_bytes(),
                function_meta: None,
            })
            .await
            .unwrap()
            .into_inner();
        let mut error = None;
        while let Some(m) = stream.message().await.unwrap() {
            if let Some(f) = m.footer {
                error = Some(f.error);
            }
        }
        error.expect("a footer")
    })
}

/// A client of the container service of the only container running `function`.
async fn container_service(function: &str) -> ContainerServiceClient<Channel> {
    let pids = children_running(std::process::id(), function);
    assert_eq!(pids.len(), 1, "one process for {function}: {pids:?}");
    let port = listening_port(pids[0]);
    ContainerServiceClient::new(
        faas_common::serve::connect(&format!("127.0.0.1:{port}"))
            .await
            .unwrap(),
    )
}

/// Waits until the container service runs `n` calls.
async fn until_running_in_container(c: &mut ContainerServiceClient<Channel>, n: i64) {
    tokio::time::timeout(PATIENCE, async {
        while c
            .status(StatusRequest {})
            .await
            .unwrap()
            .into_inner()
            .in_flight
            != n
        {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the container never ran {n} calls"));
}

#[tokio::test]
async fn describe_node_tells_the_node_its_reservation_and_its_containers_with_their_calls() {
    let mut config = Config::local();
    config.node_id = Some("node-described".into());
    config.memory_bytes = 2 << 30;
    config.warm_pool = 0;
    let node = serve(config).await;
    let (client, admin) = (&node.client, NodeAdminClient::new(node.channel.clone()));

    // Before any reservation or container.
    let d = describe(&admin).await;
    let stats = client
        .clone()
        .get_stats(pb::GetStatsRequest {
            request_id: "s".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.node_id, "node-described");
    assert_eq!(d.live_id, stats.live_id, "the same life as GetStats tells");
    assert_eq!((d.owner_account_id.as_str(), d.reserved_at_ms), ("", 0));
    assert_eq!(d.total_memory_in_bytes, 2 << 30);
    assert!(d.containers.is_empty());

    // Reserve: the owner and when.
    let before = now_ms();
    client
        .clone()
        .reserve(pb::ReserveRequest {
            request_id: "r".into(),
            owner_account_id: "acct-42".into(),
        })
        .await
        .unwrap();
    let after = now_ms();
    let d = describe(&admin).await;
    assert_eq!(d.owner_account_id, "acct-42");
    assert!(
        (before..=after).contains(&d.reserved_at_ms),
        "{before} <= {} <= {after}",
        d.reserved_at_ms
    );

    // Two functions.
    let (greeter, sleeper) = (unique("greeter"), unique("sleeper"));
    let before = now_ms();
    let hello = create(client, &greeter, "hello", 128 << 20, 0).await;
    let sleep = create(client, &sleeper, "sleep", 256 << 20, 600_000).await;
    let after = now_ms();
    let d = describe(&admin).await;
    assert_eq!(d.containers.len(), 2);
    let h = container(&admin, &hello).await;
    assert_eq!(function_of(&h), (greeter.as_str(), "hello", 128 << 20, 0));
    let s = container(&admin, &sleep).await;
    assert_eq!(
        function_of(&s),
        (sleeper.as_str(), "sleep", 256 << 20, 600_000)
    );
    for c in [&h, &s] {
        assert_eq!((c.state.as_str(), c.in_flight), ("running", 0));
        assert!((before..=after).contains(&c.created_at_ms), "{c:?}");
        assert_eq!(c.last_used_at_ms, c.created_at_ms, "never used: {c:?}");
    }

    // One call in flight, seen by the container itself; then over.
    let mut in_sleeper = container_service(&sleeper).await;
    let started = now_ms();
    let call = start_sleep(client, &sleep, 2_000);
    until_running_in_container(&mut in_sleeper, 1).await;
    let running = container(&admin, &sleep).await;
    assert_eq!(running.in_flight, 1, "{running:?}");
    assert!(
        running.last_used_at_ms >= started,
        "the start is a use: {running:?}"
    );
    assert_eq!(container(&admin, &hello).await.in_flight, 0);
    assert_eq!(call.await.unwrap(), "", "the sleep succeeded");
    let ended = now_ms();
    let s = container(&admin, &sleep).await;
    assert_eq!(s.in_flight, 0, "{s:?}");
    assert!(
        s.last_used_at_ms > running.last_used_at_ms && s.last_used_at_ms <= ended,
        "the end is a use: {} < {} <= {ended}",
        running.last_used_at_ms,
        s.last_used_at_ms
    );

    // A call whose caller goes away is no longer in flight at the node.
    let call = start_sleep(client, &sleep, 600_000);
    until_running_in_container(&mut in_sleeper, 1).await;
    assert_eq!(container(&admin, &sleep).await.in_flight, 1);
    call.abort();
    tokio::time::timeout(PATIENCE, async {
        while container(&admin, &sleep).await.in_flight != 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the dropped call left the node's count");

    // A killed container reads dead (the node asks its runtime), the other still runs.
    let pids = children_running(std::process::id(), &greeter);
    assert_eq!(pids.len(), 1);
    kill(pids[0]).await;
    let h = container(&admin, &hello).await;
    assert_eq!((h.state.as_str(), h.in_flight), ("dead", 0));
    assert_eq!(container(&admin, &sleep).await.state, "running");

    // Removed: no longer described.
    client
        .clone()
        .remove_container(pb::RemoveContainerRequest {
            request_id: "rm".into(),
            container_id: hello.clone(),
        })
        .await
        .unwrap();
    let d = describe(&admin).await;
    assert_eq!(
        d.containers
            .iter()
            .map(|c| c.container_id.as_str())
            .collect::<Vec<_>>(),
        vec![sleep.as_str()]
    );

    node.trigger.trigger();
    node.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_node_admin_service_reports_serving_on_the_health_service() {
    let mut config = Config::local();
    config.warm_pool = 0;
    let node = serve(config).await;
    let reply = tonic_health::pb::health_client::HealthClient::new(node.channel.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: "faas.node.v1.NodeAdmin".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        reply.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    node.trigger.trigger();
    node.task.await.unwrap().unwrap();
}
