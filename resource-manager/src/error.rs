//! Errors of starting and running the resource manager ([`Error`]), of its calls
//! ([`CallError`]), and the one place a call's error becomes a `tonic::Status`.

use faas_common::launch::LaunchError;
use faas_common::serve::ServeError;
use tonic::Status;

use crate::core::PoolError;
use crate::service::StateError;

/// Why the resource manager could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("the local node provider cannot find node-service: {0}")]
    NodeServiceBinary(#[from] LaunchError),
    #[error("the docker (or swarm) node provider cannot start: {0}")]
    Docker(String),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Why a `ReserveNode` or `ReleaseNode` failed (the manager's answer, before it is a status).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The pool refused the call.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// No node is ready, and the latest node start failed (what the provider said).
    #[error(
        "no available node can be reserved; the latest node start failed: {last_start_failure}"
    )]
    Exhausted { last_start_failure: String },
    /// Every node tried refused (or never answered) its hand-over.
    #[error("no node could be handed over after {attempts} attempts; last failure: {last_failure}")]
    NoHandover {
        attempts: usize,
        last_failure: String,
    },
}

impl From<CallError> for Status {
    fn from(e: CallError) -> Status {
        let message = e.to_string();
        match e {
            CallError::Pool(PoolError::EmptyId(_) | PoolError::IdTooLong { .. }) => {
                Status::invalid_argument(message)
            }
            CallError::Pool(PoolError::Exhausted) | CallError::Exhausted { .. } => {
                Status::resource_exhausted(message)
            }
            CallError::Pool(PoolError::NotFound(_)) => Status::not_found(message),
            CallError::Pool(PoolError::NotReserved { .. }) => Status::failed_precondition(message),
            CallError::Pool(PoolError::Closed) | CallError::NoHandover { .. } => {
                Status::unavailable(message)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::IdKind;
    use crate::model::NodeState;
    use tonic::Code;

    #[test]
    fn pool_errors_map_to_deliberate_codes() {
        let cases = [
            (
                PoolError::EmptyId(IdKind::Account),
                Code::InvalidArgument,
                "account ID cannot be empty",
            ),
            (
                PoolError::EmptyId(IdKind::Node),
                Code::InvalidArgument,
                "node ID cannot be empty",
            ),
            (
                PoolError::IdTooLong {
                    kind: IdKind::Node,
                    id: "n…(300 bytes)".into(),
                },
                Code::InvalidArgument,
                "node ID \"n…(300 bytes)\" is too long: at most 256 bytes are allowed",
            ),
            (
                PoolError::Exhausted,
                Code::ResourceExhausted,
                "no available node can be reserved",
            ),
            (
                PoolError::NotFound("n-1".into()),
                Code::NotFound,
                "node \"n-1\" not found: this resource manager has no node of that id (ids come from ReserveNode)",
            ),
            (
                PoolError::NotReserved {
                    id: "n-1".into(),
                    state: NodeState::Released,
                },
                Code::FailedPrecondition,
                "node \"n-1\" is not reserved (it is released); only a reserved node can be released",
            ),
            (
                PoolError::Closed,
                Code::Unavailable,
                "the resource manager is shutting down",
            ),
        ];
        for (err, code, message) in cases {
            let status = Status::from(CallError::from(err));
            assert_eq!(status.code(), code);
            assert_eq!(status.message(), message);
        }
    }

    #[test]
    fn no_node_after_a_failed_start_says_why() {
        let status = Status::from(CallError::Exhausted {
            last_start_failure:
                "cannot start node node-3 (no_capacity): no machine has 3072 MiB free".into(),
        });
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(
            status.message(),
            "no available node can be reserved; the latest node start failed: cannot start \
             node node-3 (no_capacity): no machine has 3072 MiB free"
        );
    }

    #[test]
    fn a_failed_hand_over_is_unavailable() {
        let status = Status::from(CallError::NoHandover {
            attempts: 3,
            last_failure: "node service at 127.0.0.1:1 did not answer Reserve within 5s".into(),
        });
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(
            status.message(),
            "no node could be handed over after 3 attempts; last failure: node service at 127.0.0.1:1 did not answer Reserve within 5s"
        );
    }
}
