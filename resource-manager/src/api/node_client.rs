//! The manager's calls into a node service: `Reserve`, which hands the node to an account,
//! and `grpc.health.v1` checks, which tell a node that serves from one that is starting,
//! dying or stopped.

use std::time::Duration;

use faas_proto::nodeservoceproto::ReserveRequest;
use faas_proto::nodeservoceproto::node_service_client::NodeServiceClient;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::model::NodeEndpoint;

/// Tells the node service at `endpoint` that `account` owns it now. Errors are messages for
/// logs and clients.
pub async fn hand_over(
    endpoint: &NodeEndpoint,
    request_id: &str,
    account: &str,
    timeout: Duration,
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
        NodeServiceClient::new(channel)
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
            faas_common::text::clip(status.message())
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
