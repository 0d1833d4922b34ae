//! One invocation of a live run, synchronous or through the durable queue (`faas replay
//! --async`).
//!
//! - **Synchronous**: `InvokeFunction`; the record's response time is what the client
//!   measured, its scheduling latency and duration come from the reply's metadata.
//! - **Asynchronous**: `InvokeAsync` (written to the queue before it is answered), then
//!   `GetInvocation` until the call has finished, polling every 5 ms at first and backing off
//!   to [`MAX_POLL_MS`]. The record is then the call as the API server saw it: its response
//!   time and RT are the last attempt's (started to finished, server clock), and beside it the
//!   **end-to-end delay**, submit to result (`submitted_at_ms` to `finished_at_ms`, server
//!   clock, so the polling does not blur it). A call that failed for good or became a dead
//!   letter is an error named by its code. The poll interval only decides when the driver
//!   learns of the result, not what it records.

use std::time::Duration;

use faas_proto::invoke::{GetInvocationRequest, InvokeAsyncRequest};

use super::client::{PlatformClient, describe};
use crate::record::RequestRecord;

/// The longest wait between two `GetInvocation` polls, ms.
pub const MAX_POLL_MS: u64 = 200;

/// What one invocation produced: its record and, for an asynchronous call that finished,
/// its end-to-end delay (submit to result), ms.
pub struct Called {
    pub record: RequestRecord,
    pub end_to_end_ms: Option<f64>,
}

/// One call of `name` with `event`, as the module documentation says; `sent_ms` is its send
/// time from the start of the run; gives up after `timeout` (async: from submit to result).
pub async fn call(
    api: &PlatformClient,
    account: &str,
    name: &str,
    event: Vec<u8>,
    timeout: Duration,
    asynchronous: bool,
    sent_ms: u64,
) -> Called {
    let sent = faas_common::clock::tokio_instant();
    if !asynchronous {
        let result = api.invoke_within(account, name, event, timeout).await;
        let response_ms = sent.elapsed().as_secs_f64() * 1000.0;
        let record = match result {
            Ok(reply) => {
                let duration_ms = reply.duration_ns.map_or(0.0, |d| d as f64 / 1e6);
                RequestRecord {
                    function: name.to_string(),
                    at_ms: sent_ms,
                    response_ms,
                    scheduling_ms: reply
                        .acquire_ms
                        .unwrap_or((response_ms - duration_ms).max(0.0)),
                    duration_ms,
                    cold: reply.cold.unwrap_or(false),
                    error: None,
                    node_id: reply.node_id,
                    container_id: reply.container_id,
                }
            }
            Err(status) => failed(name, sent_ms, response_ms, describe(&status)),
        };
        return Called {
            record,
            end_to_end_ms: None,
        };
    }
    let deadline = sent + timeout;
    let mut invocations = api.invocations();
    let submit = InvokeAsyncRequest {
        function_name: name.to_string(),
        account_id: account.to_string(),
        event,
        ..Default::default()
    };
    let id = match tokio::time::timeout(timeout, invocations.invoke_async(submit)).await {
        Ok(Ok(reply)) => reply.into_inner().invocation_id,
        Ok(Err(status)) => {
            let ms = sent.elapsed().as_secs_f64() * 1000.0;
            return not_finished(name, sent_ms, ms, describe(&status));
        }
        Err(_) => {
            let ms = sent.elapsed().as_secs_f64() * 1000.0;
            return not_finished(name, sent_ms, ms, "Client: the submit timed out".into());
        }
    };
    let mut poll_ms = 5;
    loop {
        tokio::time::sleep(Duration::from_millis(poll_ms)).await;
        poll_ms = (poll_ms * 2).min(MAX_POLL_MS);
        let asked = invocations.get_invocation(GetInvocationRequest {
            invocation_id: id.clone(),
        });
        let reply = match tokio::time::timeout_at(deadline, asked).await {
            Ok(Ok(reply)) => reply.into_inner(),
            // A restarting API server answers UNAVAILABLE for a while: ask again.
            Ok(Err(status)) if status.code() == tonic::Code::Unavailable => continue,
            Ok(Err(status)) => {
                let ms = sent.elapsed().as_secs_f64() * 1000.0;
                return not_finished(name, sent_ms, ms, describe(&status));
            }
            Err(_) => break,
        };
        if !matches!(reply.state.as_str(), "succeeded" | "failed" | "dead") {
            if faas_common::clock::tokio_instant() >= deadline {
                break;
            }
            continue;
        }
        let attempt_ms = (reply.finished_at_ms - reply.started_at_ms).max(0) as f64;
        let end_to_end_ms = (reply.finished_at_ms - reply.submitted_at_ms).max(0) as f64;
        let error = match reply.state.as_str() {
            "succeeded" => None,
            "dead" => Some(format!(
                "DeadLetter: {}: {}",
                reply.error_code, reply.error_message
            )),
            _ => Some(format!("{}: {}", reply.error_code, reply.error_message)),
        };
        return Called {
            record: RequestRecord {
                function: name.to_string(),
                at_ms: sent_ms,
                response_ms: attempt_ms,
                scheduling_ms: 0.0,
                duration_ms: attempt_ms,
                cold: reply.cold_start,
                error,
                node_id: None,
                container_id: None,
            },
            end_to_end_ms: Some(end_to_end_ms),
        };
    }
    let ms = sent.elapsed().as_secs_f64() * 1000.0;
    not_finished(
        name,
        sent_ms,
        ms,
        format!("Client: invocation {id} not finished within {timeout:?} of its submit"),
    )
}

fn not_finished(name: &str, sent_ms: u64, ms: f64, error: String) -> Called {
    Called {
        record: failed(name, sent_ms, ms, error),
        end_to_end_ms: None,
    }
}

/// A failed request's record.
pub fn failed(function: &str, at_ms: u64, response_ms: f64, error: String) -> RequestRecord {
    RequestRecord {
        function: function.to_string(),
        at_ms,
        response_ms,
        scheduling_ms: response_ms,
        duration_ms: 0.0,
        cold: false,
        error: Some(error),
        node_id: None,
        container_id: None,
    }
}
