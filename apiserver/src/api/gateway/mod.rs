//! The HTTP gateway: the platform's functions over plain HTTP/1.1, in the conventions of
//! the OpenFaaS gateway, so `curl`, `hey` and `wrk` can call them (`docs/GATEWAY.md`).
//!
//! | route | what | key scope |
//! |---|---|---|
//! | `POST`/`GET /function/NAME[:QUALIFIER]` | invoke; the reply's body is the function's ([`invoke`]) | invoke |
//! | `POST /async-function/NAME[:QUALIFIER]` | 202 with the invocation id ([`deferred`]) | invoke |
//! | `POST /topics/TOPIC` | 202 with the calls an emit submitted ([`topics`]) | invoke |
//! | `GET /invocations/ID` | an asynchronous call's state and result | invoke |
//! | `GET /functions` | the deployed functions, as JSON ([`info`]) | invoke |
//! | `GET /metrics` | the Prometheus figures (the `--metrics-port` registry) | admin |
//! | `GET /healthz` | `ok` | none |
//! | `GET /ui` | the live dashboard's page ([`ui`]) | none (it holds no data) |
//! | `GET /ui/events`, `GET /ui/state` | the dashboard's data: pushed events, one state | admin |
//!
//! Every call goes through the same [`Front`] as gRPC's `InvokeFunction` (limits, routing,
//! the chain, metrics); keys are checked with the same [`Access`] rules as the gRPC API
//! (`Authorization: Bearer KEY`). Errors are JSON `{"error": {"code", "message"}}` with the
//! status of [`status`]; an unknown path is 404 and a known one with another method 405,
//! both in that form.

pub mod deferred;
pub mod info;
pub mod invoke;
pub mod status;
pub mod topics;
pub mod ui;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use faas_common::shutdown::Shutdown;
use http_body_util::BodyExt;
use tokio::net::TcpListener;

use crate::api::front::Front;
use crate::api::invocations::AsyncRunner;
use crate::model::keys::Scope;
use crate::service::access::{Access, AccessError};

pub use status::HttpError;

/// The account a call without `x-faas-account` is counted under: the `faas` command's
/// default account (`faas invoke --account`), so both share one account's limits.
pub const DEFAULT_ACCOUNT: &str = "faas-cli";
/// The request header naming the account whose limits a call counts against.
pub const ACCOUNT_HEADER: &str = "x-faas-account";
/// The request header giving the call a deadline, in ms.
pub const TIMEOUT_HEADER: &str = "x-faas-timeout-ms";
/// The reply header with the call's request id.
pub const REQUEST_ID_HEADER: &str = "x-faas-request-id";
/// The reply header with the function's own duration, fractional ms.
pub const DURATION_MS_HEADER: &str = "x-faas-duration-ms";
/// The reply header of `/async-function` with the invocation id.
pub const INVOCATION_ID_HEADER: &str = "x-faas-invocation-id";

/// What every handler shares.
#[derive(Clone, Debug)]
pub struct Gateway {
    pub runner: AsyncRunner,
    pub access: Arc<Access>,
    /// The dashboard's sources (`/ui`); none: its data routes answer 503.
    pub ui: Option<Arc<ui::Ui>>,
    /// Topics (`/topics/TOPIC`); none: 503.
    pub events: Option<crate::api::events::EventHub>,
}

impl Gateway {
    pub fn new(runner: AsyncRunner, access: Arc<Access>) -> Gateway {
        Gateway {
            runner,
            access,
            ui: None,
            events: None,
        }
    }

    /// The same gateway serving topics.
    pub fn with_events(mut self, events: crate::api::events::EventHub) -> Gateway {
        self.events = Some(events);
        self
    }

    /// The same gateway with the dashboard's sources.
    pub fn with_ui(mut self, ui: ui::Ui) -> Gateway {
        self.ui = Some(Arc::new(ui));
        self
    }

    /// The front every call goes through.
    pub fn front(&self) -> &Front {
        self.runner.front()
    }

