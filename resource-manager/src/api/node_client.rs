//! The manager's one call into a node service: `Reserve`, which hands the node to an account.

use std::time::Duration;

use faas_proto::nodeservoceproto::ReserveRequest;
use faas_proto::nodeservoceproto::node_service_client::NodeServiceClient;

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
