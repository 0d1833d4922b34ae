//! The port through which the pool gets real nodes: a provider starts a node and tells
//! where its node service listens, stops or kills it again, and says which of its nodes are
//! no longer running. After a restart of the manager it takes back the nodes of the earlier
//! run (see [`crate::core::recovery`]). Implementations live in `api/`.
//!
//! What "no longer running" means depends on the provider: the `local` provider's child
//! process exited (it is reaped as it is noticed), the `docker` provider's container is gone
//! or not running, the `swarm` provider's service is gone or has no running task; the
//! `static` provider cannot tell (its nodes are run by someone else), so
//! its nodes fail only by not answering their health probes.

use std::fmt;
use std::future::Future;

use crate::core::FoundNode;
use crate::model::{NodeEndpoint, NodeHandle, StartedNode};

/// Why a start failed, as a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StartFailure {
    /// The program or container could not be started at all.
    Spawn,
    /// It exited before it was ready (before or after announcing its port: a taken metrics
    /// port makes the node service exit right after announcing).
    Exited,
    /// It was not ready within the start timeout.
    Timeout,
    /// A static address did not answer.
    Unreachable,
    /// Every static address is in use.
    NoCapacity,
}

impl StartFailure {
    /// Every kind (metric labels are made for each).
    pub const ALL: [StartFailure; 5] = [
        StartFailure::Spawn,
        StartFailure::Exited,
        StartFailure::Timeout,
        StartFailure::Unreachable,
        StartFailure::NoCapacity,
    ];

    /// A lower-case name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            StartFailure::Spawn => "spawn",
            StartFailure::Exited => "exited",
            StartFailure::Timeout => "timeout",
            StartFailure::Unreachable => "unreachable",
            StartFailure::NoCapacity => "no_capacity",
        }
    }
}

impl fmt::Display for StartFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a provider could not start a node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("cannot start node {node_id} ({kind}): {message}")]
    Start {
        node_id: String,
        kind: StartFailure,
        message: String,
    },
    #[error("no node is free: all {0} configured node addresses are in use")]
    NoCapacity(usize),
    #[error("the node provider is shutting down")]
    Closed,
}

impl ProviderError {
    /// Why the start failed, or `None` when it was refused because the provider is closing
    /// (not a failure of the node).
    pub fn start_failure(&self) -> Option<StartFailure> {
        match self {
            ProviderError::Start { kind, .. } => Some(*kind),
            ProviderError::NoCapacity(_) => Some(StartFailure::NoCapacity),
            ProviderError::Closed => None,
        }
    }
}

/// A node the provider found no longer running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoneNode {
    pub node_id: String,
    /// What was seen, for people (`the node-service process 42 was killed by signal 9`).
    pub detail: String,
}

/// Starts, stops and watches nodes. Implementations must be safe to call concurrently.
pub trait NodeProvider: Send + Sync + 'static {
    /// A short name for logs (`local`, `static`, ...).
    fn name(&self) -> &'static str;

    /// Brings node `node_id` up with `memory_bytes` for containers; returns where its
    /// node service listens, and how to find it again, once it answers its health check.
    fn start_node(
        &self,
        node_id: &str,
        memory_bytes: u64,
    ) -> impl Future<Output = Result<StartedNode, ProviderError>> + Send;

    /// The nodes of an earlier run this provider finds by itself, without the state file
    /// (the docker provider: its node containers, by label). By default none.
    fn discover(&self) -> impl Future<Output = Vec<FoundNode>> + Send {
        async { Vec::new() }
    }

    /// Takes back node `node_id` of an earlier run, listening at `endpoint`, by its `handle`:
    /// from now on the provider watches, stops and kills it as if it had started it. Fails,
    /// saying why, when that process or container is gone or is not that node's any more;
    /// then nothing is taken (and nothing else is ever killed for it).
    fn adopt(
        &self,
        node_id: &str,
        endpoint: &NodeEndpoint,
        handle: &NodeHandle,
    ) -> impl Future<Output = Result<(), String>> + Send;

    /// Adoption is over and `adopted` are the nodes taken back: removes whatever else of the
    /// earlier run remains (the docker provider: its instance's containers of no adopted
    /// node). By default nothing.
    fn adoption_done(&self, adopted: &[String]) -> impl Future<Output = ()> + Send {
        let _ = adopted;
        async {}
    }

    /// Stops node `node_id` and everything running on it (gracefully first); returns once it
    /// is gone. Unknown ids are ignored.
    fn stop_node(&self, node_id: &str) -> impl Future<Output = ()> + Send;

    /// Stops node `node_id` without a grace period (it failed); returns once it is gone.
    /// Unknown ids are ignored. By default the same as [`NodeProvider::stop_node`].
    fn kill_node(&self, node_id: &str) -> impl Future<Output = ()> + Send {
        self.stop_node(node_id)
    }

    /// The started nodes that are no longer running. A provider forgets (and reaps) what it
    /// reports; each gone node is reported once. By default none (the provider cannot tell).
    fn gone_nodes(&self) -> impl Future<Output = Vec<GoneNode>> + Send {
        async { Vec::new() }
    }

    /// Returns when a node may have just stopped running (then [`NodeProvider::gone_nodes`]
    /// says which), so exits are noticed at once rather than at the next probe. By default
    /// never returns.
    fn node_may_have_exited(&self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }

    /// Stops every node this provider started and refuses new starts.
    fn shutdown(&self) -> impl Future<Output = ()> + Send;

    /// Lets go of every node without stopping it, as a crash would (for tests and fault
    /// injection): they keep running for a restarted manager to adopt. Refuses new starts.
    fn detach(&self) -> impl Future<Output = ()> + Send;
}
