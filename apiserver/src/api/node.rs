//! The node port over gRPC: `nodeservoceproto.NodeService/InvokeFunction`, one cached channel
//! per node address, the reply stream collected into one [`Execution`].
//!
//! The node reports a function's failure inside the stream, not as a gRPC error: the header's
//! `error` bytes and the footer's `error` (`"Code: message"`, e.g. `"Timeout: ..."`). A gRPC
//! error, or a stream that ends before its footer, is a failure of the node call itself, and
//! [`node_error`] tells what kind: never connected, refused before delivery (the node's
//! `x-faas-error-code`), no answer in time, or broken off.
//!
//! The call carries its request id as `x-request-id` metadata too
//! ([`faas_common::serve::REQUEST_ID`]), which the node passes on to the container.
//!
//! The whole call, reply stream included, ends by the call's deadline: a node that stops
//! answering (SIGSTOP, a hung host) fails its calls then instead of holding them.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use faas_common::serve::{ChannelCache, MAX_MESSAGE_BYTES, send_request_id};
use faas_common::token::{AuthChannel, ClusterAuth};
use faas_proto::meta;
use faas_proto::nodeservoceproto::{
    FunctionMeta, InvokeFunctionRequest, node_service_client::NodeServiceClient,
};
use tonic::Status;

use crate::api::convert::{never_connected, remote_code, remote_error, root_cause, timed_out};
use crate::model::{
    Execution, Failure, NodeError, NodeErrorKind, Placement, RemoteCode, Undelivered,
};
use crate::service::NodePort;
use crate::service::invoke::{CODE_FUNCTION_ERROR, NodeCall};

/// The largest function response collected; a larger one fails the invocation.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// The failure code of a response over [`MAX_RESPONSE_BYTES`].
pub const CODE_RESPONSE_TOO_LARGE: &str = "ResponseTooLarge";

type Client = NodeServiceClient<AuthChannel>;

/// Clients of every node service seen so far, one channel per `host:port`.
///
/// A call finds its node's client by the placement's address and port as they came (one
/// read lock, no `host:port` string made, no client wrapped): the client, with the cluster
/// token's interceptor and the message limits, is made once per node, over the node's
/// channel in the [`ChannelCache`].
#[derive(Debug, Default)]
pub struct GrpcNodes {
    channels: ChannelCache,
    /// Ready clients by node address, then port.
    clients: RwLock<HashMap<String, Vec<(i64, Client)>>>,
    /// The cluster token on every call.
    auth: ClusterAuth,
}

impl GrpcNodes {
    pub fn new() -> GrpcNodes {
        GrpcNodes::default()
    }

    /// Node clients whose calls carry the cluster token of `auth`.
    pub fn with_auth(auth: ClusterAuth) -> GrpcNodes {
        GrpcNodes {
            auth,
            ..GrpcNodes::default()
        }
    }

    /// The client of the node service of `placement`, made on its first call.
    fn client(&self, placement: &Placement) -> Result<Client, NodeError> {
        let port = placement.node_port;
        if let Some(client) = self
            .clients
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&placement.node_address)
            .and_then(|ports| ports.iter().find(|(p, _)| *p == port))
        {
            return Ok(client.1.clone());
        }
        let channel = self.channels.get(&placement.node_endpoint()).map_err(|e| {
            NodeError::new(
                NodeErrorKind::NotConnected,
                RemoteCode::Unavailable,
                e.to_string(),
            )
        })?;
        let client = NodeServiceClient::new(self.auth.channel(channel))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let mut clients = self.clients.write().unwrap_or_else(PoisonError::into_inner);
        let ports = clients.entry(placement.node_address.clone()).or_default();
        if !ports.iter().any(|(p, _)| *p == port) {
            ports.push((port, client.clone()));
        }
        Ok(client)
    }
}

/// What a failed node call means for the invocation.
pub fn node_error(status: &Status) -> NodeError {
    let error = remote_error(status);
    let refused = status
        .metadata()
        .get(meta::ERROR_CODE)
        .and_then(|v| v.to_str().ok())
        .and_then(Undelivered::from_code);
    let mut message = error.message;
    let mut code = remote_code(status.code());
    let kind = if never_connected(status) {
        // tonic says "tcp connect error"; the cause ("Connection refused") is deeper.
        if let Some(cause) = root_cause(status) {
            message = format!("{message}: {cause}");
        }
        NodeErrorKind::NotConnected
    } else if let Some(reason) = refused {
        NodeErrorKind::Refused(reason)
    } else if status.code() == tonic::Code::NotFound {
        // A node that names no code: NOT_FOUND is about the container, before delivery.
        NodeErrorKind::Refused(Undelivered::ContainerNotFound)
    } else if timed_out(status) {
        NodeErrorKind::NoAnswer
    } else {
        if std::error::Error::source(status).is_some() {
            // tonic's own error for a connection that broke mid-call (it carries the
            // transport error as its source; tonic often says UNKNOWN): the node went away,
            // which is UNAVAILABLE whatever code tonic picked.
            code = RemoteCode::Unavailable;
        }
        NodeErrorKind::Broken
    };
    NodeError::new(kind, code, message)
}

