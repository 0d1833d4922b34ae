//! The durable queue's delivery: a worker pool that takes due calls from the
//! [`InvocationStore`] and runs them through the [`Front`], as synchronous calls run.
//!
//! # The guarantee: at least once
//!
//! A submit is answered only after the call is committed to the store (SQLite with
//! `synchronous=FULL`: on disk; NATS JetStream: acknowledged by its server, see
//! `store::jetstream` for that store's terms and for several API servers). A call is marked `running` (in a committed transaction) before its attempt
//! starts, and its outcome is committed after the attempt ends. When the API server starts,
//! every call it finds `running` is queued again and delivered again ([`InvocationStore::recover`]).
//! So every accepted call is delivered at least once, even across `kill -9`; a call is
//! delivered twice exactly when the server died between the start of an attempt and the
//! commit of its outcome — including after the function succeeded but before that success
//! was recorded. Functions called asynchronously should tolerate a repeated event.
//!
//! # The pool
//!
//! One dispatcher task takes due calls, oldest due first, while fewer than
//! `--async-concurrency` run in all and fewer than `--async-function-concurrency` run for
//! the call's function (`NAME` with its versions and aliases); the calls of a function at
//! its limit are not even read, so they never hold up another function's. A call whose
//! account is over its limits stays queued for the next round. Each attempt runs in a task of its own; when it ends:
//!
//! - success, or a failure that is the call's (`core::retry::retryable` says no, or the
//!   function itself failed, timed out or ran out of memory): the result is kept
//!   (`succeeded` / `failed`) and the callback, if any, is sent;
//! - a failure that may pass: queued again after a backoff with full jitter
//!   (`core::retry`), with the function's retry settings or the platform's
//!   (`--async-attempts`, `--async-first-delay-ms`, `--async-max-delay-ms`);
//! - the last attempt's failure: the dead-letter list, and the failure callback.
//!
//! # Callbacks
//!
//! A call may name a callback for success and one for failure: a function, invoked through
//! this same queue with the result (the JSON of `GET /invocations/ID`) as its event (so it
//! is as durable as any call), or an HTTP URL on loopback, sent the same JSON with one
//! `POST` (best effort: a refused or failed POST is logged, not retried).
//!
//! # Hooks
//!
//! [`DeliveryHooks`] (set once, `api::chains`) give an attempt its request id (a chain's
//! step runs under the first call's) and are told of a call that ended for good before that
//! end is recorded (a chain queues its next step there, idempotently).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use rand::Rng;
use tokio::sync::Notify;

use crate::api::front::{Answered, Call, Front, FrontError};
use crate::api::gateway::deferred::invocation_json;
use crate::api::invocations::{SubmitError, code_name};
use crate::api::metrics::UNKNOWN_FUNCTION;
use crate::core::retry::{Next, RetryPolicy, after_failure, retryable};
use crate::error::front_status;
use crate::service::InvokeError;
use crate::service::async_calls::{
    Callback, Invocation, InvocationStore, NewCall, Outcome, Pending, QueueStats, State, Submitted,
};
use crate::service::routing::RouteContext;

/// How long the dispatcher sleeps at most before it looks at the queue again, ms (calls due
/// later wake it at their time; a submit or an ended attempt wakes it at once).
const POLL_MS: u64 = 1_000;
/// How soon a call left queued by a limit (its function's, its account's) is looked at again.
const BUSY_POLL_MS: u64 = 20;

/// Wall-clock ms since the Unix epoch, as the store counts.
pub fn now_ms() -> u64 {
    u64::try_from(faas_common::clock::now_ms()).unwrap_or(0)
}

/// The pool's settings.
#[derive(Clone, Copy, Debug)]
pub struct RunnerSettings {
    /// Attempts running at once, in all (0 counts as 1).
    pub concurrency: usize,
    /// Attempts running at once per function (0 counts as 1).
    pub per_function: usize,
    /// For messages: how long a finished call is kept.
    pub retention_ms: u64,
    /// Retry settings of a function without its own.
    pub retry: RetryPolicy,
}

#[derive(Debug, Default)]
struct InFlight {
    total: usize,
    by_function: HashMap<String, usize>,
}

