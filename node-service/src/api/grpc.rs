//! The contest's `nodeservoceproto.NodeService` over the [`Node`]: converts messages to the
//! model, maps [`NodeError`]s to deliberate gRPC codes, and shapes the invocation stream
//! (header, body chunks, footer).
//!
//! An invocation refused before its event reached the function carries its reason in the
//! `x-faas-error-code` metadata ([`faas_proto::meta::ERROR_CODE`]) beside the status code
//! (`ContainerNotFound`, `ContainerDead`, `ContainerUnreachable`, `WrongFunction`): the API
//! server retries exactly those on another container. Requests and replies of up to
//! [`MAX_MESSAGE_BYTES`] pass (a 6 MiB event).
//!
//! `CreateContainer` and `InvokeFunction` run in a span (`create_container`, `invoke`) whose
//! `request_id` is the call's `x-request-id` metadata ([`faas_common::serve::REQUEST_ID`]:
//! the API server's id, which the scheduler passes on to the creates it makes for a call),
//! or the message's own without it; the container service is told the same id.
//!
//! `Reserve` is taken once per node: again for the same account it is a no-op, for another
//! account `FAILED_PRECONDITION` naming the owner. With a cluster token configured every call
//! needs it (`UNAUTHENTICATED` without; the gate is wrapped around the server in `serve`, see
//! `faas_common::token`), so only the resource manager reserves and only the scheduler
//! creates containers.

use std::sync::Arc;

use faas_common::serve::{MAX_MESSAGE_BYTES, request_id};
use faas_proto::nodeservoceproto as pb;
use pb::invoke_function_reply::{Footer, Header};
use pb::node_service_server::{NodeService, NodeServiceServer};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::metrics::NodeMetrics;
use crate::core::validate::validate_create;
pub use crate::error::status;
use crate::model::{FunctionMeta, Invocation, StatsReport};
use crate::service::{Node, NodeError};

/// Body bytes per stream message (well under gRPC's 4 MiB default message limit, so a
/// client with tonic's defaults reads any body).
pub const BODY_CHUNK: usize = 1 << 20;

/// The node service's gRPC implementation.
#[derive(Debug, Clone)]
pub struct NodeApi {
    node: Arc<Node>,
    metrics: Arc<NodeMetrics>,
}

impl NodeApi {
    /// Serves `node`, counting into `metrics`.
    pub fn new(node: Arc<Node>, metrics: Arc<NodeMetrics>) -> NodeApi {
        NodeApi { node, metrics }
    }