/// Splits a node error text `"Code: message"`; text without a code is a function error.
pub fn parse_failure(text: &str) -> Failure {
    if let Some((code, message)) = text.split_once(": ")
        && !code.is_empty()
        && code.chars().all(|c| c.is_ascii_alphanumeric())
    {
        return Failure {
            code: code.to_string(),
            message: message.to_string(),
        };
    }
    Failure {
        code: CODE_FUNCTION_ERROR.to_string(),
        message: text.to_string(),
    }
}

/// The failure a finished stream reports: the footer's `invoke_exception` is the code when
/// set, the error text (`"Code: message"`) gives the message.
fn failure(exception: &str, text: Option<String>) -> Option<Failure> {
    match (exception.is_empty(), text) {
        (true, None) => None,
        (true, Some(text)) => Some(parse_failure(&text)),
        (false, None) => Some(Failure {
            code: exception.to_string(),
            message: format!("the function failed with {exception}"),
        }),
        (false, Some(text)) => {
            let message = text
                .strip_prefix(exception)
                .and_then(|rest| rest.strip_prefix(": "))
                .unwrap_or(&text);
            Some(Failure {
                code: exception.to_string(),
                message: message.to_string(),
            })
        }
    }
}

impl GrpcNodes {
    /// The call itself, without its deadline.
    async fn call(
        &self,
        placement: &Placement,
        call: NodeCall<'_>,
    ) -> Result<Execution, NodeError> {
        if placement.node_address.is_empty() || !(1..=65535).contains(&placement.node_port) {
            return Err(NodeError::new(
                NodeErrorKind::NotConnected,
                RemoteCode::Unavailable,
                format!(
                    "the scheduler gave an unusable node address {:?} port {}",
                    faas_common::text::clip(&placement.node_address),
                    placement.node_port
                ),
            ));
        }
        let mut client = self.client(placement)?;
        let function = call.function;
        let mut request = tonic::Request::new(InvokeFunctionRequest {
            request_id: call.request_id.to_string(),
            container_id: placement.container_id.clone(),
            event: call.event.to_vec(),
            function_meta: Some(FunctionMeta {
                function_name: function.name.clone(),
                handler: function.handler.as_str().to_string(),
                timeout_in_ms: function.timeout_ms,
                memory_in_bytes: function.memory_bytes,
            }),
        });
        send_request_id(&mut request, call.request_id);
        request.set_timeout(call.deadline);

        let mut stream = client
            .invoke_function(request)
            .await
            .map_err(|s| node_error(&s))?
            .into_inner();
        let mut execution = Execution::default();
        let mut header_error: Option<String> = None;
        let mut footer_error: Option<String> = None;
        let mut footer_exception = String::new();
        let mut footer_seen = false;
        while let Some(reply) = stream.message().await.map_err(|s| node_error(&s))? {
            if let Some(header) = reply.header {
                if !header.error.is_empty() {
                    header_error = Some(String::from_utf8_lossy(&header.error).into_owned());
                }
                execution.max_memory_bytes = execution
                    .max_memory_bytes
                    .max(header.max_mem_usage_in_bytes);
            }
            if !reply.body.is_empty() {
                if execution.body.len() + reply.body.len() > MAX_RESPONSE_BYTES {
                    execution.failure = Some(Failure {
                        code: CODE_RESPONSE_TOO_LARGE.to_string(),
                        message: format!(
                            "the response is over the limit of {MAX_RESPONSE_BYTES} bytes"
                        ),
                    });
                    execution.body = Vec::new();
                    return Ok(execution);
                }
                if execution.body.is_empty() {
                    execution.body = reply.body;
                } else {
                    execution.body.extend_from_slice(&reply.body);
                }
            }
            if let Some(footer) = reply.footer {
                footer_seen = true;
                execution.duration_nanos = footer.duration_in_nanos;
                if !footer.error.is_empty() {
                    footer_error = Some(footer.error);
                }
                footer_exception = footer.invoke_exception;
            }
        }
        if !footer_seen {
            return Err(NodeError::new(
                NodeErrorKind::Broken,
                RemoteCode::Unavailable,
                "the node's reply stream ended before its footer",
            ));
        }
        execution.failure = failure(&footer_exception, footer_error.or(header_error));
        Ok(execution)
    }
}