#[derive(Debug)]
struct Inner {
    front: Front,
    store: Arc<dyn InvocationStore>,
    settings: RunnerSettings,
    wake: Notify,
    stopped: AtomicBool,
    in_flight: Mutex<InFlight>,
    hooks: OnceLock<Arc<dyn DeliveryHooks>>,
}

/// What else happens around a delivery (the chains of `api::chains`): the request id an
/// attempt runs with, and what follows a call that ended for good (succeeded, failed,
/// dead-lettered), run before that end is recorded, so a server that dies in between runs
/// it again (with the same idempotency key) when it delivers the call again.
#[tonic::async_trait]
pub trait DeliveryHooks: Send + Sync + std::fmt::Debug + 'static {
    /// The request id the call `p` runs with; `None`: a new one.
    async fn request_id(&self, p: &Pending) -> Option<String>;
    /// The call `p` ended as `state` with `outcome`.
    async fn ended(&self, runner: &AsyncRunner, p: &Pending, outcome: &Outcome, state: State);
}

/// Keeps asynchronous calls in the durable store and delivers them. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AsyncRunner {
    inner: Arc<Inner>,
}

/// A runner that does not keep it alive (what a hook the runner holds keeps, so the two do
/// not hold each other forever).
#[derive(Clone, Debug)]
pub struct WeakRunner(std::sync::Weak<Inner>);

impl WeakRunner {
    /// The runner, while it exists.
    pub fn upgrade(&self) -> Option<AsyncRunner> {
        self.0.upgrade().map(|inner| AsyncRunner { inner })
    }
}

/// What a submit carries besides the call.
#[derive(Clone, Debug, Default)]
pub struct Extras {
    pub idempotency_key: Option<String>,
    pub on_success: Option<Callback>,
    pub on_failure: Option<Callback>,
}

impl AsyncRunner {
    /// A pool over `store`; nothing is delivered until [`AsyncRunner::start`].
    pub fn new(
        front: Front,
        store: Arc<dyn InvocationStore>,
        settings: RunnerSettings,
    ) -> AsyncRunner {
        AsyncRunner {
            inner: Arc::new(Inner {
                front,
                store,
                settings,
                wake: Notify::new(),
                stopped: AtomicBool::new(false),
                in_flight: Mutex::new(InFlight::default()),
                hooks: OnceLock::new(),
            }),
        }
    }

    /// A handle that does not keep the runner alive.
    pub fn downgrade(&self) -> WeakRunner {
        WeakRunner(Arc::downgrade(&self.inner))
    }

    /// Sets the delivery hooks (once; a second call is ignored). They must not hold the
    /// runner (a [`WeakRunner`] at most): the runner holds them.
    pub fn set_hooks(&self, hooks: Arc<dyn DeliveryHooks>) {
        let _ = self.inner.hooks.set(hooks);
    }

