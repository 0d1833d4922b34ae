//! The anti-corruption layer: contest and admin messages to and from the model, and gRPC
//! codes to and from [`RemoteCode`]. The service's errors become statuses in
//! [`crate::error`] (re-exported here).

use std::error::Error as StdError;

use tonic::{Code, Status};

use faas_proto::{admin, apiserverproto};

pub use crate::error::{invoke_status, registry_status};
use crate::model::{CodeFile, Function, FunctionSpec, RemoteCode, RemoteError};

/// The status and every error it was made from, outermost first.
fn source_chain(status: &Status) -> impl Iterator<Item = &(dyn StdError + 'static)> {
    let first: &(dyn StdError + 'static) = status;
    std::iter::successors(Some(first), |&e| e.source())
}

/// The innermost error a status was made from, if it was made from one.
pub fn root_cause(status: &Status) -> Option<String> {
    source_chain(status).skip(1).last().map(|e| e.to_string())
}

/// Whether a call failed because the connection could not be made: nothing was sent, so the
/// peer never saw the request (tonic's `ConnectError`, or a refused connection), as opposed
/// to a connection that broke during the call.
pub fn never_connected(status: &Status) -> bool {
    source_chain(status).any(|e| {
        e.is::<tonic::ConnectError>()
            || e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
    })
}

/// Whether a call failed because its deadline passed: on this side (tonic's client-side
/// `TimeoutExpired`, which tonic reports as `CANCELLED: Timeout expired`), on the server's
/// (which answers the same without the source), or as the server's own `DEADLINE_EXCEEDED`.
pub fn timed_out(status: &Status) -> bool {
    match status.code() {
        Code::DeadlineExceeded => true,
        Code::Cancelled => {
            status.message() == "Timeout expired"
                || source_chain(status).any(|e| e.is::<tonic::TimeoutExpired>())
        }
        _ => false,
    }
}

/// A failed gRPC call as the service sees it.
pub fn remote_error(status: &Status) -> RemoteError {
    let message = if status.message().is_empty() {
        status.code().description().to_string()
    } else {
        status.message().to_string()
    };
    RemoteError::new(remote_code(status.code()), message)
}

/// A gRPC code as plain data (`Ok` cannot be an error; it reads as `Unknown`).
pub fn remote_code(code: Code) -> RemoteCode {
    match code {
        Code::Cancelled => RemoteCode::Cancelled,
        Code::InvalidArgument => RemoteCode::InvalidArgument,
        Code::DeadlineExceeded => RemoteCode::DeadlineExceeded,
        Code::NotFound => RemoteCode::NotFound,
        Code::AlreadyExists => RemoteCode::AlreadyExists,
        Code::PermissionDenied => RemoteCode::PermissionDenied,
        Code::ResourceExhausted => RemoteCode::ResourceExhausted,
        Code::FailedPrecondition => RemoteCode::FailedPrecondition,
        Code::Aborted => RemoteCode::Aborted,
        Code::OutOfRange => RemoteCode::OutOfRange,
        Code::Unimplemented => RemoteCode::Unimplemented,
        Code::Internal => RemoteCode::Internal,
        Code::Unavailable => RemoteCode::Unavailable,
        Code::DataLoss => RemoteCode::DataLoss,
        Code::Unauthenticated => RemoteCode::Unauthenticated,
        Code::Ok | Code::Unknown => RemoteCode::Unknown,
    }
}

/// The gRPC code of a [`RemoteCode`].
pub fn grpc_code(code: RemoteCode) -> Code {
    match code {
        RemoteCode::Cancelled => Code::Cancelled,
        RemoteCode::Unknown => Code::Unknown,
        RemoteCode::InvalidArgument => Code::InvalidArgument,
        RemoteCode::DeadlineExceeded => Code::DeadlineExceeded,
        RemoteCode::NotFound => Code::NotFound,
        RemoteCode::AlreadyExists => Code::AlreadyExists,
        RemoteCode::PermissionDenied => Code::PermissionDenied,
        RemoteCode::ResourceExhausted => Code::ResourceExhausted,
        RemoteCode::FailedPrecondition => Code::FailedPrecondition,
        RemoteCode::Aborted => Code::Aborted,
        RemoteCode::OutOfRange => Code::OutOfRange,
        RemoteCode::Unimplemented => Code::Unimplemented,
        RemoteCode::Internal => Code::Internal,
        RemoteCode::Unavailable => Code::Unavailable,
        RemoteCode::DataLoss => Code::DataLoss,
        RemoteCode::Unauthenticated => Code::Unauthenticated,
    }
}

/// A function as the contest's `ListFunctions` shows it: its handler is the wire handler
/// (`hello`, `bundle:<sha256>`), the one `AcquireContainer` carries.
pub fn contest_function(f: &Function) -> apiserverproto::FunctionConfig {
    apiserverproto::FunctionConfig {
        function_name: f.name.clone(),
        timeout_in_ms: f.timeout_ms,
        memory_in_bytes: f.memory_bytes,
        handler: f.handler.as_str().to_string(),
    }
}

/// An admin spec as the model's (not yet validated) spec.
pub fn spec_from_admin(spec: admin::FunctionSpec) -> FunctionSpec {
    FunctionSpec {
        name: spec.name,
        handler: spec.handler,
        memory_bytes: spec.memory_in_bytes,
        timeout_ms: spec.timeout_in_ms,
        description: spec.description,
        command: spec.command,
        protocol: spec.protocol,
        image: spec.image,
        start_timeout_ms: spec.start_timeout_ms,
        env: spec.env.into_iter().collect(),
        code: spec
            .code
            .into_iter()
            .map(|f| CodeFile {
                path: f.path,
                content: f.content,
                executable: f.executable,
            })
            .collect(),
        bundle: spec.bundle,
    }
}

/// A model spec as the admin API's (with its code, if it has any).
pub fn spec_to_admin(spec: FunctionSpec) -> admin::FunctionSpec {
    admin::FunctionSpec {
        name: spec.name,
        handler: spec.handler,
        memory_in_bytes: spec.memory_bytes,
        timeout_in_ms: spec.timeout_ms,
        description: spec.description,
        command: spec.command,
        protocol: spec.protocol,
        image: spec.image,
        start_timeout_ms: spec.start_timeout_ms,
        env: spec.env.into_iter().collect(),
        code: spec
            .code
            .into_iter()
            .map(|f| admin::CodeFile {
                path: f.path,
                content: f.content,
                executable: f.executable,
            })
            .collect(),
        bundle: spec.bundle,
    }
}

/// A deployed function as the admin API's record.
pub fn admin_record(f: &Function) -> admin::FunctionRecord {
    admin::FunctionRecord {
        spec: Some(spec_to_admin(f.spec())),
        revision: f.revision,
        created_at_ms: f.created_at_ms,
        updated_at_ms: f.updated_at_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for code in [
            Code::Cancelled,
            Code::Unknown,
            Code::InvalidArgument,
            Code::DeadlineExceeded,
            Code::NotFound,
            Code::AlreadyExists,
            Code::PermissionDenied,
            Code::ResourceExhausted,
            Code::FailedPrecondition,
            Code::Aborted,
            Code::OutOfRange,
            Code::Unimplemented,
            Code::Internal,
            Code::Unavailable,
            Code::DataLoss,
            Code::Unauthenticated,
        ] {
            assert_eq!(grpc_code(remote_code(code)), code);
        }
    }

    #[test]
    fn deadlines_and_refused_connections_are_told_apart() {
        use std::io::{Error, ErrorKind};
        // As tonic makes them on the client side.
        let refused = Status::from_error(Box::new(tonic::ConnectError(Box::new(Error::from(
            ErrorKind::ConnectionRefused,
        )))));
        assert_eq!(refused.code(), Code::Unavailable);
        assert!(never_connected(&refused));
        assert!(!timed_out(&refused));
        assert_eq!(root_cause(&refused).as_deref(), Some("connection refused"));
        assert_eq!(root_cause(&Status::unavailable("x")), None);
        let refused_io = Status::from_error(Box::new(Error::from(ErrorKind::ConnectionRefused)));
        assert!(never_connected(&refused_io));

        let expired = Status::from_error(Box::new(tonic::TimeoutExpired(())));
        assert_eq!(expired.code(), Code::Cancelled);
        assert!(timed_out(&expired));
        assert!(!never_connected(&expired));
        // As a server sends its own expiry back: no source, the same message.
        assert!(timed_out(&Status::cancelled("Timeout expired")));
        assert!(timed_out(&Status::deadline_exceeded("too slow")));
        assert!(!timed_out(&Status::cancelled("the client went away")));

        let reset = Status::from_error(Box::new(Error::from(ErrorKind::ConnectionReset)));
        assert!(!never_connected(&reset));
        assert!(!timed_out(&reset));
        assert!(!never_connected(&Status::unavailable("tcp connect error")));
    }
}
