//! One invocation from start to end.
//!
//! 1. Validate the request: a function name, a known function, an event within the limit, an
//!    account. Nothing is acquired for a request that fails here.
//! 2. Acquire a container from the scheduler ([`SchedulerPort::acquire`]).
//! 3. Run the function on the container's node ([`NodePort::invoke`]).
//! 4. Give the container back ([`SchedulerPort::return_container`]) with the duration, the
//!    peak memory and, when the function or the node call failed, an error code and message.
//!    Once a container is acquired it is returned on every path.
//!
//! The outside world is reached only through the ports declared here; the api layer
//! implements them with gRPC clients and a monotonic clock.

use std::future::Future;
use std::sync::Arc;

use crate::model::{
    AcquireRequest, Execution, Failure, Function, MIB, Placement, RemoteCode, RemoteError,
    ReturnRequest,
};
use crate::service::registry::{Registry, RegistryError};

/// The error code the container service gives a function that timed out.
pub const CODE_TIMEOUT: &str = "Timeout";
/// The error code the container service gives a function that ran out of memory.
pub const CODE_OUT_OF_MEMORY: &str = "OutOfMemory";
/// The error code the container service gives an event the function cannot read.
pub const CODE_BAD_EVENT: &str = "BadEvent";
/// The error code the container service gives a function's own error.
pub const CODE_FUNCTION_ERROR: &str = "FunctionError";
/// The error code a node gives an invocation whose container process is gone or silent.
pub const CODE_CONTAINER_EXITED: &str = "ContainerExited";
/// The error code the API server returns a container with when its node was unreachable.
pub const CODE_NODE_UNAVAILABLE: &str = "NodeUnavailable";
/// The error code the API server returns a container with when its node no longer had it.
pub const CODE_CONTAINER_NOT_FOUND: &str = "ContainerNotFound";
/// The error code the API server returns a container with when the node call failed otherwise.
pub const CODE_NODE_ERROR: &str = "NodeError";

/// The scheduler, as the invocation needs it.
pub trait SchedulerPort: Send + Sync + 'static {
    /// Asks for a container to run `req.function_name` on.
    fn acquire(
        &self,
        req: AcquireRequest,
    ) -> impl Future<Output = Result<Placement, RemoteError>> + Send;
    /// Gives a container back after an invocation.
    fn return_container(
        &self,
        req: ReturnRequest,
    ) -> impl Future<Output = Result<(), RemoteError>> + Send;
}

/// What the node is asked to run.
#[derive(Clone, Debug)]
pub struct NodeCall {
    pub request_id: String,
    pub function: Arc<Function>,
    pub event: Vec<u8>,
}

/// The node services, as the invocation needs them.
pub trait NodePort: Send + Sync + 'static {
    /// Runs `call` in the container of `placement`. A failure of the function itself is an
    /// `Ok` execution with `failure` set; an `Err` means the call to the node failed.
    fn invoke(
        &self,
        placement: &Placement,
        call: NodeCall,
    ) -> impl Future<Output = Result<Execution, RemoteError>> + Send;
}

/// A monotonic clock, for the time spent acquiring.
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
}

/// A successful invocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invoked {
    pub function: Arc<Function>,
    pub placement: Placement,
    pub body: Vec<u8>,
    /// Time spent in the scheduler's `AcquireContainer`.
    pub acquire_nanos: u64,
    /// The function's own duration, as the node measured it.
    pub duration_nanos: i64,
    /// The function's peak memory, as the node measured it.
    pub max_memory_bytes: i64,
}

/// Why an invocation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvokeError {
    #[error("function name cannot be empty")]
    MissingFunctionName,
    #[error("function {name} not found")]
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
    #[error("function {function} ran out of memory (its limit is {memory_mib} MiB): {message}")]
    OutOfMemory {
        function: String,
        memory_mib: i64,
        message: String,
    },
    #[error("function {function} cannot read the event: {message}")]
    BadEvent { function: String, message: String },
    #[error("function {function}: node {node} at {endpoint} is unreachable, try again: {message}")]
    NodeUnavailable {
        function: String,
        node: String,
        endpoint: String,
        message: String,
    },
    #[error(
        "function {function}: container {container} is gone from node {node}, try again: {message}"
    )]
    ContainerGone {
        function: String,
        container: String,
        node: String,
        message: String,
    },
    #[error("function {function}: node {node} failed the call: {message}")]
    Node {
        function: String,
        node: String,
        code: RemoteCode,
        message: String,
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
            InvokeError::NodeUnavailable { .. } | InvokeError::ContainerGone { .. } => {
                "node_unavailable"
            }
            InvokeError::Node { .. } => "node_error",
        }
    }

    /// Whether the request named a deployed function (false for a missing or unknown name).
    pub fn function_known(&self) -> bool {
        !matches!(
            self,
            InvokeError::MissingFunctionName | InvokeError::NotFound { .. }
        )
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
}

