//! The gRPC edge: `faas.container.v1.ContainerService` over the container's [`Binding`]
//! (Invoke and Status through its [`crate::exec::Executor`] once bound, Bind to
//! bind it, Logs from a command function's watchdog: see `api/logs.rs`).
//!
//! Arguments are checked here, before anything runs: a Bind's function goes through the same
//! [`FunctionConfig::check`] as the start-up flags (INVALID_ARGUMENT for an unknown handler or
//! an absurd size, FAILED_PRECONDITION for a container already bound), an Invoke's timeout must
//! be 0 (the function's) to 24 h, and an Invoke meant for another function is
//! FAILED_PRECONDITION. Messages up to [`MAX_MESSAGE_BYTES`] pass both ways (a 6 MiB event
//! echoed back), and messages quote input clipped ([`clip`]).
//!
//! A command function (`--bundle B`) has the handler name `bundle:<the name of B>` (for the
//! node's content-addressed bundles, `bundle:<sha256>`): Status answers it, an Invoke may
//! name it or leave `handler` empty, and an `exec` call's stderr comes back in the reply's
//! `function_log`.

mod logs;
pub mod metrics;

use std::sync::Arc;

use faas_common::serve::MAX_MESSAGE_BYTES;
use faas_common::text::clip;
use faas_proto::container::container_service_server::{ContainerService, ContainerServiceServer};
use faas_proto::container::{
    BindReply, BindRequest, InvokeReply, InvokeRequest, LogsReply, LogsRequest, StatusReply,
    StatusRequest,
};
use faas_proto::limits;
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

    /// The tonic server for this implementation, taking and sending messages up to
    /// [`MAX_MESSAGE_BYTES`].
    pub fn into_server(self) -> ContainerServiceServer<ContainerApi> {
        ContainerServiceServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
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
    let handler_ok = req.handler.is_empty() || req.handler == spec.handler_name();
    if name_ok && handler_ok {
        return Ok(());
    }
    Err(Status::failed_precondition(format!(
        "this container runs function {:?} ({}), not function {:?} (handler {:?}); \
         invoke a container of that function instead",
        spec.function_name,
        clip(&spec.describe()),
        clip(&req.function_name),
        clip(&req.handler)
    )))
}

/// The Bind request as a function configuration (0 ms = the default timeout). The sizes
/// are checked here because the wire's signed fields must become unsigned; the rest (and the
/// sizes again) is [`FunctionConfig::check`]'s.
fn function_config(req: BindRequest) -> Result<FunctionConfig, Status> {
    let invalid = |e: limits::LimitError| Status::invalid_argument(format!("cannot bind: {e}"));
    limits::check_memory("memory_in_bytes", req.memory_in_bytes).map_err(invalid)?;
    limits::check_timeout("timeout_in_ms", req.timeout_in_ms).map_err(invalid)?;
    // Both are in range (checked just above), so neither conversion can fail.
    let memory_bytes = u64::try_from(req.memory_in_bytes).unwrap_or_default();
    let timeout_ms = match u64::try_from(req.timeout_in_ms).unwrap_or_default() {
        0 => DEFAULT_TIMEOUT_MS,
        ms => ms,
    };
    Ok(FunctionConfig {
        function_name: req.function_name,
        handler: req.handler,
        memory_bytes,
        timeout_ms,
    })
}

/// The status of a refused Bind.
fn bind_status(e: BindError) -> Status {
    match e {
        BindError::Invalid(_) => Status::invalid_argument(format!("cannot bind: {e}")),
        BindError::AlreadyBound { .. } => Status::failed_precondition(e.to_string()),
    }
}

/// An Invoke's timeout: 0 (the function's own) to 24 h.
fn invoke_timeout_ms(exec: &Executor, timeout_in_ms: i64) -> Result<u64, Status> {
    limits::check_timeout("timeout_in_ms", timeout_in_ms).map_err(|e| {
        Status::invalid_argument(format!(
            "{e} (0 = the function's {} ms)",
            exec.spec().timeout_ms
        ))
    })?;
    Ok(u64::try_from(timeout_in_ms).unwrap_or_default())
}

#[tonic::async_trait]
impl ContainerService for ContainerApi {
    async fn logs(&self, request: Request<LogsRequest>) -> Result<Response<LogsReply>, Status> {
        logs::logs(&self.binding, request.get_ref()).map(Response::new)
    }

