//! Calls the container service inside each container over gRPC, keeping one channel per
//! container (HTTP/2 multiplexes concurrent invocations over it), with messages of up to
//! [`MAX_MESSAGE_BYTES`] both ways. An invocation carries its request id as `x-request-id`
//! metadata too ([`faas_common::serve::REQUEST_ID`]).
//!
//! A failed call is classified by what the container can have seen of it ([`classify`]).
//! The status code alone cannot tell: a connection refused and a connection reset mid-call
//! both arrive as transport errors. What tells is the error tonic kept as the status's
//! source:
//!
//! - a `tonic::ConnectError` in the source chain: the channel could not (re)connect (the
//!   connection is refused when no process listens any more), so the request never left;
//! - a hyper error that is `is_canceled()`: hyper handed the request back without writing it
//!   (the connection was found closed before the request was taken: "connection was not
//!   ready", "connection closed");
//!
//! both are [`InvokeError::Unreachable`] (the function did not run). Any other transport
//! failure is [`InvokeError::Disconnected`]: the request may have been delivered, so the
//! function may have run.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use async_trait::async_trait;
use faas_common::serve::{MAX_MESSAGE_BYTES, send_request_id};
use faas_proto::container::container_service_client::ContainerServiceClient;
use faas_proto::container::{BindRequest, InvokeRequest, StatusRequest};
use tonic::Code;
use tonic::transport::Channel;

use crate::model::{Container, ContainerHandle, ContainerSpec, Failure, Invocation, InvokeCall};
use crate::service::{ContainerInvoker, InvokeError};

type Client = ContainerServiceClient<Channel>;

/// The gRPC [`ContainerInvoker`] with a channel cache keyed by container id.
#[derive(Debug, Default)]
pub struct GrpcInvoker {
    clients: RwLock<HashMap<String, Client>>,
}

/// Whether the request of a call that failed with `status` was never sent (see the module
/// docs): a connect error, or a request hyper gave back unsent, in the status's source chain.
pub fn never_sent(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.is::<tonic::ConnectError>()
            || e.downcast_ref::<hyper::Error>()
                .is_some_and(hyper::Error::is_canceled)
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// What a failed call means for the container: see the module docs.
pub fn classify(status: tonic::Status) -> InvokeError {
    let message = status.message().to_string();
    match status.code() {
        _ if never_sent(&status) => {
            InvokeError::Unreachable(format!("{:?}: {message}", status.code()))
        }
        Code::InvalidArgument => InvokeError::InvalidArgument(message),
        Code::FailedPrecondition => InvokeError::WrongFunction(message),
        Code::DeadlineExceeded => InvokeError::NoAnswer(Duration::ZERO),
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Internal => {
            InvokeError::Disconnected(format!("{:?}: {message}", status.code()))
        }
        code => InvokeError::Failed(format!("{code:?}: {message}")),
    }
}

impl GrpcInvoker {
    fn client(&self, id: &str, address: &str) -> Result<Client, InvokeError> {
        if let Some(c) = self
            .clients
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
        {
            return Ok(c.clone());
        }
        let channel = faas_common::serve::connect_lazy(address)
            .map_err(|e| InvokeError::Unreachable(e.to_string()))?;
        let client = Client::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        self.clients
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string(), client.clone());
        Ok(client)
    }
}

