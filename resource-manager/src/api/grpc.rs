//! The contest's `resourcemanagerproto.ResourceManager` service over the manager. Contest
//! messages are converted to and from the model here, and nowhere else.
//!
//! Ids are checked by the pool (1 to 256 bytes, else `INVALID_ARGUMENT`); logs quote request
//! fields clipped. `ReleaseNodeRequest` carries only a request id and the node id, no account,
//! so a release cannot be checked against the node's owner: the cluster token is what
//! protects it. With a token configured (`--cluster-token-file`, `FAAS_CLUSTER_TOKEN`), every
//! call here needs it (`UNAUTHENTICATED` without it, see `faas_common::token`), so only the
//! platform's own components (the scheduler that reserved the node) can release a node;
//! without one, whoever knows a reserved node's id may release it, as in the contest. A
//! failed node's release succeeds. After a restart,
//! `GetNodesUsage` and `ReleaseNode` wait until the earlier run's nodes are taken back, and
//! `ReserveNode` until the pool is refilled.

use std::sync::Arc;

use faas_common::text::clip;
use faas_proto::resourcemanagerproto::resource_manager_server::ResourceManager;
use faas_proto::resourcemanagerproto::{
    GetNodesUsageReply, GetNodesUsageRequest, NodeDesc, ReleaseNodeReply, ReleaseNodeRequest,
    ReserveNodeReply, ReserveNodeRequest,
};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::model::Node;
use crate::service::{Manager, NodeProvider};

/// The gRPC face of a [`Manager`].
pub struct ResourceManagerApi<P: NodeProvider> {
    manager: Arc<Manager<P>>,
}

impl<P: NodeProvider> ResourceManagerApi<P> {
    /// Serves `manager`.
    pub fn new(manager: Arc<Manager<P>>) -> Self {
        ResourceManagerApi { manager }
    }
}

/// A node as the contest describes it.
pub fn node_desc(node: &Node) -> NodeDesc {
    let (address, port) = node
        .endpoint
        .as_ref()
        .map(|e| (e.address.clone(), i64::from(e.port)))
        .unwrap_or_default();
    NodeDesc {
        id: node.id.clone(),
        address,
        node_service_port: port,
        memory_in_bytes: i64::try_from(node.memory_bytes).unwrap_or(i64::MAX),
        reserved_time_timestamp_ms: node.reserved_at_ms.unwrap_or(0),
        released_time_timestamp_ms: node.released_at_ms.unwrap_or(0),
    }
}

#[tonic::async_trait]
impl<P: NodeProvider> ResourceManager for ResourceManagerApi<P> {
    async fn reserve_node(
        &self,
        request: Request<ReserveNodeRequest>,
    ) -> Result<Response<ReserveNodeReply>, Status> {
        let (metadata, _, req) = request.into_parts();
        let span = tracing::info_span!(
            "reserve_node",
            request_id = %clip(&req.request_id),
            account = %clip(&req.account_id)
        );
        faas_common::trace::continue_trace(&span, &metadata);
        let node = self
            .manager
            .reserve(&req.request_id, &req.account_id)
            .instrument(span)
            .await
            .map_err(Status::from)?;
        Ok(Response::new(ReserveNodeReply {
            node: Some(node_desc(&node)),
        }))
    }

    async fn release_node(
        &self,
        request: Request<ReleaseNodeRequest>,
    ) -> Result<Response<ReleaseNodeReply>, Status> {
        let (metadata, _, req) = request.into_parts();
        let span = tracing::info_span!(
            "release_node",
            request_id = %clip(&req.request_id),
            node_id = %clip(&req.id)
        );
        faas_common::trace::continue_trace(&span, &metadata);
        self.manager
            .release(&req.id)
            .instrument(span)
            .await
            .map_err(Status::from)?;
        Ok(Response::new(ReleaseNodeReply {}))
    }

    async fn get_nodes_usage(
        &self,
        _request: Request<GetNodesUsageRequest>,
    ) -> Result<Response<GetNodesUsageReply>, Status> {
        let nodes = self.manager.usage().await.iter().map(node_desc).collect();
        Ok(Response::new(GetNodesUsageReply { nodes }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NodeEndpoint, NodeState};
    use faas_common::units::CONTEST_NODE_BYTES;

    #[test]
    fn node_desc_carries_the_contest_fields() {
        let mut node = Node::starting("node-3".into(), 3, CONTEST_NODE_BYTES, 0);
        node.state = NodeState::Reserved;
        node.endpoint = Some(NodeEndpoint {
            address: "127.0.0.1".into(),
            port: 4321,
        });
        node.reserved_at_ms = Some(1_700_000_000_000);
        let desc = node_desc(&node);
        assert_eq!(desc.id, "node-3");
        assert_eq!(desc.address, "127.0.0.1");
        assert_eq!(desc.node_service_port, 4321);
        assert_eq!(desc.memory_in_bytes, CONTEST_NODE_BYTES as i64);
        assert_eq!(desc.reserved_time_timestamp_ms, 1_700_000_000_000);
        assert_eq!(desc.released_time_timestamp_ms, 0);
    }
}
