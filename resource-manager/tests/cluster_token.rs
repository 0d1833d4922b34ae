//! A resource manager with a cluster token (`faas_common::token`), served in-process with
//! real node-service children: a stranger (no token, or a wrong one) can neither reserve,
//! release nor list nodes (UNAUTHENTICATED); the platform (the right token) can, its health
//! stays open; the nodes it starts got the token (in their environment, never on their
//! command line) and refuse a stranger's `Reserve` too; and a restarted manager with the same
//! token takes its nodes back (recovery asks them who they are with the token).
//!
//! `ReleaseNodeRequest` carries no account, so ownership of a release rests on the token:
//! only the platform's own components hold it.

mod support;

use faas_common::token::{ClusterAuth, TokenArgs};
use faas_proto::nodeservoceproto::ReserveRequest;
use faas_proto::nodeservoceproto::node_service_client::NodeServiceClient;
use faas_proto::resourcemanagerproto::resource_manager_client::ResourceManagerClient;
use faas_proto::resourcemanagerproto::{GetNodesUsageRequest, NodeDesc};
use faas_resource_manager::Config;
use support::{
    KillNodesOnDrop, Manager, StateDir, free_port, node_processes, release, reserve, test_config,
    usage,
};
use tonic::Code;

const TOKEN: &str = "rm-test-token-0123456789abcdef";

fn with_token(config: Config) -> Config {
    Config {
        cluster: TokenArgs::with(Some(TOKEN.parse().unwrap())),
        ..config
    }
}

/// The nodes reserved and not released.
fn held(nodes: Vec<NodeDesc>) -> Vec<NodeDesc> {
    nodes
        .into_iter()
        .filter(|n| n.released_time_timestamp_ms == 0)
        .collect()
}

#[tokio::test]
async fn strangers_can_neither_reserve_release_nor_list_nodes() {
    let prefix = "stranger";
    let rm = Manager::start_with(with_token(test_config(prefix, 2, 2))).await;
    rm.wait_serving().await;
    let mut platform = rm.client().await;
    let node = reserve(&mut platform, "acct")
        .await
        .expect("the platform reserves (and the node takes its Reserve: it has the token)");

    let wrong = "not-the-token-0123456789".parse().unwrap();
    let outsiders = [
        (None, "this resource manager requires the cluster token"),
        (
            Some(wrong),
            "the cluster token sent to this resource manager is wrong",
        ),
    ];
    for (token, message) in outsiders {
        let auth = ClusterAuth::new(token.as_ref());
        let mut outsider = ResourceManagerClient::new(auth.channel(rm.channel().await));
        for err in [
            release(&mut outsider, &node.id).await.unwrap_err(),
            reserve(&mut outsider, "thief").await.unwrap_err(),
            outsider
                .get_nodes_usage(GetNodesUsageRequest::default())
                .await
                .unwrap_err(),
        ] {
            assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
            assert!(err.message().starts_with(message), "{err:?}");
        }
    }

    // Nothing changed: the node is still reserved, the other one still free.
    let still = held(usage(&mut platform).await);
    assert_eq!(still.len(), 1, "{still:?}");
    assert_eq!(still[0].id, node.id);

    // The node got the token, not on its command line, and refuses a stranger's Reserve.
    for (pid, _) in node_processes(prefix) {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        assert!(
            !String::from_utf8_lossy(&cmdline).contains(TOKEN),
            "the token is not on a node's command line"
        );
    }
    let node_addr = format!("{}:{}", node.address, node.node_service_port);
    let channel = faas_common::serve::connect(&node_addr).await.unwrap();
    let err = NodeServiceClient::new(channel)
        .reserve(ReserveRequest {
            request_id: "r".into(),
            owner_account_id: "thief".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");

    release(&mut platform, &node.id)
        .await
        .expect("the platform releases its node");
    assert!(held(usage(&mut platform).await).is_empty());
    rm.stop().await;
}

#[tokio::test]
async fn a_restarted_manager_with_the_token_takes_its_nodes_back() {
    let prefix = "tokenback";
    let _leftovers = KillNodesOnDrop(prefix.to_string());
    let dir = StateDir::new(prefix);
    let config = with_token(Config {
        state_dir: Some(dir.0.clone()),
        ..test_config(prefix, 1, 2)
    });
    let rm = Manager::start_with(config.clone()).await;
    rm.wait_serving().await;
    let node = reserve(&mut rm.client().await, "acct").await.unwrap();
    rm.crash().await;

    let again = Manager::start_with(Config {
        metrics_port: Some(free_port()),
        ..config
    })
    .await;
    again.wait_serving().await;
    let mut platform = again.client().await;
    let back = held(usage(&mut platform).await);
    assert_eq!(back.len(), 1, "{back:?}");
    assert_eq!(
        (back[0].id.as_str(), back[0].node_service_port),
        (node.id.as_str(), node.node_service_port),
        "the same node, taken back (it answered DescribeNode with the token)"
    );
    release(&mut platform, &node.id).await.unwrap();
    again.stop().await;
}