    async fn invoke(
        &self,
        request: Request<InvokeRequest>,
    ) -> Result<Response<InvokeReply>, Status> {
        let id = faas_common::serve::request_id(request.metadata(), &request.get_ref().request_id);
        // Info level: the lines logged about the call carry its id at the default level.
        let span = tracing::info_span!("invoke", request_id = %id);
        faas_common::trace::continue_trace(&span, request.metadata());
        let req = request.into_inner();
        let exec = self.executor()?;
        check_target(exec, &req)?;
        let timeout_ms = invoke_timeout_ms(exec, req.timeout_in_ms)?;
        let timeout = exec.effective_timeout(timeout_ms);
        let out = exec
            .invoke(&req.request_id, req.event, timeout)
            .instrument(span.clone())
            .await;
        let (error_code, error_message) = match out.error {
            Some((code, message)) => {
                tracing::debug!(parent: &span, code, %message, "function failed");
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
            function_log: out.log,
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
            handler: spec.handler_name().to_string(),
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
                    handler = spec.handler_name(),
                    memory_bytes = spec.memory_bytes,
                    timeout_ms = spec.timeout_ms,
                    emulated_memory_limit = exec.emulates_memory_limit(),
                    "container bound"
                );
                Ok(Response::new(BindReply {}))
            }
            Err(e) => Err(bind_status(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::SpecError;
    use crate::exec::{FunctionKind, FunctionSpec};
    use crate::handlers::HandlerKind;
    use faas_common::units::GIB;
    use tonic::Code;

    /// An executor of function "f" (echo) with a 300 ms timeout.
    fn echo_executor() -> Executor {
        Executor::new(FunctionSpec {
            function_name: "f".into(),
            kind: FunctionKind::Builtin(HandlerKind::Echo),
            memory_bytes: GIB,
            timeout_ms: 300,
        })
    }

    fn bind_request(memory: i64, timeout: i64) -> BindRequest {
        BindRequest {
            function_name: "f".into(),
            handler: "hello".into(),
            memory_in_bytes: memory,
            timeout_in_ms: timeout,
        }
    }

    #[test]
    fn refused_binds_map_to_deliberate_codes() {
        let s = bind_status(BindError::Invalid(SpecError::EmptyName));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(
            s.message(),
            "cannot bind: the function name must not be empty"
        );
        let s = bind_status(BindError::AlreadyBound {
            function: "f".into(),
            handler: "echo".into(),
        });
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert!(s.message().contains("already bound"), "{}", s.message());
    }

    #[test]
    fn absurd_bind_sizes_are_invalid_arguments() {
        for (memory, timeout, says) in [
            (0, 0, "memory_in_bytes"),
            (-1, 0, "memory_in_bytes"),
            (1_000_000_000_000_000_000, 0, "memory_in_bytes"),
            (1, -1, "timeout_in_ms"),
            (1, 86_400_001, "timeout_in_ms"),
        ] {
            let s = function_config(bind_request(memory, timeout)).unwrap_err();
            assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
            assert!(
                s.message().contains(says),
                "{} should name {says}",
                s.message()
            );
        }
        let c = function_config(bind_request(1 << 40, 0)).unwrap();
        assert_eq!(
            (c.memory_bytes, c.timeout_ms),
            (1 << 40, DEFAULT_TIMEOUT_MS)
        );
    }

    #[test]
    fn an_invoke_timeout_is_zero_to_a_day() {
        let exec = echo_executor();
        assert_eq!(invoke_timeout_ms(&exec, 0).unwrap(), 0);
        assert_eq!(invoke_timeout_ms(&exec, 86_400_000).unwrap(), 86_400_000);
        for bad in [-1, 86_400_001, i64::MAX] {
            let s = invoke_timeout_ms(&exec, bad).unwrap_err();
            assert_eq!(s.code(), Code::InvalidArgument);
            assert!(
                s.message().contains("(0 = the function's 300 ms)"),
                "{}",
                s.message()
            );
        }
    }

    #[test]
    fn a_request_for_another_function_is_refused_with_its_names_clipped() {
        let exec = echo_executor();
        let mut req = InvokeRequest {
            function_name: "f".into(),
            ..Default::default()
        };
        assert!(check_target(&exec, &req).is_ok());
        req.function_name = "g".repeat(1 << 20);
        let s = check_target(&exec, &req).unwrap_err();
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert!(s.message().len() < 400, "{} bytes", s.message().len());
    }
}
