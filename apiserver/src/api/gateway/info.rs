//! The gateway's read-only routes: `GET /healthz` (no key: for probes), `GET /functions`
//! (scope invoke, as the contest's `ListFunctions`) and `GET /metrics` (scope admin: the
//! operator's figures of every account's traffic; a scraper that cannot send a key reads
//! `--metrics-port`, which takes none and belongs on a private network).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::api::convert::contest_function;
use crate::api::gateway::{Gateway, error_response, json};
use crate::model::Function;
use crate::model::HandlerRef;
use crate::model::keys::Scope;

/// `GET /healthz`: 200 `ok` while the server serves.
pub async fn healthz() -> &'static str {
    "ok"
}

/// What a function runs: `builtin`, `command` or `image`.
fn kind(f: &Function) -> &'static str {
    match &f.handler {
        HandlerRef::Builtin(_) => "builtin",
        HandlerRef::Bundle(b) if b.kind.image.is_some() => "image",
        HandlerRef::Bundle(_) => "command",
    }
}

/// A function as `GET /functions` lists it: the fields of the contest's `ListFunctions`
/// (`name`, `handler` — the wire handler, `hello` or `bundle:<sha256>` —, `memory_bytes`,
/// `timeout_ms`), its `kind` and `description`.
pub fn function_json(f: &Function) -> serde_json::Value {
    let c = contest_function(f);
    serde_json::json!({
        "name": c.function_name,
        "handler": c.handler,
        "kind": kind(f),
        "memory_bytes": c.memory_in_bytes,
        "timeout_ms": c.timeout_in_ms,
        "description": f.description,
    })
}

/// `GET /functions`: a JSON array, as `ListFunctions` lists them.
pub async fn functions(State(gateway): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    if let Err(e) = gateway.authorize(&headers, Scope::Invoke) {
        return error_response(e);
    }
    json(StatusCode::OK, &serde_json::Value::from(deployed(&gateway)))
}

/// The deployed functions as [`function_json`] shows them.
pub fn deployed(gateway: &Gateway) -> Vec<serde_json::Value> {
    gateway
        .front()
        .router()
        .invoker()
        .registry()
        .list()
        .iter()
        .map(|f| function_json(f))
        .collect()
}

/// `GET /metrics`: the same registry `--metrics-port` serves.
pub async fn metrics(State(gateway): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    if let Err(e) = gateway.authorize(&headers, Scope::Admin) {
        return error_response(e);
    }
    let text = faas_common::metrics::render(&gateway.front().metrics().registry());
    let mut response = (StatusCode::OK, text).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(faas_common::metrics::CONTENT_TYPE),
    );
    response
}
