//! The scheduler's platform API (`faas.scheduler.v1.SchedulerAdmin`), beside the contest's
//! service: the API server tells it when a function is deleted, so its containers drain
//! instead of waiting for a keep-alive that some policies (the contest's baseline) never
//! apply.

use faas_proto::scheduler_admin::scheduler_admin_server::SchedulerAdmin;
use faas_proto::scheduler_admin::{RetireFunctionReply, RetireFunctionRequest};
use tonic::{Request, Response, Status};

use super::server::{MAX_NAME_BYTES, service_status};
use crate::core::Event;
use crate::service::{Clock, NodePort, ResourcePort, Scheduler};

/// The gRPC face of the scheduler's platform API.
pub struct SchedulerAdminApi<R, N, C> {
    service: Scheduler<R, N, C>,
}

impl<R, N, C> SchedulerAdminApi<R, N, C> {
    /// Serves `service`.
    pub fn new(service: Scheduler<R, N, C>) -> Self {
        SchedulerAdminApi { service }
    }
}

#[tonic::async_trait]
impl<R: ResourcePort, N: NodePort, C: Clock> SchedulerAdmin for SchedulerAdminApi<R, N, C> {
    async fn retire_function(
        &self,
        request: Request<RetireFunctionRequest>,
    ) -> Result<Response<RetireFunctionReply>, Status> {
        let name = request.into_inner().function_name;
        if name.is_empty() || name.len() > MAX_NAME_BYTES {
            return Err(Status::invalid_argument(format!(
                "function_name must be 1 to {MAX_NAME_BYTES} bytes, got {}",
                name.len()
            )));
        }
        tracing::info!(function = %name, "retiring function");
        self.service
            .feed(Event::RetireFunction {
                function: name.into(),
            })
            .map_err(|e| service_status(&e).0)?;
        Ok(Response::new(RetireFunctionReply {}))
    }
}
