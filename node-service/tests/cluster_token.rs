//! A node service with a cluster token (`faas_common::token`) over real gRPC on 127.0.0.1:0:
//! `NodeService` and `NodeAdmin` refuse a call without the token or with a wrong one
//! (UNAUTHENTICATED, two different messages), take it with the right one, and leave
//! `grpc.health.v1` open; and a node takes `Reserve` once (the same account again is fine,
//! another is FAILED_PRECONDITION naming the owner), with or without a token.

use faas_common::shutdown::{self, Trigger};
use faas_common::token::{ClusterAuth, ClusterToken, TokenArgs};
use faas_node_service::{Config, run};
use faas_proto::node_admin::DescribeNodeRequest;
use faas_proto::node_admin::node_admin_client::NodeAdminClient;
use faas_proto::nodeservoceproto::node_service_client::NodeServiceClient;
use faas_proto::nodeservoceproto::{GetStatsRequest, ReserveRequest};
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const TOKEN: &str = "node-test-token-0123456789abcdef";

/// A node with `token` and no containers (no warm pool, so no container binary runs).
async fn serve(token: Option<&str>) -> (Channel, Trigger) {
    let config = Config {
        node_id: Some("n-token".into()),
        warm_pool: 0,
        container_service_bin: Some("/bin/false".into()),
        cluster: TokenArgs::with(token.map(|t| t.parse().unwrap())),
        ..Config::local()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (trigger, stop) = shutdown::channel();
    tokio::spawn(run(listener, config, stop));
    let channel = faas_common::serve::connect(&addr.to_string())
        .await
        .unwrap();
    (channel, trigger)
}

fn reserve(account: &str) -> ReserveRequest {
    ReserveRequest {
        request_id: "r".into(),
        owner_account_id: account.into(),
    }
}

fn auth(token: &str) -> ClusterAuth {
    ClusterAuth::new(Some(&token.parse::<ClusterToken>().unwrap()))
}

#[tokio::test]
async fn only_callers_with_the_token_reach_the_node_and_health_stays_open() {
    let (channel, trigger) = serve(Some(TOKEN)).await;

    let stranger = NodeServiceClient::new(channel.clone())
        .reserve(reserve("stranger"))
        .await
        .unwrap_err();
    assert_eq!(stranger.code(), Code::Unauthenticated, "{stranger:?}");
    assert!(
        stranger
            .message()
            .starts_with("this node service requires the cluster token"),
        "{stranger:?}"
    );
    let describe = NodeAdminClient::new(channel.clone())
        .describe_node(DescribeNodeRequest {})
        .await
        .unwrap_err();
    assert_eq!(describe.code(), Code::Unauthenticated, "{describe:?}");

    let wrong = auth("another-token-0123456789abcdef");
    let refused = NodeServiceClient::new(wrong.channel(channel.clone()))
        .get_stats(GetStatsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert_ne!(refused.message(), stranger.message());
    assert!(!refused.message().contains(TOKEN));

    let right = auth(TOKEN);
    let mut node = NodeServiceClient::new(right.channel(channel.clone()));
    node.reserve(reserve("acct-a")).await.unwrap();
    let stats = node
        .get_stats(GetStatsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        stats.owner_account_id, "acct-a",
        "the stranger reserved nothing"
    );
    let described = NodeAdminClient::new(right.channel(channel.clone()))
        .describe_node(DescribeNodeRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(described.node_id, "n-token");

    let health = HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .expect("health needs no token")
        .into_inner();
    assert_eq!(health.status(), ServingStatus::Serving);
    trigger.trigger();
}

#[tokio::test]
async fn a_node_takes_one_reservation() {
    let (channel, trigger) = serve(None).await;
    let mut node = NodeServiceClient::new(channel);
    node.reserve(reserve("acct-a")).await.unwrap();
    node.reserve(reserve("acct-a"))
        .await
        .expect("the same account again: a retried Reserve is fine");
    let err = node.reserve(reserve("acct-b")).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message()
            .contains("already reserved by account \"acct-a\""),
        "{err:?}"
    );
    let stats = node
        .get_stats(GetStatsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.owner_account_id, "acct-a");
    trigger.trigger();
}
