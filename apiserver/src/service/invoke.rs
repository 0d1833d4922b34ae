//! One invocation from start to end.
//!
//! (About 620 lines, over the house's 600: the driver and the error enum it returns are read
//! together; its tests are in `invoke_tests/`.)
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
//!    Once a container is acquired it is returned on every path. An invoker made
//!    [`Invoker::returning_after_reply`] (the live server) starts the return of a successful
//!    call before it answers (the request is handed to the scheduler's channel, ahead of any
//!    later acquire on it) and lets a task of its own wait for the scheduler's answer, so the
//!    return's round trip is off the reply's path while a closed-loop client's next acquire
//!    still finds the container warm; a failed return is still logged. A failed call's
//!    container is always returned before the call answers (a retry must not race it).
//!
//! A call whose event provably never reached a function is run once more, transparently, on
//! a freshly acquired container (request id `<id>-retry`) within what is left of the
//! caller's deadline: the acquire failed `UNAVAILABLE`, the API server could not connect to
//! the node, or the node refused the call before delivering it ([`Undelivered`]). The failed
//! container is returned first, with its code. A call whose function may have run (the
//! container exited or ran out of memory during the call, the connection broke mid-call, the
//! node did not answer in time) is never run again, and its error says so ([`MAY_HAVE_RUN`]).
//!
//! The outside world is reached only through [`crate::service::ports`] (re-exported here);
//! the api layer implements them with gRPC clients and a monotonic clock. The tests are in
//! `invoke_tests/`.

use std::sync::Arc;
use std::time::Duration;

use faas_common::text::clip;

use crate::model::{
    AcquireRequest, Failure, Function, MIB, NodeError, NodeErrorKind, Placement, RemoteCode,
    ReturnRequest, Undelivered,
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

pub use crate::service::ports::{Clock, NodeCall, NodePort, SchedulerPort};

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
    /// Shared with the tasks that return containers after the reply.
    scheduler: Arc<S>,
    nodes: N,
    clock: C,
    max_event_bytes: usize,
    node_grace: Duration,
    /// Whether a successful call's container goes back in a task of its own.
    return_after_reply: bool,
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
            scheduler: Arc::new(scheduler),
            nodes,
            clock,
            max_event_bytes,
            node_grace: DEFAULT_NODE_GRACE,
            return_after_reply: false,
        }
    }

    /// Starts a successful call's return before the call answers and waits for the
    /// scheduler's answer in a task of its own instead of on the reply's path (see the module
    /// docs). Needs a tokio runtime.
    pub fn returning_after_reply(mut self) -> Self {
        self.return_after_reply = true;
        self
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
        if self.return_after_reply && outcome.is_ok() {
            let scheduler = self.scheduler.clone();
            let node_id = placement.node_id.clone();
            let mut giving_back = Box::pin(async move {
                let container_id = returned.container_id.clone();
                give_back(scheduler.as_ref(), returned, &container_id, &node_id).await;
            });
            // Polled once here, before the answer: the return is handed to the scheduler's
            // channel (queued ahead of any later acquire on it), then finishes in a task.
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            if giving_back.as_mut().poll(&mut cx).is_pending() {
                // In the call's span: a failed return is logged with its request id.
                tokio::spawn(tracing::Instrument::in_current_span(giving_back));
            }
        } else {
            give_back(
                self.scheduler.as_ref(),
                returned,
                &placement.container_id,
                &placement.node_id,
            )
            .await;
        }
        outcome
    }
}

/// Returns a container; a failure is logged (the scheduler takes a container back by itself
/// once its lease ends, so there is nothing else to do).
async fn give_back<S: SchedulerPort>(
    scheduler: &S,
    returned: ReturnRequest,
    container_id: &str,
    node_id: &str,
) {
    if let Err(e) = scheduler.return_container(returned).await {
        tracing::warn!(
            container_id,
            node_id,
            error = %e,
            "could not return the container to the scheduler"
        );
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
#[path = "invoke_tests/mod.rs"]
mod tests;
