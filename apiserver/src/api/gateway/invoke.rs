//! `POST /function/NAME[:QUALIFIER]` (and `GET`, with an empty event): one synchronous
//! invocation. The body is the event; a 200's body is the function's reply.
//!
//! Request headers: `Authorization: Bearer KEY`; `x-faas-account` (the account whose limits
//! the call counts against, default [`DEFAULT_ACCOUNT`]); `x-faas-timeout-ms` (a deadline);
//! the routing headers `x-faas-route-id`, `x-faas-route` (repeatable, `key=value`) and
//! `x-faas-routing-key`, read exactly as the gRPC metadata of `InvokeFunction`.
//!
//! Reply headers: `x-faas-request-id`, `x-faas-cold-start`, `x-faas-duration-ms` (the
//! function's own duration, fractional), `x-faas-acquire-ms`, `x-faas-node-id`,
//! `x-faas-container-id`, `x-faas-max-memory-bytes`, and what served it: `x-faas-version`,
//! `x-faas-target`, `x-faas-fallback`. An error carries the request id and the routing
//! headers too.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use faas_proto::meta;
use tonic::metadata::MetadataMap;

use crate::api::front::Call;
use crate::api::gateway::status::front_error;
use crate::api::gateway::{
    ACCOUNT_HEADER, DEFAULT_ACCOUNT, DURATION_MS_HEADER, Gateway, HttpError, REQUEST_ID_HEADER,
    TIMEOUT_HEADER, error_response, path_text, read_body,
};
use crate::api::routing::route_context;
use crate::api::server::{acquire_ms, route_headers};
use crate::model::keys::Scope;
use crate::service::Invoked;

/// Adds `name: value` to `headers` when the value can be a header value.
pub fn put(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), value);
    }
}

/// The headers of a successful call.
fn reply_headers(headers: &mut HeaderMap, done: &Invoked) {
    let cold = done.placement.cold_start.unwrap_or(false);
    put(
        headers,
        meta::COLD_START,
        if cold { "true" } else { "false" },
    );
    let duration_ms = format!("{:.3}", done.duration_nanos as f64 / 1e6);
    put(headers, DURATION_MS_HEADER, &duration_ms);
    put(headers, meta::ACQUIRE_MS, &acquire_ms(done));
    put(headers, meta::NODE_ID, &done.placement.node_id);
    put(headers, meta::CONTAINER_ID, &done.placement.container_id);
    put(
        headers,
        meta::MAX_MEMORY_BYTES,
        &done.max_memory_bytes.to_string(),
    );
}

/// A header as text, if sent; one that is not visible ASCII is a 400 naming it.
pub fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, HttpError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str().map_err(|_| {
                HttpError::bad_request(format!("header {name} must be printable ASCII"))
            })
        })
        .transpose()
}

/// The call a request asks for: its account, deadline and routing, with `event`.
pub fn call_of(headers: &HeaderMap, name: String, event: Vec<u8>) -> Result<Call, HttpError> {
    let account_id = header_text(headers, ACCOUNT_HEADER)?
        .filter(|a| !a.is_empty())
        .unwrap_or(DEFAULT_ACCOUNT)
        .to_string();
    let deadline = header_text(headers, TIMEOUT_HEADER)?
        .map(|t| {
            t.trim()
                .parse::<u64>()
                .ok()
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis)
                .ok_or_else(|| {
                    HttpError::bad_request(format!(
                        "header {TIMEOUT_HEADER} must be a whole number of milliseconds above 0, not {:?}",
                        faas_common::text::clip(t)
                    ))
                })
        })
        .transpose()?;
    let route = route_context(&MetadataMap::from_headers(headers.clone()))
        .map_err(HttpError::bad_request)?;
    Ok(Call {
        account_id,
        function_name: name,
        event,
        route,
        deadline,
    })
}

/// `POST /function/NAME`.
pub async fn invoke(
    State(gateway): State<Arc<Gateway>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match run(&gateway, path, headers, body).await {
        Ok(response) => response,
        Err(e) => error_response(e),
    }
}

async fn run(
    gateway: &Gateway,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, HttpError> {
    gateway.authorize(&headers, Scope::Invoke)?;
    let name = path_text(path)?;
    let event = read_body(&headers, body, gateway.front().max_event_bytes()).await?;
    let call = call_of(&headers, name, event)?;
    // The deadline bounds the acquire inside the chain; the caller also stops waiting at it,
    // as a gRPC client does at its deadline. The chain runs on in its own task, so its
    // container is still returned when it ends.
    let answered = match call.deadline {
        Some(deadline) => tokio::time::timeout(deadline, gateway.front().invoke(call))
            .await
            .map_err(|_| {
                HttpError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "timeout",
                    format!(
                        "no answer within the {} ms of {TIMEOUT_HEADER}; the call may still run to its end (raise the header or leave it out to wait for the function's own timeout)",
                        deadline.as_millis()
                    ),
                )
            })?,
        None => gateway.front().invoke(call).await,
    };
    let mut response = match answered.result {
        Ok(mut done) => {
            let mut response = (StatusCode::OK, std::mem::take(&mut done.body)).into_response();
            reply_headers(response.headers_mut(), &done);
            response
        }
        Err(e) => error_response(front_error(&e)),
    };
    let out = response.headers_mut();
    put(out, REQUEST_ID_HEADER, &answered.request_id);
    for (key, value) in route_headers(&answered.note) {
        put(out, key, &value);
    }
    Ok(response)
}