#[async_trait]
impl ContainerInvoker for GrpcInvoker {
    async fn ready(&self, handle: &ContainerHandle, timeout: Duration) -> Result<(), InvokeError> {
        let mut client = self.client(&handle.id, &handle.address)?;
        match tokio::time::timeout(timeout, client.status(StatusRequest {})).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(status)) => Err(classify(status)),
            Err(_) => Err(InvokeError::NoAnswer(timeout)),
        }
    }

    async fn bind(
        &self,
        handle: &ContainerHandle,
        spec: &ContainerSpec,
        timeout: Duration,
    ) -> Result<(), InvokeError> {
        let mut client = self.client(&handle.id, &handle.address)?;
        let request = BindRequest {
            function_name: spec.function_name.clone(),
            handler: spec.handler.clone(),
            memory_in_bytes: i64::try_from(spec.memory_bytes).unwrap_or(i64::MAX),
            timeout_in_ms: i64::try_from(spec.timeout_ms).unwrap_or(i64::MAX),
        };
        match tokio::time::timeout(timeout, client.bind(request)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(status)) => Err(classify(status)),
            Err(_) => Err(InvokeError::NoAnswer(timeout)),
        }
    }

    async fn invoke(
        &self,
        container: &Container,
        call: InvokeCall,
        deadline: Duration,
    ) -> Result<Invocation, InvokeError> {
        let mut client = self.client(&container.id, &container.address)?;
        let mut request = tonic::Request::new(InvokeRequest {
            request_id: String::new(),
            function_name: call.function_name,
            handler: call.handler,
            event: call.event,
            timeout_in_ms: i64::try_from(call.timeout_ms).unwrap_or(i64::MAX),
        });
        send_request_id(&mut request, &call.request_id);
        request.get_mut().request_id = call.request_id;
        let reply = match tokio::time::timeout(deadline, client.invoke(request)).await {
            Ok(Ok(reply)) => reply.into_inner(),
            Ok(Err(status)) => {
                return Err(match classify(status) {
                    InvokeError::NoAnswer(_) => InvokeError::NoAnswer(deadline),
                    other => other,
                });
            }
            Err(_) => return Err(InvokeError::NoAnswer(deadline)),
        };
        let failure = if reply.error_code.is_empty() {
            None
        } else {
            Some(Failure {
                code: reply.error_code,
                message: reply.error_message,
            })
        };
        Ok(Invocation {
            body: reply.body,
            duration_nanos: reply.duration_in_nanos,
            max_memory_bytes: reply.max_memory_usage_in_bytes,
            function_log: reply.function_log,
            failure,
            handled: true,
        })
    }

    fn forget(&self, id: &str) {
        self.clients
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(kind: std::io::ErrorKind) -> Box<dyn std::error::Error + Send + Sync> {
        Box::new(std::io::Error::from(kind))
    }

    #[test]
    fn a_failed_connect_was_never_sent() {
        // What tonic's channel answers when the container's port refuses the connection.
        let refused = tonic::Status::from_error(Box::new(tonic::ConnectError(io(
            std::io::ErrorKind::ConnectionRefused,
        ))));
        assert_eq!(refused.code(), Code::Unavailable);
        assert!(never_sent(&refused));
        assert!(matches!(classify(refused), InvokeError::Unreachable(_)));
    }

    #[test]
    fn a_broken_connection_may_have_delivered_the_call() {
        let reset = tonic::Status::from_error(io(std::io::ErrorKind::ConnectionReset));
        assert!(!never_sent(&reset));
        assert!(matches!(classify(reset), InvokeError::Disconnected(_)));
        for code in [
            Code::Unavailable,
            Code::Unknown,
            Code::Internal,
            Code::Cancelled,
        ] {
            let s = tonic::Status::new(code, "transport error");
            assert!(
                matches!(classify(s), InvokeError::Disconnected(_)),
                "{code:?}"
            );
        }
    }

    #[test]
    fn the_container_services_own_refusals_keep_their_meaning() {
        let s = tonic::Status::invalid_argument("bad");
        assert_eq!(classify(s), InvokeError::InvalidArgument("bad".into()));
        let s = tonic::Status::failed_precondition("runs g");
        assert_eq!(classify(s), InvokeError::WrongFunction("runs g".into()));
        let s = tonic::Status::deadline_exceeded("late");
        assert!(matches!(classify(s), InvokeError::NoAnswer(_)));
        let s = tonic::Status::permission_denied("no");
        assert!(matches!(classify(s), InvokeError::Failed(_)));
    }
}