    /// Whether the caller's `Authorization` header lets it make a call needing `needed`.
    pub fn authorize(&self, headers: &HeaderMap, needed: Scope) -> Result<(), HttpError> {
        if !self.access.checks() {
            return Ok(());
        }
        let value = match headers.get(header::AUTHORIZATION) {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .map_err(|_| access_error(&AccessError::Malformed))?,
            ),
        };
        self.access.check(value, needed).map(drop).map_err(|e| {
            tracing::debug!(needed = %needed, error = %e, "http call refused");
            access_error(&e)
        })
    }
}

/// 401 (with `WWW-Authenticate: Bearer`) for a missing or unknown key, 403 for a key whose
/// scope does not cover the call.
pub fn access_error(err: &AccessError) -> HttpError {
    match err {
        AccessError::Scope { .. } => {
            HttpError::new(StatusCode::FORBIDDEN, "permission_denied", err.to_string())
        }
        AccessError::Malformed => HttpError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "the Authorization header must be `Bearer KEY`",
        ),
        AccessError::Missing | AccessError::MissingAdmin | AccessError::Unknown => HttpError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            format!("{err}; over HTTP send it as the header `Authorization: Bearer KEY`"),
        ),
    }
}

/// A JSON reply.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response {
    let mut response = (status, value.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// An error response; a 401 also says how to authenticate.
pub fn error_response(err: HttpError) -> Response {
    let unauthorized = err.status == StatusCode::UNAUTHORIZED;
    let mut response = err.into_response();
    if unauthorized {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// The name (or id) in a path, percent-decoded; a segment that is not UTF-8 is a 400.
pub fn path_text(
    path: Result<axum::extract::Path<String>, PathRejection>,
) -> Result<String, HttpError> {
    path.map(|p| p.0).map_err(|e| {
        HttpError::bad_request(format!(
            "the path segment cannot be read ({}): percent-encode UTF-8 text",
            faas_common::text::clip(&e.body_text())
        ))
    })
}

/// The request body, at most `limit` bytes: a larger `Content-Length` is refused before
/// anything is read, and a body that grows past it while read (chunked) is refused then.
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Vec<u8>, HttpError> {
    let too_large = |size: String| {
        HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("event is {size} bytes, over the limit of {limit} bytes (--max-event-bytes)"),
        )
    };
    if let Some(length) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && length > limit as u64
    {
        return Err(too_large(length.to_string()));
    }
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(too_large(format!("more than {limit}")))
        }
        Err(e) => Err(HttpError::bad_request(format!(
            "the request body could not be read: {e}"
        ))),
    }
}

async fn not_found() -> Response {
    error_response(HttpError::not_found(
        "no such path: the gateway serves /function/NAME, /async-function/NAME, /topics/TOPIC, /invocations/ID, /functions, /metrics, /healthz and /ui",
    ))
}

async fn method_not_allowed() -> Response {
    error_response(HttpError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this path does not take that method: POST (or GET) /function/NAME, POST /async-function/NAME and /topics/TOPIC, GET for the others",
    ))
}

/// The gateway's routes.
pub fn router(gateway: Gateway) -> Router {
    Router::new()
        .route("/healthz", get(info::healthz))
        .route("/metrics", get(info::metrics))
        .route("/functions", get(info::functions))
        .route("/function/{name}", post(invoke::invoke).get(invoke::invoke))
        .route("/async-function/{name}", post(deferred::submit))
        .route("/invocations/{id}", get(deferred::status))
        .route("/topics/{topic}", post(topics::emit))
        .route("/ui", get(ui::index))
        .route("/ui/", get(ui::index))
        .route("/ui/app.js", get(ui::app_js))
        .route("/ui/app.css", get(ui::app_css))
        .route("/ui/events", get(ui::events))
        .route("/ui/state", get(ui::one_state))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(Arc::new(gateway))
}

/// Serves the gateway on `listener` until `shutdown` fires; calls in flight finish first.
pub async fn serve(
    listener: TcpListener,
    gateway: Gateway,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router(gateway))
        .with_graceful_shutdown(shutdown.wait())
        .await
}
