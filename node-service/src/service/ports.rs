//! The ports the node's business rules talk through; the api layer implements them.
//!
//! - [`Runtime`]: starts and stops containers (bound to a function, or unbound for the warm
//!   pool) and measures them (`process`, and `docker` through bollard).
//! - [`ContainerInvoker`]: calls the container service inside a container (Status, Bind,
//!   Invoke).
//! - [`LogReader`]: reads the output lines a container's function wrote (the container
//!   service's own ring; see [`super::logs`]).
//! - [`HostProbe`]: the node service's own usage, its disk and its wall clock.
//! - [`Bundles`]: the bundles (the users' own code) this node holds (`--bundles-dir`).

use std::time::Duration;

use async_trait::async_trait;

use super::logs::{LogPage, LogQuery};
use crate::model::bundle::Bundle;
use crate::model::{
    Container, ContainerHandle, ContainerSpec, ContainerUsage, DiskUsage, Invocation, InvokeCall,
    Liveness, ProcessUsage,
};

/// Failures of a runtime.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    #[error("container {0} is not known to the runtime")]
    NotFound(String),
    /// The container's process could not run the function (bad handler, bad config...).
    #[error("the container for function {function:?} failed to start: {message}")]
    StartFailed { function: String, message: String },
    /// The container did not become ready in time.
    #[error("the container for function {function:?} was not ready in time: {message}")]
    NotReady { function: String, message: String },
    /// The node cannot start containers at all (binary missing, shutting down...).
    #[error("{0}")]
    Unavailable(String),
    /// This runtime cannot run this function as things are (an image function on the
    /// process runtime, a command function on Docker, an image not on this machine...); the
    /// message says what to change.
    #[error("{0}")]
    Unsupported(String),
}

/// Starts, stops and measures containers.
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// The runtime's name (`process`, `docker`).
    fn name(&self) -> &'static str;

    /// Starts a container for `spec` and returns once its service listens. A function made
    /// of a bundle comes with it (`bundle`): its container service gets `--bundle` instead of
    /// `--handler`, and its readiness may take the bundle's start time on top.
    async fn create(
        &self,
        spec: &ContainerSpec,
        bundle: Option<&Bundle>,
    ) -> Result<ContainerHandle, RuntimeError>;

    /// Starts a container bound to no function yet (for the warm pool) and returns once its
    /// service listens. Its id stays when it is bound. Not every runtime can: the default
    /// answers `Unavailable`.
    async fn start_unbound(&self) -> Result<ContainerHandle, RuntimeError> {
        Err(RuntimeError::Unavailable(format!(
            "the {} runtime cannot start unbound containers",
            self.name()
        )))
    }

    /// Gives a container started unbound the resources of `spec` (its memory limit, CPU
    /// quota...), before it is bound to that function.
    async fn assign(&self, id: &str, spec: &ContainerSpec) -> Result<(), RuntimeError> {
        let _ = (id, spec);
        Err(RuntimeError::Unavailable(format!(
            "the {} runtime cannot start unbound containers",
            self.name()
        )))
    }

    /// Stops the container and reclaims everything it held (process reaped, container deleted).
    async fn remove(&self, id: &str) -> Result<(), RuntimeError>;

    /// Measured usage of every container the runtime holds. A container the runtime holds is
    /// never left out: one it cannot measure is reported alive with what is known, and a
    /// runtime that cannot tell which containers run (shut down, its daemon not answering)
    /// fails with `Unavailable` rather than answering a list that would read as "all gone".
    async fn stats(&self) -> Result<Vec<ContainerUsage>, RuntimeError>;

    /// Whether the container's process still runs. Asked after a failed call, so a runtime
    /// may wait briefly for a dying process to finish dying before answering `Running`.
    async fn liveness(&self, id: &str) -> Liveness;

    /// Whether the container's process still runs (shorthand of [`Runtime::liveness`]).
    async fn is_alive(&self, id: &str) -> bool {
        self.liveness(id).await == Liveness::Running
    }

    /// Stops every container; later `create` calls fail.
    async fn shutdown(&self);
}

/// Failures of calling a container.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvokeError {
    /// The container refused the call's arguments.
    #[error("{0}")]
    InvalidArgument(String),
    /// The container runs another function.
    #[error("{0}")]
    WrongFunction(String),
    /// The call was never sent: connecting failed (refused: no process listens) or the
    /// connection was found closed before the request went out. The function did not run.
    #[error("{0}")]
    Unreachable(String),
    /// The connection broke while the call was under way: the function may have run.
    #[error("{0}")]
    Disconnected(String),
    /// No answer within the deadline.
    #[error("no answer within {} ms", .0.as_millis())]
    NoAnswer(Duration),
    /// Any other failure of the call itself.
    #[error("{0}")]
    Failed(String),
}

/// Calls the container service inside a container.
#[async_trait]
pub trait ContainerInvoker: Send + Sync + 'static {
    /// Connects to a new container and checks that it answers (one Status call).
    async fn ready(&self, handle: &ContainerHandle, timeout: Duration) -> Result<(), InvokeError>;

    /// Binds a container started unbound to `spec`'s function (one Bind call).
    async fn bind(
        &self,
        handle: &ContainerHandle,
        spec: &ContainerSpec,
        timeout: Duration,
    ) -> Result<(), InvokeError>;

    /// Runs one invocation; `deadline` bounds the whole call.
    async fn invoke(
        &self,
        container: &Container,
        call: InvokeCall,
        deadline: Duration,
    ) -> Result<Invocation, InvokeError>;

    /// Drops whatever the invoker keeps for a container (its channel).
    fn forget(&self, id: &str);
}

/// Reads a container's recent output lines (its container service's `Logs`).
#[async_trait]
pub trait LogReader: Send + Sync + 'static {
    /// The lines of `container` that `query` asks for, oldest first; `timeout` bounds the
    /// call.
    async fn read(
        &self,
        container: &Container,
        query: LogQuery,
        timeout: Duration,
    ) -> Result<LogPage, InvokeError>;
}

/// Why a bundle cannot be used on this node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// No `DIR/<hash>/function.json` (`dir` is the bundles directory).
    #[error(
        "bundle {hash} is not on this node: there is no {dir}/{hash}/function.json (is \
         --bundles-dir the API server's DATA_DIR/bundles?)"
    )]
    NotHere { hash: String, dir: String },
    /// It is there, but what the node reads of its `function.json` is wrong.
    #[error("bundle {hash} cannot run: {problem}")]
    Invalid { hash: String, problem: String },
}

/// The bundles this node holds: a directory of `<sha256>/function.json` (see
/// [`crate::model::bundle`]). Synchronous: one small file per create.
pub trait Bundles: Send + Sync + 'static {
    /// The bundle `hash` (already checked to be 64 lowercase hex digits).
    fn find(&self, hash: &str) -> Result<Bundle, BundleError>;
}

/// The node service's own process, disk and clock.
pub trait HostProbe: Send + Sync + 'static {
    /// The node service's own memory and CPU.
    fn own_usage(&self) -> ProcessUsage;

    /// The working directory's file system.
    fn disk(&self) -> DiskUsage;

    /// The wall clock, ms since the Unix epoch: the times of day the node reports (a
    /// container's creation and last use, the latest reservation).
    fn now_ms(&self) -> i64;
}
