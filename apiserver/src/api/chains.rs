//! Chains at delivery: what the [`EventHub`] does as the runner's [`DeliveryHooks`].
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
//! Only asynchronous calls (`InvokeAsync`, `/async-function`, an emit's deliveries, chain
//! steps) follow chains; a synchronous `InvokeFunction` does not (its caller has the result).

use crate::api::async_runner::{AsyncRunner, DeliveryHooks, Extras, base_name, now_ms};
use crate::api::events::EventHub;
use crate::api::front::Call;
use crate::api::gateway::deferred::invocation_json;
use crate::service::async_calls::{Invocation, Outcome, Pending, State};
use crate::service::events::On;

/// The idempotency key of the step after the call `id`.
fn step_key(id: &str) -> String {
    format!("chain:{id}")
}

#[tonic::async_trait]
impl DeliveryHooks for EventHub {
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
        let name = function.clone();
        let links = self.blocking(move |s| s.chain(&name)).await;
        let on = if state == State::Succeeded {
            On::Success
        } else {
            On::Failure
        };
        let Some(target) = links.get(on).map(str::to_string) else {
            return;
        };
        if self
            .runner
            .front()
            .router()
            .invoker()
            .registry()
            .get(&target)
            .is_err()
        {
            tracing::warn!(function = %function, target = %target, "the chain's target is not deployed: step skipped");
            return;
        }
        let event = match (on, &outcome.result) {
            (On::Success, Ok(body)) => body.clone(),
            _ => {
                let done = Invocation {
                    id: p.id.clone(),
                    function_name: p.call.function_name.clone(),
                    state,
                    submitted_at_ms: p.submitted_at_ms,
                    started_at_ms: 0,
                    finished_at_ms: now_ms(),
                    attempts: p.attempts + 1,
                    outcome: Some(outcome.clone()),
                };
                invocation_json(&done).to_string().into_bytes()
            }
        };
        let key = step_key(&p.id);
        let (k, request_id) = (key.clone(), outcome.request_id.clone());
        self.blocking(move |s| s.remember_step(&k, &request_id, now_ms()))
            .await;
        let call = Call {
            account_id: p.call.account_id.clone(),
            function_name: target.clone(),
            event,
            ..Call::default()
        };
        let extras = Extras {
            idempotency_key: Some(key.clone()),
            ..Extras::default()
        };
        match runner.submit(call, extras).await {
            Ok(step) => {
                if step.new {
                    runner
                        .front()
                        .metrics()
                        .events
                        .chain_step(&function, on.as_str());
                }
                tracing::info!(id = %p.id, function = %function, on = on.as_str(), target = %target, step = %step.id, request_id = %outcome.request_id, "chain step submitted");
            }
            Err(e) => {
                self.blocking(move |s| s.forget_step(&key)).await;
                tracing::warn!(id = %p.id, function = %function, target = %target, error = %e, "the chain's next step could not be queued");
            }
        }
    }
}
