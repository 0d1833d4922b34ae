//! One invocation from start to end.
//!
//! 1. Validate the request: a function name, a known function, an event within the limit, an
//!    account. Nothing is acquired for a request that fails here.
//! 2. Acquire a container from the scheduler ([`SchedulerPort::acquire`]), within the
//!    caller's deadline when it gave one.
//! 3. Run the function on the container's node ([`NodePort::invoke`]), within the function's
//!    timeout plus a grace ([`DEFAULT_NODE_GRACE`]): a node that stops answering fails the
//!    call by then instead of holding it.
//! 4. Give the container back ([`SchedulerPort::return_container`]) with the duration, the
//!    peak memory and, when the function or the node call failed, an error code and message.
//!    Once a container is acquired it is returned on every path.
//!
//! A call whose event provably never reached a function is run once more, transparently, on
//! a freshly acquired container (request id `<id>-retry`) within what is left of the
//! caller's deadline: the acquire failed `UNAVAILABLE`, the API server could not connect to
//! the node, or the node refused the call before delivering it ([`Undelivered`]). The failed
//! container is returned first, with its code. A call whose function may have run (the
//! container exited or ran out of memory during the call, the connection broke mid-call, the
//! node did not answer in time) is never run again, and its error says so ([`MAY_HAVE_RUN`]).
//!
//! The outside world is reached only through the ports declared here; the api layer
//! implements them with gRPC clients and a monotonic clock.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use faas_common::text::clip;

use crate::model::{
    AcquireRequest, Execution, Failure, Function, MIB, NodeError, NodeErrorKind, Placement,
    RemoteCode, RemoteError, ReturnRequest, Undelivered,
};
use crate::service::registry::{Registry, RegistryError};

/// The error code the container service gives a function that timed out.
pub const CODE_TIMEOUT: &str = "Timeout";
/// The error code the container service gives a function that ran out of memory.
pub const CODE_OUT_OF_MEMORY: &str = "OutOfMemory";
/// The error code a node gives a container the kernel killed for its memory.
pub const CODE_OOM_KILLED: &str = "OOMKilled";
/// The error code the container service gives an event the function cannot read.
pub const CODE_BAD_EVENT: &str = "BadEvent";
/// The error code the container service gives a function's own error.
pub const CODE_FUNCTION_ERROR: &str = "FunctionError";
/// The error code a node gives an invocation whose container process is gone or silent.
pub const CODE_CONTAINER_EXITED: &str = "ContainerExited";
/// The error code the API server returns a container with when the call to its node failed
/// at the transport level (refused, broken, or no answer before the call's deadline).
pub const CODE_NODE_UNAVAILABLE: &str = "NodeUnavailable";
/// The error code the API server returns a container with when the node failed the call
/// with an unexpected status.
pub const CODE_NODE_ERROR: &str = "NodeError";

/// What an error of a call that is not run again says.
pub const MAY_HAVE_RUN: &str = "the function may have run; not retried";
/// Appended to the request id of the one retry.
pub const RETRY_SUFFIX: &str = "-retry";
/// Time a node call may take beyond the function's own timeout (the node and the container
/// service need a moment to notice the timeout and answer).
pub const DEFAULT_NODE_GRACE: Duration = Duration::from_secs(2);
/// Why a call was retried when its acquire failed `UNAVAILABLE` (a node code otherwise).
pub const RETRY_ACQUIRE_UNAVAILABLE: &str = "AcquireUnavailable";

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

/// An invocation as a client asks for it (the request id is made by the caller).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvokeRequest {
    pub request_id: String,
    pub account_id: String,
    pub function_name: String,
    pub event: Vec<u8>,
    /// The caller's deadline, from when the invocation starts; `None`: no deadline.
    pub deadline: Option<Duration>,
}

/// A successful invocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invoked {
    pub function: Arc<Function>,
    pub placement: Placement,
    pub body: Vec<u8>,
    /// Time from the start of the invocation until the container that ran it was acquired
    /// (the scheduler's `AcquireContainer`, and a failed first attempt when there was one).
    pub acquire_nanos: u64,
    /// The function's own duration, as the node measured it.
    pub duration_nanos: i64,
    /// The function's peak memory, as the node measured it.
    pub max_memory_bytes: i64,
    /// Why the first attempt failed, when this is the retry's result: the code its container
    /// went back with, or [`RETRY_ACQUIRE_UNAVAILABLE`].
    pub retried_after: Option<&'static str>,
}