    /// The tonic server for this implementation, taking and sending messages up to
    /// [`MAX_MESSAGE_BYTES`].
    pub fn into_server(self) -> NodeServiceServer<NodeApi> {
        NodeServiceServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    fn account(&self) {
        let c = self.node.containers();
        self.metrics.containers_running.set(c.running() as i64);
        self.metrics
            .memory_committed_bytes
            .set(i64::try_from(c.committed_bytes()).unwrap_or(i64::MAX));
    }
}

fn meta(m: pb::FunctionMeta) -> FunctionMeta {
    FunctionMeta {
        function_name: m.function_name,
        handler: m.handler,
        timeout_ms: m.timeout_in_ms,
        memory_bytes: m.memory_in_bytes,
    }
}

/// A count or size as the wire's `int64` (saturating).
pub(crate) fn wire(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The reply stream of one invocation: a header, the body in chunks, a footer.
pub fn reply_messages(inv: Invocation) -> Vec<pb::InvokeFunctionReply> {
    let error = inv.failure.as_ref().map(|f| f.text()).unwrap_or_default();
    let mut out = Vec::with_capacity(2 + inv.body.len().div_ceil(BODY_CHUNK));
    out.push(pb::InvokeFunctionReply {
        header: Some(Header {
            error: error.clone().into_bytes(),
            handled: inv.handled,
            status_code: if inv.failure.is_none() { "200" } else { "500" }.to_string(),
            headers: Default::default(),
            max_mem_usage_in_bytes: inv.max_memory_bytes,
            function_log: inv.function_log,
        }),
        ..Default::default()
    });
    if inv.body.len() <= BODY_CHUNK {
        if !inv.body.is_empty() {
            out.push(pb::InvokeFunctionReply {
                body: inv.body,
                ..Default::default()
            });
        }
    } else {
        out.extend(
            inv.body
                .chunks(BODY_CHUNK)
                .map(|c| pb::InvokeFunctionReply {
                    body: c.to_vec(),
                    ..Default::default()
                }),
        );
    }
    out.push(pb::InvokeFunctionReply {
        footer: Some(Footer {
            duration_in_nanos: inv.duration_nanos,
            invoke_exception: inv.failure.map(|f| f.code).unwrap_or_default(),
            error,
        }),
        ..Default::default()
    });
    out
}

fn stats_reply(r: StatsReport) -> pb::GetStatsReply {
    pb::GetStatsReply {
        node_stats: Some(pb::NodeStats {
            total_memory_in_bytes: wire(r.node.total_memory_bytes),
            memory_usage_in_bytes: wire(r.node.memory_usage_bytes),
            available_memory_in_bytes: wire(r.node.available_memory_bytes),
            cpu_usage_pct: r.node.cpu_pct,
            disk_total_in_bytes: wire(r.node.disk.total_bytes),
            disk_avail_in_bytes: wire(r.node.disk.avail_bytes),
            disk_total_inodes: wire(r.node.disk.total_inodes),
            disk_free_inodes: wire(r.node.disk.free_inodes),
        }),
        container_stats_list: r
            .containers
            .into_iter()
            .map(|c| pb::ContainerStats {
                container_id: c.id,
                total_memory_in_bytes: wire(c.memory_limit_bytes),
                memory_usage_in_bytes: wire(c.memory_bytes),
                cpu_usage_pct: c.cpu_pct,
            })
            .collect(),
        live_id: r.live_id,
        owner_account_id: r.owner_account_id,
    }
}

/// The reply messages as the stream tonic sends (all ready at once, so tonic encodes them
/// into one write).
type ReplyStream = tokio_stream::Iter<
    std::iter::Map<
        std::vec::IntoIter<pb::InvokeFunctionReply>,
        fn(pb::InvokeFunctionReply) -> Result<pb::InvokeFunctionReply, Status>,
    >,
>;

#[tonic::async_trait]
impl NodeService for NodeApi {
    async fn reserve(
        &self,
        request: Request<pb::ReserveRequest>,
    ) -> Result<Response<pb::ReserveReply>, Status> {
        let req = request.into_inner();
        self.node.reserve(&req.owner_account_id).map_err(status)?;
        tracing::info!(request_id = %req.request_id, owner = %req.owner_account_id, "node reserved");
        Ok(Response::new(pb::ReserveReply {}))
    }

    async fn create_container(
        &self,
        request: Request<pb::CreateContainerRequest>,
    ) -> Result<Response<pb::CreateContainerReply>, Status> {
        let id = request_id(request.metadata(), &request.get_ref().request_id);
        let span = tracing::info_span!("create_container", request_id = %id);
        faas_common::trace::continue_trace(&span, request.metadata());
        self.create(request.into_inner()).instrument(span).await
    }

    async fn remove_container(
        &self,
        request: Request<pb::RemoveContainerRequest>,
    ) -> Result<Response<pb::RemoveContainerReply>, Status> {
        let req = request.into_inner();
        if req.container_id.is_empty() {
            return Err(Status::invalid_argument("container_id must not be empty"));
        }
        self.node
            .remove_container(&req.container_id)
            .await
            .map_err(status)?;
        self.metrics.containers_removed.inc();
        self.account();
        tracing::info!(request_id = %req.request_id, container = %req.container_id, "container removed");
        Ok(Response::new(pb::RemoveContainerReply {}))
    }

    type InvokeFunctionStream = ReplyStream;

    async fn invoke_function(
        &self,
        request: Request<pb::InvokeFunctionRequest>,
    ) -> Result<Response<Self::InvokeFunctionStream>, Status> {
        let id = request_id(request.metadata(), &request.get_ref().request_id);
        let span = tracing::info_span!("invoke", request_id = %id);
        faas_common::trace::continue_trace(&span, request.metadata());
        // The container is told the same id (its own message field and `x-request-id`).
        let forwarded = (id != request.get_ref().request_id).then(|| id.to_string());
        let mut req = request.into_inner();
        if let Some(id) = forwarded {
            req.request_id = id;
        }
        self.invoke(req).instrument(span).await
    }

    async fn get_stats(
        &self,
        _request: Request<pb::GetStatsRequest>,
    ) -> Result<Response<pb::GetStatsReply>, Status> {
        let report = self.node.stats().await;
        self.account();
        Ok(Response::new(stats_reply(report.map_err(status)?)))
    }
}

impl NodeApi {
    /// `CreateContainer`, inside its span.
    async fn create(
        &self,
        req: pb::CreateContainerRequest,
    ) -> Result<Response<pb::CreateContainerReply>, Status> {
        let spec = validate_create(&req.name, req.function_meta.map(meta)).map_err(status)?;
        let started = faas_common::clock::instant();
        let result = self.node.create_container(spec).await;
        match result {
            Ok(created) => {
                let secs = started.elapsed().as_secs_f64();
                self.metrics.cold_start(secs, created.from_pool);
                self.account();
                let c = created.container;
                tracing::info!(
                    create = %req.request_id, container = %c.id, function = %c.spec.function_name,
                    ms = secs * 1e3, from_pool = created.from_pool, "container created"
                );
                Ok(Response::new(pb::CreateContainerReply {
                    container_id: c.id,
                }))
            }
            Err(e) => {
                self.metrics.container_create_failures.inc();
                tracing::warn!(create = %req.request_id, error = %e, "container creation failed");
                Err(status(e))
            }
        }
    }

    /// `InvokeFunction`, inside its span.
    async fn invoke(
        &self,
        req: pb::InvokeFunctionRequest,
    ) -> Result<Response<ReplyStream>, Status> {
        let result = self
            .node
            .invoke(
                &req.container_id,
                req.request_id,
                req.event,
                req.function_meta.map(meta),
            )
            .await;
        match result {
            Ok(inv) => {
                self.metrics.invocation(inv.failure.as_ref());
                tracing::debug!(
                    container = %req.container_id,
                    failure = inv.failure.as_ref().map(|f| f.code.as_str()),
                    "invocation finished"
                );
                if inv
                    .failure
                    .as_ref()
                    .is_some_and(|f| f.code == crate::model::Failure::CONTAINER_EXITED)
                {
                    self.account();
                }
                let messages = reply_messages(inv).into_iter().map(Ok as fn(_) -> _);
                Ok(Response::new(tokio_stream::iter(messages)))
            }
            Err(e) => {
                self.metrics.invocations.rejected.inc();
                if matches!(e, NodeError::ContainerUnreachable { .. }) {
                    self.account();
                }
                Err(status(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Failure;

    #[test]
    fn a_reply_is_header_chunks_footer() {
        let inv = Invocation {
            body: vec![7; BODY_CHUNK * 2 + 1],
            duration_nanos: 5,
            max_memory_bytes: 9,
            handled: true,
            ..Default::default()
        };
        let msgs = reply_messages(inv);
        assert_eq!(msgs.len(), 5);
        let h = msgs[0].header.as_ref().unwrap();
        assert_eq!(
            (h.status_code.as_str(), h.handled, h.max_mem_usage_in_bytes),
            ("200", true, 9)
        );
        assert!(h.error.is_empty());
        assert_eq!(
            msgs[1..4].iter().map(|m| m.body.len()).sum::<usize>(),
            BODY_CHUNK * 2 + 1
        );
        let f = msgs[4].footer.as_ref().unwrap();
        assert_eq!((f.duration_in_nanos, f.error.as_str()), (5, ""));
    }

    #[test]
    fn a_failure_travels_in_header_and_footer() {
        let inv = Invocation {
            failure: Some(Failure {
                code: "Timeout".into(),
                message: "function timed out after 50 ms".into(),
            }),
            handled: true,
            ..Default::default()
        };
        let msgs = reply_messages(inv);
        assert_eq!(msgs.len(), 2, "no body message for an empty body");
        let h = msgs[0].header.as_ref().unwrap();
        assert_eq!(h.status_code, "500");
        assert_eq!(h.error, b"Timeout: function timed out after 50 ms");
        let f = msgs[1].footer.as_ref().unwrap();
        assert_eq!(f.error, "Timeout: function timed out after 50 ms");
        assert_eq!(f.invoke_exception, "Timeout");
    }
}
