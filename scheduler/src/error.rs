//! The crate's errors and the one place they become gRPC statuses.
//!
//! [`Error`] is why the scheduler could not start or serve. The pure layers fail with
//! [`CoreError`] (a refused event) and [`AcquireError`] (a refused acquire), the service with
//! [`ServiceError`] (defined here); the API edge answers each with the deliberate
//! `tonic::Status` chosen here (and, for metrics, a label), never from the error's text.

use tonic::Status;

use crate::core::{AcquireError, AcquireErrorCode, CoreError, UnknownPolicy};

/// Why an acquire or a return failed (what the service answers; see [`crate::service`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// The call itself was refused by the core (unknown container, duplicate request...).
    #[error(transparent)]
    Refused(#[from] CoreError),
    /// The acquire was accepted but could not be served.
    #[error(transparent)]
    Rejected(#[from] AcquireError),
    /// The scheduler stops; the call was not served.
    #[error("scheduler is shutting down")]
    ShuttingDown,
}

/// Why the scheduler could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `--policy` names no policy.
    #[error(transparent)]
    Policy(#[from] UnknownPolicy),
    /// Binding or connecting failed.
    #[error(transparent)]
    Serve(#[from] faas_common::serve::ServeError),
    /// The gRPC server failed.
    #[error("the gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The status a refused call is answered with.
pub fn core_status(e: &CoreError) -> Status {
    let message = e.to_string();
    match e {
        CoreError::UnknownContainer { .. } | CoreError::UnknownRequest { .. } => {
            Status::not_found(message)
        }
        CoreError::AlreadyReturned { .. } | CoreError::LeaseExpired { .. } => {
            Status::failed_precondition(message)
        }
        CoreError::WrongContainer { .. } | CoreError::InvalidFunction { .. } => {
            Status::invalid_argument(message)
        }
        CoreError::AlreadyExists { .. } => Status::already_exists(message),
        CoreError::UnknownOperation { .. } | CoreError::Inconsistent(_) => {
            Status::internal(message)
        }
    }
}

/// The status a rejected acquire is answered with.
pub fn acquire_status(e: &AcquireError) -> Status {
    match e.code {
        AcquireErrorCode::ResourceExhausted => Status::resource_exhausted(e.message.clone()),
        AcquireErrorCode::DeadlineExceeded => Status::deadline_exceeded(e.message.clone()),
        AcquireErrorCode::Unavailable => Status::unavailable(e.message.clone()),
        AcquireErrorCode::FailedPrecondition => Status::failed_precondition(e.message.clone()),
    }
}

/// The status a service error is answered with, and its metrics label.
pub fn service_status(e: &ServiceError) -> (Status, &'static str) {
    match e {
        ServiceError::Refused(c) => (core_status(c), "refused"),
        ServiceError::Rejected(a) => (
            acquire_status(a),
            match a.code {
                AcquireErrorCode::ResourceExhausted => "resource_exhausted",
                AcquireErrorCode::DeadlineExceeded => "deadline_exceeded",
                AcquireErrorCode::Unavailable => "unavailable",
                AcquireErrorCode::FailedPrecondition => "failed_precondition",
            },
        ),
        ServiceError::ShuttingDown => (Status::unavailable(e.to_string()), "shutting_down"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_deliberate_codes() {
        let code = |e: CoreError| core_status(&e).code();
        assert_eq!(
            code(CoreError::UnknownContainer {
                container_id: "c".into()
            }),
            tonic::Code::NotFound
        );
        assert_eq!(
            code(CoreError::AlreadyReturned {
                request_id: "r".into()
            }),
            tonic::Code::FailedPrecondition
        );
        assert_eq!(
            code(CoreError::AlreadyExists {
                request_id: "r".into()
            }),
            tonic::Code::AlreadyExists
        );
        let (s, _) = service_status(&ServiceError::ShuttingDown);
        assert_eq!(
            (s.code(), s.message()),
            (tonic::Code::Unavailable, "scheduler is shutting down")
        );
        let s = acquire_status(&AcquireError {
            code: AcquireErrorCode::ResourceExhausted,
            message: "no available node can be reserved".into(),
        });
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        let refused = AcquireError {
            code: AcquireErrorCode::FailedPrecondition,
            message: "cannot create a container of function f on node n1: image \"x\" is not on this machine".into(),
        };
        let s = acquire_status(&refused);
        assert_eq!(
            (s.code(), s.message()),
            (tonic::Code::FailedPrecondition, refused.message.as_str())
        );
        let (s, label) = service_status(&ServiceError::Rejected(refused));
        assert_eq!(
            (s.code(), label),
            (tonic::Code::FailedPrecondition, "failed_precondition")
        );
    }
}
