//! The one invoke path every door goes through: the gRPC `InvokeFunction`, the HTTP
//! gateway's `/function/NAME` and the asynchronous runner behind `Invocations` and
//! `/async-function/NAME`.
//!
//! [`Front::invoke`] does, for one call:
//!
//! 1. admit it by its account's limits ([`Front::admit`]), refused at once, before any work;
//! 2. make its request id (a UUID);
//! 3. run the chain ([`Router::invoke`](crate::service::routing::Router::invoke): routing, acquire, the node call, the return) in a
//!    task of its own, so a caller that leaves cannot stop it before the container is back;
//!    the account's slot is held until the chain ends;
//! 4. record the metrics and log the outcome.
//!
//! What it answers ([`Answered`]) is plain data; each door maps it to its own protocol
//! (`server.rs` to a `tonic::Status`, `gateway/status.rs` to an HTTP status). A call already
//! admitted (an asynchronous one holds its slot while queued) runs with [`Front::run`].

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use faas_common::text::clip;
use tracing::Instrument;

use crate::api::clock::SystemClock;
use crate::api::metrics::{Metrics, UNKNOWN_FUNCTION};
use crate::api::server::LiveRouter;
use crate::service::Clock;
use crate::service::limits::{LimitError, Limits, Permit};
use crate::service::routing::{RouteContext, RouteNote, Routed};
use crate::service::{InvokeError, InvokeRequest, Invoked};

/// One call as a door hands it over.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Call {
    pub account_id: String,
    /// `NAME`, `NAME:N` or `NAME:ALIAS`.
    pub function_name: String,
    pub event: Vec<u8>,
    pub route: RouteContext,
    /// The caller's deadline from now; `None`: the function's timeout alone bounds it.
    pub deadline: Option<Duration>,
}

/// Why a call failed at the front.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrontError {
    /// Over its account's concurrency or rate limit: refused before any work.
    #[error(transparent)]
    Limited(#[from] LimitError),
    /// The chain failed.
    #[error(transparent)]
    Invoke(#[from] InvokeError),
    /// The task that ran the chain ended without an answer (a bug: it panicked).
    #[error("the invocation task failed: {0}")]
    Crashed(String),
}

/// What became of one call.
#[derive(Debug)]
pub struct Answered {
    pub request_id: String,
    pub result: Result<Invoked, FrontError>,
    /// What routing did (empty for a call refused before routing).
    pub note: RouteNote,
    /// Server-side time from the call's start until its answer.
    pub latency: Duration,
}

/// What follows a synchronous call once it ran (the chains of `api::chains`), told from the
/// call's own task, so a caller that stops waiting does not stop it.
pub trait AfterCall: Send + Sync + std::fmt::Debug + 'static {
    /// `function` (as called) of `account` ran under `request_id` and ended with `result`.
    fn after_sync(
        &self,
        function: &str,
        account: &str,
        request_id: &str,
        result: &Result<Invoked, InvokeError>,
    );
}

/// The shared front: the router, the metrics and every account's limits. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Front {
    router: Arc<LiveRouter>,
    metrics: Arc<Metrics>,
    limits: Arc<Limits>,
    clock: SystemClock,
    after: Arc<OnceLock<Arc<dyn AfterCall>>>,
}

impl Front {
    pub fn new(router: Arc<LiveRouter>, metrics: Arc<Metrics>, limits: Arc<Limits>) -> Front {
        Front {
            router,
            metrics,
            limits,
            clock: SystemClock::new(),
            after: Arc::default(),
        }
    }

    /// Sets what follows a synchronous call (once; a second call is ignored).
    pub fn set_after_call(&self, after: Arc<dyn AfterCall>) {
        let _ = self.after.set(after);
    }

    /// The router calls go through (its invoker holds the registry).
    pub fn router(&self) -> &Arc<LiveRouter> {
        &self.router
    }

    /// The metrics every call is recorded in.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The largest event accepted, in bytes (`--max-event-bytes`).
    pub fn max_event_bytes(&self) -> usize {
        self.router.invoker().max_event_bytes()
    }

    /// Takes a slot of `account`, or says which limit refuses it.
    pub fn admit(&self, account: &str) -> Result<Permit, LimitError> {
        self.limits
            .admit(account, self.clock.monotonic_nanos())
            .inspect_err(|e| tracing::debug!(error = %e, "invocation refused"))
    }

