//! The service's ports implemented with the contest's gRPC clients, and its clock.
//!
//! This is the anti-corruption layer: `NodeDesc`, `GetStatsReply` and tonic statuses become
//! model values here, and nowhere else. Every call to the resource manager and the nodes
//! carries the cluster token when one is configured ([`ClusterAuth`]); health checks need none.

use std::time::Duration;

use faas_common::serve::ChannelCache;
use faas_common::token::{AuthChannel, ClusterAuth};
use faas_proto::node_admin::DescribeNodeRequest;
use faas_proto::node_admin::node_admin_client::NodeAdminClient;
use faas_proto::nodeservoceproto::node_service_client::NodeServiceClient;
use faas_proto::nodeservoceproto::{
    CreateContainerRequest, FunctionMeta, GetStatsRequest, RemoveContainerRequest,
};
use faas_proto::resourcemanagerproto::resource_manager_client::ResourceManagerClient;
use faas_proto::resourcemanagerproto::{
    GetNodesUsageRequest, NodeDesc, ReleaseNodeRequest, ReserveNodeRequest,
};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::model::{
    AdoptedContainer, ContainerUsage, FunctionSpec, Millis, NodeAddr, NodeInfo, NodeUsage,
    StatsSample, Text,
};
use crate::service::{
    Clock, NodeDescription, NodePort, PortError, ReserveError, ReservedNode, ResourcePort,
};

/// How long a `CreateContainer` may take before it counts as failed (starts take seconds).
pub const CREATE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the other node and resource manager calls may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A request with a deadline, carrying the current span's trace when spans are exported.
fn timed<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    faas_common::trace::inject(request.metadata_mut());
    request
}

/// Whether a failed call never got an answer from its peer: it could not connect, the
/// connection broke, or the deadline passed. (A peer that answers with a status, even
/// `UNAVAILABLE` for a reason of its own, is alive; tonic's own transport failures carry
/// the transport error as their source.)
fn transport_failure(s: &tonic::Status) -> bool {
    match s.code() {
        tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => true,
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Internal => {
            std::error::Error::source(s).is_some()
        }
        _ => false,
    }
}

/// `what failed: CODE: message`, unreachable when the peer never answered.
fn port_error(what: String, s: &tonic::Status) -> PortError {
    let message = format!("{what} failed: {:?}: {}", s.code(), s.message());
    if transport_failure(s) {
        PortError::unreachable(message)
    } else if matches!(
        s.code(),
        tonic::Code::FailedPrecondition | tonic::Code::InvalidArgument
    ) {
        PortError::refused(message)
    } else {
        PortError::answered(message)
    }
}