impl NodePort for GrpcNodes {
    async fn invoke(
        &self,
        placement: &Placement,
        call: NodeCall<'_>,
    ) -> Result<Execution, NodeError> {
        // The grpc-timeout header only bounds the wait for the reply's headers: the stream
        // after them needs a deadline of its own.
        match tokio::time::timeout(call.deadline, self.call(placement, call)).await {
            Ok(result) => result,
            Err(_) => Err(NodeError::new(
                NodeErrorKind::NoAnswer,
                RemoteCode::DeadlineExceeded,
                format!("no complete answer within {} ms", call.deadline.as_millis()),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_split_into_code_and_message() {
        assert_eq!(
            parse_failure("Timeout: ran over 100 ms"),
            Failure {
                code: "Timeout".into(),
                message: "ran over 100 ms".into()
            }
        );
        assert_eq!(
            parse_failure("OutOfMemory: rss 600 MiB").code,
            "OutOfMemory"
        );
        assert_eq!(
            parse_failure("something broke: badly"),
            Failure {
                code: "FunctionError".into(),
                message: "something broke: badly".into()
            }
        );
        assert_eq!(parse_failure("plain").code, "FunctionError");
        assert_eq!(parse_failure(": x").code, "FunctionError");
    }

    #[test]
    fn the_footer_exception_is_the_code_when_set() {
        assert_eq!(failure("", None), None);
        assert_eq!(
            failure("Timeout", Some("Timeout: ran 5 ms".into())),
            Some(Failure {
                code: "Timeout".into(),
                message: "ran 5 ms".into()
            })
        );
        assert_eq!(failure("OutOfMemory", None).unwrap().code, "OutOfMemory");
        assert_eq!(
            failure("FunctionError", Some("oops: a b".into())),
            Some(Failure {
                code: "FunctionError".into(),
                message: "oops: a b".into()
            })
        );
        assert_eq!(
            failure("", Some("ContainerExited: gone".into()))
                .unwrap()
                .code,
            "ContainerExited"
        );
    }

    #[test]
    fn a_connection_that_broke_mid_call_is_unavailable_whatever_tonic_said() {
        let broken = Status::from_error(Box::new(std::io::Error::other("connection reset")));
        assert_eq!(broken.code(), tonic::Code::Unknown);
        let e = node_error(&broken);
        assert_eq!(e.kind, NodeErrorKind::Broken);
        assert_eq!(e.code, RemoteCode::Unavailable);
        // A node that answers UNKNOWN itself keeps its code.
        let e = node_error(&Status::unknown("the node's own failure"));
        assert_eq!(e.code, RemoteCode::Unknown);
    }

    #[test]
    fn node_errors_say_whether_the_event_can_have_reached_the_function() {
        use std::io::{Error, ErrorKind};
        use tonic::metadata::MetadataMap;
        let with_code = |status: Status, code: &'static str| {
            let mut map = MetadataMap::new();
            map.insert(meta::ERROR_CODE, code.parse().unwrap());
            Status::with_metadata(status.code(), status.message(), map)
        };
        let cases = [
            (
                Status::from_error(Box::new(tonic::ConnectError(Box::new(Error::from(
                    ErrorKind::ConnectionRefused,
                ))))),
                NodeErrorKind::NotConnected,
            ),
            (
                with_code(Status::not_found("no container c"), "ContainerNotFound"),
                NodeErrorKind::Refused(Undelivered::ContainerNotFound),
            ),
            (
                Status::not_found("no container c"),
                NodeErrorKind::Refused(Undelivered::ContainerNotFound),
            ),
            (
                with_code(Status::failed_precondition("dead"), "ContainerDead"),
                NodeErrorKind::Refused(Undelivered::ContainerDead),
            ),
            (
                with_code(Status::unavailable("refused"), "ContainerUnreachable"),
                NodeErrorKind::Refused(Undelivered::ContainerUnreachable),
            ),
            (
                with_code(Status::failed_precondition("other"), "WrongFunction"),
                NodeErrorKind::Refused(Undelivered::WrongFunction),
            ),
            // A code the node may not use before delivery is not trusted.
            (
                with_code(Status::unavailable("gone"), "ContainerExited"),
                NodeErrorKind::Broken,
            ),
            (
                Status::from_error(Box::new(tonic::TimeoutExpired(()))),
                NodeErrorKind::NoAnswer,
            ),
            (
                Status::cancelled("Timeout expired"),
                NodeErrorKind::NoAnswer,
            ),
            (Status::deadline_exceeded("late"), NodeErrorKind::NoAnswer),
            (
                Status::from_error(Box::new(Error::from(ErrorKind::ConnectionReset))),
                NodeErrorKind::Broken,
            ),
            (
                Status::unavailable("h2 protocol error"),
                NodeErrorKind::Broken,
            ),
            (Status::internal("oops"), NodeErrorKind::Broken),
        ];
        for (status, kind) in cases {
            let err = node_error(&status);
            assert_eq!(err.kind, kind, "{status:?}");
            // A broken connection is tonic's own error (it has a source): UNAVAILABLE.
            let want =
                if kind == NodeErrorKind::Broken && std::error::Error::source(&status).is_some() {
                    RemoteCode::Unavailable
                } else {
                    remote_code(status.code())
                };
            assert_eq!(err.code, want, "{status:?}");
        }
    }
}
