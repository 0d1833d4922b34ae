//! `POST /topics/TOPIC`: an emit over HTTP (`api::events`): the body is the event, the
//! account the `x-faas-account` header (as `/function`), `Idempotency-Key` the emit's key.
//! Answered `202 Accepted` with the JSON
//! `{"emit_id": "...", "deliveries": [{"function", "invocation_id", "created"}]}` (each call
//! read at `/invocations/ID`); a topic nobody listens to is 202 with no delivery. A bad topic
//! name is 400, an event over `--max-event-bytes` 413, a full queue 429 (nothing accepted).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use crate::api::events::EmitError;
use crate::api::gateway::deferred::IDEMPOTENCY_KEY_HEADER;
use crate::api::gateway::invoke::{call_of, header_text};
use crate::api::gateway::status::submit_error;
use crate::api::gateway::{Gateway, HttpError, error_response, json, path_text, read_body};
use crate::model::keys::Scope;
use crate::service::events::EventsError;

fn emit_error(e: &EmitError) -> HttpError {
    match e {
        EmitError::Submit(e) => submit_error(e),
        EmitError::Events(e @ EventsError::Store(_)) => HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        ),
        EmitError::Events(e) => HttpError::bad_request(e.to_string()),
    }
}

/// `POST /topics/TOPIC`.
pub async fn emit(
    State(gateway): State<Arc<Gateway>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let done = async {
        gateway.authorize(&headers, Scope::Invoke)?;
        let topic = path_text(path)?;
        let hub = gateway.events.as_ref().ok_or_else(|| {
            HttpError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "this gateway serves no topics",
            )
        })?;
        let event = read_body(&headers, body, gateway.front().max_event_bytes()).await?;
        let call = call_of(&headers, topic.clone(), event)?;
        let key = header_text(&headers, IDEMPOTENCY_KEY_HEADER)?.unwrap_or("");
        hub.emit(&topic, call.event, call.account_id, key)
            .await
            .map_err(|e| emit_error(&e))
    }
    .await;
    match done {
        Ok(done) => {
            let deliveries: Vec<_> = done
                .deliveries
                .iter()
                .map(|(function, id, created)| {
                    serde_json::json!({"function": function, "invocation_id": id, "created": created})
                })
                .collect();
            json(
                StatusCode::ACCEPTED,
                &serde_json::json!({"emit_id": done.emit_id, "deliveries": deliveries}),
            )
        }
        Err(e) => error_response(e),
    }
}
