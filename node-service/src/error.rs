//! The node service's errors: [`Error`] (starting or serving the node) and [`NodeError`]
//! (the node's operations), and the one place a [`NodeError`] becomes a gRPC status
//! ([`status`]): each variant gets a deliberate code and, when the event never reached the
//! function, its `x-faas-error-code` (see `docs/CONVENTIONS.md`).

use faas_proto::limits::LimitError;
use tonic::Status;

use crate::model::error_code;
use crate::service::{BundleError, RuntimeError};

/// Errors of starting or serving the node service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Launch(#[from] faas_common::launch::LaunchError),
    /// A port could not be bound (taken, or not allowed). The io error is part of the
    /// message, not a separate cause, so that it prints as one line.
    #[error("cannot listen on {addr} ({flag}): {reason}")]
    Listen {
        flag: &'static str,
        addr: String,
        reason: std::io::Error,
    },
    #[error("cannot read the listener's address: {0}")]
    LocalAddr(std::io::Error),
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    #[error("the docker runtime cannot start: {0}")]
    Docker(RuntimeError),
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// Failures of the node's operations; [`status`] maps each to a gRPC status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    #[error("{0}")]
    InvalidArgument(String),
    /// An unknown handler or an absurd size.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// `container` is the id as asked for, clipped.
    #[error("container {container} not found on node {node}")]
    NotFound { container: String, node: String },
    #[error(
        "container {container} on node {node} is dead ({reason}); remove it and create another"
    )]
    ContainerDead {
        container: String,
        node: String,
        reason: String,
    },
    #[error(
        "container {container} on node {node} cannot be reached ({reason}); it was removed, \
         create another"
    )]
    ContainerUnreachable {
        container: String,
        node: String,
        reason: String,
    },
    #[error("{0}")]
    WrongFunction(String),
    #[error(
        "node {node} cannot take a container of {asked} bytes: {committed} bytes of container \
         memory are committed and {reserved} being created, and it allows {limit} bytes (its \
         memory × --max-overcommit); place the container on another node"
    )]
    Overcommitted {
        node: String,
        asked: u64,
        committed: u64,
        reserved: u64,
        limit: u64,
    },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The function names a bundle this node cannot serve (none here, or no
    /// `--bundles-dir` at all).
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// A bundle function asked of a node started without `--bundles-dir`.
    #[error(
        "function {function:?} is made of bundle {hash}, but node {node} serves no bundles: \
         start it with --bundles-dir (the API server's DATA_DIR/bundles)"
    )]
    NoBundles {
        function: String,
        hash: String,
        node: String,
    },
    #[error("container {container} did not become ready: {message}")]
    NotReady { container: String, message: String },
    #[error("calling container {container} failed: {message}")]
    Invoke { container: String, message: String },
    /// A `Reserve` for another account than the one holding the node.
    #[error(
        "node {node} is already reserved by account {owner:?}: a node takes one reservation \
         (reserve another node from the resource manager)"
    )]
    AlreadyReserved { node: String, owner: String },
}

impl NodeError {
    /// The `x-faas-error-code` of an invocation refused before its event reached the
    /// function; `None` for every other error.
    pub fn error_code(&self) -> Option<&'static str> {
        match self {
            NodeError::NotFound { .. } => Some(error_code::CONTAINER_NOT_FOUND),
            NodeError::ContainerDead { .. } => Some(error_code::CONTAINER_DEAD),
            NodeError::ContainerUnreachable { .. } => Some(error_code::CONTAINER_UNREACHABLE),
            NodeError::WrongFunction(_) => Some(error_code::WRONG_FUNCTION),
            _ => None,
        }
    }
}

