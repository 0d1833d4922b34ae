//! The gRPC calls the live driver makes: deploy and invoke through the API server (reading the
//! platform's reply metadata, `faas_proto::meta`), node usage from the resource manager, and
//! container ids from a node service's `GetStats`.
//!
//! The `faas` command has its own client (`faas_cli::client`); this one lives here because the
//! command depends on this crate, not the other way round.

use std::time::Duration;

use faas_common::token::AuthChannel;
use faas_proto::admin::admin_client::AdminClient;
use faas_proto::admin::{DeployFunctionRequest, FunctionSpec};
use faas_proto::apiserverproto::InvokeFunctionRequest;
use faas_proto::apiserverproto::api_server_client::ApiServerClient;
use faas_proto::meta;
use faas_proto::nodeservoceproto::GetStatsRequest;
use faas_proto::nodeservoceproto::node_service_client::NodeServiceClient;
use faas_proto::resourcemanagerproto::resource_manager_client::ResourceManagerClient;
use faas_proto::resourcemanagerproto::{GetNodesUsageRequest, NodeDesc};
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::transport::Channel;

use crate::workload::FunctionProfile;

/// What the platform said about one successful invocation, beside its body.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reply {
    /// Time spent in `AcquireContainer`, ms.
    pub acquire_ms: Option<f64>,
    /// The function's own duration, ns.
    pub duration_ns: Option<i64>,
    /// Whether a container was created for this request.
    pub cold: Option<bool>,
    pub container_id: Option<String>,
    pub node_id: Option<String>,
}

fn text<'a>(map: &'a MetadataMap, key: &str) -> Option<&'a str> {
    map.get(key).and_then(|v| v.to_str().ok())
}

fn number<T: std::str::FromStr>(map: &MetadataMap, key: &str) -> Option<T> {
    text(map, key).and_then(|v| v.parse().ok())
}

impl Reply {
    /// Reads the platform's metadata keys (absent or unreadable keys stay `None`).
    pub fn from_metadata(map: &MetadataMap) -> Reply {
        Reply {
            acquire_ms: number(map, meta::ACQUIRE_MS),
            duration_ns: number(map, meta::DURATION_NS),
            cold: text(map, meta::COLD_START).map(|v| v == "true"),
            container_id: text(map, meta::CONTAINER_ID).map(str::to_string),
            node_id: text(map, meta::NODE_ID).map(str::to_string),
        }
    }
}

/// A status as one line: `ResourceExhausted: no available node can be reserved`.
pub fn describe(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// The API server: the contest API and the admin API over one connection. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PlatformClient {
    invoke: ApiServerClient<Channel>,
    admin: AdminClient<Channel>,
    /// `Bearer KEY`, sent on every call when set.
    key: Option<AsciiMetadataValue>,
}

impl PlatformClient {
    /// Uses an existing channel to the API server.
    pub fn new(channel: Channel) -> PlatformClient {
        PlatformClient {
            invoke: ApiServerClient::new(channel.clone()),
            admin: AdminClient::new(channel),
            key: None,
        }
    }

    /// Every call carries `key` (`authorization: Bearer KEY`).
    pub fn with_key(self, key: Option<&str>) -> Result<PlatformClient, super::LiveError> {
        let key = match key {
            None => None,
            Some(key) => {
                let mut value =
                    AsciiMetadataValue::try_from(format!("Bearer {key}")).map_err(|_| {
                        super::LiveError::InvalidOption {
                            name: "api_key",
                            reason: "an API key is printable ASCII".into(),
                        }
                    })?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        Ok(PlatformClient { key, ..self })
    }

    /// `message` as a request with the key.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(key) = &self.key {
            request.metadata_mut().insert("authorization", key.clone());
        }
        request
    }

    /// Deploys (creates or replaces) a workload function.
    pub async fn deploy(&self, f: &FunctionProfile) -> Result<(), tonic::Status> {
        let spec = FunctionSpec {
            name: f.name.clone(),
            handler: f.handler.as_str().to_string(),
            memory_in_bytes: i64::try_from(f.memory_bytes).unwrap_or(i64::MAX),
            timeout_in_ms: i64::try_from(f.timeout_ms).unwrap_or(i64::MAX),
            description: f.origin.clone().unwrap_or_default(),
            ..Default::default()
        };
        self.admin
            .clone()
            .deploy_function(self.request(DeployFunctionRequest {
                function: Some(spec),
            }))
            .await?;
        Ok(())
    }

    /// Invokes `function` with `event`, giving up after `timeout`.
    pub async fn invoke(
        &self,
        account: &str,
        function: &str,
        event: Vec<u8>,
        timeout: Duration,
    ) -> Result<Reply, tonic::Status> {
        let mut request = self.request(InvokeFunctionRequest {
            account_id: account.to_string(),
            function_name: function.to_string(),
            event,
        });
        request.set_timeout(timeout);
        let response = self.invoke.clone().invoke_function(request).await?;
        Ok(Reply::from_metadata(response.metadata()))
    }
}

/// Every node the resource manager ever reserved (`GetNodesUsage`).
pub async fn nodes_usage(
    rm: &mut ResourceManagerClient<AuthChannel>,
    request_id: String,
) -> Result<Vec<NodeDesc>, tonic::Status> {
    let mut request = tonic::Request::new(GetNodesUsageRequest { request_id });
    request.set_timeout(Duration::from_secs(10));
    Ok(rm.get_nodes_usage(request).await?.into_inner().nodes)
}

/// The ids and memory limits of the containers a node service holds (`GetStats`).
pub async fn node_containers(
    node: &mut NodeServiceClient<AuthChannel>,
    request_id: String,
    timeout: Duration,
) -> Result<Vec<(String, u64)>, tonic::Status> {
    let mut request = tonic::Request::new(GetStatsRequest { request_id });
    request.set_timeout(timeout);
    let reply = node.get_stats(request).await?.into_inner();
    Ok(reply
        .container_stats_list
        .into_iter()
        .map(|c| {
            let limit = u64::try_from(c.total_memory_in_bytes).unwrap_or(0);
            (c.container_id, limit)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_read_and_bad_values_ignored() {
        let mut map = MetadataMap::new();
        map.insert(meta::ACQUIRE_MS, "1.250".parse().unwrap());
        map.insert(meta::DURATION_NS, "3000000".parse().unwrap());
        map.insert(meta::COLD_START, "true".parse().unwrap());
        map.insert(meta::CONTAINER_ID, "c-1".parse().unwrap());
        map.insert(meta::NODE_ID, "node-2".parse().unwrap());
        let r = Reply::from_metadata(&map);
        assert_eq!(r.acquire_ms, Some(1.25));
        assert_eq!(r.duration_ns, Some(3_000_000));
        assert_eq!(r.cold, Some(true));
        assert_eq!(r.container_id.as_deref(), Some("c-1"));
        assert_eq!(r.node_id.as_deref(), Some("node-2"));
        let mut bad = MetadataMap::new();
        bad.insert(meta::ACQUIRE_MS, "soon".parse().unwrap());
        assert_eq!(Reply::from_metadata(&bad), Reply::default());
        let s = tonic::Status::resource_exhausted("no node");
        assert_eq!(describe(&s), "ResourceExhausted: no node");
    }
}
