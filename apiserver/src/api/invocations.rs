//! Asynchronous invocations: the runner that executes them through the [`Front`], and the
//! gRPC service `faas.invoke.v1.Invocations` that submits and reads them.
//!
//! A submit is checked at once — a function name, an account, an event within
//! `--max-event-bytes`, the account's limits, room in the store — and refused with the
//! status `InvokeFunction` would give (`RESOURCE_EXHAUSTED` for a full store, naming the
//! flag that raises it). An accepted call holds its account's slot from then on, and waits
//! its turn: at most `--async-concurrency` run at once, the rest stay queued. Everything
//! else (an unknown function, the function's own failure) is the call's result, read with
//! `GetInvocation` (or `GET /invocations/ID`) until `--async-retention-ms` after it ended.
//!
//! Results live in memory ([`MemoryInvocations`](crate::service::async_calls::MemoryInvocations)): a stopped server forgets them, and calls
//! still queued when it stops fail with `UNAVAILABLE`. The store is reached only through
//! [`InvocationStore`], the seam a durable store will fill.

use std::sync::Arc;

use faas_proto::invoke::invocations_server::Invocations;
use faas_proto::invoke::{
    GetInvocationReply, GetInvocationRequest, InvokeAsyncReply, InvokeAsyncRequest,
};
use faas_proto::meta;
use tokio::sync::Semaphore;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::{Code, Request, Response, Status};

use crate::api::front::{Answered, Call, Front, FrontError};
use crate::api::routing::route_context;
use crate::error::front_status;
pub use crate::error::submit_status;
use crate::service::InvokeError;
use crate::service::async_calls::{AsyncError, Invocation, InvocationStore, Outcome};
use crate::service::limits::Permit;
use crate::service::routing::RouteContext;

/// Why a submit was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// As the synchronous call would have been refused (a bad request, the account's limits).
    #[error(transparent)]
    Front(Box<FrontError>),
    /// The store has no room.
    #[error(transparent)]
    Full(#[from] AsyncError),
}

impl From<FrontError> for SubmitError {
    fn from(e: FrontError) -> SubmitError {
        SubmitError::Front(Box::new(e))
    }
}

/// Wall-clock ms since the Unix epoch, as the store counts.
fn now_ms() -> u64 {
    u64::try_from(faas_common::clock::now_ms()).unwrap_or(0)
}

/// Runs asynchronous calls in the background. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AsyncRunner {
    front: Front,
    store: Arc<dyn InvocationStore>,
    slots: Arc<Semaphore>,
    retention_ms: u64,
}

impl AsyncRunner {
    /// Runs at most `concurrency` calls at once (0 counts as 1), keeping them in `store`,
    /// whose retention is `retention_ms` (for messages).
    pub fn new(
        front: Front,
        store: Arc<dyn InvocationStore>,
        concurrency: usize,
        retention_ms: u64,
    ) -> AsyncRunner {
        AsyncRunner {
            front,
            store,
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            retention_ms,
        }
    }

    /// The front calls run through.
    pub fn front(&self) -> &Front {
        &self.front
    }

    /// Calls still queued fail instead of running (the server stops).
    pub fn close(&self) {
        self.slots.close();
    }

    /// Checks and keeps `call`, answering its invocation id; it runs in the background.
    pub fn submit(&self, call: Call) -> Result<String, SubmitError> {
        let bad = if call.function_name.is_empty() {
            Some(InvokeError::MissingFunctionName)
        } else if call.account_id.is_empty() {
            Some(InvokeError::MissingAccount)
        } else if call.event.len() > self.front.max_event_bytes() {
            Some(InvokeError::EventTooLarge {
                size: call.event.len(),
                limit: self.front.max_event_bytes(),
            })
        } else {
            None
        };
        if let Some(e) = bad {
            return Err(FrontError::Invoke(e).into());
        }
        let permit = self
            .front
            .admit(&call.account_id)
            .map_err(FrontError::Limited)?;
        let id = uuid::Uuid::new_v4().to_string();
        self.store
            .submit(&id, &call.function_name, call.event.len() as u64, now_ms())?;
        tokio::spawn(self.clone().run(id.clone(), call, permit));
        Ok(id)
    }

    async fn run(self, id: String, call: Call, permit: Permit) {
        let Ok(_slot) = self.slots.clone().acquire_owned().await else {
            let outcome = Outcome {
                result: Err((
                    code_name(Code::Unavailable).to_string(),
                    "the API server stopped before the call ran; submit it again".to_string(),
                )),
                ..Outcome::default()
            };
            self.store.finish(&id, outcome, now_ms());
            return;
        };
        self.store.start(&id, now_ms());
        let answered = self.front.run(call, permit).await;
        self.store.finish(&id, outcome(answered), now_ms());
    }

    /// The call `id`, while it is kept.
    pub fn get(&self, id: &str) -> Option<Invocation> {
        self.store.get(id, now_ms())
    }

    /// What a reader of an unknown or forgotten id is told.
    pub fn not_found(&self, id: &str) -> String {
        format!(
            "no asynchronous invocation {:?} here: it was never submitted to this server, or it finished more than {} ms ago (--async-retention-ms) and was forgotten",
            faas_common::text::clip(id),
            self.retention_ms
        )
    }
}

/// An answered call as the store keeps it: the error as `InvokeFunction`'s code and message.
fn outcome(answered: Answered) -> Outcome {
    let note = answered.note;
    let (cold_start, result) = match answered.result {
        Ok(done) => (done.placement.cold_start.unwrap_or(false), Ok(done.body)),
        Err(e) => {
            let status = front_status(&e);
            (
                false,
                Err((code_name(status.code()).to_string(), e.to_string())),
            )
        }
    };
    Outcome {
        request_id: answered.request_id,
        version: note.version.unwrap_or_default(),
        target: note.target.unwrap_or_default(),
        cold_start,
        result,
    }
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
        let call = Call {
            account_id: req.account_id,
            function_name: req.function_name,
            event: req.event,
            route,
            deadline: None,
        };
        let invocation_id = self.runner.submit(call).map_err(|e| submit_status(&e))?;
        Ok(Response::new(InvokeAsyncReply { invocation_id }))
    }

    async fn get_invocation(
        &self,
        request: Request<GetInvocationRequest>,
    ) -> Result<Response<GetInvocationReply>, Status> {
        let id = request.into_inner().invocation_id;
        let call = self
            .runner
            .get(&id)
            .ok_or_else(|| Status::not_found(self.runner.not_found(&id)))?;
        Ok(Response::new(invocation_reply(call)))
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