impl<S: SchedulerPort, N: NodePort, C: Clock> Invoker<S, N, C> {
    /// An invoker over `registry`, refusing events over `max_event_bytes`.
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
        }
    }

    /// The registry functions are looked up in.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The largest event accepted, in bytes.
    pub fn max_event_bytes(&self) -> usize {
        self.max_event_bytes
    }

    /// Validates the request and finds its function, without acquiring anything.
    fn admit(&self, req: &InvokeRequest) -> Result<Arc<Function>, InvokeError> {
        if req.function_name.is_empty() {
            return Err(InvokeError::MissingFunctionName);
        }
        let function = self.registry.get(&req.function_name).map_err(|e| match e {
            RegistryError::EmptyName => InvokeError::MissingFunctionName,
            _ => InvokeError::NotFound {
                name: req.function_name.clone(),
            },
        })?;
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

    /// Runs one invocation (see the module docs for the steps).
    pub async fn invoke(&self, req: InvokeRequest) -> Result<Invoked, InvokeError> {
        let function = self.admit(&req)?;
        let InvokeRequest {
            request_id,
            account_id,
            event,
            ..
        } = req;

        let started = self.clock.monotonic_nanos();
        let placement = self
            .scheduler
            .acquire(AcquireRequest {
                request_id: request_id.clone(),
                account_id,
                function_name: function.name.clone(),
                timeout_ms: function.timeout_ms,
                memory_bytes: function.memory_bytes,
                handler: function.handler.as_str().to_string(),
            })
            .await
            .map_err(|e| InvokeError::Acquire {
                function: function.name.clone(),
                code: e.code,
                message: e.message,
            })?;
        let acquire_nanos = self.clock.monotonic_nanos().saturating_sub(started);

        // From here on the container is ours: every path below returns it.
        let call = NodeCall {
            request_id: request_id.clone(),
            function: function.clone(),
            event,
        };
        let executed = self.nodes.invoke(&placement, call).await;
        let (returned, outcome) = match executed {
            Ok(execution) => {
                let returned = ReturnRequest {
                    request_id: request_id.clone(),
                    container_id: placement.container_id.clone(),
                    duration_nanos: execution.duration_nanos,
                    max_memory_bytes: execution.max_memory_bytes,
                    error_code: String::new(),
                    error_message: String::new(),
                };
                match execution.failure {
                    None => (
                        returned,
                        Ok(Invoked {
                            function: function.clone(),
                            body: execution.body,
                            acquire_nanos,
                            duration_nanos: execution.duration_nanos,
                            max_memory_bytes: execution.max_memory_bytes,
                            placement: placement.clone(),
                        }),
                    ),
                    Some(failure) => {
                        let error = function_failure(&function, &placement, &failure);
                        (
                            ReturnRequest {
                                error_code: failure.code,
                                error_message: failure.message,
                                ..returned
                            },
                            Err(error),
                        )
                    }
                }
            }
            Err(remote) => {
                let (code, error) = node_failure(&function, &placement, remote);
                (
                    ReturnRequest {
                        request_id: request_id.clone(),
                        container_id: placement.container_id.clone(),
                        duration_nanos: 0,
                        max_memory_bytes: 0,
                        error_code: code.to_string(),
                        error_message: error.to_string(),
                    },
                    Err(error),
                )
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
        CODE_CONTAINER_EXITED => InvokeError::ContainerGone {
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
        CODE_OUT_OF_MEMORY => InvokeError::OutOfMemory {
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

/// The error code the container goes back with, and the error a client sees, when the call
/// to the node failed.
fn node_failure(
    function: &Function,
    placement: &Placement,
    remote: RemoteError,
) -> (&'static str, InvokeError) {
    let name = function.name.clone();
    match remote.code {
        RemoteCode::Unavailable | RemoteCode::Cancelled => (
            CODE_NODE_UNAVAILABLE,
            InvokeError::NodeUnavailable {
                function: name,
                node: placement.node_id.clone(),
                endpoint: placement.node_endpoint(),
                message: remote.message,
            },
        ),
        RemoteCode::NotFound => (
            CODE_CONTAINER_NOT_FOUND,
            InvokeError::ContainerGone {
                function: name,
                container: placement.container_id.clone(),
                node: placement.node_id.clone(),
                message: remote.message,
            },
        ),
        RemoteCode::DeadlineExceeded => (
            CODE_TIMEOUT,
            InvokeError::Timeout {
                function: name,
                timeout_ms: function.timeout_ms,
                message: format!(
                    "node {} did not answer in time: {}",
                    placement.node_id, remote.message
                ),
            },
        ),
        code => (
            CODE_NODE_ERROR,
            InvokeError::Node {
                function: name,
                node: placement.node_id.clone(),
                code,
                message: remote.message,
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};

    use crate::model::FunctionSpec;

    #[derive(Default)]
    struct FakeScheduler {
        acquired: Mutex<Vec<AcquireRequest>>,
        returned: Mutex<Vec<ReturnRequest>>,
        refuse: Option<RemoteError>,
    }

    impl SchedulerPort for Arc<FakeScheduler> {
        async fn acquire(&self, req: AcquireRequest) -> Result<Placement, RemoteError> {
            self.acquired.lock().unwrap().push(req);
            match &self.refuse {
                Some(e) => Err(e.clone()),
                None => Ok(Placement {
                    node_id: "node-1".into(),
                    node_address: "10.0.0.1".into(),
                    node_port: 7000,
                    container_id: "c-1".into(),
                    cold_start: Some(true),
                }),
            }
        }
        async fn return_container(&self, req: ReturnRequest) -> Result<(), RemoteError> {
            self.returned.lock().unwrap().push(req);
            Ok(())
        }
    }

    struct FakeNode(Result<Execution, RemoteError>);

    impl NodePort for FakeNode {
        async fn invoke(
            &self,
            placement: &Placement,
            call: NodeCall,
        ) -> Result<Execution, RemoteError> {
            assert_eq!(placement.container_id, "c-1");
            assert_eq!(call.request_id, "r-1");
            self.0.clone()
        }
    }

    /// Advances 5 ms on every reading.
    #[derive(Default)]
    struct StepClock(AtomicU64);

    impl Clock for StepClock {
        fn monotonic_nanos(&self) -> u64 {
            self.0.fetch_add(5_000_000, Ordering::SeqCst)
        }
    }

    fn invoker(
        scheduler: Arc<FakeScheduler>,
        node: Result<Execution, RemoteError>,
    ) -> Invoker<Arc<FakeScheduler>, FakeNode, StepClock> {
        let registry = Registry::with_functions(
            [FunctionSpec {
                name: "hello".into(),
                handler: "hello".into(),
                memory_bytes: 128 * MIB,
                timeout_ms: 3000,
                description: String::new(),
            }],
            0,
        )
        .unwrap();
        Invoker::new(
            Arc::new(registry),
            scheduler,
            FakeNode(node),
            StepClock::default(),
            16,
        )
    }

    fn request(function: &str, account: &str, event: &[u8]) -> InvokeRequest {
        InvokeRequest {
            request_id: "r-1".into(),
            account_id: account.into(),
            function_name: function.into(),
            event: event.to_vec(),
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

    #[tokio::test]
    async fn success_acquires_runs_and_returns_with_the_measurements() {
        let scheduler = Arc::new(FakeScheduler::default());
        let invoker = invoker(scheduler.clone(), Ok(execution(None)));
        let done = invoker
            .invoke(request("hello", "acct", b"{}"))
            .await
            .unwrap();
        assert_eq!(done.body, b"hi");
        assert_eq!(done.acquire_nanos, 5_000_000);
        assert_eq!(done.placement.cold_start, Some(true));

        let acquired = scheduler.acquired.lock().unwrap();
        assert_eq!(
            acquired[..],
            [AcquireRequest {
                request_id: "r-1".into(),
                account_id: "acct".into(),
                function_name: "hello".into(),
                timeout_ms: 3000,
                memory_bytes: 128 * MIB,
                handler: "hello".into(),
            }]
        );
        let returned = scheduler.returned.lock().unwrap();
        assert_eq!(
            returned[..],
            [ReturnRequest {
                request_id: "r-1".into(),
                container_id: "c-1".into(),
                duration_nanos: 1234,
                max_memory_bytes: 5678,
                error_code: String::new(),
                error_message: String::new(),
            }]
        );
    }

    #[tokio::test]
    async fn bad_requests_acquire_nothing() {
        let scheduler = Arc::new(FakeScheduler::default());
        let invoker = invoker(scheduler.clone(), Ok(execution(None)));
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
        assert!(scheduler.acquired.lock().unwrap().is_empty());
        // An event exactly at the limit is fine.
        assert!(
            invoker
                .invoke(request("hello", "a", &[0; 16]))
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn function_failures_are_classified_and_reported_on_return() {
        let cases = [
            ("FunctionError", "boom", "function_error"),
            ("Timeout", "ran 3000 ms", "timeout"),
            ("OutOfMemory", "killed", "out_of_memory"),
            ("BadEvent", "not json", "bad_event"),
            ("ContainerExited", "process gone", "node_unavailable"),
            ("Weird", "odd", "function_error"),
        ];
        for (code, message, outcome) in cases {
            let scheduler = Arc::new(FakeScheduler::default());
            let invoker = invoker(scheduler.clone(), Ok(execution(Some((code, message)))));
            let err = invoker
                .invoke(request("hello", "a", b""))
                .await
                .unwrap_err();
            assert_eq!(err.outcome(), outcome, "{code}");
            assert!(err.to_string().contains(message), "{err}");
            let returned = scheduler.returned.lock().unwrap();
            assert_eq!(returned.len(), 1);
            assert_eq!(returned[0].error_code, code);
            assert_eq!(returned[0].error_message, message);
            assert_eq!(returned[0].duration_nanos, 1234);
        }
        let scheduler = Arc::new(FakeScheduler::default());
        let err = invoker(scheduler, Ok(execution(Some(("FunctionError", "boom")))))
            .invoke(request("hello", "a", b""))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "function hello failed: boom");
    }

    #[tokio::test]
    async fn node_failures_still_return_the_container() {
        let cases = [
            (
                RemoteCode::Unavailable,
                "node_unavailable",
                CODE_NODE_UNAVAILABLE,
            ),
            (
                RemoteCode::NotFound,
                "node_unavailable",
                CODE_CONTAINER_NOT_FOUND,
            ),
            (RemoteCode::DeadlineExceeded, "timeout", CODE_TIMEOUT),
            (RemoteCode::Internal, "node_error", CODE_NODE_ERROR),
        ];
        for (code, outcome, return_code) in cases {
            let scheduler = Arc::new(FakeScheduler::default());
            let invoker = invoker(scheduler.clone(), Err(RemoteError::new(code, "bad luck")));
            let err = invoker
                .invoke(request("hello", "a", b""))
                .await
                .unwrap_err();
            assert_eq!(err.outcome(), outcome, "{code:?}");
            let returned = scheduler.returned.lock().unwrap();
            assert_eq!(returned.len(), 1, "{code:?}");
            assert_eq!(returned[0].container_id, "c-1");
            assert_eq!(returned[0].error_code, return_code);
            assert!(returned[0].error_message.contains("bad luck"));
        }
    }

    #[tokio::test]
    async fn acquire_errors_pass_through_with_context_and_return_nothing() {
        let scheduler = Arc::new(FakeScheduler {
            refuse: Some(RemoteError::new(
                RemoteCode::ResourceExhausted,
                "no available node can be reserved",
            )),
            ..Default::default()
        });
        let err = invoker(scheduler.clone(), Ok(execution(None)))
            .invoke(request("hello", "a", b""))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            InvokeError::Acquire {
                function: "hello".into(),
                code: RemoteCode::ResourceExhausted,
                message: "no available node can be reserved".into(),
            }
        );
        assert_eq!(
            err.to_string(),
            "acquire container for hello: no available node can be reserved"
        );
        assert!(scheduler.returned.lock().unwrap().is_empty());
    }
}
