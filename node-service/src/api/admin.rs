//! The platform's own node API, `faas.node.v1.NodeAdmin`, served beside the contest's
//! `NodeService` on the same port, and the interceptor that stamps every call the server
//! hears for the orphan timeout.
//!
//! `FunctionLogs` gathers a function's output lines from its containers (see
//! [`super::logs`] and [`crate::service::logs`]).
//!
//! `DescribeNode` answers who the node is (id, `live_id`), who reserved it and when, its
//! memory, and every container it holds with the function it runs, its state, its creation
//! and last use, and the invocations running in it now. A restarted scheduler rebuilds its
//! view of the node from it (the contest's `GetStats` names containers but not their
//! functions or load), and a restarted resource manager re-adopts the node with it. Times are
//! the node's wall clock in ms since the Unix epoch.
//!
//! [`stamp_calls`] is a tonic interceptor layered on the whole server, so every request
//! counts as a sign of life, whatever its service or method (health probes included), without
//! each handler having to remember it. With a cluster token configured, `NodeAdmin` calls
//! need it as `NodeService` calls do (the same gate); health checks do not.

use std::sync::Arc;

use faas_proto::node_admin as pb;
use pb::node_admin_server::{NodeAdmin, NodeAdminServer};
use tonic::service::{Interceptor, InterceptorLayer};
use tonic::{Request, Response, Status};

use super::grpc::{status, wire};
use super::logs::{GrpcLogReader, function_logs};
use crate::model::{ContainerDescription, NodeDescription};
use crate::service::{Activity, LogReader, Node};

/// `ContainerInfo.state` of a container that takes invocations.
pub const STATE_RUNNING: &str = "running";
/// `ContainerInfo.state` of a container whose process exited or went silent (it waits for
/// `RemoveContainer`).
pub const STATE_DEAD: &str = "dead";

/// The `NodeAdmin` implementation.
#[derive(Clone)]
pub struct NodeAdminApi {
    node: Arc<Node>,
    /// How containers' lines are read.
    logs: Arc<dyn LogReader>,
}

impl std::fmt::Debug for NodeAdminApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeAdminApi")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl NodeAdminApi {
    /// Serves `node`, reading its containers' lines over gRPC ([`GrpcLogReader`]).
    pub fn new(node: Arc<Node>) -> NodeAdminApi {
        NodeAdminApi {
            node,
            logs: Arc::new(GrpcLogReader),
        }
    }

    /// The tonic server for this implementation.
    pub fn into_server(self) -> NodeAdminServer<NodeAdminApi> {
        NodeAdminServer::new(self)
    }
}

fn container_info(c: ContainerDescription) -> pb::ContainerInfo {
    pb::ContainerInfo {
        container_id: c.id,
        function_name: c.spec.function_name,
        handler: c.spec.handler,
        memory_in_bytes: wire(c.spec.memory_bytes),
        timeout_in_ms: wire(c.spec.timeout_ms),
        in_flight: wire(c.in_flight),
        state: if c.dead { STATE_DEAD } else { STATE_RUNNING }.to_string(),
        created_at_ms: c.created_at_ms,
        last_used_at_ms: c.last_used_at_ms,
        address: c.address,
    }
}

/// The `DescribeNode` reply for a description.
pub fn describe_reply(d: NodeDescription) -> pb::DescribeNodeReply {
    pb::DescribeNodeReply {
        node_id: d.node_id,
        live_id: d.live_id,
        owner_account_id: d.owner_account_id,
        reserved_at_ms: d.reserved_at_ms,
        total_memory_in_bytes: wire(d.total_memory_bytes),
        containers: d.containers.into_iter().map(container_info).collect(),
        machine: d.machine,
    }
}

#[tonic::async_trait]
impl NodeAdmin for NodeAdminApi {
    async fn function_logs(
        &self,
        request: Request<pb::FunctionLogsRequest>,
    ) -> Result<Response<pb::FunctionLogsReply>, Status> {
        let reply = function_logs(&self.node, self.logs.as_ref(), request.into_inner()).await?;
        Ok(Response::new(reply))
    }

    async fn describe_node(
        &self,
        _request: Request<pb::DescribeNodeRequest>,
    ) -> Result<Response<pb::DescribeNodeReply>, Status> {
        let description = self.node.describe().await.map_err(status)?;
        Ok(Response::new(describe_reply(description)))
    }
}

/// Stamps the arrival of every request in the node's [`Activity`].
#[derive(Debug, Clone)]
pub struct StampCalls(Arc<Activity>);

impl Interceptor for StampCalls {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        self.0.touch();
        Ok(request)
    }
}

/// The layer for `Server::builder().layer(...)` that stamps every call in `activity`.
pub fn stamp_calls(activity: Arc<Activity>) -> InterceptorLayer<StampCalls> {
    InterceptorLayer::new(StampCalls(activity))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ContainerSpec;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    #[test]
    fn a_description_converts_field_by_field() {
        let reply = describe_reply(NodeDescription {
            node_id: "n".into(),
            live_id: "l".into(),
            owner_account_id: "acct".into(),
            reserved_at_ms: 7,
            total_memory_bytes: 3 << 30,
            containers: vec![ContainerDescription {
                id: "c".into(),
                address: "127.0.0.1:7".into(),
                spec: ContainerSpec {
                    function_name: "f".into(),
                    handler: "sleep".into(),
                    memory_bytes: 128 << 20,
                    timeout_ms: 300,
                },
                dead: true,
                in_flight: 2,
                created_at_ms: 10,
                last_used_at_ms: 12,
            }],
            machine: "m".into(),
        });
        assert_eq!(
            reply,
            pb::DescribeNodeReply {
                node_id: "n".into(),
                live_id: "l".into(),
                owner_account_id: "acct".into(),
                reserved_at_ms: 7,
                total_memory_in_bytes: 3 << 30,
                containers: vec![pb::ContainerInfo {
                    container_id: "c".into(),
                    function_name: "f".into(),
                    handler: "sleep".into(),
                    memory_in_bytes: 128 << 20,
                    timeout_in_ms: 300,
                    in_flight: 2,
                    state: "dead".into(),
                    created_at_ms: 10,
                    last_used_at_ms: 12,
                    address: "127.0.0.1:7".into(),
                }],
                machine: "m".into(),
            }
        );
    }

    #[tokio::test]
    async fn every_request_to_the_server_is_stamped_whatever_its_service() {
        let activity = Arc::new(Activity::new());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (trigger, shutdown) = faas_common::shutdown::channel();
        let (_health, health_service) = tonic_health::server::health_reporter();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .layer(stamp_calls(activity.clone()))
                .add_service(health_service)
                .serve_with_incoming_shutdown(
                    faas_common::serve::incoming(listener),
                    shutdown.wait(),
                ),
        );
        let channel = faas_common::serve::connect(&addr.to_string())
            .await
            .unwrap();
        assert_eq!(activity.heard(), 0, "connecting is not a call");
        let mut health = HealthClient::new(channel.clone());
        health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap();
        // A method nobody serves is still a call the node heard.
        let err = faas_proto::codec::call_raw(
            channel,
            "/nodeservoceproto.NodeService/GetStats",
            Vec::new(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unimplemented);
        assert_eq!(activity.heard(), 2);
        trigger.trigger();
        server.await.unwrap().unwrap();
    }
}
