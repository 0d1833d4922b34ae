//! The API server's errors and the one place they become gRPC statuses.
//!
//! [`Error`] is why the server cannot start or stopped. The errors of the service layer are
//! declared beside the rules that raise them (`service::registry`, `service::invoke`,
//! `service::access`, `service::limits`, `api::front`, `api::invocations`) and re-exported
//! here; each gets a deliberate status below, with a message a person can act on (the
//! error's own text). The HTTP gateway chooses its statuses from the same variants in
//! `api/gateway/status.rs`.

use std::path::PathBuf;

use tonic::{Code, Status};

use crate::api::convert::grpc_code;
pub use crate::api::front::FrontError;
pub use crate::api::invocations::SubmitError;
use crate::model::RemoteCode;
pub use crate::service::access::AccessError;
use crate::service::async_calls::AsyncError;
pub use crate::service::events::EventsError;
pub use crate::service::limits::LimitError;
pub use crate::service::{InvokeError, RegistryError};
use crate::store::StoreError;

/// Why the API server cannot start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the functions file {}: {reason}", path.display())]
    ReadFunctions {
        path: PathBuf,
        reason: std::io::Error,
    },
    #[error(transparent)]
    Functions(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] crate::store::keys::KeysError),
    #[error("the API server cannot start: {0}")]
    Startup(String),
    #[error("bad scheduler endpoint (--scheduler / SCHEDULER_ENDPOINT): {0}")]
    SchedulerEndpoint(faas_common::serve::ServeError),
    #[error(transparent)]
    Serve(#[from] faas_common::serve::ServeError),
    #[error("the gRPC server failed: {0}")]
    Transport(tonic::transport::Error),
}

/// The status a client sees for a registry error.
pub fn registry_status(err: &RegistryError) -> Status {
    let code = match err {
        RegistryError::NotFound { .. } | RegistryError::TargetNotFound { .. } => Code::NotFound,
        RegistryError::BadRouting { .. }
        | RegistryError::BadKind { .. }
        | RegistryError::NoKind { .. } => Code::InvalidArgument,
        // The server keeps no files, or lacks the bundle a spec names: the same call cannot
        // succeed until that changes.
        RegistryError::NeedsDataDir { .. } | RegistryError::UnknownBundle { .. } => {
            Code::FailedPrecondition
        }
        // Deleting what something still names, rolling back what never changed,
        // republishing a version with another definition.
        RegistryError::Conflict { .. } => Code::FailedPrecondition,
        RegistryError::EmptyName
        | RegistryError::NameTooLong { .. }
        | RegistryError::NameCharacter { .. }
        | RegistryError::MissingField { .. }
        | RegistryError::UnknownHandler { .. }
        | RegistryError::MemoryOutOfRange { .. }
        | RegistryError::TimeoutOutOfRange { .. }
        | RegistryError::Malformed { .. }
        | RegistryError::InFile { .. }
        | RegistryError::Duplicate { .. } => Code::InvalidArgument,
        // The database did not take the write (a full disk, a file another program holds):
        // nothing changed, and the same call can succeed once that is fixed.
        RegistryError::NotSaved { .. } => Code::Unavailable,
        // Only at start: the server does not run on a database it cannot use.
        RegistryError::Store(_) | RegistryError::Stored { .. } => Code::FailedPrecondition,
    };
    Status::new(code, err.to_string())
}

/// The status a client sees for a failed invocation.
pub fn invoke_status(err: &InvokeError) -> Status {
    Status::new(invoke_code(err), err.to_string())
}

