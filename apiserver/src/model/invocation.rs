//! One invocation's data on its way through the platform: the request to the scheduler, the
//! container it hands out, what the node reports back, and the return to the scheduler.
//!
//! [`RemoteError`] carries a failure of a call to another component with its gRPC code kept
//! as plain data ([`RemoteCode`]), so the business layer can pass it on without knowing tonic.
//! [`NodeError`] adds what the API server could tell about a failed node call: whether the
//! event can have reached the function ([`NodeErrorKind`]).

use std::fmt;

/// The call to the scheduler for a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcquireRequest {
    pub request_id: String,
    pub account_id: String,
    pub function_name: String,
    pub timeout_ms: i64,
    pub memory_bytes: i64,
    pub handler: String,
}

/// The container the scheduler handed out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub node_id: String,
    pub node_address: String,
    pub node_port: i64,
    pub container_id: String,
    /// Whether the scheduler created the container for this request, when it says.
    pub cold_start: Option<bool>,
}

impl Placement {
    /// `host:port` of the node service.
    pub fn node_endpoint(&self) -> String {
        if self.node_address.contains(':') && !self.node_address.starts_with('[') {
            // An IPv6 literal needs brackets in host:port.
            format!("[{}]:{}", self.node_address, self.node_port)
        } else {
            format!("{}:{}", self.node_address, self.node_port)
        }
    }
}

/// A failed execution as the platform reports it: `code` is one of the container service's
/// codes (`FunctionError`, `Timeout`, `OutOfMemory`, `BadEvent`) or the API server's own for
/// a failed node call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub code: String,
    pub message: String,
}

/// What a node reported for one invocation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Execution {
    pub body: Vec<u8>,
    pub duration_nanos: i64,
    pub max_memory_bytes: i64,
    /// Set when the function failed (its own error, a timeout, out of memory).
    pub failure: Option<Failure>,
}

/// The call that gives a container back to the scheduler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReturnRequest {
    pub request_id: String,
    pub container_id: String,
    pub duration_nanos: i64,
    pub max_memory_bytes: i64,
    /// Empty when the invocation succeeded.
    pub error_code: String,
    pub error_message: String,
}

/// The status codes of a call to another component (the gRPC codes, as plain data).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RemoteCode {
    Cancelled,
    Unknown,
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Aborted,
    OutOfRange,
    Unimplemented,
    Internal,
    Unavailable,
    DataLoss,
    Unauthenticated,
}

/// A call to another component failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteError {
    pub code: RemoteCode,
    pub message: String,
}

impl RemoteError {
    pub fn new(code: RemoteCode, message: impl Into<String>) -> RemoteError {
        RemoteError {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

/// Why a node refused a call before its event reached the function, as the node names it in
/// the `x-faas-error-code` metadata (`faas_proto::meta::ERROR_CODE`). The container is
/// unusable, and the call is safe to run again on another one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Undelivered {
    /// The node has no such container (forgotten, removed).
    ContainerNotFound,
    /// The node already knew the container was dead.
    ContainerDead,
    /// The node could not connect to the container (its process is gone).
    ContainerUnreachable,
    /// The container runs another function or another definition of it.
    WrongFunction,
}

impl Undelivered {
    /// Every reason, in the order of the contract's table.
    pub const ALL: [Undelivered; 4] = [
        Undelivered::ContainerNotFound,
        Undelivered::ContainerDead,
        Undelivered::ContainerUnreachable,
        Undelivered::WrongFunction,
    ];

    /// The code on the wire (the node's metadata value, and the code the container goes back
    /// to the scheduler with).
    pub fn code(self) -> &'static str {
        match self {
            Undelivered::ContainerNotFound => "ContainerNotFound",
            Undelivered::ContainerDead => "ContainerDead",
            Undelivered::ContainerUnreachable => "ContainerUnreachable",
            Undelivered::WrongFunction => "WrongFunction",
        }
    }

    /// The reason a code names, if it is one of them.
    pub fn from_code(code: &str) -> Option<Undelivered> {
        Undelivered::ALL.into_iter().find(|u| u.code() == code)
    }

    /// What it means, for a person.
    pub fn describe(self) -> &'static str {
        match self {
            Undelivered::ContainerNotFound => "the node does not have the container",
            Undelivered::ContainerDead => "the container is dead",
            Undelivered::ContainerUnreachable => "the node cannot reach the container",
            Undelivered::WrongFunction => "the container runs another definition of the function",
        }
    }
}

/// How a call to a node failed, as far as the API server can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeErrorKind {
    /// Nothing reached the node: the connection was refused, or the node's address is
    /// unusable. The event never reached a function.
    NotConnected,
    /// The node refused the call before the event reached the function.
    Refused(Undelivered),
    /// No answer within the call's deadline: the function may have run.
    NoAnswer,
    /// Anything else (the connection broke mid-call, the reply ended early, an unexpected
    /// status): the function may have run.
    Broken,
}

/// A failed call to a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeError {
    pub kind: NodeErrorKind,
    pub code: RemoteCode,
    pub message: String,
}

impl NodeError {
    pub fn new(kind: NodeErrorKind, code: RemoteCode, message: impl Into<String>) -> NodeError {
        NodeError {
            kind,
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} ({:?}): {}", self.code, self.kind, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_endpoint_brackets_ipv6_literals() {
        let mut p = Placement {
            node_id: "n".into(),
            node_address: "10.0.0.7".into(),
            node_port: 5000,
            container_id: "c".into(),
            cold_start: None,
        };
        assert_eq!(p.node_endpoint(), "10.0.0.7:5000");
        p.node_address = "::1".into();
        assert_eq!(p.node_endpoint(), "[::1]:5000");
        p.node_address = "node-3".into();
        assert_eq!(p.node_endpoint(), "node-3:5000");
    }

    #[test]
    fn undelivered_codes_round_trip() {
        for u in Undelivered::ALL {
            assert_eq!(Undelivered::from_code(u.code()), Some(u));
        }
        assert_eq!(Undelivered::from_code("ContainerExited"), None);
        assert_eq!(Undelivered::from_code(""), None);
    }
}
