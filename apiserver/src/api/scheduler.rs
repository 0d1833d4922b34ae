//! The scheduler port over gRPC: `schedulerproto.Scheduler` on one lazily connected channel.
//! Every call also carries its request id as `x-request-id` metadata
//! ([`faas_common::serve::REQUEST_ID`]), so the scheduler's log lines about it carry it.

use std::time::Duration;

use faas_common::serve::send_request_id;
use faas_common::token::{AuthChannel, ClusterAuth};
use faas_proto::meta;
use faas_proto::schedulerproto::{
    AcquireContainerRequest, FunctionConfig, ReturnContainerRequest,
    scheduler_client::SchedulerClient,
};

use crate::api::convert::{remote_error, timed_out};
use crate::model::{AcquireRequest, Placement, RemoteCode, RemoteError, ReturnRequest};
use crate::service::SchedulerPort;

/// The scheduler at one endpoint.
#[derive(Clone, Debug)]
pub struct GrpcScheduler {
    client: SchedulerClient<AuthChannel>,
    endpoint: String,
    /// The longest any call may take (an acquire also ends by the caller's deadline).
    deadline: Duration,
}

impl GrpcScheduler {
    /// A client of the scheduler at `endpoint` (`host:port`) whose calls end within
    /// `deadline`, carrying the cluster token of `auth`; connects on first use.
    pub fn connect_lazy(
        endpoint: &str,
        deadline: Duration,
        auth: &ClusterAuth,
    ) -> Result<GrpcScheduler, faas_common::serve::ServeError> {
        let channel = faas_common::serve::connect_lazy(endpoint)?;
        Ok(GrpcScheduler {
            client: SchedulerClient::new(auth.channel(channel)),
            endpoint: endpoint.to_string(),
            deadline,
        })
    }

    /// A failed call as the service sees it; `deadline` is the one the call had.
    fn error(&self, status: &tonic::Status, deadline: Duration) -> RemoteError {
        let mut err = remote_error(status);
        if timed_out(status) {
            // tonic reports its own deadline as CANCELLED "Timeout expired".
            err.code = RemoteCode::DeadlineExceeded;
            err.message = format!(
                "the scheduler at {} gave no answer within {} ms ({})",
                self.endpoint,
                deadline.as_millis(),
                err.message
            );
        } else if err.code == RemoteCode::Unavailable {
            err.message = format!(
                "the scheduler at {} is unavailable: {}",
                self.endpoint, err.message
            );
        }
        err
    }
}

impl SchedulerPort for GrpcScheduler {
    async fn acquire(
        &self,
        req: AcquireRequest,
        within: Option<Duration>,
    ) -> Result<Placement, RemoteError> {
        let deadline = within.map_or(self.deadline, |w| w.min(self.deadline));
        let mut request = tonic::Request::new(AcquireContainerRequest {
            request_id: String::new(),
            account_id: req.account_id,
            function_name: req.function_name,
            function_config: Some(FunctionConfig {
                timeout_in_ms: req.timeout_ms,
                memory_in_bytes: req.memory_bytes,
                handler: req.handler,
            }),
        });
        send_request_id(&mut request, &req.request_id);
        request.get_mut().request_id = req.request_id;
        request.set_timeout(deadline);
        let response = self
            .client
            .clone()
            .acquire_container(request)
            .await
            .map_err(|s| self.error(&s, deadline))?;
        let cold_start = response
            .metadata()
            .get(meta::COLD_START)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| match v {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            });
        let reply = response.into_inner();
        Ok(Placement {
            node_id: reply.node_id,
            node_address: reply.node_address,
            node_port: reply.node_service_port,
            container_id: reply.container_id,
            cold_start,
        })
    }

    async fn return_container(&self, req: ReturnRequest) -> Result<(), RemoteError> {
        let mut request = tonic::Request::new(ReturnContainerRequest {
            request_id: String::new(),
            container_id: req.container_id,
            duration_in_nanos: req.duration_nanos,
            max_memory_usage_in_bytes: req.max_memory_bytes,
            error_code: req.error_code,
            error_message: req.error_message,
        });
        send_request_id(&mut request, &req.request_id);
        request.get_mut().request_id = req.request_id;
        request.set_timeout(self.deadline);
        self.client
            .clone()
            .return_container(request)
            .await
            .map(|_| ())
            .map_err(|s| self.error(&s, self.deadline))
    }
}
