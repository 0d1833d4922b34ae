//! The ports of the service layer: the traits through which the invoke path reaches the
//! outside (the scheduler, the nodes, a monotonic clock). The api layer implements them with
//! gRPC clients and `faas_common::clock`; tests implement them with fakes. Nothing here does
//! I/O itself.

use std::future::Future;
use std::time::Duration;

use crate::model::{
    AcquireRequest, Execution, Function, NodeError, Placement, RemoteError, ReturnRequest,
};

/// The scheduler, as the invocation needs it.
pub trait SchedulerPort: Send + Sync + 'static {
    /// Asks for a container to run `req.function_name` on; `within` is what is left of the
    /// caller's deadline, if it gave one.
    fn acquire(
        &self,
        req: AcquireRequest,
        within: Option<Duration>,
    ) -> impl Future<Output = Result<Placement, RemoteError>> + Send;
    /// Gives a container back after an invocation.
    fn return_container(
        &self,
        req: ReturnRequest,
    ) -> impl Future<Output = Result<(), RemoteError>> + Send;
}

/// What the node is asked to run.
#[derive(Clone, Copy, Debug)]
pub struct NodeCall<'a> {
    pub request_id: &'a str,
    pub function: &'a Function,
    pub event: &'a [u8],
    /// The whole call (reply stream included) must end within this.
    pub deadline: Duration,
}

/// The node services, as the invocation needs them.
pub trait NodePort: Send + Sync + 'static {
    /// Runs `call` in the container of `placement`. A failure of the function itself is an
    /// `Ok` execution with `failure` set; an `Err` means the call to the node failed, and
    /// says whether the event can have reached the function.
    fn invoke(
        &self,
        placement: &Placement,
        call: NodeCall<'_>,
    ) -> impl Future<Output = Result<Execution, NodeError>> + Send;
}

/// A monotonic clock, for the time spent acquiring and the caller's deadline.
pub trait Clock: Send + Sync + 'static {
    /// Nanoseconds since an arbitrary fixed origin; never goes back.
    fn monotonic_nanos(&self) -> u64;
}