/// The code of [`invoke_status`].
fn invoke_code(err: &InvokeError) -> Code {
    match err {
        InvokeError::MissingFunctionName
        | InvokeError::EventTooLarge { .. }
        | InvokeError::MissingAccount
        | InvokeError::BadEvent { .. } => Code::InvalidArgument,
        InvokeError::NotFound { .. } => Code::NotFound,
        InvokeError::Acquire { code, .. } => grpc_code(*code),
        InvokeError::FunctionFailed { .. } => Code::Unknown,
        InvokeError::Timeout { .. } => Code::DeadlineExceeded,
        InvokeError::OutOfMemory { .. } => Code::ResourceExhausted,
        // A node or container that failed and was not replaced: worth a retry.
        InvokeError::NodeUnreachable { .. }
        | InvokeError::ContainerUnusable { .. }
        | InvokeError::ContainerExited { .. }
        | InvokeError::NodeBroken { .. } => Code::Unavailable,
        InvokeError::NodeNoAnswer { .. } => Code::DeadlineExceeded,
        InvokeError::Node { code, .. } => match code {
            // The container is in a state the node will not run it in.
            RemoteCode::FailedPrecondition => Code::Unavailable,
            // The node refused what this server sent it: not the client's fault.
            RemoteCode::InvalidArgument
            | RemoteCode::OutOfRange
            | RemoteCode::AlreadyExists
            | RemoteCode::Unimplemented => Code::Internal,
            other => grpc_code(*other),
        },
        // The last attempt decides.
        InvokeError::Retried { last, .. } | InvokeError::FallbackFailed { last, .. } => {
            invoke_code(last)
        }
    }
}

/// The status a client of `InvokeFunction` sees for a call that failed at the front.
pub fn front_status(err: &FrontError) -> Status {
    match err {
        FrontError::Limited(e) => limit_status(e),
        FrontError::Invoke(e) => invoke_status(e),
        FrontError::Crashed(_) => Status::internal(err.to_string()),
    }
}

/// The status a refused key gets.
pub fn access_status(err: &AccessError) -> Status {
    match err {
        AccessError::Scope { .. } => Status::permission_denied(err.to_string()),
        AccessError::Missing
        | AccessError::MissingAdmin
        | AccessError::Malformed
        | AccessError::Unknown => Status::unauthenticated(err.to_string()),
    }
}

/// The status of a call over its account's limits.
pub fn limit_status(err: &LimitError) -> Status {
    Status::resource_exhausted(err.to_string())
}

/// The status of a refused subscription, chain or emit.
pub fn events_status(err: &EventsError) -> Status {
    let code = match err {
        EventsError::Bad { .. } => Code::InvalidArgument,
        EventsError::Missing { .. } | EventsError::NotSubscribed(_) => Code::NotFound,
        EventsError::Cycle { .. } => Code::FailedPrecondition,
        EventsError::Store(_) => Code::Unavailable,
    };
    Status::new(code, err.to_string())
}

