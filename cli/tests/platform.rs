//! The whole platform end to end on 127.0.0.1: the resource manager, scheduler and API server
//! in-process over real gRPC, real node-service and container-service child processes.

mod support;

use std::collections::HashSet;

use faas_proto::admin::{DeployFunctionRequest, FunctionSpec};
use faas_proto::nodeservoceproto::GetStatsRequest;
use faas_proto::nodeservoceproto::node_service_client::NodeServiceClient;
use faas_proto::resourcemanagerproto::GetNodesUsageRequest;
use faas_proto::resourcemanagerproto::resource_manager_client::ResourceManagerClient;
use faas_proto::schedulerproto::AcquireContainerRequest;
use faas_proto::schedulerproto::scheduler_client::SchedulerClient;
use serde_json::Value;
use tonic::Code;

const ACCOUNT: &str = "test-account";

fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_builtin_function_gives_the_right_body() {
    let (platform, api) = support::start(support::small_options()).await;

    let hello = api
        .invoke(ACCOUNT, "hello", br#"{"name":"Ada"}"#.to_vec())
        .await
        .unwrap();
    assert_eq!(json(&hello.body)["message"], "Hello, Ada!");

    let event = br#"{"anything": [1, 2, 3], "text": "as is"}"#.to_vec();
    let echo = api.invoke(ACCOUNT, "echo", event.clone()).await.unwrap();
    assert_eq!(echo.body, event);

    let sleep = api
        .invoke(ACCOUNT, "sleep", br#"{"ms":120}"#.to_vec())
        .await
        .unwrap();
    let slept_ns = sleep.duration_ns.expect("duration metadata");
    assert!(slept_ns >= 120_000_000, "sleep ran {slept_ns} ns");

    let cpu = api
        .invoke(ACCOUNT, "cpu", br#"{"rounds":1000}"#.to_vec())
        .await
        .unwrap();
    let cpu = json(&cpu.body);
    assert_eq!(cpu["rounds"], 1000);
    assert_eq!(cpu["digest"].as_str().map(str::len), Some(64), "{cpu}");

    let memory = api
        .invoke(ACCOUNT, "memory", br#"{"mb":24,"ms":10}"#.to_vec())
        .await
        .unwrap();
    assert_eq!(json(&memory.body)["mb"], 24);
    let peak = memory.max_memory_bytes.expect("peak memory metadata");
    assert!(
        peak >= 24 << 20,
        "peak memory {peak} below the 24 MiB touched"
    );

    let spin = api
        .invoke(ACCOUNT, "spin", br#"{"ms":30,"mb":1}"#.to_vec())
        .await
        .unwrap();
    assert!(spin.duration_ns.unwrap() >= 30_000_000);

    platform.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_invocations_all_succeed() {
    let options = faas_cli::platform::PlatformOptions {
        ready_nodes: 10,
        max_nodes: 20,
        refill_delay_ms: 100,
        ..Default::default()
    };
    let (platform, api) = support::start(options).await;
    let calls: Vec<_> = (0..200)
        .map(|i| {
            let api = api.clone();
            tokio::spawn(async move {
                let event = format!(r#"{{"name":"caller {i}"}}"#);
                api.invoke(ACCOUNT, "hello", event.into_bytes()).await
            })
        })
        .collect();
    let mut request_ids = HashSet::new();
    for (i, call) in calls.into_iter().enumerate() {
        let out = call
            .await
            .unwrap()
            .unwrap_or_else(|s| panic!("call {i}: {s:?}"));
        assert_eq!(json(&out.body)["message"], format!("Hello, caller {i}!"));
        request_ids.insert(out.request_id);
    }
    assert_eq!(
        request_ids.len(),
        200,
        "every invocation has its own request id"
    );
    platform.stop().await.unwrap();
}

/// How many containers the node services report, over every reserved node (asked with the
/// platform's cluster token).
async fn containers_on_nodes(platform: &faas_cli::platform::LocalPlatform) -> usize {
    let auth = platform.cluster_auth();
    let channel = faas_common::serve::connect(&platform.resource_manager.to_string())
        .await
        .unwrap();
    let nodes = ResourceManagerClient::new(auth.channel(channel))
        .get_nodes_usage(GetNodesUsageRequest {
            request_id: "t".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .nodes;
    let mut total = 0;
    for node in nodes.iter().filter(|n| n.released_time_timestamp_ms == 0) {
        let addr = format!("{}:{}", node.address, node.node_service_port);
        let channel = faas_common::serve::connect(&addr).await.unwrap();
        let stats = NodeServiceClient::new(auth.channel(channel))
            .get_stats(GetStatsRequest {
                request_id: "t".into(),
            })
            .await
            .unwrap()
            .into_inner();
        total += stats.container_stats_list.len();
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_call_reuses_the_warm_container() {
    let (platform, api) = support::start(support::small_options()).await;
    let first = api.invoke(ACCOUNT, "hello", vec![]).await.unwrap();
    let second = api.invoke(ACCOUNT, "hello", vec![]).await.unwrap();
    assert_eq!(first.cold, Some(true), "the first call starts a container");
    assert_eq!(second.cold, Some(false), "the second call finds it warm");
    assert_eq!(first.container_id, second.container_id);
    assert_eq!(
        containers_on_nodes(&platform).await,
        1,
        "the node services saw exactly one create"
    );
    platform.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_gets_the_documented_status() {
    let (platform, api) = support::start(support::small_options()).await;

    let err = api
        .invoke(ACCOUNT, "no-such-function", vec![])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(err.message().contains("no-such-function"), "{err:?}");

    let err = api.invoke("", "hello", vec![]).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("account ID cannot be empty"),
        "{err:?}"
    );

    let oversize = vec![b'x'; 6 * 1024 * 1024 + 1];
    let err = api.invoke(ACCOUNT, "echo", oversize).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    // The scheduler itself, called as a contest API server would (with the platform's
    // cluster token), without a config.
    let channel = faas_common::serve::connect(&platform.scheduler.to_string())
        .await
        .unwrap();
    let err = SchedulerClient::new(platform.cluster_auth().channel(channel))
        .acquire_container(AcquireContainerRequest {
            request_id: "r-1".into(),
            account_id: ACCOUNT.into(),
            function_name: "hello".into(),
            function_config: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("function config cannot be nil"),
        "{err:?}"
    );

    // A function past its timeout.
    api.admin()
        .deploy_function(DeployFunctionRequest {
            function: Some(FunctionSpec {
                name: "slow".into(),
                handler: "sleep".into(),
                memory_in_bytes: 128 << 20,
                timeout_in_ms: 100,
                description: "sleeps past its timeout".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let err = api
        .invoke(ACCOUNT, "slow", br#"{"ms":2000}"#.to_vec())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(err.message().contains("timed out"), "{err:?}");
    // The container was returned: the next call of the same function is served warm.
    let ok = api
        .invoke(ACCOUNT, "slow", br#"{"ms":1}"#.to_vec())
        .await
        .unwrap();
    assert_eq!(
        ok.cold,
        Some(false),
        "the timed-out call returned its container"
    );

    platform.stop().await.unwrap();
}
