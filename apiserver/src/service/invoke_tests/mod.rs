//! Tests of [`super`]: the fakes (a scheduler and a node in one log, a manual clock), the
//! helpers, and the happy path and request validation. The retry table is in [`retry`], the
//! deploy / delete churn under load and the store's absence from the invoke path in
//! [`churn`].

use super::*;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::model::{Execution, FunctionSpec, RemoteError};

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
    /// Whether every return fails (after it is recorded).
    returns_fail: bool,
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
        if self.returns_fail {
            return Err(RemoteError::new(RemoteCode::Unavailable, "scheduler gone"));
        }
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

/// Waits (yielding to the runtime) until the fakes saw `n` returns.
async fn returns_seen(fakes: &Fakes, n: usize) -> Vec<ReturnRequest> {
    for _ in 0..1000 {
        let returned = fakes.returned();
        if returned.len() >= n {
            return returned;
        }
        tokio::task::yield_now().await;
    }
    panic!("{} returns seen, {n} expected", fakes.returned().len());
}

#[tokio::test]
async fn returning_after_reply_moves_only_a_successful_calls_return_off_its_path() {
    let (invoker, fakes) = invoker(vec![Ok(execution(Some(("FunctionError", "it broke"))))]);
    let invoker = invoker.returning_after_reply();
    // A failed call's container is back before the call answers.
    invoker
        .invoke(request("hello", "a", b""))
        .await
        .unwrap_err();
    assert_eq!(fakes.returned().len(), 1);
    assert_eq!(fakes.returned()[0].error_code, "FunctionError");
    // A successful call answers; its return, with the measurements, follows in a task.
    let done = invoker.invoke(request("hello", "a", b"")).await.unwrap();
    assert_eq!(done.body, b"hi");
    let returned = returns_seen(&fakes, 2).await;
    assert_eq!(
        returned[1],
        ReturnRequest {
            request_id: "r-1".into(),
            container_id: "c-2".into(),
            duration_nanos: 1234,
            max_memory_bytes: 5678,
            error_code: String::new(),
            error_message: String::new(),
        }
    );
    assert_eq!(returned.len(), 2, "each container goes back once");
}

#[tokio::test]
async fn a_return_that_fails_after_the_reply_is_logged_not_fatal() {
    let (invoker, fakes) = invoker_with(Fakes {
        returns_fail: true,
        ..Fakes::default()
    });
    let invoker = invoker.returning_after_reply();
    for _ in 0..3 {
        invoker.invoke(request("hello", "a", b"")).await.unwrap();
    }
    assert_eq!(returns_seen(&fakes, 3).await.len(), 3);
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
mod churn;
mod retry;
