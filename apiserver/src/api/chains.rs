//! Chains at delivery: [`Chains`], the runner's [`DeliveryHooks`] and the front's
//! [`AfterCall`] (made by `api::events::EventHub::chains`).
//!
//! When an asynchronous call of a function with a chain ends for good, the next step is
//! submitted to the queue before that end is recorded:
//!
//! - succeeded: `on_success`, with the call's result (its body) as the event;
//! - failed for good (the function's own failure, or a dead letter after the last retry):
//!   `on_failure`, with the invocation's JSON (as `GET /invocations/ID` shows it);
//!
//! with the account of the call and the idempotency key `chain:<invocation id>`: a server
//! that dies after the submit and before the end is recorded delivers the call again, and
//! the repeated submit answers the first step instead of queueing a second (while the first
//! is kept, `--async-retention-ms`). So a step is submitted at least once and queued once.
//!
//! # One request id for the whole chain
//!
//! Before the submit, the hub records the step's key with the request id the ended call ran
//! with (`chain_steps`); when the runner starts the step, [`DeliveryHooks::request_id`]
//! answers it, and the step runs with it ([`crate::api::front::Front::run_as`]). The first
//! call's request id so flows down every step, and one trace (`x-request-id` on every hop)
//! shows the whole chain. The record goes when the step finishes.
//!
//! # Synchronous calls
//!
//! A synchronous call (`InvokeFunction`, `/function/NAME`) of a chained function follows its
//! chain too ([`AfterCall`], told from the call's own task, after the reply is on its way):
//! the step is queued with the key `chain:<request id>` and runs under that request id; a
//! failure's event is `{"request_id", "function_name", "state": "failed", "error": {"code",
//! "message"}}` (there is no invocation to show). A call refused before it ran (its
//! account's limits) follows nothing. A synchronous call has no retries, so its first failure
//! is its last. Which functions may have a chain is kept in memory, so a call of any other
//! function costs nothing here.

use std::collections::HashSet;
use std::sync::{Arc, PoisonError, RwLock};

use crate::api::async_runner::{AsyncRunner, DeliveryHooks, Extras, WeakRunner, base_name, now_ms};
use crate::api::events::on_store;
use crate::api::front::{AfterCall, Call};
use crate::api::gateway::deferred::invocation_json;
use crate::api::invocations::code_name;
use crate::error::invoke_status;
use crate::service::async_calls::{Invocation, Outcome, Pending, State};
use crate::service::events::{EventStore, On};
use crate::service::{InvokeError, Invoked};

/// What follows calls of chained functions (made by `EventHub::chains`): the runner's
/// [`DeliveryHooks`] and the front's [`AfterCall`].
#[derive(Clone, Debug)]
pub struct Chains {
    pub(crate) store: Arc<dyn EventStore>,
    /// The functions that may have a chain (shared with the hub, which adds to it).
    pub(crate) chained: Arc<RwLock<HashSet<String>>>,
    /// Weak: the runner holds these hooks.
    pub(crate) runner: WeakRunner,
}

/// The idempotency key of the step after the call `id`.
fn step_key(id: &str) -> String {
    format!("chain:{id}")
}

#[tonic::async_trait]
impl DeliveryHooks for Chains {
    async fn request_id(&self, p: &Pending) -> Option<String> {
        let key = p.call.idempotency_key.clone()?;
        if !key.starts_with("chain:") {
            return None;
        }
        self.blocking(move |s| s.step_request_id(&key)).await
    }

    async fn ended(&self, runner: &AsyncRunner, p: &Pending, outcome: &Outcome, state: State) {
        if state != State::Dead
            && let Some(key) = p.call.idempotency_key.clone()
            && key.starts_with("chain:")
        {
            self.blocking(move |s| s.forget_step(&key)).await;
        }
        let function = base_name(&p.call.function_name).to_string();
        let on = if state == State::Succeeded {
            On::Success
        } else {
            On::Failure
        };
        let Some(target) = self.target(runner, &function, on).await else {
            return;
        };
        let event = match (on, &outcome.result) {
            (On::Success, Ok(body)) => body.clone(),
            _ => {
                // As `GET /invocations/ID` will show it once the end is recorded.
                let started = runner.get(&p.id).await.map(|c| c.started_at_ms);
                let done = Invocation {
                    id: p.id.clone(),
                    function_name: p.call.function_name.clone(),
                    state,
                    submitted_at_ms: p.submitted_at_ms,
                    started_at_ms: started.unwrap_or(0),
                    finished_at_ms: now_ms(),
                    attempts: p.attempts + 1,
                    outcome: Some(outcome.clone()),
                };
                invocation_json(&done).to_string().into_bytes()
            }
        };
        let step = Step {
            function,
            on,
            target,
            account: p.call.account_id.clone(),
            event,
            key: step_key(&p.id),
            request_id: outcome.request_id.clone(),
        };
        self.submit_step(runner, step).await;
    }
}

