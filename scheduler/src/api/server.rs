//! The contest's `schedulerproto.Scheduler` gRPC service: validates and converts the
//! contest's messages to the model, calls the service, maps its errors to deliberate status
//! codes and sets the cold-start metadata on `AcquireContainer` replies.
//!
//! Each call's handler runs in a span (`acquire`, `return`) whose `request_id` is the
//! call's `x-request-id` metadata (the API server's id, [`faas_common::serve::REQUEST_ID`]),
//! or the message's own `request_id` without it: every line logged about the call carries
//! it, and so do the creates and reserves the call causes (the service runs them in its
//! span). Info level, so the lines carry it at the default level; a span nobody listens to
//! costs nothing.

use std::sync::Arc;
use std::time::Duration;

use faas_common::serve::request_id;
use faas_common::text::clip;
use faas_proto::schedulerproto::scheduler_server::Scheduler as SchedulerRpc;
use faas_proto::schedulerproto::{
    AcquireContainerReply, AcquireContainerRequest, ReturnContainerReply, ReturnContainerRequest,
};
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::metrics::Metrics;
use crate::core::{Acquire, Return};
use crate::error::service_status;
use crate::model::{FunctionError, FunctionSpec, Millis};
use crate::service::{Clock, NodePort, ResourcePort, Scheduler};

/// The deadline of an acquire whose caller sent no `grpc-timeout`.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// The gRPC face of a [`Scheduler`].
pub struct SchedulerApi<R, N, C> {
    service: Scheduler<R, N, C>,
    metrics: Arc<Metrics>,
    default_timeout: Duration,
}

impl<R, N, C> SchedulerApi<R, N, C> {
    /// Serves `service`, recording into `metrics`; acquires without a client deadline wait at
    /// most `default_timeout`.
    pub fn new(
        service: Scheduler<R, N, C>,
        metrics: Arc<Metrics>,
        default_timeout: Duration,
    ) -> Self {
        SchedulerApi {
            service,
            metrics,
            default_timeout,
        }
    }
}

/// The largest memory a function may ask for: 1 TiB (anything above is a mistake).
pub const MAX_MEMORY_BYTES: u64 = 1 << 40;
/// The longest timeout a function may ask for: 24 h.
pub const MAX_TIMEOUT_MS: u64 = 24 * 3600 * 1000;
/// The longest id, name or handler accepted, bytes.
pub const MAX_NAME_BYTES: usize = 256;

fn within(value: i64, max: u64, what: &str, function: &str) -> Result<u64, Status> {
    u64::try_from(value)
        .ok()
        .filter(|v| *v > 0 && *v <= max)
        .ok_or_else(|| {
            Status::invalid_argument(format!(
                "function config of {}: {what} must be between 1 and {max}, got {value}",
                clip(function)
            ))
        })
}

fn short<'a>(value: &'a str, what: &str) -> Result<&'a str, Status> {
    if value.is_empty() {
        return Err(Status::invalid_argument(format!("{what} cannot be empty")));
    }
    if value.len() > MAX_NAME_BYTES {
        return Err(Status::invalid_argument(format!(
            "{what} is {} bytes, over the limit of {MAX_NAME_BYTES}: {}",
            value.len(),
            clip(value)
        )));
    }
    Ok(value)
}