/// Why an invocation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvokeError {
    #[error("function name cannot be empty")]
    MissingFunctionName,
    #[error("function {} not found", clip(name))]
    NotFound { name: String },
    #[error("event is {size} bytes, over the limit of {limit} bytes")]
    EventTooLarge { size: usize, limit: usize },
    #[error("account ID cannot be empty")]
    MissingAccount,
    #[error("acquire container for {function}: {message}")]
    Acquire {
        function: String,
        code: RemoteCode,
        message: String,
    },
    #[error("function {function} failed: {message}")]
    FunctionFailed { function: String, message: String },
    #[error("function {function} timed out (its timeout is {timeout_ms} ms): {message}")]
    Timeout {
        function: String,
        timeout_ms: i64,
        message: String,
    },
    #[error(
        "function {function} ran out of memory (its limit is {memory_mib} MiB): {message}; {MAY_HAVE_RUN}"
    )]
    OutOfMemory {
        function: String,
        memory_mib: i64,
        message: String,
    },
    #[error("function {function} cannot read the event: {message}")]
    BadEvent { function: String, message: String },
    /// Nothing reached the node.
    #[error("function {function}: node {node} at {endpoint} is unreachable: {message}")]
    NodeUnreachable {
        function: String,
        node: String,
        endpoint: String,
        message: String,
    },
    /// The node refused the call before the event reached the function.
    #[error(
        "function {function}: container {container} on node {node} cannot run it ({}): {message}",
        reason.describe()
    )]
    ContainerUnusable {
        function: String,
        container: String,
        node: String,
        reason: Undelivered,
        message: String,
    },
    #[error(
        "function {function}: container {container} on node {node} exited during the call: {message}; {MAY_HAVE_RUN}"
    )]
    ContainerExited {
        function: String,
        container: String,
        node: String,
        message: String,
    },
    #[error(
        "function {function}: the call to node {node} at {endpoint} broke off: {message}; {MAY_HAVE_RUN}"
    )]
    NodeBroken {
        function: String,
        node: String,
        endpoint: String,
        message: String,
    },
    #[error(
        "function {function}: node {node} at {endpoint} did not answer within {deadline_ms} ms (the function's timeout plus a grace): {message}; {MAY_HAVE_RUN}"
    )]
    NodeNoAnswer {
        function: String,
        node: String,
        endpoint: String,
        deadline_ms: u128,
        message: String,
    },
    #[error("function {function}: node {node} failed the call: {message}; {MAY_HAVE_RUN}")]
    Node {
        function: String,
        node: String,
        code: RemoteCode,
        message: String,
    },
    /// The call went to its fallback (see `service::routing`), which failed too; `last` (the
    /// fallback's error) decides the status.
    #[error("{last} (the fallback of {target}, which {reason})")]
    FallbackFailed {
        /// The target the call was meant for.
        target: String,
        /// Why it went to the fallback, in words ("timed out").
        reason: &'static str,
        last: Box<InvokeError>,
    },
    /// The retry failed too; `last` decides the status.
    #[error("{last} ({})", retry_note(first, last))]
    Retried {
        /// Why the first attempt was retried (as [`Invoked::retried_after`]).
        because: &'static str,
        first: Box<InvokeError>,
        last: Box<InvokeError>,
    },
}

impl InvokeError {
    /// A short label for metrics and logs.
    pub fn outcome(&self) -> &'static str {
        match self {
            InvokeError::MissingFunctionName
            | InvokeError::EventTooLarge { .. }
            | InvokeError::MissingAccount => "invalid_argument",
            InvokeError::NotFound { .. } => "not_found",
            InvokeError::Acquire { .. } => "acquire_failed",
            InvokeError::FunctionFailed { .. } => "function_error",
            InvokeError::Timeout { .. } => "timeout",
            InvokeError::OutOfMemory { .. } => "out_of_memory",
            InvokeError::BadEvent { .. } => "bad_event",
            InvokeError::NodeUnreachable { .. }
            | InvokeError::ContainerUnusable { .. }
            | InvokeError::ContainerExited { .. }
            | InvokeError::NodeBroken { .. } => "node_unavailable",
            InvokeError::NodeNoAnswer { .. } => "node_no_answer",
            InvokeError::Node { .. } => "node_error",
            InvokeError::Retried { last, .. } | InvokeError::FallbackFailed { last, .. } => {
                last.outcome()
            }
        }
    }

    /// Whether the request named a deployed function (false for a missing or unknown name).
    pub fn function_known(&self) -> bool {
        match self {
            InvokeError::MissingFunctionName | InvokeError::NotFound { .. } => false,
            InvokeError::Retried { last, .. } | InvokeError::FallbackFailed { last, .. } => {
                last.function_known()
            }
            _ => true,
        }
    }
}

/// What the message of a failed retry adds about the first attempt.
fn retry_note(first: &InvokeError, last: &InvokeError) -> String {
    let first = first.to_string();
    if first == last.to_string() {
        "the same on one retry".to_string()
    } else {
        format!("after one retry; the first attempt never reached the function: {first}")
    }
}

/// A failed attempt: the error, and why it may run again (`None`: it may not).
#[derive(Debug)]
struct Failed {
    error: InvokeError,
    retry_because: Option<&'static str>,
}

impl Failed {
    fn last(error: InvokeError) -> Failed {
        Failed {
            error,
            retry_because: None,
        }
    }
}

/// Runs invocations: the registry to look functions up, and the ports to the outside.
#[derive(Debug)]
pub struct Invoker<S, N, C> {
    registry: Arc<Registry>,
    scheduler: S,
    nodes: N,
    clock: C,
    max_event_bytes: usize,
    node_grace: Duration,
}

impl<S: SchedulerPort, N: NodePort, C: Clock> Invoker<S, N, C> {
    /// An invoker over `registry`, refusing events over `max_event_bytes`, giving node calls
    /// [`DEFAULT_NODE_GRACE`] beyond the function's timeout.
    pub fn new(
        registry: Arc<Registry>,
        scheduler: S,
        nodes: N,
        clock: C,
        max_event_bytes: usize,
    ) -> Self {
        Invoker {
            registry,
            scheduler,
            nodes,
            clock,
            max_event_bytes,
            node_grace: DEFAULT_NODE_GRACE,
        }
    }

    /// Gives node calls `grace` beyond the function's timeout instead.
    pub fn with_node_grace(mut self, grace: Duration) -> Self {
        self.node_grace = grace;
        self
    }

    /// The clock it measures with.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// The registry functions are looked up in.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The largest event accepted, in bytes.
    pub fn max_event_bytes(&self) -> usize {
        self.max_event_bytes
    }

    /// The deadline of a node call for `function`: its timeout plus the grace.
    pub fn node_deadline(&self, function: &Function) -> Duration {
        Duration::from_millis(u64::try_from(function.timeout_ms).unwrap_or(0))
            .saturating_add(self.node_grace)
    }

    /// The function deployed as `name` now.
    fn lookup(&self, name: &str) -> Result<Arc<Function>, InvokeError> {
        if name.is_empty() {
            return Err(InvokeError::MissingFunctionName);
        }
        self.registry.get(name).map_err(|e| match e {
            RegistryError::EmptyName => InvokeError::MissingFunctionName,
            _ => InvokeError::NotFound {
                name: name.to_string(),
            },
        })
    }