    /// Admits `call` by its account's limits, then runs it ([`Front::run`]).
    pub async fn invoke(&self, call: Call) -> Answered {
        let started = faas_common::clock::instant();
        match self.admit(&call.account_id) {
            Ok(permit) => {
                let after = self.after.get().cloned();
                self.run_from(call, permit, started, None, after).await
            }
            Err(e) => Answered {
                request_id: uuid::Uuid::new_v4().to_string(),
                result: Err(FrontError::Limited(e)),
                note: RouteNote::default(),
                latency: started.elapsed(),
            },
        }
    }

    /// Runs a call already admitted; `permit` is held until the chain ends, even when the
    /// caller stops waiting first.
    pub async fn run(&self, call: Call, permit: Permit) -> Answered {
        self.run_as(call, permit, None).await
    }

    /// [`Front::run`] with the request id `request_id` when given (a chain's later step
    /// carries its first call's), else a new one.
    pub async fn run_as(&self, call: Call, permit: Permit, request_id: Option<String>) -> Answered {
        self.run_from(
            call,
            permit,
            faas_common::clock::instant(),
            request_id,
            None,
        )
        .await
    }

    async fn run_from(
        &self,
        call: Call,
        permit: Permit,
        started: Instant,
        request_id: Option<String>,
        after: Option<Arc<dyn AfterCall>>,
    ) -> Answered {
        let request_id = request_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let span = tracing::info_span!(
            "invoke",
            request_id = %request_id,
            function = %clip(&call.function_name)
        );
        let called = after
            .as_ref()
            .map(|_| (call.function_name.clone(), call.account_id.clone()));
        let chain = chain(
            self.router.clone(),
            self.metrics.clone(),
            call,
            request_id.clone(),
            started,
        );
        let id = request_id.clone();
        let task = tokio::spawn(
            async move {
                let done = chain.await;
                drop(permit);
                if let (Some(after), Some((function, account))) = (after, called) {
                    after.after_sync(&function, &account, &id, &done.0);
                }
                done
            }
            .instrument(span),
        );
        match task.await {
            Ok((result, note)) => Answered {
                request_id,
                result: result.map_err(FrontError::Invoke),
                note,
                latency: started.elapsed(),
            },
            Err(e) => Answered {
                request_id,
                result: Err(FrontError::Crashed(e.to_string())),
                note: RouteNote::default(),
                latency: started.elapsed(),
            },
        }
    }
}

/// Routes and runs one admitted call, and records it.
async fn chain(
    router: Arc<LiveRouter>,
    metrics: Arc<Metrics>,
    call: Call,
    request_id: String,
    started: Instant,
) -> (Result<Invoked, InvokeError>, RouteNote) {
    let _in_flight = metrics.start();
    let function_name = call.function_name.clone();
    let Routed { result, note } = router
        .invoke(
            InvokeRequest {
                request_id,
                account_id: call.account_id,
                function_name: call.function_name,
                event: call.event,
                deadline: call.deadline,
            },
            &call.route,
        )
        .await;
    let latency = started.elapsed();
    record(&metrics, &function_name, &result, &note, latency);
    (result, note)
}

/// The metrics and the log lines of a finished chain.
fn record(
    metrics: &Metrics,
    function_name: &str,
    result: &Result<Invoked, InvokeError>,
    note: &RouteNote,
    latency: Duration,
) {
    metrics.routed(note, result.is_ok());
    for (target, t) in &note.transitions {
        tracing::warn!(target = %target, from = %t.from, to = %t.to, reason = %t.reason, "circuit breaker");
    }
    match result {
        Ok(Invoked {
            retried_after: Some(because),
            ..
        })
        | Err(InvokeError::Retried { because, .. }) => metrics.retried(because, result.is_ok()),
        _ => {}
    }
    match result {
        Ok(done) => {
            metrics.finished(function_name, "ok", latency);
            metrics.acquired(
                function_name,
                Duration::from_nanos(done.acquire_nanos),
                done.placement.cold_start,
            );
            tracing::debug!(
                container_id = %done.placement.container_id,
                node_id = %done.placement.node_id,
                duration_ns = done.duration_nanos,
                latency_ms = latency.as_millis() as u64,
                "invocation succeeded"
            );
        }
        Err(err) => {
            let label = if err.function_known() {
                function_name
            } else {
                UNKNOWN_FUNCTION
            };
            metrics.finished(label, err.outcome(), latency);
            match err.outcome() {
                "invalid_argument" | "not_found" | "function_error" | "timeout"
                | "out_of_memory" | "bad_event" => {
                    tracing::info!(error = %err, "invocation failed")
                }
                _ => tracing::warn!(error = %err, "invocation failed"),
            }
        }
    }
}