/// The gRPC status for a node error, with its `x-faas-error-code` when it has one.
pub fn status(e: NodeError) -> Status {
    let message = e.to_string();
    let code = e.error_code();
    let mut status = match e {
        NodeError::InvalidArgument(_) | NodeError::Limit(_) => Status::invalid_argument(message),
        NodeError::NotFound { .. } | NodeError::Runtime(RuntimeError::NotFound(_)) => {
            Status::not_found(message)
        }
        NodeError::ContainerDead { .. }
        | NodeError::WrongFunction(_)
        | NodeError::Bundle(_)
        | NodeError::NoBundles { .. }
        | NodeError::Runtime(RuntimeError::StartFailed { .. })
        | NodeError::Runtime(RuntimeError::Unsupported(_))
        | NodeError::AlreadyReserved { .. } => Status::failed_precondition(message),
        NodeError::Overcommitted { .. } => Status::resource_exhausted(message),
        NodeError::ContainerUnreachable { .. }
        | NodeError::NotReady { .. }
        | NodeError::Runtime(RuntimeError::NotReady { .. })
        | NodeError::Runtime(RuntimeError::Unavailable(_)) => Status::unavailable(message),
        NodeError::Invoke { .. } => Status::internal(message),
    };
    if let Some(code) = code {
        status.metadata_mut().insert(
            faas_proto::meta::ERROR_CODE,
            tonic::metadata::MetadataValue::from_static(code),
        );
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_deliberate_codes() {
        let nf = NodeError::NotFound {
            container: "c".into(),
            node: "n".into(),
        };
        let s = status(nf);
        assert_eq!(s.code(), tonic::Code::NotFound);
        assert_eq!(s.message(), "container c not found on node n");
        let dead = NodeError::ContainerDead {
            container: "c".into(),
            node: "n".into(),
            reason: "exited".into(),
        };
        assert_eq!(status(dead).code(), tonic::Code::FailedPrecondition);
        assert_eq!(
            status(NodeError::InvalidArgument("x".into())).code(),
            tonic::Code::InvalidArgument
        );
    }

    fn error_code(s: &Status) -> Option<&str> {
        s.metadata()
            .get(faas_proto::meta::ERROR_CODE)
            .and_then(|v| v.to_str().ok())
    }

    #[test]
    fn refusals_before_the_function_carry_their_error_code() {
        let (c, n) = (String::from("c"), String::from("n"));
        for (e, code, meta) in [
            (
                NodeError::NotFound {
                    container: c.clone(),
                    node: n.clone(),
                },
                tonic::Code::NotFound,
                "ContainerNotFound",
            ),
            (
                NodeError::ContainerDead {
                    container: c.clone(),
                    node: n.clone(),
                    reason: "exited".into(),
                },
                tonic::Code::FailedPrecondition,
                "ContainerDead",
            ),
            (
                NodeError::ContainerUnreachable {
                    container: c.clone(),
                    node: n.clone(),
                    reason: "connection refused".into(),
                },
                tonic::Code::Unavailable,
                "ContainerUnreachable",
            ),
            (
                NodeError::WrongFunction("runs g".into()),
                tonic::Code::FailedPrecondition,
                "WrongFunction",
            ),
        ] {
            let s = status(e);
            assert_eq!((s.code(), error_code(&s)), (code, Some(meta)));
        }
        // Other errors carry none: the function's fate is not "never reached".
        for (e, code) in [
            (
                NodeError::Invoke {
                    container: c.clone(),
                    message: "m".into(),
                },
                tonic::Code::Internal,
            ),
            (
                NodeError::Runtime(RuntimeError::Unavailable("shutting down".into())),
                tonic::Code::Unavailable,
            ),
            (
                NodeError::Runtime(RuntimeError::StartFailed {
                    function: "f".into(),
                    message: "m".into(),
                }),
                tonic::Code::FailedPrecondition,
            ),
        ] {
            let s = status(e);
            assert_eq!((s.code(), error_code(&s)), (code, None));
        }
    }

    #[test]
    fn bad_input_and_a_full_node_map_to_their_codes() {
        let e = faas_proto::limits::check_memory("function_meta.memory_in_bytes", -1).unwrap_err();
        let s = status(NodeError::Limit(e));
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert!(
            s.message().starts_with("function_meta.memory_in_bytes"),
            "{}",
            s.message()
        );
        let s = status(NodeError::Overcommitted {
            node: "n".into(),
            asked: 1,
            committed: 2,
            reserved: 0,
            limit: 2,
        });
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        assert_eq!(error_code(&s), None);
    }
}