    /// Validates the request and finds its function, without acquiring anything.
    fn admit(&self, req: &InvokeRequest) -> Result<Arc<Function>, InvokeError> {
        let function = self.lookup(&req.function_name)?;
        if req.event.len() > self.max_event_bytes {
            return Err(InvokeError::EventTooLarge {
                size: req.event.len(),
                limit: self.max_event_bytes,
            });
        }
        if req.account_id.is_empty() {
            return Err(InvokeError::MissingAccount);
        }
        Ok(function)
    }

    /// What is left of `deadline`, counted from `started`.
    fn left(&self, deadline: Duration, started: u64) -> Duration {
        let spent = self.clock.monotonic_nanos().saturating_sub(started);
        deadline.saturating_sub(Duration::from_nanos(spent))
    }

    /// Runs one invocation (see the module docs for the steps and the retry rule).
    pub async fn invoke(&self, req: InvokeRequest) -> Result<Invoked, InvokeError> {
        let function = self.admit(&req)?;
        let started = self.clock.monotonic_nanos();
        let first = match self
            .attempt(function, &req, &req.request_id, req.deadline, started)
            .await
        {
            Ok(done) => return Ok(done),
            Err(failed) => failed,
        };
        let Some(because) = first.retry_because else {
            return Err(first.error);
        };
        let within = match req.deadline.map(|d| self.left(d, started)) {
            // The caller has stopped waiting.
            Some(left) if left.is_zero() => return Err(first.error),
            within => within,
        };
        let retried = |last: InvokeError| InvokeError::Retried {
            because,
            first: Box::new(first.error.clone()),
            last: Box::new(last),
        };
        // The function may have been redeployed or deleted meanwhile: run what is deployed now.
        let function = self.lookup(&req.function_name).map_err(retried)?;
        tracing::info!(
            because,
            error = %first.error,
            "the event never reached the function; retrying once on another container"
        );
        let retry_id = format!("{}{RETRY_SUFFIX}", req.request_id);
        match self
            .attempt(function, &req, &retry_id, within, started)
            .await
        {
            Ok(done) => Ok(Invoked {
                retried_after: Some(because),
                ..done
            }),
            Err(second) => Err(retried(second.error)),
        }
    }

    /// One attempt: acquire, run, return.
    async fn attempt(
        &self,
        function: Arc<Function>,
        req: &InvokeRequest,
        request_id: &str,
        within: Option<Duration>,
        started: u64,
    ) -> Result<Invoked, Failed> {
        let placement = self
            .scheduler
            .acquire(
                AcquireRequest {
                    request_id: request_id.to_string(),
                    account_id: req.account_id.clone(),
                    function_name: function.name.clone(),
                    timeout_ms: function.timeout_ms,
                    memory_bytes: function.memory_bytes,
                    handler: function.handler.as_str().to_string(),
                },
                within,
            )
            .await
            .map_err(|e| Failed {
                retry_because: (e.code == RemoteCode::Unavailable)
                    .then_some(RETRY_ACQUIRE_UNAVAILABLE),
                error: InvokeError::Acquire {
                    function: function.name.clone(),
                    code: e.code,
                    message: e.message,
                },
            })?;
        let acquire_nanos = self.clock.monotonic_nanos().saturating_sub(started);

        // From here on the container is ours: every path below returns it.
        let deadline = self.node_deadline(&function);
        let call = NodeCall {
            request_id,
            function: &function,
            event: &req.event,
            deadline,
        };
        let mut returned = ReturnRequest {
            request_id: request_id.to_string(),
            container_id: placement.container_id.clone(),
            duration_nanos: 0,
            max_memory_bytes: 0,
            error_code: String::new(),
            error_message: String::new(),
        };
        let outcome = match self.nodes.invoke(&placement, call).await {
            Ok(execution) => {
                returned.duration_nanos = execution.duration_nanos;
                returned.max_memory_bytes = execution.max_memory_bytes;
                match execution.failure {
                    None => Ok(Invoked {
                        function: function.clone(),
                        body: execution.body,
                        acquire_nanos,
                        duration_nanos: execution.duration_nanos,
                        max_memory_bytes: execution.max_memory_bytes,
                        placement: placement.clone(),
                        retried_after: None,
                    }),
                    Some(failure) => {
                        let error = function_failure(&function, &placement, &failure);
                        returned.error_code = failure.code;
                        returned.error_message = failure.message;
                        Err(Failed::last(error))
                    }
                }
            }
            Err(err) => {
                let decided = node_failure(&function, &placement, deadline, err);
                returned.error_code = decided.return_code.to_string();
                returned.error_message = decided.error.to_string();
                Err(Failed {
                    error: decided.error,
                    retry_because: decided.retry.then_some(decided.return_code),
                })
            }
        };
        if let Err(e) = self.scheduler.return_container(returned).await {
            tracing::warn!(
                container_id = %placement.container_id,
                node_id = %placement.node_id,
                error = %e,
                "could not return the container to the scheduler"
            );
        }
        outcome
    }
}

/// The error a client sees for a function that failed inside its container.
fn function_failure(function: &Function, placement: &Placement, failure: &Failure) -> InvokeError {
    let name = function.name.clone();
    let message = failure.message.clone();
    match failure.code.as_str() {
        CODE_CONTAINER_EXITED => InvokeError::ContainerExited {
            function: name,
            container: placement.container_id.clone(),
            node: placement.node_id.clone(),
            message,
        },
        CODE_TIMEOUT => InvokeError::Timeout {
            function: name,
            timeout_ms: function.timeout_ms,
            message,
        },
        CODE_OUT_OF_MEMORY | CODE_OOM_KILLED => InvokeError::OutOfMemory {
            function: name,
            memory_mib: function.memory_bytes / MIB,
            message,
        },
        CODE_BAD_EVENT => InvokeError::BadEvent {
            function: name,
            message,
        },
        CODE_FUNCTION_ERROR | "" => InvokeError::FunctionFailed {
            function: name,
            message,
        },
        other => InvokeError::FunctionFailed {
            function: name,
            message: format!("{other}: {message}"),
        },
    }
}

