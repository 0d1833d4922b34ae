//! Asynchronous invocations over HTTP.
//!
//! - `POST /async-function/NAME[:QUALIFIER]` (the same request headers as `/function`, but
//!   no deadline: the function's timeout bounds it): checked, kept, and answered at once
//!   with `202 Accepted`, the header `x-faas-invocation-id`, `Location: /invocations/ID`
//!   and the JSON `{"invocation_id": "...", "status_url": "/invocations/ID"}`. A full store
//!   is 429 with `Retry-After`. Headers `Idempotency-Key`, `X-Faas-On-Success`,
//!   `X-Faas-On-Failure` (or OpenFaaS's `X-Callback-Url` for both) as the gRPC fields.
//! - `GET /invocations/ID`: the call as JSON (see [`invocation_json`]); 404 with a JSON error
//!   for an id never given or forgotten after `--async-retention-ms`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine;

use crate::api::gateway::invoke::{call_of, header_text, put};
use crate::api::gateway::status::submit_error;
use crate::api::gateway::{
    Gateway, HttpError, INVOCATION_ID_HEADER, error_response, json, path_text, read_body,
};
use crate::api::invocations::extras_of;
use crate::model::keys::Scope;
use crate::service::async_calls::Invocation;

/// A repeated submit with the same key (function, account) answers the first call's id.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// Where the result goes on success / on failure: a function name or a loopback URL.
pub const ON_SUCCESS_HEADER: &str = "x-faas-on-success";
pub const ON_FAILURE_HEADER: &str = "x-faas-on-failure";
/// OpenFaaS's callback header: both, unless one of the above is given.
pub const CALLBACK_URL_HEADER: &str = "x-callback-url";

/// `POST /async-function/NAME`.
pub async fn submit(
    State(gateway): State<Arc<Gateway>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let accepted = async {
        gateway.authorize(&headers, Scope::Invoke)?;
        let name = path_text(path)?;
        let event = read_body(&headers, body, gateway.front().max_event_bytes()).await?;
        let mut call = call_of(&headers, name, event)?;
        call.deadline = None;
        let text = |name: &str| header_text(&headers, name).map(|v| v.unwrap_or("").to_string());
        let callback = text(CALLBACK_URL_HEADER)?;
        let either = |own: String| {
            if own.is_empty() {
                callback.clone()
            } else {
                own
            }
        };
        let extras = extras_of(
            &text(IDEMPOTENCY_KEY_HEADER)?,
            &either(text(ON_SUCCESS_HEADER)?),
            &either(text(ON_FAILURE_HEADER)?),
        )
        .map_err(|e| submit_error(&e))?;
        gateway
            .runner
            .submit(call, extras)
            .await
            .map(|s| s.id)
            .map_err(|e| submit_error(&e))
    }
    .await;
    match accepted {
        Ok(id) => {
            let url = format!("/invocations/{id}");
            let mut response = json(
                StatusCode::ACCEPTED,
                &serde_json::json!({ "invocation_id": id, "status_url": url }),
            );
            put(response.headers_mut(), INVOCATION_ID_HEADER, &id);
            if let Ok(v) = HeaderValue::from_str(&url) {
                response.headers_mut().insert(header::LOCATION, v);
            }
            response
        }
        Err(e) => error_response(e),
    }
}

/// `GET /invocations/ID`.
pub async fn status(
    State(gateway): State<Arc<Gateway>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let found = async {
        gateway.authorize(&headers, Scope::Invoke)?;
        let id = path_text(path)?;
        gateway
            .runner
            .get(&id)
            .await
            .ok_or_else(|| HttpError::not_found(gateway.runner.not_found(&id)))
    }
    .await;
    match found {
        Ok(call) => json(StatusCode::OK, &invocation_json(&call)),
        Err(e) => error_response(e),
    }
}

/// A kept call as JSON: `invocation_id`, `function_name`, `state` (`queued`, `running`,
/// `succeeded`, `failed`), `submitted_at_ms`, `started_at_ms`, `finished_at_ms` (ms since the
/// Unix epoch, 0 not yet), and once finished `request_id`, `version`, `target`, `cold_start`
/// and either the reply — `body` as a string when it is UTF-8, else `body_base64` (standard
/// base64) — or `error` `{code, message}` (the gRPC code `InvokeFunction` would answer).
pub fn invocation_json(call: &Invocation) -> serde_json::Value {
    let mut out = serde_json::json!({
        "invocation_id": call.id,
        "function_name": call.function_name,
        "state": call.state.as_str(),
        "submitted_at_ms": call.submitted_at_ms,
        "started_at_ms": call.started_at_ms,
        "finished_at_ms": call.finished_at_ms,
    });
    if let Some(o) = &call.outcome {
        out["request_id"] = o.request_id.clone().into();
        out["version"] = o.version.clone().into();
        out["target"] = o.target.clone().into();
        out["cold_start"] = o.cold_start.into();
        match &o.result {
            Ok(body) => match std::str::from_utf8(body) {
                Ok(text) => out["body"] = text.into(),
                Err(_) => {
                    out["body_base64"] = base64::engine::general_purpose::STANDARD
                        .encode(body)
                        .into()
                }
            },
            Err((code, message)) => {
                out["error"] = serde_json::json!({ "code": code, "message": message })
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::async_calls::{Outcome, State as CallState};

    fn call(result: Result<Vec<u8>, (String, String)>) -> Invocation {
        Invocation {
            id: "i".into(),
            function_name: "f".into(),
            state: CallState::Succeeded,
            submitted_at_ms: 1,
            started_at_ms: 2,
            finished_at_ms: 3,
            attempts: 1,
            outcome: Some(Outcome {
                request_id: "r".into(),
                version: "latest".into(),
                target: "f".into(),
                cold_start: true,
                result,
            }),
        }
    }

    #[test]
    fn a_text_body_is_a_string_and_bytes_are_base64() {
        let v = invocation_json(&call(Ok(b"hi".to_vec())));
        assert_eq!(v["body"], "hi");
        assert_eq!(v["state"], "succeeded");
        assert_eq!(v["finished_at_ms"], 3);
        assert!(v.get("body_base64").is_none());
        let v = invocation_json(&call(Ok(vec![0xff, 0])));
        assert_eq!(v["body_base64"], "/wA=");
        assert!(v.get("body").is_none());
        let v = invocation_json(&call(Err(("NOT_FOUND".into(), "gone".into()))));
        assert_eq!(v["error"]["code"], "NOT_FOUND");
        assert_eq!(v["error"]["message"], "gone");
    }
}
