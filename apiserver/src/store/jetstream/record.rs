//! A call as the `faas_async_calls` bucket keeps it (JSON; the event and the result in
//! base64), and the keys of the other two buckets.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::service::async_calls::{Invocation, NewCall, Outcome, Pending, State};
use crate::store::sqlite::queue::callback_of;

/// A call as the bucket keeps it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Record {
    pub(super) id: String,
    pub(super) function: String,
    pub(super) account: String,
    /// base64.
    pub(super) event: String,
    pub(super) route_id: Option<String>,
    pub(super) routing_key: Option<String>,
    pub(super) route_params: Vec<(String, String)>,
    pub(super) idempotency_key: Option<String>,
    pub(super) on_success: Option<String>,
    pub(super) on_failure: Option<String>,
    pub(super) state: String,
    pub(super) attempts: u32,
    pub(super) due_ms: u64,
    pub(super) submitted_at_ms: u64,
    pub(super) started_at_ms: u64,
    pub(super) finished_at_ms: u64,
    /// What the call holds against `--async-max-bytes`: its event until it finished, then
    /// its result.
    pub(super) bytes: u64,
    pub(super) outcome: Option<Saved>,
}

/// An attempt's outcome as the bucket keeps it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Saved {
    pub(super) request_id: String,
    pub(super) version: String,
    pub(super) target: String,
    pub(super) cold_start: bool,
    /// base64, on success.
    pub(super) body: Option<String>,
    pub(super) error_code: String,
    pub(super) error_message: String,
}

impl Record {
    pub(super) fn state(&self) -> State {
        State::parse(&self.state).unwrap_or(State::Failed)
    }

    pub(super) fn expired(&self, now_ms: u64, retention_ms: u64) -> bool {
        self.state().finished() && self.finished_at_ms <= now_ms.saturating_sub(retention_ms)
    }

    pub(super) fn invocation(&self) -> Invocation {
        Invocation {
            id: self.id.clone(),
            function_name: self.function.clone(),
            state: self.state(),
            submitted_at_ms: self.submitted_at_ms,
            started_at_ms: self.started_at_ms,
            finished_at_ms: self.finished_at_ms,
            attempts: self.attempts,
            outcome: self.outcome.as_ref().map(|s| Outcome {
                request_id: s.request_id.clone(),
                version: s.version.clone(),
                target: s.target.clone(),
                cold_start: s.cold_start,
                result: match &s.body {
                    Some(b) if s.error_code.is_empty() => Ok(B64.decode(b).unwrap_or_default()),
                    _ => Err((s.error_code.clone(), s.error_message.clone())),
                },
            }),
        }
    }

    pub(super) fn pending(&self) -> Pending {
        Pending {
            id: self.id.clone(),
            call: NewCall {
                function_name: self.function.clone(),
                account_id: self.account.clone(),
                event: B64.decode(&self.event).unwrap_or_default(),
                route_id: self.route_id.clone(),
                routing_key: self.routing_key.clone(),
                route_params: self.route_params.clone(),
                idempotency_key: self.idempotency_key.clone(),
                on_success: callback_of(self.on_success.clone()),
                on_failure: callback_of(self.on_failure.clone()),
            },
            attempts: self.attempts,
            submitted_at_ms: self.submitted_at_ms,
        }
    }

    /// Records an attempt's outcome and moves the call to `state`.
    pub(super) fn record(&mut self, state: State, outcome: &Outcome, due_ms: u64, now_ms: u64) {
        let (body, code, message) = match &outcome.result {
            Ok(body) => (Some(B64.encode(body)), String::new(), String::new()),
            Err((code, message)) => (None, code.clone(), message.clone()),
        };
        self.state = state.as_str().to_string();
        self.due_ms = due_ms;
        self.finished_at_ms = if state == State::Queued { 0 } else { now_ms };
        self.outcome = Some(Saved {
            request_id: outcome.request_id.clone(),
            version: outcome.version.clone(),
            target: outcome.target.clone(),
            cold_start: outcome.cold_start,
            body,
            error_code: code,
            error_message: message,
        });
    }
}

/// The calls this server knows, with the revision of each it last read or wrote.
pub(super) type Mirror = HashMap<String, (Record, u64)>;

/// A change of a call that the bucket's watch saw: its id, revision and value (`None`:
/// deleted).
pub(super) type Seen = (String, u64, Option<Record>);

/// The `faas_async_keys` key of an idempotency key.
pub(super) fn key_hash(call: &NewCall, key: &str) -> String {
    let mut h = Sha256::new();
    for part in [&call.function_name, &call.account_id, key] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    format!("{:x}", h.finalize())
}

/// A function name as a bucket key (keys allow few characters): its hex.
pub(super) fn settings_key(function: &str) -> String {
    function.bytes().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn encode(record: &Record) -> Vec<u8> {
    serde_json::to_vec(record).expect("a record is JSON")
}