/// The status of a refused submit.
pub fn submit_status(err: &SubmitError) -> Status {
    match err {
        SubmitError::Front(e) => front_status(e),
        SubmitError::Full(AsyncError::Store(_)) => Status::unavailable(err.to_string()),
        SubmitError::Full(e) => Status::resource_exhausted(e.to_string()),
        SubmitError::BadField(m) => Status::invalid_argument(m.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invoke_errors_get_deliberate_codes() {
        let f = || "f".to_string();
        let unreachable = || InvokeError::NodeUnreachable {
            function: f(),
            node: "n".into(),
            endpoint: "e".into(),
            message: "x".into(),
        };
        let cases = [
            (InvokeError::MissingAccount, Code::InvalidArgument),
            (InvokeError::NotFound { name: f() }, Code::NotFound),
            (
                InvokeError::Acquire {
                    function: f(),
                    code: RemoteCode::ResourceExhausted,
                    message: "x".into(),
                },
                Code::ResourceExhausted,
            ),
            (
                // The scheduler's node refused to create the function's container.
                InvokeError::Acquire {
                    function: f(),
                    code: RemoteCode::FailedPrecondition,
                    message: "x".into(),
                },
                Code::FailedPrecondition,
            ),
            (
                InvokeError::FunctionFailed {
                    function: f(),
                    message: "x".into(),
                },
                Code::Unknown,
            ),
            (
                InvokeError::Timeout {
                    function: f(),
                    timeout_ms: 1,
                    message: "x".into(),
                },
                Code::DeadlineExceeded,
            ),
            (
                InvokeError::OutOfMemory {
                    function: f(),
                    memory_mib: 1,
                    message: "x".into(),
                },
                Code::ResourceExhausted,
            ),
            (
                InvokeError::Node {
                    function: f(),
                    node: "n".into(),
                    code: RemoteCode::InvalidArgument,
                    message: "x".into(),
                },
                Code::Internal,
            ),
            (
                InvokeError::Node {
                    function: f(),
                    node: "n".into(),
                    code: RemoteCode::FailedPrecondition,
                    message: "x".into(),
                },
                Code::Unavailable,
            ),
            (
                InvokeError::Acquire {
                    function: f(),
                    code: RemoteCode::DeadlineExceeded,
                    message: "x".into(),
                },
                Code::DeadlineExceeded,
            ),
            (unreachable(), Code::Unavailable),
            (
                InvokeError::ContainerUnusable {
                    function: f(),
                    container: "c".into(),
                    node: "n".into(),
                    reason: crate::model::Undelivered::WrongFunction,
                    message: "x".into(),
                },
                Code::Unavailable,
            ),
            (
                InvokeError::ContainerExited {
                    function: f(),
                    container: "c".into(),
                    node: "n".into(),
                    message: "x".into(),
                },
                Code::Unavailable,
            ),
            (
                InvokeError::NodeBroken {
                    function: f(),
                    node: "n".into(),
                    endpoint: "e".into(),
                    message: "x".into(),
                },
                Code::Unavailable,
            ),
            (
                InvokeError::NodeNoAnswer {
                    function: f(),
                    node: "n".into(),
                    endpoint: "e".into(),
                    deadline_ms: 2001,
                    message: "x".into(),
                },
                Code::DeadlineExceeded,
            ),
            (
                InvokeError::Retried {
                    because: "NodeUnavailable",
                    first: Box::new(unreachable()),
                    last: Box::new(InvokeError::NotFound { name: f() }),
                },
                Code::NotFound,
            ),
        ];
        for (err, code) in cases {
            let status = invoke_status(&err);
            assert_eq!(status.code(), code, "{err}");
            assert_eq!(status.message(), err.to_string());
        }
    }

    #[test]
    fn a_write_the_database_did_not_take_is_unavailable() {
        let problem = crate::store::StoreError::Write {
            path: "/data/apiserver.db".into(),
            reason: "database or disk is full".into(),
        };
        let err = RegistryError::NotSaved {
            name: "f".into(),
            action: "deployed",
            problem: problem.clone(),
        };
        let status = registry_status(&err);
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(
            status.message(),
            "function \"f\" was not deployed: the database at /data/apiserver.db cannot be written (database or disk is full); nothing was changed"
        );
        let status = registry_status(&RegistryError::Store(problem));
        assert_eq!(status.code(), Code::FailedPrecondition);
    }

    #[test]
    fn events_errors_get_deliberate_codes() {
        let field = || "on_success".to_string();
        let cases = [
            (
                EventsError::Bad {
                    field: field(),
                    problem: "x".into(),
                },
                Code::InvalidArgument,
            ),
            (
                EventsError::Missing {
                    field: field(),
                    problem: "x".into(),
                },
                Code::NotFound,
            ),
            (EventsError::NotSubscribed("x".into()), Code::NotFound),
            (
                EventsError::Cycle {
                    field: field(),
                    cycle: "a -> b -> a".into(),
                },
                Code::FailedPrecondition,
            ),
            (EventsError::Store("disk full".into()), Code::Unavailable),
        ];
        for (err, code) in cases {
            let status = events_status(&err);
            assert_eq!(status.code(), code, "{err:?}");
            assert_eq!(status.message(), err.to_string());
        }
    }
}