    /// The front calls run through.
    pub fn front(&self) -> &Front {
        &self.inner.front
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn InvocationStore> {
        &self.inner.store
    }

    /// Queues again what a stopped server left running, then delivers in the background
    /// until [`AsyncRunner::close`].
    pub fn start(&self) {
        tokio::spawn(self.clone().dispatch());
        tokio::spawn(self.clone().observe());
    }

    /// Sets the queue's gauges from the store every second until closed.
    async fn observe(self) {
        while !self.inner.stopped.load(Ordering::SeqCst) {
            let mut stats = self.stats().await;
            for s in &mut stats {
                s.function = self.metric_label(&s.function);
            }
            self.inner.front.metrics().queue.observe(&stats, now_ms());
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Stops taking calls; attempts running go on (a call whose outcome is not recorded
    /// before the process ends is delivered again by the next server).
    pub fn close(&self) {
        self.inner.stopped.store(true, Ordering::SeqCst);
        self.inner.wake.notify_one();
    }

    fn in_flight(&self) -> MutexGuard<'_, InFlight> {
        self.inner
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the store off the runtime's workers (each call may wait for an `fsync`).
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn InvocationStore) -> T + Send + 'static,
    ) -> T {
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .expect("a queue operation does not panic")
    }

    /// Checks `call` and keeps it, answering its invocation id once it is on disk; it is
    /// delivered in the background.
    pub async fn submit(&self, call: Call, extras: Extras) -> Result<Submitted, SubmitError> {
        let mut done = self.submit_all(vec![(call, extras)]).await?;
        Ok(done.remove(0))
    }

    /// Checks every call and keeps them all in one transaction where the store allows (all
    /// or none, [`InvocationStore::submit_all`]); their ids in order.
    pub async fn submit_all(
        &self,
        calls: Vec<(Call, Extras)>,
    ) -> Result<Vec<Submitted>, SubmitError> {
        let mut kept = Vec::with_capacity(calls.len());
        for (call, extras) in calls {
            kept.push((uuid::Uuid::new_v4().to_string(), self.check(call, extras)?));
        }
        let functions: Vec<String> = kept.iter().map(|(_, c)| c.function_name.clone()).collect();
        let submitted = self
            .blocking(move |s| s.submit_all(&kept, now_ms()))
            .await?;
        for (done, function) in submitted.iter().zip(&functions) {
            if done.new {
                let label = self.metric_label(function);
                self.inner.front.metrics().queue.submitted(&label);
                self.inner.wake.notify_one();
            }
        }
        Ok(submitted)
    }

    /// A call checked as a synchronous one would be, as the store keeps it.
    fn check(&self, call: Call, extras: Extras) -> Result<NewCall, SubmitError> {
        let front = &self.inner.front;
        let bad = if call.function_name.is_empty() {
            Some(InvokeError::MissingFunctionName)
        } else if call.account_id.is_empty() {
            Some(InvokeError::MissingAccount)
        } else if call.event.len() > front.max_event_bytes() {
            Some(InvokeError::EventTooLarge {
                size: call.event.len(),
                limit: front.max_event_bytes(),
            })
        } else {
            None
        };
        if let Some(e) = bad {
            return Err(FrontError::Invoke(e).into());
        }
        // The account's limits refuse a submit as they refuse a call (the slot is taken
        // again when the call is delivered).
        drop(front.admit(&call.account_id).map_err(FrontError::Limited)?);
        let new = NewCall {
            function_name: call.function_name,
            account_id: call.account_id,
            event: call.event,
            route_id: call.route.route_id,
            routing_key: call.route.routing_key,
            route_params: call.route.params,
            idempotency_key: extras.idempotency_key,
            on_success: extras.on_success,
            on_failure: extras.on_failure,
        };
        Ok(new)
    }

    /// The call `id`, while it is kept.
    pub async fn get(&self, id: &str) -> Option<Invocation> {
        let id = id.to_string();
        self.blocking(move |s| s.get(&id, now_ms())).await
    }

    /// The dead letters of `function`.
    pub async fn dead_letters(&self, function: &str) -> Vec<Invocation> {
        let f = function.to_string();
        self.blocking(move |s| s.dead_letters(&f)).await
    }

    /// Queues the dead letters `ids` of `function` again (all when empty).
    pub async fn redrive(&self, function: &str, ids: Vec<String>) -> Vec<String> {
        let f = function.to_string();
        let done = self.blocking(move |s| s.redrive(&f, &ids, now_ms())).await;
        self.inner.wake.notify_one();
        done
    }

    /// The queue's figures per function.
    pub async fn stats(&self) -> Vec<QueueStats> {
        self.blocking(|s| s.stats()).await
    }

    /// The retry settings calls of `function` get (its own, or the platform's).
    pub async fn retry_policy(&self, function: &str) -> RetryPolicy {
        let base = base_name(function).to_string();
        self.blocking(move |s| s.retry_policy(&base))
            .await
            .unwrap_or(self.inner.settings.retry)
    }

    /// The metrics' label of `function`: its plain name when it is deployed, else `-` (a
    /// client cannot grow the label set with made-up names).
    fn metric_label(&self, function: &str) -> String {
        let base = base_name(function);
        let registry = self.inner.front.router().invoker().registry();
        if registry.get(base).is_ok() {
            base.to_string()
        } else {
            UNKNOWN_FUNCTION.to_string()
        }
    }

    /// The platform's retry settings.
    pub fn default_retry(&self) -> RetryPolicy {
        self.inner.settings.retry
    }

    /// What a reader of an unknown or forgotten id is told.
    pub fn not_found(&self, id: &str) -> String {
        format!(
            "no asynchronous invocation {:?} here: it was never submitted to this server, or it finished more than {} ms ago (--async-retention-ms) and was forgotten",
            faas_common::text::clip(id),
            self.inner.settings.retention_ms
        )
    }

    async fn dispatch(self) {
        match self.blocking(|s| s.recover(now_ms())).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                calls = n,
                "asynchronous calls left running by the previous server are delivered again (at least once)"
            ),
            Err(e) => {
                tracing::error!(error = %e, "the asynchronous queue could not recover running calls")
            }
        }
        let settings = self.inner.settings;
        let total = settings.concurrency.max(1);
        let per_function = settings.per_function.max(1);
        while !self.inner.stopped.load(Ordering::SeqCst) {
            let now = now_ms();
            let room = total.saturating_sub(self.in_flight().total);
            let mut left_behind = false;
            if room > 0 {
                let busy: Vec<String> = self
                    .in_flight()
                    .by_function
                    .iter()
                    .filter(|(_, n)| **n >= per_function)
                    .map(|(f, _)| f.clone())
                    .collect();
                let due = self.blocking(move |s| s.due(now, room, &busy)).await;
                for p in due {
                    let function = base_name(&p.call.function_name).to_string();
                    {
                        let flight = self.in_flight();
                        if flight.total >= total {
                            left_behind = true;
                            break;
                        }
                        if flight.by_function.get(&function).copied().unwrap_or(0) >= per_function {
                            left_behind = true;
                            continue;
                        }
                    }
                    let Ok(permit) = self.inner.front.admit(&p.call.account_id) else {
                        left_behind = true;
                        continue;
                    };
                    let id = p.id.clone();
                    if !self.blocking(move |s| s.start(&id, now_ms())).await {
                        continue;
                    }
                    {
                        let mut flight = self.in_flight();
                        flight.total += 1;
                        *flight.by_function.entry(function).or_default() += 1;
                    }
                    tokio::spawn(self.clone().deliver(p, permit));
                }
            } else {
                left_behind = true;
            }
            let next = self.blocking(|s| s.next_due_ms()).await;
            let now = now_ms();
            let wait = match next {
                _ if left_behind => BUSY_POLL_MS,
                Some(due) if due > now => (due - now).min(POLL_MS),
                Some(_) => 0,
                None => POLL_MS,
            };
            if wait > 0 {
                tokio::select! {
                    () = self.inner.wake.notified() => {}
                    () = tokio::time::sleep(Duration::from_millis(wait)) => {}
                }
            }
        }
    }

