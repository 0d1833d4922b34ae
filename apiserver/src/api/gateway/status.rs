//! The HTTP status of every error the gateway answers, chosen from the error itself (the
//! variant, never its text), and the JSON body it is sent with:
//! `{"error": {"code": "...", "message": "..."}}`.
//!
//! | error | status | code |
//! |---|---|---|
//! | unknown function (also the scheduler's `NOT_FOUND`) | 404 | `not_found` |
//! | no name, no account, an event the function cannot read | 400 | `bad_request` |
//! | an event over `--max-event-bytes` | 413 | `payload_too_large` |
//! | the account over its concurrency or rate limit | 429 + `Retry-After` | `rate_limited` |
//! | no capacity (the scheduler's `RESOURCE_EXHAUSTED`), a full async store | 429 + `Retry-After` | `no_capacity` |
//! | the function failed or ran out of memory | 502 | `function_error` |
//! | the function's timeout, the caller's deadline, a node that did not answer | 504 | `timeout` |
//! | a node or container that failed and was not replaced, a function that cannot be created | 503 | `unavailable` |
//! | anything else (this server's own fault) | 500 | `internal` |
//!
//! A retry or a fallback that failed too is answered as its last attempt.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::api::front::FrontError;
use crate::api::invocations::SubmitError;
use crate::model::RemoteCode;
use crate::service::InvokeError;
use crate::service::async_calls::AsyncError;
use crate::service::limits::LimitError;

/// What the gateway answers for an error: status, code, `Retry-After` (seconds), message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpError {
    pub status: StatusCode,
    pub code: &'static str,
    pub retry_after_s: Option<u64>,
    pub message: String,
}

impl HttpError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> HttpError {
        HttpError {
            status,
            code,
            retry_after_s: None,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn bad_request(message: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    fn retry_after(mut self, seconds: u64) -> HttpError {
        self.retry_after_s = Some(seconds.max(1));
        self
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": { "code": self.code, "message": self.message }
        });
        let mut response = super::json(self.status, &body);
        if let Some(s) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}

/// The status, code and `Retry-After` of a failed chain.
fn invoke_kind(err: &InvokeError) -> (StatusCode, &'static str, Option<u64>) {
    const BAD: (StatusCode, &str, Option<u64>) = (StatusCode::BAD_REQUEST, "bad_request", None);
    const FUNCTION: (StatusCode, &str, Option<u64>) =
        (StatusCode::BAD_GATEWAY, "function_error", None);
    const TIMEOUT: (StatusCode, &str, Option<u64>) = (StatusCode::GATEWAY_TIMEOUT, "timeout", None);
    const UNAVAILABLE: (StatusCode, &str, Option<u64>) =
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable", None);
    const INTERNAL: (StatusCode, &str, Option<u64>) =
        (StatusCode::INTERNAL_SERVER_ERROR, "internal", None);
    match err {
        InvokeError::MissingFunctionName
        | InvokeError::MissingAccount
        | InvokeError::BadEvent { .. } => BAD,
        InvokeError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found", None),
        InvokeError::EventTooLarge { .. } => {
            (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", None)
        }
        InvokeError::Acquire { code, .. } => match code {
            RemoteCode::NotFound => (StatusCode::NOT_FOUND, "not_found", None),
            RemoteCode::ResourceExhausted => {
                (StatusCode::TOO_MANY_REQUESTS, "no_capacity", Some(1))
            }
            RemoteCode::DeadlineExceeded | RemoteCode::Cancelled => TIMEOUT,
            RemoteCode::Unavailable | RemoteCode::FailedPrecondition => UNAVAILABLE,
            _ => INTERNAL,
        },
        InvokeError::FunctionFailed { .. } | InvokeError::OutOfMemory { .. } => FUNCTION,
        InvokeError::Timeout { .. } | InvokeError::NodeNoAnswer { .. } => TIMEOUT,
        InvokeError::NodeUnreachable { .. }
        | InvokeError::ContainerUnusable { .. }
        | InvokeError::ContainerExited { .. }
        | InvokeError::NodeBroken { .. } => UNAVAILABLE,
        InvokeError::Node { code, .. } => match code {
            RemoteCode::FailedPrecondition | RemoteCode::Unavailable => UNAVAILABLE,
            RemoteCode::DeadlineExceeded | RemoteCode::Cancelled => TIMEOUT,
            RemoteCode::NotFound => UNAVAILABLE,
            _ => INTERNAL,
        },
        InvokeError::Retried { last, .. } | InvokeError::FallbackFailed { last, .. } => {
            invoke_kind(last)
        }
    }
}

/// A refusal by the account's limits: 429, retry when the limit allows.
fn limit_error(err: &LimitError) -> HttpError {
    let seconds = match err {
        LimitError::Concurrency { .. } => 1,
        LimitError::Rate { retry_ms, .. } => retry_ms.div_ceil(1000),
    };
    HttpError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        err.to_string(),
    )
    .retry_after(seconds)
}

/// What the gateway answers for a call that failed at the front.
pub fn front_error(err: &FrontError) -> HttpError {
    match err {
        FrontError::Limited(e) => limit_error(e),
        FrontError::Invoke(e) => {
            let (status, code, retry) = invoke_kind(e);
            let mut out = HttpError::new(status, code, e.to_string());
            if let Some(s) = retry {
                out = out.retry_after(s);
            }
            out
        }
        FrontError::Crashed(_) => HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            err.to_string(),
        ),
    }
}

