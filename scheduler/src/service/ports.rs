//! The ports the service talks to the outside through. The api layer implements them with
//! gRPC clients and a real clock; tests implement them with in-process fakes.

use std::future::Future;

use crate::model::{AdoptedContainer, FunctionSpec, Millis, NodeAddr, NodeInfo, StatsSample, Text};

/// The scheduler's clock (milliseconds from an arbitrary origin, never going backwards).
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Millis;

    /// Wall-clock milliseconds since the Unix epoch (to place the resource manager's reserve
    /// times on the scheduler's clock); 0 where there is no wall clock (tests).
    fn wall_ms(&self) -> u64 {
        0
    }
}

/// A node the resource manager reports reserved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReservedNode {
    /// The node.
    pub info: NodeInfo,
    /// When it was reserved, wall-clock ms since the Unix epoch (0 if unknown).
    pub reserved_at_wall_ms: u64,
}

/// What a node says it holds (`faas.node.v1.NodeAdmin/DescribeNode`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeDescription {
    /// The account the node is reserved for.
    pub owner_account_id: String,
    /// Its containers.
    pub containers: Vec<AdoptedContainer>,
}

/// A failed `ReserveNode`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ReserveError {
    /// The resource manager has no node left (`RESOURCE_EXHAUSTED`); worth retrying later.
    pub exhausted: bool,
    /// What it said.
    pub message: String,
}

/// A failed call to the resource manager or a node service.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PortError {
    /// What went wrong, for logs and error replies.
    pub message: String,
    /// The peer could not be reached or did not answer in time (a transport failure, not
    /// an answer): a failed health observation of a node.
    pub unreachable: bool,
    /// The peer answered FAILED_PRECONDITION or INVALID_ARGUMENT: it cannot do this call as
    /// asked. For a create: the node cannot run the function, so retrying is pointless.
    pub refused: bool,
}

impl PortError {
    /// A failure the peer answered (it is reachable).
    pub fn answered(message: impl Into<String>) -> PortError {
        PortError {
            message: message.into(),
            unreachable: false,
            refused: false,
        }
    }

    /// The peer could not be reached or did not answer in time.
    pub fn unreachable(message: impl Into<String>) -> PortError {
        PortError {
            message: message.into(),
            unreachable: true,
            refused: false,
        }
    }

    /// The peer answered that it cannot do this (FAILED_PRECONDITION or INVALID_ARGUMENT).
    pub fn refused(message: impl Into<String>) -> PortError {
        PortError {
            message: message.into(),
            unreachable: false,
            refused: true,
        }
    }
}

/// The resource manager, as the scheduler needs it.
pub trait ResourcePort: Send + Sync + 'static {
    /// Reserves one node for `account_id`.
    fn reserve_node(
        &self,
        account_id: &str,
    ) -> impl Future<Output = Result<NodeInfo, ReserveError>> + Send;

    /// Gives a node back.
    fn release_node(&self, node_id: &str) -> impl Future<Output = Result<(), PortError>> + Send;

    /// The nodes currently reserved (for a scheduler that restarts).
    fn reserved_nodes(&self) -> impl Future<Output = Result<Vec<ReservedNode>, PortError>> + Send;
}

/// The node services, as the scheduler needs them.
pub trait NodePort: Send + Sync + 'static {
    /// Creates a container of `function` on `node`; answers its id. `request_id`: the call
    /// it is made for, if any (sent as `x-request-id`, for the node's log lines).
    fn create_container(
        &self,
        node: &NodeAddr,
        function: &FunctionSpec,
        request_id: Option<&str>,
    ) -> impl Future<Output = Result<Text, PortError>> + Send;

    /// Removes a container from `node`.
    fn remove_container(
        &self,
        node: &NodeAddr,
        container_id: &str,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Reads the usage of `node` and its containers (the driver stamps the sample's
    /// `taken_at`).
    fn get_stats(
        &self,
        node: &NodeAddr,
    ) -> impl Future<Output = Result<StatsSample, PortError>> + Send;

    /// Asks whether `node` is alive (a cheap call, beside the stats: gathering stats can be
    /// slow on a busy node, which must not make it look dead).
    fn probe(&self, node: &NodeAddr) -> impl Future<Output = Result<(), PortError>> + Send;

    /// What `node` holds (for a scheduler that restarts).
    fn describe(
        &self,
        node: &NodeAddr,
    ) -> impl Future<Output = Result<NodeDescription, PortError>> + Send;
}