/// Validates an `AcquireContainerRequest` and converts it (deadline `now + timeout`).
pub fn to_acquire(
    req: AcquireContainerRequest,
    now: Millis,
    timeout: Duration,
) -> Result<Acquire, Status> {
    // The contest's demo scheduler's messages for the first two.
    if req.account_id.is_empty() {
        return Err(Status::invalid_argument("account ID cannot be empty"));
    }
    let Some(config) = req.function_config else {
        return Err(Status::invalid_argument("function config cannot be nil"));
    };
    short(&req.account_id, "account ID")?;
    short(&req.request_id, "request ID")?;
    short(&req.function_name, "function name")?;
    if config.handler.len() > MAX_NAME_BYTES {
        short(&config.handler, "handler")?;
    }
    let memory_bytes = within(
        config.memory_in_bytes,
        MAX_MEMORY_BYTES,
        "memory_in_bytes",
        &req.function_name,
    )?;
    let timeout_ms = within(
        config.timeout_in_ms,
        MAX_TIMEOUT_MS,
        "timeout_in_ms",
        &req.function_name,
    )?;
    Ok(Acquire {
        request_id: req.request_id.into(),
        account_id: req.account_id.into(),
        function: FunctionSpec {
            name: req.function_name.into(),
            memory_bytes,
            timeout_ms,
            handler: config.handler.into(),
        },
        deadline: now.saturating_add(timeout.as_millis() as Millis),
    })
}

/// Validates a `ReturnContainerRequest` and converts it.
pub fn to_return(req: ReturnContainerRequest) -> Result<Return, Status> {
    short(&req.request_id, "request ID")?;
    short(&req.container_id, "container ID")?;
    let error =
        (!req.error_code.is_empty() || !req.error_message.is_empty()).then_some(FunctionError {
            code: req.error_code,
            message: req.error_message,
        });
    Ok(Return {
        request_id: req.request_id.into(),
        container_id: req.container_id.into(),
        // A negative figure is a client bug; it must not keep the container leased.
        duration_ns: u64::try_from(req.duration_in_nanos).unwrap_or(0),
        max_memory_bytes: u64::try_from(req.max_memory_usage_in_bytes).unwrap_or(0),
        error,
    })
}

#[tonic::async_trait]
impl<R: ResourcePort, N: NodePort, C: Clock> SchedulerRpc for SchedulerApi<R, N, C> {
    async fn acquire_container(
        &self,
        request: Request<AcquireContainerRequest>,
    ) -> Result<Response<AcquireContainerReply>, Status> {
        let id = request_id(request.metadata(), &request.get_ref().request_id);
        let span = tracing::info_span!("acquire", request_id = %id);
        faas_common::trace::continue_trace(&span, request.metadata());
        self.acquire(request).instrument(span).await
    }

    async fn return_container(
        &self,
        request: Request<ReturnContainerRequest>,
    ) -> Result<Response<ReturnContainerReply>, Status> {
        let id = request_id(request.metadata(), &request.get_ref().request_id);
        let span = tracing::info_span!("return", request_id = %id);
        faas_common::trace::continue_trace(&span, request.metadata());
        let _entered = span.enter();
        self.release(request)
    }
}

impl<R: ResourcePort, N: NodePort, C: Clock> SchedulerApi<R, N, C> {
    /// `AcquireContainer`, inside its span.
    async fn acquire(
        &self,
        request: Request<AcquireContainerRequest>,
    ) -> Result<Response<AcquireContainerReply>, Status> {
        let started = faas_common::clock::instant();
        let timeout =
            faas_common::serve::client_timeout(request.metadata()).unwrap_or(self.default_timeout);
        let acquire = match to_acquire(request.into_inner(), self.service.now(), timeout) {
            Ok(a) => a,
            Err(status) => {
                self.metrics
                    .acquired("invalid", started.elapsed().as_secs_f64());
                return Err(status);
            }
        };
        let function = acquire.function.name.clone();
        let result = self.service.acquire(acquire).await;
        let waited = started.elapsed().as_secs_f64();
        match result {
            Ok(grant) => {
                self.metrics
                    .acquired(if grant.cold { "cold" } else { "warm" }, waited);
                let mut response = Response::new(AcquireContainerReply {
                    node_id: grant.node_id.to_string(),
                    node_address: grant.node_address.to_string(),
                    node_service_port: i64::from(grant.node_port),
                    container_id: grant.container_id.to_string(),
                });
                response.metadata_mut().insert(
                    faas_proto::meta::COLD_START,
                    MetadataValue::from_static(if grant.cold { "true" } else { "false" }),
                );
                tracing::debug!(
                    function = %function,
                    container = %grant.container_id,
                    node = %grant.node_id,
                    cold = grant.cold,
                    "container acquired"
                );
                Ok(response)
            }
            Err(e) => {
                let (status, label) = service_status(&e);
                self.metrics.acquired(label, waited);
                tracing::debug!(function = %function, error = %e, "acquire failed");
                Err(status)
            }
        }
    }