/// What a failed node call means: the code the container goes back with, the error a client
/// sees, and whether the call may run again (its event provably never reached a function).
#[derive(Debug)]
struct NodeDecision {
    return_code: &'static str,
    error: InvokeError,
    retry: bool,
}

/// The decision table of a failed node call (see the module docs).
fn node_failure(
    function: &Function,
    placement: &Placement,
    deadline: Duration,
    err: NodeError,
) -> NodeDecision {
    let function = function.name.clone();
    let node = placement.node_id.clone();
    let NodeError {
        kind,
        code,
        message,
    } = err;
    let decide = |return_code, error, retry| NodeDecision {
        return_code,
        error,
        retry,
    };
    match kind {
        NodeErrorKind::NotConnected => decide(
            CODE_NODE_UNAVAILABLE,
            InvokeError::NodeUnreachable {
                function,
                node,
                endpoint: placement.node_endpoint(),
                message,
            },
            true,
        ),
        NodeErrorKind::Refused(reason) => decide(
            reason.code(),
            InvokeError::ContainerUnusable {
                function,
                container: placement.container_id.clone(),
                node,
                reason,
                message,
            },
            true,
        ),
        NodeErrorKind::NoAnswer => decide(
            CODE_NODE_UNAVAILABLE,
            InvokeError::NodeNoAnswer {
                function,
                node,
                endpoint: placement.node_endpoint(),
                deadline_ms: deadline.as_millis(),
                message,
            },
            false,
        ),
        NodeErrorKind::Broken => match code {
            RemoteCode::Unavailable | RemoteCode::Cancelled => decide(
                CODE_NODE_UNAVAILABLE,
                InvokeError::NodeBroken {
                    function,
                    node,
                    endpoint: placement.node_endpoint(),
                    message,
                },
                false,
            ),
            code => decide(
                CODE_NODE_ERROR,
                InvokeError::Node {
                    function,
                    node,
                    code,
                    message,
                },
                false,
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};

    use crate::model::FunctionSpec;

    /// Runs once during a fake node call.
    type Hook = Box<dyn FnOnce(&Registry) + Send>;

    /// Every call the fakes saw, in order.
    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Seen {
        Acquire(AcquireRequest, Option<Duration>),
        Invoke {
            container: String,
            request_id: String,
            handler: String,
            deadline: Duration,
        },
        Return(ReturnRequest),
    }

    /// Time that moves only when a fake says so.
    #[derive(Default)]
    struct ManualClock(AtomicU64);

    impl ManualClock {
        fn advance(&self, by: Duration) {
            self.0.fetch_add(by.as_nanos() as u64, Ordering::SeqCst);
        }
    }

    impl Clock for Arc<ManualClock> {
        fn monotonic_nanos(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    /// The scheduler and the node in one fake, so the log keeps their order.
    #[derive(Default)]
    struct Fakes {
        seen: Mutex<Vec<Seen>>,
        clock: Arc<ManualClock>,
        /// What the next acquires answer; a placement of container `c-N` after that.
        acquires: Mutex<VecDeque<Result<(), RemoteError>>>,
        /// What the next node calls answer; a success after that.
        invokes: Mutex<VecDeque<Result<Execution, NodeError>>>,
        acquire_takes: Duration,
        invoke_takes: Duration,
        registry: Arc<Registry>,
        /// Runs during the first node call (a deploy or a delete between the attempts).
        during_first_invoke: Mutex<Option<Hook>>,
    }

    impl Fakes {
        fn seen(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }

        fn acquired(&self) -> Vec<(String, Option<Duration>)> {
            self.seen()
                .into_iter()
                .filter_map(|s| match s {
                    Seen::Acquire(a, within) => Some((a.request_id, within)),
                    _ => None,
                })
                .collect()
        }

        /// The handler and the deadline of each node call.
        fn invoked(&self) -> Vec<(String, Duration)> {
            self.seen()
                .into_iter()
                .filter_map(|s| match s {
                    Seen::Invoke {
                        handler, deadline, ..
                    } => Some((handler, deadline)),
                    _ => None,
                })
                .collect()
        }

        fn returned(&self) -> Vec<ReturnRequest> {
            self.seen()
                .into_iter()
                .filter_map(|s| match s {
                    Seen::Return(r) => Some(r),
                    _ => None,
                })
                .collect()
        }
    }

    impl SchedulerPort for Arc<Fakes> {
        async fn acquire(
            &self,
            req: AcquireRequest,
            within: Option<Duration>,
        ) -> Result<Placement, RemoteError> {
            let mut seen = self.seen.lock().unwrap();
            seen.push(Seen::Acquire(req, within));
            let n = seen
                .iter()
                .filter(|s| matches!(s, Seen::Acquire(..)))
                .count();
            drop(seen);
            self.clock.advance(self.acquire_takes);
            self.acquires
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Ok(()))?;
            Ok(Placement {
                node_id: format!("node-{n}"),
                node_address: "10.0.0.1".into(),
                node_port: 7000,
                container_id: format!("c-{n}"),
                cold_start: Some(true),
            })
        }

        async fn return_container(&self, req: ReturnRequest) -> Result<(), RemoteError> {
            self.seen.lock().unwrap().push(Seen::Return(req));
            Ok(())
        }
    }

    impl NodePort for Arc<Fakes> {
        async fn invoke(
            &self,
            placement: &Placement,
            call: NodeCall<'_>,
        ) -> Result<Execution, NodeError> {
            self.seen.lock().unwrap().push(Seen::Invoke {
                container: placement.container_id.clone(),
                request_id: call.request_id.to_string(),
                handler: call.function.handler.as_str().to_string(),
                deadline: call.deadline,
            });
            if let Some(hook) = self.during_first_invoke.lock().unwrap().take() {
                hook(&self.registry);
            }
            self.clock.advance(self.invoke_takes);
            self.invokes
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or_else(|| Ok(execution(None)))
        }
    }

    type TestInvoker = Invoker<Arc<Fakes>, Arc<Fakes>, Arc<ManualClock>>;

    fn hello_spec() -> FunctionSpec {
        FunctionSpec {
            name: "hello".into(),
            handler: "hello".into(),
            memory_bytes: 128 * MIB,
            timeout_ms: 3000,
            description: String::new(),
            ..Default::default()
        }
    }

    fn invoker_with(fakes: Fakes) -> (TestInvoker, Arc<Fakes>) {
        let fakes = Arc::new(fakes);
        fakes.registry.deploy(hello_spec(), 0).unwrap();
        let invoker = Invoker::new(
            fakes.registry.clone(),
            fakes.clone(),
            fakes.clone(),
            fakes.clock.clone(),
            16,
        );
        (invoker, fakes)
    }

    /// Fakes whose node answers `invokes` in turn, then succeeds.
    fn invoker(invokes: Vec<Result<Execution, NodeError>>) -> (TestInvoker, Arc<Fakes>) {
        invoker_with(Fakes {
            invokes: Mutex::new(invokes.into()),
            ..Fakes::default()
        })
    }

    fn request(function: &str, account: &str, event: &[u8]) -> InvokeRequest {
        InvokeRequest {
            request_id: "r-1".into(),
            account_id: account.into(),
            function_name: function.into(),
            event: event.to_vec(),
            deadline: None,
        }
    }

    fn execution(failure: Option<(&str, &str)>) -> Execution {
        Execution {
            body: b"hi".to_vec(),
            duration_nanos: 1234,
            max_memory_bytes: 5678,
            failure: failure.map(|(code, message)| Failure {
                code: code.into(),
                message: message.into(),
            }),
        }
    }

    fn node_error(kind: NodeErrorKind, code: RemoteCode) -> NodeError {
        NodeError::new(kind, code, "bad luck")
    }

    /// A node call refused before delivery.
    fn refused(reason: Undelivered) -> Result<Execution, NodeError> {
        Err(node_error(
            NodeErrorKind::Refused(reason),
            RemoteCode::FailedPrecondition,
        ))
    }

    #[tokio::test]
    async fn success_acquires_runs_and_returns_with_the_measurements() {
        let (invoker, fakes) = invoker_with(Fakes {
            acquire_takes: Duration::from_millis(5),
            ..Fakes::default()
        });
        let done = invoker
            .invoke(request("hello", "acct", b"{}"))
            .await
            .unwrap();
        assert_eq!(done.body, b"hi");
        assert_eq!(done.acquire_nanos, 5_000_000);
        assert_eq!(done.placement.cold_start, Some(true));
        assert_eq!(done.retried_after, None);

        assert_eq!(
            fakes.seen(),
            [
                Seen::Acquire(
                    AcquireRequest {
                        request_id: "r-1".into(),
                        account_id: "acct".into(),
                        function_name: "hello".into(),
                        timeout_ms: 3000,
                        memory_bytes: 128 * MIB,
                        handler: "hello".into(),
                    },
                    None
                ),
                Seen::Invoke {
                    container: "c-1".into(),
                    request_id: "r-1".into(),
                    handler: "hello".into(),
                    // The function's timeout plus the grace.
                    deadline: Duration::from_millis(3000) + DEFAULT_NODE_GRACE,
                },
                Seen::Return(ReturnRequest {
                    request_id: "r-1".into(),
                    container_id: "c-1".into(),
                    duration_nanos: 1234,
                    max_memory_bytes: 5678,
                    error_code: String::new(),
                    error_message: String::new(),
                }),
            ]
        );
    }

    #[tokio::test]
    async fn the_node_grace_is_configurable() {
        let (invoker, fakes) = invoker(vec![]);
        let invoker = invoker.with_node_grace(Duration::from_millis(250));
        invoker.invoke(request("hello", "a", b"")).await.unwrap();
        assert_eq!(
            fakes.invoked(),
            [("hello".to_string(), Duration::from_millis(3250))]
        );
    }

    #[tokio::test]
    async fn bad_requests_acquire_nothing() {
        let (invoker, fakes) = invoker(vec![]);
        let cases = [
            (request("", "a", b""), InvokeError::MissingFunctionName),
            (
                request("nope", "a", b""),
                InvokeError::NotFound {
                    name: "nope".into(),
                },
            ),
            (
                request("hello", "a", &[0; 17]),
                InvokeError::EventTooLarge {
                    size: 17,
                    limit: 16,
                },
            ),
            (request("hello", "", b""), InvokeError::MissingAccount),
        ];
        for (req, want) in cases {
            assert_eq!(invoker.invoke(req).await.unwrap_err(), want);
        }
        assert_eq!(
            InvokeError::EventTooLarge {
                size: 17,
                limit: 16
            }
            .to_string(),
            "event is 17 bytes, over the limit of 16 bytes"
        );
        assert!(fakes.seen().is_empty());
        // An event exactly at the limit is fine.
        assert!(
            invoker
                .invoke(request("hello", "a", &[0; 16]))
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn a_huge_unknown_name_is_not_found_with_a_clipped_message() {
        let (invoker, fakes) = invoker(vec![]);
        let name = "n".repeat(1 << 20);
        let err = invoker.invoke(request(&name, "a", b"")).await.unwrap_err();
        assert_eq!(err.outcome(), "not_found");
        let message = err.to_string();
        assert!(message.len() < 300, "{} bytes", message.len());
        assert!(message.contains("(1048576 bytes)"), "{message}");
        assert!(fakes.seen().is_empty());
    }

    #[tokio::test]
    async fn function_failures_are_classified_reported_on_return_and_never_retried() {
        // (code, outcome, whether the message says the function may have run)
        let cases = [
            ("FunctionError", "function_error", false),
            ("Timeout", "timeout", false),
            ("OutOfMemory", "out_of_memory", true),
            ("OOMKilled", "out_of_memory", true),
            ("BadEvent", "bad_event", false),
            ("ContainerExited", "node_unavailable", true),
            ("Weird", "function_error", false),
        ];
        for (code, outcome, may_have_run) in cases {
            let (invoker, fakes) = invoker(vec![Ok(execution(Some((code, "it broke"))))]);
            let err = invoker
                .invoke(request("hello", "a", b""))
                .await
                .unwrap_err();
            assert_eq!(err.outcome(), outcome, "{code}");
            assert!(err.to_string().contains("it broke"), "{err}");
            assert_eq!(
                err.to_string().ends_with(MAY_HAVE_RUN),
                may_have_run,
                "{code}: {err}"
            );
            assert_eq!(fakes.acquired().len(), 1, "{code} is never retried");
            let returned = fakes.returned();
            assert_eq!(returned.len(), 1);
            assert_eq!(returned[0].error_code, code);
            assert_eq!(returned[0].error_message, "it broke");
            assert_eq!(returned[0].duration_nanos, 1234);
        }
        let (invoker, _) = invoker(vec![Ok(execution(Some(("FunctionError", "boom"))))]);
        let err = invoker
            .invoke(request("hello", "a", b""))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "function hello failed: boom");
    }

    /// The contract's table: how each failed node call goes back to the scheduler, and
    /// whether it runs again.
    #[tokio::test]
    async fn node_failures_follow_the_retry_table() {
        use NodeErrorKind::*;
        use Undelivered::*;
        // (kind, gRPC code, code the container goes back with, outcome, retried)
        let cases = [
            (
                NotConnected,
                RemoteCode::Unavailable,
                "NodeUnavailable",
                "node_unavailable",
                true,
            ),
            (
                Refused(ContainerNotFound),
                RemoteCode::NotFound,
                "ContainerNotFound",
                "node_unavailable",
                true,
            ),
            (
                Refused(ContainerDead),
                RemoteCode::FailedPrecondition,
                "ContainerDead",
                "node_unavailable",
                true,
            ),
            (
                Refused(ContainerUnreachable),
                RemoteCode::Unavailable,
                "ContainerUnreachable",
                "node_unavailable",
                true,
            ),
            (
                Refused(WrongFunction),
                RemoteCode::FailedPrecondition,
                "WrongFunction",
                "node_unavailable",
                true,
            ),
            (
                NoAnswer,
                RemoteCode::DeadlineExceeded,
                "NodeUnavailable",
                "node_no_answer",
                false,
            ),
            (
                Broken,
                RemoteCode::Unavailable,
                "NodeUnavailable",
                "node_unavailable",
                false,
            ),
            (
                Broken,
                RemoteCode::Cancelled,
                "NodeUnavailable",
                "node_unavailable",
                false,
            ),
            (
                Broken,
                RemoteCode::Internal,
                "NodeError",
                "node_error",
                false,
            ),
        ];
        for (kind, code, return_code, outcome, retried) in cases {
            let label = format!("{kind:?} {code:?}");
            let (invoker, fakes) = invoker(vec![Err(node_error(kind, code))]);
            let result = invoker.invoke(request("hello", "a", b"")).await;
            let returned = fakes.returned();
            assert_eq!(returned[0].container_id, "c-1", "{label}");
            assert_eq!(returned[0].error_code, return_code, "{label}");
            assert!(returned[0].error_message.contains("bad luck"), "{label}");
            if retried {
                let done = result.unwrap_or_else(|e| panic!("{label}: {e}"));
                assert_eq!(done.placement.container_id, "c-2", "{label}");
                assert_eq!(done.retried_after, Some(return_code), "{label}");
                // The failed container went back before the second acquire.
                let seen = fakes.seen();
                assert!(matches!(&seen[2], Seen::Return(r) if r.container_id == "c-1"));
                assert!(matches!(&seen[3], Seen::Acquire(a, _) if a.request_id == "r-1-retry"));
                assert!(
                    matches!(&seen[4], Seen::Invoke { request_id, container, .. }
                        if request_id == "r-1-retry" && container == "c-2"),
                    "{seen:?}"
                );
                assert_eq!(returned.len(), 2, "{label}");
                assert_eq!(returned[1].request_id, "r-1-retry");
                assert_eq!(returned[1].error_code, "", "{label}");
            } else {
                let err = result.unwrap_err();
                assert_eq!(err.outcome(), outcome, "{label}");
                assert!(err.to_string().ends_with(MAY_HAVE_RUN), "{label}: {err}");
                assert!(err.to_string().contains("bad luck"), "{label}: {err}");
                assert_eq!(fakes.acquired().len(), 1, "{label}");
                assert_eq!(returned.len(), 1, "{label}");
            }
        }
    }

    #[tokio::test]
    async fn a_call_is_retried_only_once() {
        let (invoker, fakes) = invoker(vec![
            refused(Undelivered::ContainerUnreachable),
            refused(Undelivered::ContainerUnreachable),
            Ok(execution(None)),
        ]);
        let err = invoker
            .invoke(request("hello", "a", b""))
            .await
            .unwrap_err();
        assert!(matches!(err, InvokeError::Retried { .. }), "{err}");
        assert_eq!(err.outcome(), "node_unavailable");
        let message = err.to_string();
        assert!(message.contains("container c-2"), "{message}");
        assert!(message.contains("after one retry"), "{message}");
        assert!(message.contains("container c-1"), "{message}");
        assert_eq!(
            fakes.acquired(),
            [("r-1".to_string(), None), ("r-1-retry".to_string(), None)]
        );
        let codes: Vec<_> = fakes.returned().into_iter().map(|r| r.error_code).collect();
        assert_eq!(codes, ["ContainerUnreachable", "ContainerUnreachable"]);
    }

    #[tokio::test]
    async fn an_unavailable_acquire_is_retried_once_and_other_acquire_errors_are_not() {
        let unavailable = || {
            Err(RemoteError::new(
                RemoteCode::Unavailable,
                "node node-3 was lost",
            ))
        };
        // Once: the retry succeeds.
        let (invoker, fakes) = invoker_with(Fakes {
            acquires: Mutex::new([unavailable()].into()),
            ..Fakes::default()
        });
        let done = invoker.invoke(request("hello", "a", b"")).await.unwrap();
        assert_eq!(done.retried_after, Some(RETRY_ACQUIRE_UNAVAILABLE));
        assert_eq!(fakes.acquired().len(), 2);
        // Nothing was acquired the first time, so only the retry's container goes back.
        assert_eq!(fakes.returned().len(), 1);

        // Twice: the second failure is the answer.
        let (invoker, fakes) = invoker_with(Fakes {
            acquires: Mutex::new([unavailable(), unavailable()].into()),
            ..Fakes::default()
        });
        let err = invoker
            .invoke(request("hello", "a", b""))
            .await
            .unwrap_err();
        assert_eq!(err.outcome(), "acquire_failed");
        assert_eq!(fakes.acquired().len(), 2);
        assert!(fakes.returned().is_empty());

        for code in [
            RemoteCode::ResourceExhausted,
            RemoteCode::DeadlineExceeded,
            // A node refused to create the function's container: not retried.
            RemoteCode::FailedPrecondition,
            RemoteCode::NotFound,
            RemoteCode::Cancelled,
        ] {
            let (invoker, fakes) = invoker_with(Fakes {
                acquires: Mutex::new([Err(RemoteError::new(code, "no"))].into()),
                ..Fakes::default()
            });
            let err = invoker
                .invoke(request("hello", "a", b""))
                .await
                .unwrap_err();
            assert_eq!(
                err,
                InvokeError::Acquire {
                    function: "hello".into(),
                    code,
                    message: "no".into(),
                }
            );
            assert_eq!(fakes.acquired().len(), 1, "{code:?}");
        }
    }

    #[tokio::test]
    async fn acquire_errors_pass_through_with_context_and_return_nothing() {
        let (invoker, fakes) = invoker_with(Fakes {
            acquires: Mutex::new(
                [Err(RemoteError::new(
                    RemoteCode::ResourceExhausted,
                    "no available node can be reserved",
                ))]
                .into(),
            ),
            ..Fakes::default()
        });
        let err = invoker
            .invoke(request("hello", "a", b""))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "acquire container for hello: no available node can be reserved"
        );
        assert!(fakes.returned().is_empty());
    }

    #[tokio::test]
    async fn the_retry_runs_within_what_is_left_of_the_callers_deadline() {
        let with_deadline = |ms| InvokeRequest {
            deadline: Some(Duration::from_millis(ms)),
            ..request("hello", "a", b"")
        };
        // The node call took 400 ms of the caller's 1000.
        let (invoker, fakes) = invoker_with(Fakes {
            invokes: Mutex::new([refused(Undelivered::ContainerDead)].into()),
            invoke_takes: Duration::from_millis(400),
            ..Fakes::default()
        });
        invoker.invoke(with_deadline(1000)).await.unwrap();
        assert_eq!(
            fakes.acquired(),
            [
                ("r-1".to_string(), Some(Duration::from_millis(1000))),
                ("r-1-retry".to_string(), Some(Duration::from_millis(600))),
            ]
        );

        // It took all of it: the caller has stopped waiting, so no retry.
        let (invoker, fakes) = invoker_with(Fakes {
            invokes: Mutex::new([refused(Undelivered::ContainerDead)].into()),
            invoke_takes: Duration::from_millis(1000),
            ..Fakes::default()
        });
        let err = invoker.invoke(with_deadline(1000)).await.unwrap_err();
        assert!(
            matches!(err, InvokeError::ContainerUnusable { .. }),
            "{err:?}"
        );
        assert_eq!(fakes.acquired().len(), 1);
        assert_eq!(fakes.returned()[0].error_code, "ContainerDead");
    }

    #[tokio::test]
    async fn the_retry_runs_the_definition_deployed_now() {
        // Redeployed with another handler between the attempts.
        let (invoker, fakes) = invoker_with(Fakes {
            invokes: Mutex::new([refused(Undelivered::WrongFunction)].into()),
            during_first_invoke: Mutex::new(Some(Box::new(|registry: &Registry| {
                let echo = FunctionSpec {
                    handler: "echo".into(),
                    ..hello_spec()
                };
                registry.deploy(echo, 1).unwrap();
            }))),
            ..Fakes::default()
        });
        let done = invoker.invoke(request("hello", "a", b"")).await.unwrap();
        assert_eq!(done.function.handler.as_str(), "echo");
        assert_eq!(done.function.revision, 2);
        let handlers: Vec<_> = fakes.invoked().into_iter().map(|(h, _)| h).collect();
        assert_eq!(handlers, ["hello", "echo"]);

        // Deleted between the attempts: NOT_FOUND, as for any deleted function.
        let (invoker, fakes) = invoker_with(Fakes {
            invokes: Mutex::new([refused(Undelivered::WrongFunction)].into()),
            during_first_invoke: Mutex::new(Some(Box::new(|registry: &Registry| {
                registry.delete("hello").unwrap();
            }))),
            ..Fakes::default()
        });
        let err = invoker
            .invoke(request("hello", "a", b""))
            .await
            .unwrap_err();
        assert_eq!(err.outcome(), "not_found", "{err}");
        assert_eq!(fakes.acquired().len(), 1);
        assert_eq!(fakes.returned()[0].error_code, "WrongFunction");
    }

    /// The scheduler and nodes of a platform whose functions change under load: a container
    /// is bound to the definition (handler and description) it was acquired for, but the
    /// scheduler sometimes hands out one of an older definition first, which the node refuses
    /// with `WrongFunction`, as a node service does. The node answers with the description it
    /// ran.
    #[derive(Default)]
    struct Churn {
        acquires: AtomicU64,
        stale: AtomicU64,
        returns: Mutex<Vec<ReturnRequest>>,
    }

    impl SchedulerPort for Arc<Churn> {
        async fn acquire(
            &self,
            req: AcquireRequest,
            _: Option<Duration>,
        ) -> Result<Placement, RemoteError> {
            let n = self.acquires.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            // Every third first attempt gets a container of an old definition.
            let stale = n.is_multiple_of(3) && !req.request_id.ends_with(RETRY_SUFFIX);
            if stale {
                self.stale.fetch_add(1, Ordering::SeqCst);
            }
            Ok(Placement {
                node_id: "node-1".into(),
                node_address: "10.0.0.1".into(),
                node_port: 7000,
                container_id: if stale {
                    format!("c-{n}/old")
                } else {
                    format!("c-{n}/{}", req.handler)
                },
                cold_start: Some(false),
            })
        }

        async fn return_container(&self, req: ReturnRequest) -> Result<(), RemoteError> {
            self.returns.lock().unwrap().push(req);
            Ok(())
        }
    }

    impl NodePort for Arc<Churn> {
        async fn invoke(
            &self,
            placement: &Placement,
            call: NodeCall<'_>,
        ) -> Result<Execution, NodeError> {
            tokio::task::yield_now().await;
            let bound = placement.container_id.split('/').nth(1);
            if bound != Some(call.function.handler.as_str()) {
                return Err(NodeError::new(
                    NodeErrorKind::Refused(Undelivered::WrongFunction),
                    RemoteCode::FailedPrecondition,
                    "this container runs another definition",
                ));
            }
            Ok(Execution {
                body: call.function.description.clone().into_bytes(),
                ..Execution::default()
            })
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deploy_and_delete_churn_gives_only_documented_statuses_and_never_an_old_body() {
        let churn = Arc::new(Churn::default());
        let registry = Arc::new(Registry::new());
        let invoker = Arc::new(Invoker::new(
            registry.clone(),
            churn.clone(),
            churn.clone(),
            Arc::new(ManualClock::default()),
            1024,
        ));
        // The generation of the last deploy that has returned.
        let deployed = Arc::new(AtomicU64::new(0));
        let deploy = |generation: u64| {
            let spec = FunctionSpec {
                name: "f".into(),
                handler: ["echo", "hello", "sleep"][generation as usize % 3].into(),
                memory_bytes: 128 * MIB,
                timeout_ms: 1000,
                description: generation.to_string(),
                ..Default::default()
            };
            registry.deploy(spec, 0).unwrap();
            deployed.fetch_max(generation, Ordering::SeqCst);
        };
        deploy(1);

        let callers: Vec<_> = (0..4)
            .map(|i| {
                let invoker = invoker.clone();
                let deployed = deployed.clone();
                tokio::spawn(async move {
                    let (mut ok, mut not_found) = (0, 0);
                    for j in 0..300 {
                        let at_least = deployed.load(Ordering::SeqCst);
                        let req = InvokeRequest {
                            request_id: format!("r-{i}-{j}"),
                            ..request("f", "a", b"")
                        };
                        match invoker.invoke(req).await {
                            Ok(done) => {
                                let generation: u64 =
                                    String::from_utf8(done.body).unwrap().parse().unwrap();
                                assert!(
                                    generation >= at_least,
                                    "an old body (generation {generation}) after generation \
                                     {at_least} was deployed"
                                );
                                ok += 1;
                            }
                            Err(InvokeError::NotFound { .. }) => not_found += 1,
                            Err(InvokeError::Retried { last, .. })
                                if matches!(*last, InvokeError::NotFound { .. }) =>
                            {
                                not_found += 1
                            }
                            Err(e) => panic!("an undocumented status under churn: {e}"),
                        }
                    }
                    (ok, not_found)
                })
            })
            .collect();

        for generation in 2..200u64 {
            if generation.is_multiple_of(5) {
                registry.delete("f").unwrap();
                let err = invoker.invoke(request("f", "a", b"")).await.unwrap_err();
                assert_eq!(err, InvokeError::NotFound { name: "f".into() });
            }
            deploy(generation);
            tokio::task::yield_now().await;
        }
        let mut ok = 0;
        for caller in callers {
            ok += caller.await.unwrap().0;
        }
        assert!(ok > 0);
        assert!(churn.stale.load(Ordering::SeqCst) > 0);
        // Every container went back, the refused ones as WrongFunction.
        let returns = churn.returns.lock().unwrap();
        assert_eq!(returns.len() as u64, churn.acquires.load(Ordering::SeqCst));
        assert!(returns.iter().any(|r| r.error_code == "WrongFunction"));
    }

    /// The database's cost on the invoke path is nothing: once the registry is loaded, a call
    /// (found or not) reads only its memory. The store panics if anything touches it.
    #[tokio::test]
    async fn the_invoke_path_never_touches_the_store() {
        use crate::store::fake::FakeDao;
        let dao = Arc::new(FakeDao::default());
        let opened = Registry::open(dao.clone(), vec![], 0).unwrap();
        let (invoker, fakes) = invoker_with(Fakes {
            registry: Arc::new(opened.registry),
            ..Fakes::default()
        });
        // Loaded, and `hello` written through.
        assert_eq!(dao.calls(), 2);
        assert_eq!(dao.rows().len(), 1);
        dao.freeze();
        for i in 0..3 {
            let req = InvokeRequest {
                request_id: format!("r-{i}"),
                ..request("hello", "a", b"{}")
            };
            invoker.invoke(req).await.unwrap();
        }
        let err = invoker.invoke(request("nope", "a", b"")).await.unwrap_err();
        assert_eq!(
            err,
            InvokeError::NotFound {
                name: "nope".into()
            }
        );
        assert_eq!(fakes.returned().len(), 3);
        assert_eq!(dao.calls(), 2);
    }
}
