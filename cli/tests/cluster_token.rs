//! The cluster token on a platform `faas up` starts (`LocalPlatform`): it is made once per
//! data directory (`DATA_DIR/cluster-token`, mode 0600) and every component requires it, so
//! an outsider who can reach the ports cannot take the scheduler's nodes away
//! (`ReleaseNode`), take the free ones (`ReserveNode`), re-own a node (`Reserve`) or make the
//! scheduler start containers (`AcquireContainer`); the platform itself, with the token, works
//! (the other cli tests run whole workloads through it).

mod support;

use faas_cli::platform::PlatformOptions;
use faas_common::token::{ClusterToken, FILE_NAME};
use faas_proto::nodeservoceproto::ReserveRequest;
use faas_proto::nodeservoceproto::node_service_client::NodeServiceClient;
use faas_proto::resourcemanagerproto::resource_manager_client::ResourceManagerClient;
use faas_proto::resourcemanagerproto::{
    GetNodesUsageRequest, ReleaseNodeRequest, ReserveNodeRequest,
};
use faas_proto::schedulerproto::scheduler_client::SchedulerClient;
use faas_proto::schedulerproto::{AcquireContainerRequest, FunctionConfig};
use tonic::Code;

async fn connect(addr: &str) -> tonic::transport::Channel {
    faas_common::serve::connect(addr).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_outsider_without_the_token_cannot_touch_nodes_or_containers() {
    let data = tempfile::tempdir().unwrap();
    let options = PlatformOptions {
        ready_nodes: 2,
        max_nodes: 4,
        refill_delay_ms: 100,
        data_dir: Some(data.path().to_path_buf()),
        ..PlatformOptions::default()
    };
    support::use_built_binary();
    let platform = faas_cli::platform::LocalPlatform::start(&options)
        .await
        .expect("platform starts");

    // One token per data directory, readable by its owner only.
    let file = data.path().join(FILE_NAME);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        Some(ClusterToken::read(&file).unwrap()),
        platform.cluster_token
    );

    // The platform's own view, with the token: a node the scheduler holds.
    let auth = platform.cluster_auth();
    let rm_addr = platform.resource_manager.to_string();
    let mut rm = ResourceManagerClient::new(auth.channel(connect(&rm_addr).await));
    let reserved = rm
        .reserve_node(ReserveNodeRequest {
            request_id: "platform".into(),
            account_id: "owner".into(),
        })
        .await
        .expect("a reserve with the token")
        .into_inner()
        .node
        .unwrap();

    // The outsider, who can reach every port.
    let mut stranger = ResourceManagerClient::new(connect(&rm_addr).await);
    let release = ReleaseNodeRequest {
        request_id: "x".into(),
        id: reserved.id.clone(),
    };
    let reserve = ReserveNodeRequest {
        request_id: "x".into(),
        account_id: "outsider".into(),
    };
    let node_addr = format!("{}:{}", reserved.address, reserved.node_service_port);
    let mut node = NodeServiceClient::new(connect(&node_addr).await);
    let re_own = ReserveRequest {
        request_id: "x".into(),
        owner_account_id: "outsider".into(),
    };
    let mut scheduler = SchedulerClient::new(connect(&platform.scheduler.to_string()).await);
    let acquire = AcquireContainerRequest {
        request_id: "x".into(),
        account_id: "outsider".into(),
        function_name: "hello".into(),
        function_config: Some(FunctionConfig {
            timeout_in_ms: 1000,
            memory_in_bytes: 128 << 20,
            handler: "hello".into(),
        }),
    };
    let refused = [
        stranger.release_node(release).await.map(drop),
        stranger.reserve_node(reserve).await.map(drop),
        node.reserve(re_own).await.map(drop),
        scheduler.acquire_container(acquire).await.map(drop),
    ];
    for (i, result) in refused.into_iter().enumerate() {
        let err = result.expect_err("an outsider's call is refused");
        assert_eq!(err.code(), Code::Unauthenticated, "call {i}: {err:?}");
    }

    // Nothing moved: the node is still reserved.
    let nodes = rm
        .get_nodes_usage(GetNodesUsageRequest::default())
        .await
        .unwrap()
        .into_inner()
        .nodes;
    let still = nodes.iter().find(|n| n.id == reserved.id).unwrap();
    assert_eq!(still.released_time_timestamp_ms, 0, "{still:?}");
    rm.release_node(ReleaseNodeRequest {
        request_id: "platform".into(),
        id: reserved.id,
    })
    .await
    .expect("the owner releases it");
    platform.stop().await.unwrap();
}