    /// `ReturnContainer`, inside its span.
    fn release(
        &self,
        request: Request<ReturnContainerRequest>,
    ) -> Result<Response<ReturnContainerReply>, Status> {
        let ret = match to_return(request.into_inner()) {
            Ok(r) => r,
            Err(status) => {
                self.metrics.returned("invalid");
                return Err(status);
            }
        };
        match self.service.release(ret) {
            Ok(()) => {
                self.metrics.returned("ok");
                tracing::debug!("container returned");
                Ok(Response::new(ReturnContainerReply {}))
            }
            Err(e) => {
                let (status, label) = service_status(&e);
                self.metrics.returned(label);
                tracing::debug!(error = %e, "return refused");
                Err(status)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faas_proto::schedulerproto::FunctionConfig;

    fn request() -> AcquireContainerRequest {
        AcquireContainerRequest {
            request_id: "r1".into(),
            account_id: "acct".into(),
            function_name: "f".into(),
            function_config: Some(FunctionConfig {
                timeout_in_ms: 60_000,
                memory_in_bytes: 512 << 20,
                handler: "index.handler".into(),
            }),
        }
    }

    #[test]
    fn acquire_validation_messages() {
        let msg = |r: AcquireContainerRequest| {
            let s = to_acquire(r, 0, DEFAULT_ACQUIRE_TIMEOUT).unwrap_err();
            assert_eq!(s.code(), tonic::Code::InvalidArgument);
            s.message().to_string()
        };
        let mut r = request();
        r.account_id.clear();
        assert_eq!(msg(r), "account ID cannot be empty");
        let mut r = request();
        r.function_config = None;
        assert_eq!(msg(r), "function config cannot be nil");
        let mut r = request();
        r.request_id.clear();
        assert_eq!(msg(r), "request ID cannot be empty");
        let mut r = request();
        r.function_name.clear();
        assert_eq!(msg(r), "function name cannot be empty");
        let mut r = request();
        r.function_config.as_mut().unwrap().memory_in_bytes = 0;
        assert!(msg(r).contains("memory_in_bytes must be between 1 and 1099511627776, got 0"));
        let mut r = request();
        r.function_config.as_mut().unwrap().memory_in_bytes = 1_000_000_000_000_000_000;
        assert!(msg(r).contains("memory_in_bytes must be between 1 and"));
        let mut r = request();
        r.function_config.as_mut().unwrap().timeout_in_ms = -5;
        assert!(msg(r).contains("timeout_in_ms must be between 1 and 86400000, got -5"));
        // A huge name is refused without being echoed whole.
        let mut r = request();
        r.function_name = "f".repeat(1 << 20);
        let m = msg(r);
        assert!(
            m.contains("function name is 1048576 bytes"),
            "{}",
            &m[..100]
        );
        assert!(m.len() < 400, "{} bytes", m.len());
        let a = to_acquire(request(), 100, Duration::from_secs(2)).unwrap();
        assert_eq!(a.deadline, 2_100);
        assert_eq!(a.function.memory_bytes, 512 << 20);
    }

    #[test]
    fn return_conversion_keeps_errors_and_clamps_negatives() {
        let r = to_return(ReturnContainerRequest {
            request_id: "r".into(),
            container_id: "c".into(),
            duration_in_nanos: -1,
            max_memory_usage_in_bytes: 10,
            error_code: "OutOfMemory".into(),
            error_message: "killed".into(),
        })
        .unwrap();
        assert_eq!(r.duration_ns, 0);
        assert!(r.error.unwrap().kills_container());
        let s = to_return(ReturnContainerRequest::default()).unwrap_err();
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
    }
}