/// One step to queue.
struct Step {
    /// The plain name of the function whose call ended, and how it ended.
    function: String,
    on: On,
    target: String,
    account: String,
    event: Vec<u8>,
    /// `chain:<invocation id or request id>`.
    key: String,
    /// The first call's.
    request_id: String,
}

impl Chains {
    /// Whether `function` (a plain name) may have a chain.
    fn may_chain(&self, function: &str) -> bool {
        self.chained
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(function)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn EventStore) -> T + Send + 'static,
    ) -> T {
        on_store(&self.store, f).await
    }

    /// The target of `function`'s chain `on`, when it has one that is deployed.
    async fn target(&self, runner: &AsyncRunner, function: &str, on: On) -> Option<String> {
        if !self.may_chain(function) {
            return None;
        }
        let name = function.to_string();
        let links = self.blocking(move |s| s.chain(&name)).await;
        let target = links.get(on)?.to_string();
        if runner
            .front()
            .router()
            .invoker()
            .registry()
            .get(&target)
            .is_err()
        {
            tracing::warn!(function, target = %target, "the chain's target is not deployed: step skipped");
            return None;
        }
        Some(target)
    }

    /// Records the step's request id, then queues it (see the module docs).
    async fn submit_step(&self, runner: &AsyncRunner, step: Step) {
        let (k, request_id) = (step.key.clone(), step.request_id.clone());
        self.blocking(move |s| s.remember_step(&k, &request_id, now_ms()))
            .await;
        let call = Call {
            account_id: step.account,
            function_name: step.target.clone(),
            event: step.event,
            ..Call::default()
        };
        let extras = Extras {
            idempotency_key: Some(step.key.clone()),
            ..Extras::default()
        };
        let (function, on, target) = (&step.function, step.on.as_str(), &step.target);
        match runner.submit(call, extras).await {
            Ok(queued) => {
                if queued.new {
                    runner.front().metrics().events.chain_step(function, on);
                }
                tracing::info!(function = %function, on, target = %target, step = %queued.id, request_id = %step.request_id, "chain step submitted");
            }
            Err(e) => {
                let key = step.key;
                self.blocking(move |s| s.forget_step(&key)).await;
                tracing::warn!(function = %function, target = %target, error = %e, "the chain's next step could not be queued");
            }
        }
    }
}

impl AfterCall for Chains {
    fn after_sync(
        &self,
        function: &str,
        account: &str,
        request_id: &str,
        result: &Result<Invoked, InvokeError>,
    ) {
        let base = base_name(function).to_string();
        if !self.may_chain(&base) {
            return;
        }
        let (on, event) = match result {
            Ok(done) => (On::Success, done.body.clone()),
            Err(e) => {
                let status = invoke_status(e);
                let json = serde_json::json!({
                    "request_id": request_id,
                    "function_name": function,
                    "state": "failed",
                    "error": {"code": code_name(status.code()), "message": status.message()},
                });
                (On::Failure, json.to_string().into_bytes())
            }
        };
        let Some(runner) = self.runner.upgrade() else {
            return;
        };
        let (chains, account, request_id) =
            (self.clone(), account.to_string(), request_id.to_string());
        tokio::spawn(async move {
            let Some(target) = chains.target(&runner, &base, on).await else {
                return;
            };
            let step = Step {
                function: base,
                on,
                target,
                account,
                event,
                key: step_key(&request_id),
                request_id,
            };
            chains.submit_step(&runner, step).await;
        });
    }
}
