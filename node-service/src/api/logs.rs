//! `NodeAdmin.FunctionLogs` at the edge: the request and reply converted to and from the
//! service's [`logs`](crate::service::logs) types, and [`GrpcLogReader`], the
//! [`LogReader`] that asks a container's service for its lines
//! (`faas.container.v1.ContainerService/Logs`).
//!
//! The reader opens a channel of its own to the container for each read (lazily, so a
//! container that is gone costs a refused connect, not a wait): logs are read rarely, and
//! the invoke path's channel cache ([`super::invoker`]) stays the invoker's alone. A failed
//! read is classified as a failed invocation is ([`classify`]), so its error says whether
//! the container was unreachable, silent or refused.

use std::time::Duration;

use async_trait::async_trait;
use faas_proto::container::container_service_client::ContainerServiceClient;
use faas_proto::container::{self as container_pb, LogsRequest};
use faas_proto::node_admin as pb;
use tonic::Status;

use super::admin::{STATE_DEAD, STATE_RUNNING};
use super::grpc::status;
use super::invoker::classify;
use crate::model::Container;
use crate::service::logs::{ContainerLogs, LogLine, LogPage, LogQuery};
use crate::service::{InvokeError, LogReader, Node};

/// Reads a container's lines over gRPC (see the module docs).
#[derive(Debug, Default)]
pub struct GrpcLogReader;

#[async_trait]
impl LogReader for GrpcLogReader {
    async fn read(
        &self,
        container: &Container,
        query: LogQuery,
        timeout: Duration,
    ) -> Result<LogPage, InvokeError> {
        let channel = faas_common::serve::connect_lazy(&container.address)
            .map_err(|e| InvokeError::Unreachable(e.to_string()))?;
        let request = LogsRequest {
            after_seq: 0,
            since_ms: query.since_ms,
            limit: query.limit,
        };
        let mut client = ContainerServiceClient::new(channel);
        match tokio::time::timeout(timeout, client.logs(request)).await {
            Ok(Ok(reply)) => Ok(page(reply.into_inner())),
            Ok(Err(status)) => Err(match classify(status) {
                InvokeError::NoAnswer(_) => InvokeError::NoAnswer(timeout),
                other => other,
            }),
            Err(_) => Err(InvokeError::NoAnswer(timeout)),
        }
    }
}

fn page(reply: container_pb::LogsReply) -> LogPage {
    let lines = reply
        .lines
        .into_iter()
        .map(|l| LogLine {
            seq: l.seq,
            at_ms: l.at_ms,
            stream: l.stream,
            request_id: l.request_id,
            text: l.text,
        })
        .collect();
    LogPage {
        lines,
        dropped: reply.dropped,
    }
}

fn container_logs(c: ContainerLogs) -> pb::ContainerLogs {
    pb::ContainerLogs {
        container_id: c.container_id,
        function_name: c.function_name,
        state: if c.dead { STATE_DEAD } else { STATE_RUNNING }.to_string(),
        lines: c
            .page
            .lines
            .into_iter()
            .map(|l| pb::LogLine {
                seq: l.seq,
                at_ms: l.at_ms,
                stream: l.stream,
                request_id: l.request_id,
                text: l.text,
            })
            .collect(),
        dropped: c.page.dropped,
        error: c.error.unwrap_or_default(),
    }
}

/// Answers a `FunctionLogs` request for `node`, reading through `reader`.
pub async fn function_logs(
    node: &Node,
    reader: &dyn LogReader,
    req: pb::FunctionLogsRequest,
) -> Result<pb::FunctionLogsReply, Status> {
    let query = LogQuery {
        since_ms: req.since_ms,
        limit: req.limit,
    };
    let containers = node
        .function_logs(reader, &req.function_name, query)
        .await
        .map_err(status)?;
    Ok(pb::FunctionLogsReply {
        node_id: node.identity().node_id.clone(),
        containers: containers.into_iter().map(container_logs).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_containers_logs_convert_field_by_field() {
        let line = LogLine {
            seq: 2,
            at_ms: 9,
            stream: "stderr".into(),
            request_id: "r".into(),
            text: "t".into(),
        };
        let reply = container_logs(ContainerLogs {
            container_id: "c".into(),
            function_name: "f:2".into(),
            dead: false,
            page: LogPage {
                lines: vec![line],
                dropped: 4,
            },
            error: None,
        });
        assert_eq!(
            reply,
            pb::ContainerLogs {
                container_id: "c".into(),
                function_name: "f:2".into(),
                state: "running".into(),
                lines: vec![pb::LogLine {
                    seq: 2,
                    at_ms: 9,
                    stream: "stderr".into(),
                    request_id: "r".into(),
                    text: "t".into(),
                }],
                dropped: 4,
                error: String::new(),
            }
        );
        let dead = container_logs(ContainerLogs {
            container_id: "d".into(),
            function_name: "f".into(),
            dead: true,
            page: LogPage::default(),
            error: Some("gone".into()),
        });
        assert_eq!((dead.state.as_str(), dead.error.as_str()), ("dead", "gone"));
    }

    #[tokio::test]
    async fn a_container_nobody_listens_on_is_unreachable() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let container = Container {
            id: "c".into(),
            address: format!("127.0.0.1:{port}"),
            spec: crate::model::ContainerSpec {
                function_name: "f".into(),
                handler: "hello".into(),
                memory_bytes: 1,
                timeout_ms: 1,
            },
            state: crate::model::ContainerState::Running,
            created_at_ms: 0,
            calls: Default::default(),
        };
        let err = GrpcLogReader
            .read(&container, LogQuery::default(), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, InvokeError::Unreachable(_)), "{err:?}");
    }
}