fn bytes(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// The resource manager over gRPC.
#[derive(Clone)]
pub struct GrpcResource {
    client: ResourceManagerClient<AuthChannel>,
    endpoint: String,
    default_node_bytes: u64,
}

impl GrpcResource {
    /// A client on `channel` (to `endpoint`, for messages; the channel carries the cluster
    /// token, if any); nodes reported without memory are taken to offer `default_node_bytes`.
    pub fn new(channel: AuthChannel, endpoint: impl Into<String>, default_node_bytes: u64) -> Self {
        GrpcResource {
            client: ResourceManagerClient::new(channel),
            endpoint: endpoint.into(),
            default_node_bytes,
        }
    }

    fn node_info(&self, desc: NodeDesc) -> Result<NodeInfo, ReserveError> {
        let bad = |what: String| ReserveError {
            exhausted: false,
            message: format!(
                "the resource manager at {} reserved node {:?} with {what}",
                self.endpoint, desc.id
            ),
        };
        if desc.id.is_empty() {
            return Err(bad("an empty id".into()));
        }
        if desc.address.is_empty() {
            return Err(bad("an empty address".into()));
        }
        let port = u16::try_from(desc.node_service_port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad(format!("an invalid port {}", desc.node_service_port)))?;
        let capacity_bytes = match bytes(desc.memory_in_bytes) {
            0 => {
                tracing::warn!(node = %desc.id, default = self.default_node_bytes, "node reported without memory; assuming the default");
                self.default_node_bytes
            }
            b => b,
        };
        Ok(NodeInfo {
            id: desc.id.into(),
            address: desc.address.into(),
            port,
            capacity_bytes,
        })
    }
}

impl ResourcePort for GrpcResource {
    async fn reserve_node(&self, account_id: &str) -> Result<NodeInfo, ReserveError> {
        let request = ReserveNodeRequest {
            request_id: new_id(),
            account_id: account_id.to_string(),
        };
        let reply = self
            .client
            .clone()
            .reserve_node(timed(request, CALL_TIMEOUT))
            .await
            .map_err(|s| match s.code() {
                tonic::Code::ResourceExhausted => ReserveError {
                    exhausted: true,
                    message: s.message().to_string(),
                },
                code => ReserveError {
                    exhausted: false,
                    message: format!(
                        "ReserveNode at {} failed: {code:?}: {}",
                        self.endpoint,
                        s.message()
                    ),
                },
            })?
            .into_inner();
        let desc = reply.node.ok_or_else(|| ReserveError {
            exhausted: false,
            message: format!("ReserveNode at {} answered without a node", self.endpoint),
        })?;
        self.node_info(desc)
    }

    async fn reserved_nodes(&self) -> Result<Vec<ReservedNode>, PortError> {
        let request = GetNodesUsageRequest {
            request_id: new_id(),
        };
        let reply = self
            .client
            .clone()
            .get_nodes_usage(timed(request, CALL_TIMEOUT))
            .await
            .map_err(|s| port_error(format!("GetNodesUsage at {}", self.endpoint), &s))?
            .into_inner();
        Ok(reply
            .nodes
            .into_iter()
            .filter(|d| d.reserved_time_timestamp_ms > 0 && d.released_time_timestamp_ms == 0)
            .filter_map(|d| {
                let reserved_at_wall_ms = u64::try_from(d.reserved_time_timestamp_ms).unwrap_or(0);
                match self.node_info(d) {
                    Ok(info) => Some(ReservedNode {
                        info,
                        reserved_at_wall_ms,
                    }),
                    Err(e) => {
                        tracing::warn!(error = %e, "ignoring a reserved node the resource manager describes badly");
                        None
                    }
                }
            })
            .collect())
    }

    async fn release_node(&self, node_id: &str) -> Result<(), PortError> {
        let request = ReleaseNodeRequest {
            request_id: new_id(),
            id: node_id.to_string(),
        };
        self.client
            .clone()
            .release_node(timed(request, CALL_TIMEOUT))
            .await
            .map(|_| ())
            .map_err(|s| port_error(format!("ReleaseNode {node_id} at {}", self.endpoint), &s))
    }
}

/// The node services over gRPC, one cached lazily connecting channel per node address.
#[derive(Default)]
pub struct GrpcNodes {
    channels: ChannelCache,
    auth: ClusterAuth,
}

impl GrpcNodes {
    /// Node clients whose calls carry the cluster token of `auth`.
    pub fn new(auth: ClusterAuth) -> GrpcNodes {
        GrpcNodes {
            channels: ChannelCache::new(),
            auth,
        }
    }

    fn channel(&self, node: &NodeAddr) -> Result<Channel, PortError> {
        self.channels
            .get(&format!("{}:{}", node.address, node.port))
            .map_err(|e| PortError::answered(e.to_string()))
    }

    fn client(&self, node: &NodeAddr) -> Result<NodeServiceClient<AuthChannel>, PortError> {
        self.channel(node)
            .map(|channel| NodeServiceClient::new(self.auth.channel(channel)))
    }

    fn failed(node: &NodeAddr, call: &str, s: tonic::Status) -> PortError {
        port_error(
            format!(
                "{call} on node {} ({}:{})",
                node.id, node.address, node.port
            ),
            &s,
        )
    }
}

impl NodePort for GrpcNodes {
    async fn create_container(
        &self,
        node: &NodeAddr,
        function: &FunctionSpec,
        request_id: Option<&str>,
    ) -> Result<Text, PortError> {
        let id = new_id();
        let request = CreateContainerRequest {
            name: format!("{}-{}", function.name, id),
            request_id: id,
            function_meta: Some(FunctionMeta {
                function_name: function.name.to_string(),
                handler: function.handler.to_string(),
                timeout_in_ms: i64::try_from(function.timeout_ms).unwrap_or(i64::MAX),
                memory_in_bytes: i64::try_from(function.memory_bytes).unwrap_or(i64::MAX),
            }),
        };
        let mut request = timed(request, CREATE_TIMEOUT);
        if let Some(request_id) = request_id {
            faas_common::serve::send_request_id(&mut request, request_id);
        }
        let reply = self
            .client(node)?
            .create_container(request)
            .await
            .map_err(|s| Self::failed(node, "CreateContainer", s))?
            .into_inner();
        if reply.container_id.is_empty() {
            return Err(PortError::answered(format!(
                "CreateContainer on node {} answered an empty container id",
                node.id
            )));
        }
        Ok(reply.container_id.into())
    }

    async fn remove_container(&self, node: &NodeAddr, container_id: &str) -> Result<(), PortError> {
        let request = RemoveContainerRequest {
            request_id: new_id(),
            container_id: container_id.to_string(),
        };
        self.client(node)?
            .remove_container(timed(request, CALL_TIMEOUT))
            .await
            .map(|_| ())
            .map_err(|s| Self::failed(node, "RemoveContainer", s))
    }

    async fn probe(&self, node: &NodeAddr) -> Result<(), PortError> {
        let channel = self.channel(node)?;
        let mut request = tonic::Request::new(HealthCheckRequest::default());
        request.set_timeout(CALL_TIMEOUT);
        match HealthClient::new(channel).check(request).await {
            Ok(reply) if reply.get_ref().status == ServingStatus::Serving as i32 => Ok(()),
            Ok(_) => Err(PortError::answered(format!(
                "node {} says it is not serving",
                node.id
            ))),
            Err(s) => Err(Self::failed(node, "health check", s)),
        }
    }

    async fn describe(&self, node: &NodeAddr) -> Result<NodeDescription, PortError> {
        let channel = self.channel(node)?;
        let reply = NodeAdminClient::new(self.auth.channel(channel))
            .describe_node(timed(DescribeNodeRequest {}, CALL_TIMEOUT))
            .await
            .map_err(|s| Self::failed(node, "DescribeNode", s))?
            .into_inner();
        if reply.node_id != *node.id {
            return Err(PortError::answered(format!(
                "the node at {}:{} says it is {:?}, not {}",
                node.address, node.port, reply.node_id, node.id
            )));
        }
        let containers = reply
            .containers
            .into_iter()
            .map(|c| AdoptedContainer {
                id: c.container_id.into(),
                function: FunctionSpec {
                    name: c.function_name.into(),
                    memory_bytes: bytes(c.memory_in_bytes),
                    timeout_ms: bytes(c.timeout_in_ms),
                    handler: c.handler.into(),
                },
                in_flight: u32::try_from(c.in_flight).unwrap_or(0),
                dead: c.state != "running",
            })
            .collect();
        Ok(NodeDescription {
            owner_account_id: reply.owner_account_id,
            containers,
        })
    }

    async fn get_stats(&self, node: &NodeAddr) -> Result<StatsSample, PortError> {
        let request = GetStatsRequest {
            request_id: new_id(),
        };
        let reply = self
            .client(node)?
            .get_stats(timed(request, CALL_TIMEOUT))
            .await
            .map_err(|s| Self::failed(node, "GetStats", s))?
            .into_inner();
        let n = reply.node_stats.unwrap_or_default();
        Ok(StatsSample {
            node_id: node.id.clone(),
            taken_at: 0,
            node: NodeUsage {
                total_memory_bytes: bytes(n.total_memory_in_bytes),
                memory_usage_bytes: bytes(n.memory_usage_in_bytes),
                available_memory_bytes: bytes(n.available_memory_in_bytes),
                cpu_pct: n.cpu_usage_pct.max(0.0),
            },
            containers: reply
                .container_stats_list
                .into_iter()
                .map(|c| ContainerUsage {
                    container_id: c.container_id.into(),
                    total_memory_bytes: bytes(c.total_memory_in_bytes),
                    memory_usage_bytes: bytes(c.memory_usage_in_bytes),
                    cpu_pct: c.cpu_usage_pct.max(0.0),
                })
                .collect(),
        })
    }
}

/// The scheduler's clock: milliseconds since it was made, on tokio's monotonic clock (so a
/// paused tokio clock in tests pauses it too).
#[derive(Clone, Copy, Debug)]
pub struct InstantClock {
    origin: tokio::time::Instant,
}

impl InstantClock {
    /// A clock starting at 0 now.
    pub fn new() -> Self {
        InstantClock {
            origin: faas_common::clock::tokio_instant(),
        }
    }
}

impl Default for InstantClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for InstantClock {
    fn now(&self) -> Millis {
        self.origin.elapsed().as_millis() as Millis
    }

    fn wall_ms(&self) -> u64 {
        faas_common::clock::now_ms() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_that_cannot_do_the_call_refuses_it() {
        for code in [
            tonic::Code::FailedPrecondition,
            tonic::Code::InvalidArgument,
        ] {
            let e = port_error(
                "CreateContainer on node n1".into(),
                &tonic::Status::new(code, "image \"x\" is not on this machine"),
            );
            assert!(e.refused && !e.unreachable, "{code:?}: {e:?}");
            assert!(
                e.message.ends_with("image \"x\" is not on this machine"),
                "{}",
                e.message
            );
        }
        for code in [
            tonic::Code::ResourceExhausted,
            tonic::Code::NotFound,
            tonic::Code::DeadlineExceeded,
        ] {
            let e = port_error("CreateContainer".into(), &tonic::Status::new(code, "x"));
            assert!(!e.refused, "{code:?}: {e:?}");
        }
    }
}
