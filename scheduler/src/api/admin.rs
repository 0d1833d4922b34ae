//! The scheduler's platform API (`faas.scheduler.v1.SchedulerAdmin`), beside the contest's
//! service, called by the API server:
//!
//! - `RetireFunction`: a function was deleted, so its containers drain instead of waiting
//!   for a keep-alive that some policies (the contest's baseline) never apply;
//! - `HoldFunction`: an alias moved away from a version, so that version's idle containers
//!   stay warm for a rollback during the grace period, whatever the policy's keep-alive says
//!   (the rules are in [`crate::core::state::hold`]);
//! - `ListNodes`: the nodes the scheduler holds now (whatever their state: active, draining or
//!   releasing) and where their node services listen, so the API server can read a
//!   function's logs from them (`faas logs`). Read from the core's store, sorted by node id.
//!
//! Requests are validated here (a name of 1 to [`MAX_NAME_BYTES`] bytes, a hold of 0 to
//! [`MAX_HOLD_MS`]) and go to the core as events.

use faas_proto::scheduler_admin::scheduler_admin_server::SchedulerAdmin;
use faas_proto::scheduler_admin::{
    HoldFunctionReply, HoldFunctionRequest, ListNodesReply, ListNodesRequest, NodeEntry,
    RetireFunctionReply, RetireFunctionRequest,
};
use tonic::{Request, Response, Status};

use super::server::MAX_NAME_BYTES;
use crate::core::Event;
use crate::core::state::hold::MAX_HOLD_MS;
use crate::error::service_status;
use crate::model::Millis;
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

/// A `function_name` of 1 to [`MAX_NAME_BYTES`] bytes.
fn function_name(name: String) -> Result<String, Status> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(Status::invalid_argument(format!(
            "function_name must be 1 to {MAX_NAME_BYTES} bytes, got {}",
            name.len()
        )));
    }
    Ok(name)
}

/// A `hold_ms` of 0 (ends the hold) to [`MAX_HOLD_MS`].
fn hold_ms(ms: i64) -> Result<Millis, Status> {
    match Millis::try_from(ms) {
        Ok(ms) if ms <= MAX_HOLD_MS => Ok(ms),
        Ok(_) => Err(Status::invalid_argument(format!(
            "hold_ms is {ms} ms, over the limit of {MAX_HOLD_MS} ms (24 h); hold for at most \
             24 h and call HoldFunction again before it ends to keep holding"
        ))),
        Err(_) => Err(Status::invalid_argument(format!(
            "hold_ms must be 0 (ends the hold) or more, got {ms}"
        ))),
    }
}

#[tonic::async_trait]
impl<R: ResourcePort, N: NodePort, C: Clock> SchedulerAdmin for SchedulerAdminApi<R, N, C> {
    async fn list_nodes(
        &self,
        _: Request<ListNodesRequest>,
    ) -> Result<Response<ListNodesReply>, Status> {
        let mut nodes: Vec<NodeEntry> = self.service.inspect(|p| {
            p.state()
                .store
                .nodes()
                .map(|(_, n)| NodeEntry {
                    node_id: n.id.to_string(),
                    // As the node port dials it (`api::ports`).
                    address: format!("{}:{}", n.address, n.port),
                })
                .collect()
        });
        nodes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        Ok(Response::new(ListNodesReply { nodes }))
    }

    async fn retire_function(
        &self,
        request: Request<RetireFunctionRequest>,
    ) -> Result<Response<RetireFunctionReply>, Status> {
        let name = function_name(request.into_inner().function_name)?;
        tracing::info!(function = %name, "retiring function");
        self.service
            .feed(Event::RetireFunction {
                function: name.into(),
            })
            .map_err(|e| service_status(&e).0)?;
        Ok(Response::new(RetireFunctionReply {}))
    }

    async fn hold_function(
        &self,
        request: Request<HoldFunctionRequest>,
    ) -> Result<Response<HoldFunctionReply>, Status> {
        let request = request.into_inner();
        let name = function_name(request.function_name)?;
        let hold_ms = hold_ms(request.hold_ms)?;
        self.service
            .feed(Event::HoldFunction {
                function: name.as_str().into(),
                hold_ms,
            })
            .map_err(|e| service_status(&e).0)?;
        let containers = self.service.inspect(|p| p.state().ready_containers(&name));
        if hold_ms == 0 {
            tracing::info!(function = %name, containers, "hold of function ended");
        } else {
            tracing::info!(
                function = %name,
                hold_ms,
                containers,
                "holding the function's idle containers"
            );
        }
        Ok(Response::new(HoldFunctionReply { containers }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_ms_is_0_to_24_hours_with_messages_that_say_what_to_do() {
        assert_eq!(hold_ms(0).unwrap(), 0);
        assert_eq!(hold_ms(600_000).unwrap(), 600_000);
        assert_eq!(hold_ms(86_400_000).unwrap(), MAX_HOLD_MS);
        let over = hold_ms(86_400_001).unwrap_err();
        assert_eq!(over.code(), tonic::Code::InvalidArgument);
        assert!(over.message().contains("24 h"), "{}", over.message());
        assert!(over.message().contains("again"), "{}", over.message());
        let negative = hold_ms(-1).unwrap_err();
        assert_eq!(negative.code(), tonic::Code::InvalidArgument);
        assert!(
            negative.message().contains("got -1"),
            "{}",
            negative.message()
        );
        assert!(hold_ms(i64::MIN).is_err());
    }
}
