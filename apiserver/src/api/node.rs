//! The node port over gRPC: `nodeservoceproto.NodeService/InvokeFunction`, one cached channel
//! per node address, the reply stream collected into one [`Execution`].
//!
//! The node reports a function's failure inside the stream, not as a gRPC error: the header's
//! `error` bytes and the footer's `error` (`"Code: message"`, e.g. `"Timeout: ..."`). A gRPC
//! error, or a stream that ends before its footer, is a failure of the node call itself.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use faas_proto::nodeservoceproto::{
    FunctionMeta, InvokeFunctionRequest, node_service_client::NodeServiceClient,
};
use tonic::transport::Channel;

use crate::api::convert::remote_error;
use crate::model::{Execution, Failure, Placement, RemoteCode, RemoteError};
use crate::service::NodePort;
use crate::service::invoke::{CODE_FUNCTION_ERROR, NodeCall};

/// Time the node call may take beyond the function's own timeout (the node and the container
/// service need a moment to notice the timeout and answer).
pub const NODE_DEADLINE_GRACE: Duration = Duration::from_secs(10);
/// The largest single message accepted from a node.
pub const MAX_NODE_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// The largest function response collected; a larger one fails the invocation.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// The failure code of a response over [`MAX_RESPONSE_BYTES`].
pub const CODE_RESPONSE_TOO_LARGE: &str = "ResponseTooLarge";

/// Clients of every node service seen so far, one channel per `host:port`.
#[derive(Debug, Default)]
pub struct GrpcNodes {
    channels: RwLock<HashMap<String, Channel>>,
}

impl GrpcNodes {
    pub fn new() -> GrpcNodes {
        GrpcNodes::default()
    }

    fn channel(&self, endpoint: &str) -> Result<Channel, RemoteError> {
        if let Some(channel) = self
            .channels
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(endpoint)
        {
            return Ok(channel.clone());
        }
        let mut channels = self
            .channels
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(channel) = channels.get(endpoint) {
            return Ok(channel.clone());
        }
        let channel = faas_common::serve::connect_lazy(endpoint)
            .map_err(|e| RemoteError::new(RemoteCode::Unavailable, e.to_string()))?;
        channels.insert(endpoint.to_string(), channel.clone());
        Ok(channel)
    }
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

impl NodePort for GrpcNodes {
    async fn invoke(
        &self,
        placement: &Placement,
        call: NodeCall,
    ) -> Result<Execution, RemoteError> {
        if placement.node_address.is_empty() || !(1..=65535).contains(&placement.node_port) {
            return Err(RemoteError::new(
                RemoteCode::Unavailable,
                format!(
                    "the scheduler gave an unusable node address {:?} port {}",
                    placement.node_address, placement.node_port
                ),
            ));
        }
        let endpoint = placement.node_endpoint();
        let channel = self.channel(&endpoint)?;
        let mut client =
            NodeServiceClient::new(channel).max_decoding_message_size(MAX_NODE_MESSAGE_BYTES);
        let function = &call.function;
        let mut request = tonic::Request::new(InvokeFunctionRequest {
            request_id: call.request_id,
            container_id: placement.container_id.clone(),
            event: call.event,
            function_meta: Some(FunctionMeta {
                function_name: function.name.clone(),
                handler: function.handler.as_str().to_string(),
                timeout_in_ms: function.timeout_ms,
                memory_in_bytes: function.memory_bytes,
            }),
        });
        let timeout_ms = u64::try_from(function.timeout_ms).unwrap_or(0);
        request.set_timeout(Duration::from_millis(timeout_ms) + NODE_DEADLINE_GRACE);

        let mut stream = client
            .invoke_function(request)
            .await
            .map_err(|s| remote_error(&s))?
            .into_inner();
        let mut execution = Execution::default();
        let mut header_error: Option<String> = None;
        let mut footer_error: Option<String> = None;
        let mut footer_exception = String::new();
        let mut footer_seen = false;
        while let Some(reply) = stream.message().await.map_err(|s| remote_error(&s))? {
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
            return Err(RemoteError::new(
                RemoteCode::Unavailable,
                "the node's reply stream ended before its footer",
            ));
        }
        execution.failure = failure(&footer_exception, footer_error.or(header_error));
        Ok(execution)
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
}
