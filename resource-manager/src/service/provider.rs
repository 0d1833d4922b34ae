//! The port through which the pool gets real nodes: a provider starts a node and tells
//! where its node service listens, and stops it again. Implementations live in `api/`.

use std::future::Future;

use crate::model::NodeEndpoint;

/// Why a provider could not start a node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("cannot start node {node_id}: {message}")]
    Start { node_id: String, message: String },
    #[error("no node is free: all {0} configured node addresses are in use")]
    NoCapacity(usize),
    #[error("the node provider is shutting down")]
    Closed,
}

/// Starts and stops nodes. Implementations must be safe to call concurrently.
pub trait NodeProvider: Send + Sync + 'static {
    /// A short name for logs (`local`, `static`, ...).
    fn name(&self) -> &'static str;

    /// Brings node `node_id` up with `memory_bytes` for containers; returns where its
    /// node service listens once it answers.
    fn start_node(
        &self,
        node_id: &str,
        memory_bytes: u64,
    ) -> impl Future<Output = Result<NodeEndpoint, ProviderError>> + Send;

    /// Stops node `node_id` and everything running on it; returns once it is gone.
    /// Unknown ids are ignored.
    fn stop_node(&self, node_id: &str) -> impl Future<Output = ()> + Send;

    /// Stops every node this provider started and refuses new starts.
    fn shutdown(&self) -> impl Future<Output = ()> + Send;
}