/// What the gateway answers for a refused asynchronous submit.
pub fn submit_error(err: &SubmitError) -> HttpError {
    match err {
        SubmitError::Front(e) => front_error(e),
        SubmitError::Full(AsyncError::Store(_)) => HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            err.to_string(),
        )
        .retry_after(1),
        SubmitError::Full(e) => {
            HttpError::new(StatusCode::TOO_MANY_REQUESTS, "no_capacity", e.to_string())
                .retry_after(1)
        }
        SubmitError::BadField(m) => HttpError::bad_request(m.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Undelivered;

    fn f() -> String {
        "f".to_string()
    }

    fn check(err: InvokeError, status: u16, code: &str, retry: Option<u64>) {
        let got = front_error(&FrontError::Invoke(err.clone()));
        assert_eq!(got.status.as_u16(), status, "{err}");
        assert_eq!(got.code, code, "{err}");
        assert_eq!(got.retry_after_s, retry, "{err}");
        assert_eq!(got.message, err.to_string());
    }

    fn acquire(code: RemoteCode) -> InvokeError {
        InvokeError::Acquire {
            function: f(),
            code,
            message: "x".into(),
        }
    }

    #[test]
    fn not_found_is_404() {
        check(InvokeError::NotFound { name: f() }, 404, "not_found", None);
        check(acquire(RemoteCode::NotFound), 404, "not_found", None);
    }

    #[test]
    fn a_bad_event_is_400() {
        let bad = InvokeError::BadEvent {
            function: f(),
            message: "not JSON".into(),
        };
        check(bad, 400, "bad_request", None);
        check(InvokeError::MissingAccount, 400, "bad_request", None);
        check(InvokeError::MissingFunctionName, 400, "bad_request", None);
    }

    #[test]
    fn an_event_over_the_limit_is_413() {
        let err = InvokeError::EventTooLarge { size: 2, limit: 1 };
        check(err, 413, "payload_too_large", None);
    }

    #[test]
    fn an_account_over_its_limits_is_429_with_retry_after() {
        let err = FrontError::Limited(LimitError::Rate {
            account: "a".into(),
            rate: 10,
            burst: 1,
            retry_ms: 1500,
            own: false,
        });
        let got = front_error(&err);
        assert_eq!(got.status.as_u16(), 429);
        assert_eq!(got.code, "rate_limited");
        assert_eq!(got.retry_after_s, Some(2));
        assert!(got.message.contains("--account-rate"), "{}", got.message);
        let err = FrontError::Limited(LimitError::Concurrency {
            account: "a".into(),
            limit: 1,
            own: false,
        });
        assert_eq!(front_error(&err).retry_after_s, Some(1));
    }

    #[test]
    fn no_capacity_is_429_with_retry_after() {
        check(
            acquire(RemoteCode::ResourceExhausted),
            429,
            "no_capacity",
            Some(1),
        );
        let full = SubmitError::Full(AsyncError::TooMany { kept: 3 });
        let got = submit_error(&full);
        assert_eq!(
            (got.status.as_u16(), got.code, got.retry_after_s),
            (429, "no_capacity", Some(1))
        );
        assert!(got.message.contains("--async-max-kept"), "{}", got.message);
    }

    #[test]
    fn a_function_error_is_502_with_its_message() {
        let err = InvokeError::FunctionFailed {
            function: f(),
            message: "division by zero".into(),
        };
        check(err, 502, "function_error", None);
        let oom = InvokeError::OutOfMemory {
            function: f(),
            memory_mib: 1,
            message: "x".into(),
        };
        check(oom, 502, "function_error", None);
    }

    #[test]
    fn a_timeout_is_504() {
        let err = InvokeError::Timeout {
            function: f(),
            timeout_ms: 1,
            message: "x".into(),
        };
        check(err, 504, "timeout", None);
        check(acquire(RemoteCode::DeadlineExceeded), 504, "timeout", None);
        let silent = InvokeError::NodeNoAnswer {
            function: f(),
            node: "n".into(),
            endpoint: "e".into(),
            deadline_ms: 1,
            message: "x".into(),
        };
        check(silent, 504, "timeout", None);
    }

    #[test]
    fn unavailable_is_503() {
        check(acquire(RemoteCode::Unavailable), 503, "unavailable", None);
        check(
            acquire(RemoteCode::FailedPrecondition),
            503,
            "unavailable",
            None,
        );
        let unusable = InvokeError::ContainerUnusable {
            function: f(),
            container: "c".into(),
            node: "n".into(),
            reason: Undelivered::WrongFunction,
            message: "x".into(),
        };
        check(unusable, 503, "unavailable", None);
        let exited = InvokeError::ContainerExited {
            function: f(),
            container: "c".into(),
            node: "n".into(),
            message: "x".into(),
        };
        check(exited, 503, "unavailable", None);
    }

    #[test]
    fn this_servers_own_fault_is_500() {
        check(acquire(RemoteCode::InvalidArgument), 500, "internal", None);
        let node = InvokeError::Node {
            function: f(),
            node: "n".into(),
            code: RemoteCode::InvalidArgument,
            message: "x".into(),
        };
        check(node, 500, "internal", None);
        let crashed = front_error(&FrontError::Crashed("panicked".into()));
        assert_eq!(crashed.status.as_u16(), 500);
    }

    #[test]
    fn a_retry_is_answered_as_its_last_attempt() {
        let err = InvokeError::Retried {
            because: "NodeUnavailable",
            first: Box::new(acquire(RemoteCode::Unavailable)),
            last: Box::new(InvokeError::NotFound { name: f() }),
        };
        check(err, 404, "not_found", None);
    }

    #[test]
    fn the_body_is_json_and_retry_after_a_header() {
        let response = front_error(&FrontError::Invoke(acquire(RemoteCode::ResourceExhausted)))
            .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    }
}
