//! The resource manager with the real `local` provider: real node-service processes
//! (the harness is in `support`).

mod support;

use std::path::Path;

use faas_common::units::CONTEST_NODE_BYTES;
use faas_proto::nodeservoceproto::GetStatsRequest;
use faas_proto::nodeservoceproto::node_service_client::NodeServiceClient;
use faas_resource_manager::Config;
use support::{Manager, node_processes, release, reserve, test_config, usage};
use tonic::Code;

#[tokio::test]
async fn reserve_hands_over_a_live_node_and_release_stops_it() {
    let rm = Manager::start("handover", 2, 3).await;
    let mut client = rm.client().await;

    let err = reserve(&mut client, "").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), "account ID cannot be empty");

    let before = faas_common::clock::now_ms();
    let node = reserve(&mut client, "acct-1").await.unwrap();
    assert!(node.id.starts_with("handover-"), "{node:?}");
    assert_eq!(node.memory_in_bytes, CONTEST_NODE_BYTES as i64);
    assert!(node.reserved_time_timestamp_ms >= before, "{node:?}");
    assert_eq!(node.released_time_timestamp_ms, 0);
    assert!(node.node_service_port > 0);

    // The node answers and knows its owner.
    let node_addr = format!("{}:{}", node.address, node.node_service_port);
    let channel = faas_common::serve::connect(&node_addr).await.unwrap();
    let stats = NodeServiceClient::new(channel)
        .get_stats(GetStatsRequest {
            request_id: "stats-1".to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.owner_account_id, "acct-1");

    let processes = node_processes("handover");
    assert_eq!(
        processes.len(),
        2,
        "the two initial nodes run: {processes:?}"
    );
    let pid = processes
        .iter()
        .find(|(_, id)| *id == node.id)
        .map(|(pid, _)| *pid)
        .expect("the reserved node's process");

    let records = usage(&mut client).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].id, node.id);
    assert_eq!(records[0].released_time_timestamp_ms, 0);

    release(&mut client, &node.id).await.unwrap();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "node-service {pid} still exists after release"
    );
    assert!(
        tokio::net::TcpStream::connect(&node_addr).await.is_err(),
        "the released node's port still accepts connections"
    );

    let records = usage(&mut client).await;
    assert_eq!(records.len(), 1, "released nodes keep their usage record");
    assert!(records[0].released_time_timestamp_ms >= records[0].reserved_time_timestamp_ms);

    let err = release(&mut client, &node.id).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(
        err.message(),
        format!(
            "node {:?} is not reserved (it is released); only a reserved node can be released",
            node.id
        )
    );
    let err = release(&mut client, "no-such-node").await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(
        err.message(),
        "node \"no-such-node\" not found: this resource manager has no node of that id (ids come from ReserveNode)"
    );
    let err = release(&mut client, "").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), "node ID cannot be empty");

    rm.stop().await;
}

#[tokio::test]
async fn one_node_pool_is_exhausted_after_one_reserve() {
    let rm = Manager::start("exhaust", 1, 1).await;
    let mut client = rm.client().await;
    let node = reserve(&mut client, "acct-2").await.unwrap();
    assert!(node.id.starts_with("exhaust-"));

    let err = reserve(&mut client, "acct-2").await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(err.message(), "no available node can be reserved");

    rm.stop().await;
}

#[tokio::test]
async fn shutdown_stops_every_node_it_started() {
    let rm = Manager::start("shutdown", 3, 5).await;
    rm.wait_serving().await;
    let mut client = rm.client().await;
    reserve(&mut client, "acct-3").await.unwrap();
    let running = node_processes("shutdown");
    assert_eq!(
        running.len(),
        3,
        "ready and reserved nodes run: {running:?}"
    );
    rm.stop().await;
}

#[tokio::test]
async fn parallel_reserves_never_share_a_node() {
    let rm = Manager::start("parallel", 3, 3).await;
    let client = rm.client().await;
    let calls = (0..5).map(|i| {
        let mut client = client.clone();
        async move { reserve(&mut client, &format!("acct-{i}")).await }
    });
    let results = futures::future::join_all(calls).await;
    let mut ids: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().map(|n| n.id.clone()))
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "three distinct nodes: {results:?}");
    let exhausted = results
        .iter()
        .filter(|r| {
            r.as_ref()
                .is_err_and(|e| e.code() == Code::ResourceExhausted)
        })
        .count();
    assert_eq!(exhausted, 2, "{results:?}");
    rm.stop().await;
}

#[tokio::test]
async fn nodes_get_the_warm_pool_size() {
    let rm = Manager::start_with(Config {
        node_warm_pool: Some(1),
        metrics_port: None,
        ..test_config("pooled", 1, 1)
    })
    .await;
    rm.wait_serving().await;
    let nodes = node_processes("pooled");
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", nodes[0].0)).unwrap();
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    assert!(
        args.windows(2).any(|w| w == ["--warm-pool", "1"]),
        "{args:?}"
    );
    rm.stop().await;
}

#[tokio::test]
async fn ids_are_checked_and_bad_requests_are_invalid_arguments() {
    let rm = Manager::start("checks", 1, 1).await;
    let mut client = rm.client().await;

    // Oversized ids: refused before anything happens, quoted clipped.
    let long = "a".repeat(10_000);
    for err in [
        reserve(&mut client, &long).await.unwrap_err(),
        release(&mut client, &long).await.unwrap_err(),
    ] {
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(
            err.message().contains("is too long: at most 256 bytes"),
            "{err:?}"
        );
        assert!(
            err.message().len() < 300,
            "clipped: {} bytes",
            err.message().len()
        );
    }
    let just_fits = "b".repeat(256);
    let node = reserve(&mut client, &just_fits).await.unwrap();
    let err = release(&mut client, &"n".repeat(256)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    // A body that is not a ReleaseNodeRequest at all.
    let err = faas_proto::codec::call_raw(
        rm.channel().await,
        "/resourcemanagerproto.ResourceManager/ReleaseNode",
        faas_proto::codec::NOT_UTF8_FIELD_1.to_vec(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    release(&mut client, &node.id).await.unwrap();
    rm.stop().await;
}

#[tokio::test]
async fn a_node_that_exits_before_announcing_is_a_start_failure_never_ready() {
    // `false` ignores its arguments and exits 1 at once, as a node service that cannot start.
    let rm = Manager::start_with(Config {
        node_service_bin: Some("false".into()),
        ..test_config("exits", 1, 1)
    })
    .await;
    rm.wait_serving().await;
    rm.wait_metric(
        "faas_resource_manager_node_start_failures_total{reason=\"exited\"}",
        1.0,
        std::time::Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        rm.metric("faas_resource_manager_nodes{state=\"ready\"}")
            .await,
        0.0
    );
    let mut client = rm.client().await;
    let err = reserve(&mut client, "acct").await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    rm.stop().await;
}
