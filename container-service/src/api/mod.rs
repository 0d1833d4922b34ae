//! The gRPC edge: `faas.container.v1.ContainerService` over the container's [`Binding`]
//! (Invoke and Status through its [`Executor`](crate::exec::Executor) once bound, Bind to
//! bind it).

use std::sync::Arc;

use faas_proto::container::container_service_server::{ContainerService, ContainerServiceServer};
use faas_proto::container::{
    BindReply, BindRequest, InvokeReply, InvokeRequest, StatusReply, StatusRequest,
};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::binding::{BindError, Binding, DEFAULT_TIMEOUT_MS, FunctionConfig};
use crate::exec::Executor;
use crate::memory::rss;

/// The container service's gRPC implementation.
#[derive(Clone, Debug)]
pub struct ContainerApi {
    binding: Arc<Binding>,
}

fn wire(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl ContainerApi {
    /// Serves `binding`.
    pub fn new(binding: Arc<Binding>) -> ContainerApi {
        ContainerApi { binding }
    }

    /// The tonic server for this implementation.
    pub fn into_server(self) -> ContainerServiceServer<ContainerApi> {
        ContainerServiceServer::new(self)
    }

    /// The executor of the bound function, or the refusal of an unbound container.
    fn executor(&self) -> Result<&Arc<Executor>, Status> {
        self.binding.executor().ok_or_else(|| {
            Status::failed_precondition(
                "container is not bound to a function: call Bind with the function first",
            )
        })
    }
}

/// Refuses a request meant for another function (empty fields mean "this container's").
fn check_target(exec: &Executor, req: &InvokeRequest) -> Result<(), Status> {
    let spec = exec.spec();
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

/// The Bind request as a function configuration (0 ms = the default timeout).
fn function_config(req: BindRequest) -> Result<FunctionConfig, Status> {
    let memory_bytes = u64::try_from(req.memory_in_bytes)
        .ok()
        .filter(|m| *m > 0)
        .ok_or_else(|| {
            Status::invalid_argument(format!(
                "memory_in_bytes must be > 0, got {}",
                req.memory_in_bytes
            ))
        })?;
    let timeout_ms = match u64::try_from(req.timeout_in_ms) {
        Ok(0) => DEFAULT_TIMEOUT_MS,
        Ok(ms) => ms,
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "timeout_in_ms must be >= 0 (0 = the default {DEFAULT_TIMEOUT_MS} ms), got {}",
                req.timeout_in_ms
            )));
        }
    };
    Ok(FunctionConfig {
        function_name: req.function_name,
        handler: req.handler,
        memory_bytes,
        timeout_ms,
    })
}

#[tonic::async_trait]
impl ContainerService for ContainerApi {
    async fn invoke(
        &self,
        request: Request<InvokeRequest>,
    ) -> Result<Response<InvokeReply>, Status> {
        let req = request.into_inner();
        let exec = self.executor()?;
        check_target(exec, &req)?;
        let timeout_ms = u64::try_from(req.timeout_in_ms).map_err(|_| {
            Status::invalid_argument(format!(
                "timeout_in_ms must be >= 0 (0 = the function's {} ms), got {}",
                exec.spec().timeout_ms,
                req.timeout_in_ms
            ))
        })?;
        let timeout = exec.effective_timeout(timeout_ms);
        let span = tracing::debug_span!("invoke", request_id = %req.request_id);
        let out = exec.invoke(req.event, timeout).instrument(span).await;
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
        let Some(exec) = self.binding.executor() else {
            return Ok(Response::new(StatusReply {
                rss_bytes: wire(rss::current_rss_bytes()),
                ..StatusReply::default()
            }));
        };
        let spec = exec.spec();
        let s = exec.status();
        Ok(Response::new(StatusReply {
            function_name: spec.function_name.clone(),
            handler: spec.handler.as_str().to_string(),
            memory_in_bytes: wire(spec.memory_bytes),
            timeout_in_ms: wire(spec.timeout_ms),
            in_flight: s.in_flight,
            served: s.served,
            rss_bytes: wire(s.rss_bytes),
        }))
    }

    async fn bind(&self, request: Request<BindRequest>) -> Result<Response<BindReply>, Status> {
        let config = function_config(request.into_inner())?;
        match self.binding.bind(&config) {
            Ok(exec) => {
                let spec = exec.spec();
                tracing::info!(
                    function = %spec.function_name,
                    handler = spec.handler.as_str(),
                    memory_bytes = spec.memory_bytes,
                    timeout_ms = spec.timeout_ms,
                    emulated_memory_limit = exec.emulates_memory_limit(),
                    "container bound"
                );
                Ok(Response::new(BindReply {}))
            }
            Err(e @ BindError::Invalid(_)) => {
                Err(Status::invalid_argument(format!("cannot bind: {e}")))
            }
            Err(e @ BindError::AlreadyBound { .. }) => {
                Err(Status::failed_precondition(e.to_string()))
            }
        }
    }
}
