//! The gRPC edge: `faas.container.v1.ContainerService` over the [`Executor`].

use std::sync::Arc;

use faas_proto::container::container_service_server::{ContainerService, ContainerServiceServer};
use faas_proto::container::{InvokeReply, InvokeRequest, StatusReply, StatusRequest};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::exec::Executor;

/// The container service's gRPC implementation.
#[derive(Clone, Debug)]
pub struct ContainerApi {
    exec: Arc<Executor>,
}

impl ContainerApi {
    /// Serves `exec`.
    pub fn new(exec: Arc<Executor>) -> ContainerApi {
        ContainerApi { exec }
    }

    /// The tonic server for this implementation.
    pub fn into_server(self) -> ContainerServiceServer<ContainerApi> {
        ContainerServiceServer::new(self)
    }

    /// Refuses a request meant for another function (empty fields mean "this container's").
    fn check_target(&self, req: &InvokeRequest) -> Result<(), Status> {
        let spec = self.exec.spec();
        let name_ok = req.function_name.is_empty() || req.function_name == spec.function_name;
        let handler_ok = req.handler.is_empty() || req.handler == spec.handler.as_str();
        if name_ok && handler_ok {
            return Ok(());
        }
        Err(Status::failed_precondition(format!(
            "this container runs function {:?} (handler {:?}), not function {:?} (handler {:?}); \
             invoke a container of that function instead",
            spec.function_name,
            spec.handler.as_str(),
            req.function_name,
            req.handler
        )))
    }
}

#[tonic::async_trait]
impl ContainerService for ContainerApi {
    async fn invoke(
        &self,
        request: Request<InvokeRequest>,
    ) -> Result<Response<InvokeReply>, Status> {
        let req = request.into_inner();
        self.check_target(&req)?;
        let timeout_ms = u64::try_from(req.timeout_in_ms).map_err(|_| {
            Status::invalid_argument(format!(
                "timeout_in_ms must be >= 0 (0 = the function's {} ms), got {}",
                self.exec.spec().timeout_ms,
                req.timeout_in_ms
            ))
        })?;
        let timeout = self.exec.effective_timeout(timeout_ms);
        let span = tracing::debug_span!("invoke", request_id = %req.request_id);
        let out = self.exec.invoke(req.event, timeout).instrument(span).await;
        let (error_code, error_message) = match out.error {
            Some((code, message)) => {
                tracing::debug!(request_id = %req.request_id, code, %message, "function failed");
                (code.to_string(), message)
            }
            None => (String::new(), String::new()),
        };
        Ok(Response::new(InvokeReply {
            body: out.body,
            duration_in_nanos: out.duration_nanos,
            max_memory_usage_in_bytes: out.max_memory_bytes,
            error_code,
            error_message,
            function_log: String::new(),
        }))
    }

    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusReply>, Status> {
        let spec = self.exec.spec();
        let s = self.exec.status();
        Ok(Response::new(StatusReply {
            function_name: spec.function_name.clone(),
            handler: spec.handler.as_str().to_string(),
            memory_in_bytes: i64::try_from(spec.memory_bytes).unwrap_or(i64::MAX),
            timeout_in_ms: i64::try_from(spec.timeout_ms).unwrap_or(i64::MAX),
            in_flight: s.in_flight,
            served: s.served,
            rss_bytes: i64::try_from(s.rss_bytes).unwrap_or(i64::MAX),
        }))
    }
}