    async fn deliver(self, p: Pending, permit: crate::service::limits::Permit) {
        let call = Call {
            account_id: p.call.account_id.clone(),
            function_name: p.call.function_name.clone(),
            event: p.call.event.clone(),
            route: RouteContext {
                route_id: p.call.route_id.clone(),
                params: p.call.route_params.clone(),
                routing_key: p.call.routing_key.clone(),
            },
            deadline: None,
        };
        let hooks = self.inner.hooks.get().cloned();
        let request_id = match &hooks {
            Some(h) => h.request_id(&p).await,
            None => None,
        };
        let (outcome, may_pass) = outcome(self.inner.front.run_as(call, permit, request_id).await);
        let attempt = p.attempts + 1;
        let metrics = self.inner.front.metrics().clone();
        let function = p.call.function_name.clone();
        let label = self.metric_label(&function);
        metrics.queue.delivered(&label);
        let next = match &outcome.result {
            Ok(_) => None,
            Err(_) => {
                let policy = self.retry_policy(&function).await;
                let unit: f64 = rand::rng().random();
                Some(after_failure(&policy, attempt, may_pass, now_ms(), unit))
            }
        };
        let id = p.id.clone();
        let callback = match next {
            None => p.call.on_success.clone(),
            Some(Next::Fail) | Some(Next::DeadLetter) => p.call.on_failure.clone(),
            Some(Next::RetryAt(_)) => None,
        };
        let ended = match next {
            None => Some(State::Succeeded),
            Some(Next::Fail) => Some(State::Failed),
            Some(Next::DeadLetter) => Some(State::Dead),
            Some(Next::RetryAt(_)) => None,
        };
        if let (Some(hooks), Some(state)) = (&hooks, ended) {
            hooks.ended(&self, &p, &outcome, state).await;
        }
        let kept = outcome.clone();
        self.blocking(move |s| {
            let now = now_ms();
            match next {
                None | Some(Next::Fail) => s.finish(&id, kept, now),
                Some(Next::RetryAt(due)) => s.retry(&id, kept, due, now),
                Some(Next::DeadLetter) => s.dead_letter(&id, kept, now),
            }
        })
        .await;
        match next {
            Some(Next::RetryAt(due)) => {
                metrics.queue.retried(&label);
                tracing::info!(id = %p.id, function = %function, attempt, due_in_ms = due.saturating_sub(now_ms()), "asynchronous call failed; retrying");
            }
            Some(Next::DeadLetter) => {
                metrics.queue.dead_lettered(&label);
                tracing::warn!(id = %p.id, function = %function, attempt, "asynchronous call failed its last attempt: dead-lettered");
            }
            _ => {}
        }
        {
            let mut flight = self.in_flight();
            flight.total -= 1;
            let base = base_name(&function);
            if let Some(n) = flight.by_function.get_mut(base) {
                *n -= 1;
                if *n == 0 {
                    flight.by_function.remove(base);
                }
            }
        }
        self.inner.wake.notify_one();
        if let Some(callback) = callback {
            self.call_back(&p, callback).await;
        }
    }

