//! The manager's calls into a node service: `Reserve`, which hands the node to an account,
//! `grpc.health.v1` checks, which tell a node that serves from one that is starting, dying
//! or stopped, and [`identify`], which asks a node who it is (`faas.node.v1.NodeAdmin/
//! DescribeNode`). `Reserve` and `DescribeNode` carry the cluster token ([`ClusterAuth`]);
//! health checks need none.

use std::time::Duration;

use faas_common::text::clip;
use faas_common::token::ClusterAuth;
use faas_proto::node_admin::DescribeNodeRequest;
use faas_proto::node_admin::node_admin_client::NodeAdminClient;
use faas_proto::nodeservoceproto::ReserveRequest;
use faas_proto::nodeservoceproto::node_service_client::NodeServiceClient;
use futures::future::BoxFuture;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::core::NodeIdentity;
use crate::model::NodeEndpoint;
use crate::service::NodeCalls;

/// The manager's [`NodeCalls`] over gRPC, with the cluster token.
#[derive(Clone, Debug, Default)]
pub struct GrpcNodes {
    auth: ClusterAuth,
}

impl GrpcNodes {
    /// Node calls carrying `auth`.
    pub fn new(auth: ClusterAuth) -> GrpcNodes {
        GrpcNodes { auth }
    }
}

impl NodeCalls for GrpcNodes {
    fn hand_over<'a>(
        &'a self,
        endpoint: &'a NodeEndpoint,
        request_id: &'a str,
        account: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(hand_over(
            endpoint, request_id, account, timeout, &self.auth,
        ))
    }

    fn identify<'a>(
        &'a self,
        endpoint: &'a NodeEndpoint,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<NodeIdentity, String>> {
        Box::pin(identify(endpoint, timeout, &self.auth))
    }
}

/// Tells the node service at `endpoint` that `account` owns it now. Errors are messages for
/// logs and clients.
pub async fn hand_over(
    endpoint: &NodeEndpoint,
    request_id: &str,
    account: &str,
    timeout: Duration,
    auth: &ClusterAuth,
) -> Result<(), String> {
    let addr = endpoint.to_string();
    let call = async {
        let channel = faas_common::serve::connect(&addr)
            .await
            .map_err(|e| e.to_string())?;
        let mut request = tonic::Request::new(ReserveRequest {
            request_id: request_id.to_string(),
            owner_account_id: account.to_string(),
        });
        request.set_timeout(timeout);
        NodeServiceClient::new(auth.channel(channel))
            .reserve(request)
            .await
            .map_err(|s| {
                format!(
                    "node service at {addr} refused Reserve: {:?}: {}",
                    s.code(),
                    s.message()
                )
            })?;
        Ok(())
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "node service at {addr} did not answer Reserve within {timeout:?}"
        )),
    }
}

/// Asks the node service at `endpoint` who it is (`DescribeNode`), within `timeout`.
/// Errors say what happened, for logs.
pub async fn identify(
    endpoint: &NodeEndpoint,
    timeout: Duration,
    auth: &ClusterAuth,
) -> Result<NodeIdentity, String> {
    let addr = endpoint.to_string();
    let call = async {
        let channel = faas_common::serve::connect(&addr)
            .await
            .map_err(|e| e.to_string())?;
        let mut request = tonic::Request::new(DescribeNodeRequest {});
        request.set_timeout(timeout);
        let r = NodeAdminClient::new(auth.channel(channel))
            .describe_node(request)
            .await
            .map_err(|s| format!("DescribeNode failed: {:?}: {}", s.code(), clip(s.message())))?
            .into_inner();
        Ok(NodeIdentity {
            node_id: r.node_id,
            live_id: r.live_id,
            owner_account: Some(r.owner_account_id).filter(|o| !o.is_empty()),
            reserved_at_ms: Some(r.reserved_at_ms).filter(|t| *t > 0),
        })
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(identity)) if identity.live_id.is_empty() => {
            Err(format!("the node service at {addr} reports no live id"))
        }
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}

/// Asks the node service behind `channel` for its overall health; `Ok` only for SERVING
/// within `timeout`. Errors say what happened, for logs.
pub async fn check_health(channel: Channel, timeout: Duration) -> Result<(), String> {
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    request.set_timeout(timeout);
    let mut client = HealthClient::new(channel);
    let call = client.check(request);
    match tokio::time::timeout(timeout, call).await {
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        Ok(Err(status)) => Err(format!(
            "health check failed: {:?}: {}",
            status.code(),
            clip(status.message())
        )),
        Ok(Ok(reply)) => match reply.into_inner().status() {
            ServingStatus::Serving => Ok(()),
            other => Err(format!("health check answered {}", other.as_str_name())),
        },
    }
}

/// Whether the node service at `addr` answers SERVING within `timeout` over a new connection.
pub async fn healthy(addr: &str, timeout: Duration) -> bool {
    let check = async {
        let channel = faas_common::serve::connect(addr).await.ok()?;
        check_health(channel, timeout).await.ok()
    };
    matches!(tokio::time::timeout(timeout, check).await, Ok(Some(())))
}
