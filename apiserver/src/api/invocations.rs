//! `faas.invoke.v1.Invocations`: the gRPC door of asynchronous invocations (the durable
//! queue and its delivery are `api::async_runner`).
//!
//! A submit is checked at once — a function name, an account, an event within
//! `--max-event-bytes`, the account's limits, the callbacks (loopback URLs only), room in the
//! queue — and refused with the status `InvokeFunction` would give (`RESOURCE_EXHAUSTED` for
//! a full queue, naming the flag that raises it; `INVALID_ARGUMENT` naming a bad field).
//! An accepted call is on disk before its id is answered. Everything else (an unknown
//! function, the function's own failure) is the call's result, read with `GetInvocation`
//! (or `GET /invocations/ID`) until `--async-retention-ms` after it ended; a call that kept
//! failing with a failure that may pass ends on the dead-letter list (`ListDeadLetters`,
//! `Redrive`).

use faas_proto::invoke::invocations_server::Invocations;
use faas_proto::invoke::{
    GetInvocationReply, GetInvocationRequest, InvokeAsyncReply, InvokeAsyncRequest,
    ListDeadLettersReply, ListDeadLettersRequest, RedriveReply, RedriveRequest,
};
use faas_proto::meta;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::{Code, Request, Response, Status};

pub use crate::api::async_runner::AsyncRunner;
use crate::api::async_runner::Extras;
use crate::api::front::{Call, FrontError};
use crate::api::routing::route_context;
pub use crate::error::submit_status;
use crate::service::async_calls::{AsyncError, Invocation};
use crate::service::routing::RouteContext;

/// Why a submit was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// As the synchronous call would have been refused (a bad request, the account's limits).
    #[error(transparent)]
    Front(Box<FrontError>),
    /// The queue has no room, or could not store it.
    #[error(transparent)]
    Full(#[from] AsyncError),
    /// A field of the asynchronous request is bad (the message names it).
    #[error("{0}")]
    BadField(String),
}

impl From<FrontError> for SubmitError {
    fn from(e: FrontError) -> SubmitError {
        SubmitError::Front(Box::new(e))
    }
}

/// The extras of a request's fields, checked: callbacks on loopback only.
pub fn extras_of(
    idempotency_key: &str,
    on_success: &str,
    on_failure: &str,
) -> Result<Extras, SubmitError> {
    if idempotency_key.len() > 256 {
        return Err(SubmitError::BadField(format!(
            "idempotency_key: {} bytes, more than 256",
            idempotency_key.len()
        )));
    }
    Ok(Extras {
        idempotency_key: (!idempotency_key.is_empty()).then(|| idempotency_key.to_string()),
        on_success: crate::api::callback::parse("on_success", on_success)
            .map_err(SubmitError::BadField)?,
        on_failure: crate::api::callback::parse("on_failure", on_failure)
            .map_err(SubmitError::BadField)?,
    })
}

/// A gRPC code by its name in the gRPC specification (`NOT_FOUND`).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The routing of an `InvokeAsyncRequest`, checked as `InvokeFunction`'s metadata is.
pub fn route_of(req: &InvokeAsyncRequest) -> Result<RouteContext, String> {
    let mut map = MetadataMap::new();
    let value = |field: &str, text: &str| {
        let printable = text.bytes().all(|b| (0x20..0x7f).contains(&b));
        printable
            .then(|| AsciiMetadataValue::try_from(text).ok())
            .flatten()
            .ok_or_else(|| format!("{field} must be printable ASCII"))
    };
    if !req.route_id.is_empty() {
        map.insert(meta::ROUTE_ID, value("route_id", &req.route_id)?);
    }
    if !req.routing_key.is_empty() {
        map.insert(meta::ROUTING_KEY, value("routing_key", &req.routing_key)?);
    }
    let mut params: Vec<_> = req.route_params.iter().collect();
    params.sort();
    for (k, v) in params {
        map.append(
            meta::ROUTE_PARAM,
            value("route_params", &format!("{k}={v}"))?,
        );
    }
    route_context(&map)
}

/// `faas.invoke.v1.Invocations`.
#[derive(Clone, Debug)]
pub struct InvocationsService {
    runner: AsyncRunner,
}

impl InvocationsService {
    pub fn new(runner: AsyncRunner) -> InvocationsService {
        InvocationsService { runner }
    }
}