    /// Sends the callback of the finished call `p`.
    async fn call_back(&self, p: &Pending, callback: Callback) {
        let id = p.id.clone();
        let Some(done) = self.blocking(move |s| s.get(&id, now_ms())).await else {
            return;
        };
        let body = invocation_json(&done).to_string().into_bytes();
        match callback {
            Callback::Function(name) => {
                let call = Call {
                    account_id: p.call.account_id.clone(),
                    function_name: name.clone(),
                    event: body,
                    ..Call::default()
                };
                if let Err(e) = self.submit(call, Extras::default()).await {
                    tracing::warn!(id = %p.id, callback = %name, error = %e, "the callback function could not be queued");
                }
            }
            Callback::Url(url) => {
                if let Err(e) = crate::api::callback::post(&url, &body).await {
                    tracing::warn!(id = %p.id, url = %url, error = %e, "the callback URL failed");
                }
            }
        }
    }
}

/// `NAME` of `NAME`, `NAME:N`, `NAME:ALIAS`.
pub fn base_name(function: &str) -> &str {
    function.split(':').next().unwrap_or(function)
}

/// An answered call as the store keeps it (the error as `InvokeFunction`'s code and
/// message), and whether its failure may pass: a code [`retryable`] says may, unless the
/// failure is the function's own (it failed, timed out, ran out of memory, could not read
/// the event: running it again would do the same).
fn outcome(answered: Answered) -> (Outcome, bool) {
    let note = answered.note;
    let mut may_pass = false;
    let (cold_start, result) = match answered.result {
        Ok(done) => (done.placement.cold_start.unwrap_or(false), Ok(done.body)),
        Err(e) => {
            let code = code_name(front_status(&e).code());
            let functions_own = matches!(
                &e,
                FrontError::Invoke(
                    InvokeError::FunctionFailed { .. }
                        | InvokeError::Timeout { .. }
                        | InvokeError::OutOfMemory { .. }
                        | InvokeError::BadEvent { .. }
                )
            );
            may_pass = retryable(code) && !functions_own;
            (false, Err((code.to_string(), e.to_string())))
        }
    };
    let outcome = Outcome {
        request_id: answered.request_id,
        version: note.version.unwrap_or_default(),
        target: note.target.unwrap_or_default(),
        cold_start,
        result,
    };
    (outcome, may_pass)
}
