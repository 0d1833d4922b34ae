//! The anti-corruption layer: contest and admin messages to and from the model, gRPC codes to
//! and from [`RemoteCode`], and the service's errors to deliberate `tonic::Status` codes.

use tonic::{Code, Status};

use faas_proto::{admin, apiserverproto};

use crate::model::{Function, FunctionSpec, RemoteCode, RemoteError};
use crate::service::{InvokeError, RegistryError};

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

/// The status a client sees for a registry error.
pub fn registry_status(err: &RegistryError) -> Status {
    let code = match err {
        RegistryError::NotFound { .. } => Code::NotFound,
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
    };
    Status::new(code, err.to_string())
}

/// The status a client sees for a failed invocation.
pub fn invoke_status(err: &InvokeError) -> Status {
    let code = match err {
        InvokeError::MissingFunctionName
        | InvokeError::EventTooLarge { .. }
        | InvokeError::MissingAccount
        | InvokeError::BadEvent { .. } => Code::InvalidArgument,
        InvokeError::NotFound { .. } => Code::NotFound,
        InvokeError::Acquire { code, .. } => grpc_code(*code),
        InvokeError::FunctionFailed { .. } => Code::Unknown,
        InvokeError::Timeout { .. } => Code::DeadlineExceeded,
        InvokeError::OutOfMemory { .. } => Code::ResourceExhausted,
        InvokeError::NodeUnavailable { .. } | InvokeError::ContainerGone { .. } => {
            Code::Unavailable
        }
        // The node refused what this server sent it: not the client's fault.
        InvokeError::Node { code, .. } => match code {
            RemoteCode::InvalidArgument
            | RemoteCode::FailedPrecondition
            | RemoteCode::OutOfRange
            | RemoteCode::AlreadyExists
            | RemoteCode::Unimplemented => Code::Internal,
            other => grpc_code(*other),
        },
    };
    Status::new(code, err.to_string())
}

/// A function as the contest's `ListFunctions` shows it.
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
    }
}

/// A model spec as the admin API's.
pub fn spec_to_admin(spec: FunctionSpec) -> admin::FunctionSpec {
    admin::FunctionSpec {
        name: spec.name,
        handler: spec.handler,
        memory_in_bytes: spec.memory_bytes,
        timeout_in_ms: spec.timeout_ms,
        description: spec.description,
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
    fn invoke_errors_get_deliberate_codes() {
        let f = || "f".to_string();
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
        ];
        for (err, code) in cases {
            let status = invoke_status(&err);
            assert_eq!(status.code(), code, "{err}");
            assert_eq!(status.message(), err.to_string());
        }
    }
}