#[tonic::async_trait]
impl Invocations for InvocationsService {
    async fn invoke_async(
        &self,
        request: Request<InvokeAsyncRequest>,
    ) -> Result<Response<InvokeAsyncReply>, Status> {
        let req = request.into_inner();
        let route = route_of(&req).map_err(Status::invalid_argument)?;
        let extras = extras_of(&req.idempotency_key, &req.on_success, &req.on_failure)
            .map_err(|e| submit_status(&e))?;
        let keyed = extras.idempotency_key.is_some();
        let call = Call {
            account_id: req.account_id,
            function_name: req.function_name,
            event: req.event,
            route,
            deadline: None,
        };
        let submitted = self
            .runner
            .submit(call, extras)
            .await
            .map_err(|e| submit_status(&e))?;
        Ok(Response::new(InvokeAsyncReply {
            invocation_id: submitted.id,
            created: submitted.new || !keyed,
        }))
    }

    async fn get_invocation(
        &self,
        request: Request<GetInvocationRequest>,
    ) -> Result<Response<GetInvocationReply>, Status> {
        let id = request.into_inner().invocation_id;
        let call = self
            .runner
            .get(&id)
            .await
            .ok_or_else(|| Status::not_found(self.runner.not_found(&id)))?;
        Ok(Response::new(invocation_reply(call)))
    }

    async fn list_dead_letters(
        &self,
        request: Request<ListDeadLettersRequest>,
    ) -> Result<Response<ListDeadLettersReply>, Status> {
        let name = request.into_inner().function_name;
        if name.is_empty() {
            return Err(Status::invalid_argument("function_name is empty"));
        }
        let dead = self.runner.dead_letters(&name).await;
        Ok(Response::new(ListDeadLettersReply {
            dead_letters: dead.into_iter().map(invocation_reply).collect(),
        }))
    }

    async fn redrive(
        &self,
        request: Request<RedriveRequest>,
    ) -> Result<Response<RedriveReply>, Status> {
        let req = request.into_inner();
        if req.function_name.is_empty() {
            return Err(Status::invalid_argument("function_name is empty"));
        }
        let done = self
            .runner
            .redrive(&req.function_name, req.invocation_ids.clone())
            .await;
        if let Some(missing) = req.invocation_ids.iter().find(|id| !done.contains(id)) {
            return Err(Status::not_found(format!(
                "{:?} is not a dead letter of {:?} (faas dead-letters {} lists them); {} others were queued again",
                faas_common::text::clip(missing),
                faas_common::text::clip(&req.function_name),
                faas_common::text::clip(&req.function_name),
                done.len()
            )));
        }
        tracing::info!(function = %req.function_name, calls = done.len(), "dead letters redriven");
        Ok(Response::new(RedriveReply {
            invocation_ids: done,
        }))
    }
}

/// A kept call as `GetInvocation` answers it.
pub fn invocation_reply(call: Invocation) -> GetInvocationReply {
    let ms = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let mut reply = GetInvocationReply {
        invocation_id: call.id,
        function_name: call.function_name,
        state: call.state.as_str().to_string(),
        submitted_at_ms: ms(call.submitted_at_ms),
        started_at_ms: ms(call.started_at_ms),
        finished_at_ms: ms(call.finished_at_ms),
        attempts: call.attempts,
        ..GetInvocationReply::default()
    };
    if let Some(o) = call.outcome {
        reply.request_id = o.request_id;
        reply.version = o.version;
        reply.target = o.target;
        reply.cold_start = o.cold_start;
        match o.result {
            Ok(body) => reply.body = body,
            Err((code, message)) => {
                reply.error_code = code;
                reply.error_message = message;
            }
        }
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_fields_are_checked_as_metadata_is() {
        let mut req = InvokeAsyncRequest {
            route_id: "user-1".into(),
            routing_key: "k".into(),
            ..InvokeAsyncRequest::default()
        };
        req.route_params.insert("b".into(), "2".into());
        req.route_params.insert("a".into(), "1".into());
        let ctx = route_of(&req).unwrap();
        assert_eq!(ctx.route_id.as_deref(), Some("user-1"));
        assert_eq!(ctx.routing_key.as_deref(), Some("k"));
        assert_eq!(
            ctx.params,
            vec![("a".into(), "1".into()), ("b".into(), "2".into())]
        );
        req.route_id = "é".into();
        assert_eq!(
            route_of(&req).unwrap_err(),
            "route_id must be printable ASCII"
        );
        req.route_id = "x".repeat(300);
        assert!(route_of(&req).unwrap_err().contains("over the limit"));
        assert!(route_of(&InvokeAsyncRequest::default()).unwrap().is_empty());
    }

    #[test]
    fn codes_have_their_specification_names() {
        assert_eq!(code_name(Code::NotFound), "NOT_FOUND");
        assert_eq!(code_name(Code::DeadlineExceeded), "DEADLINE_EXCEEDED");
        assert_eq!(code_name(Code::ResourceExhausted), "RESOURCE_EXHAUSTED");
    }
}
