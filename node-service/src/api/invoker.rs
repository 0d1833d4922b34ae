//! Calls the container service inside each container over gRPC, keeping one channel per
//! container (HTTP/2 multiplexes concurrent invocations over it).

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use async_trait::async_trait;
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

fn classify(status: tonic::Status) -> InvokeError {
    let message = status.message().to_string();
    match status.code() {
        Code::InvalidArgument => InvokeError::InvalidArgument(message),
        Code::FailedPrecondition => InvokeError::WrongFunction(message),
        Code::DeadlineExceeded => InvokeError::NoAnswer(Duration::ZERO),
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Internal => {
            InvokeError::Unreachable(format!("{:?}: {message}", status.code()))
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
        let client = Client::new(channel);
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
        let request = InvokeRequest {
            request_id: call.request_id,
            function_name: call.function_name,
            handler: call.handler,
            event: call.event,
            timeout_in_ms: i64::try_from(call.timeout_ms).unwrap_or(i64::MAX),
        };
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
