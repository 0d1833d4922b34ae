//! A node and the states it goes through:
//!
//! ```text
//! Starting ──▶ Ready ──▶ Reserved ──▶ Released
//!    │           │           │            ▲
//!    │           │           └─▶ Failed ──┘   (its owner releases it: OK)
//!    ▼           ▼
//!  (forgotten: a start failure, or a ready node that failed)
//! ```
//!
//! Every start of a node is a new life with a new id and a new generation, so a node id
//! names exactly one reservation at most, and usage records never mix two lives. A node's
//! [`NodeHandle`] is how its provider finds that life again after the manager restarted:
//! its process (pid and start time) or its container, and the live id its node service
//! reports (a different live id at the same address is another life, not this node).
//!
//! A node *fails* when its process (or container) exits or when it stops answering its
//! health probes for too long ([`FailureReason`]). A ready node that fails was never anyone's:
//! it is forgotten at once, so no reserve can hand it out. A reserved node that fails belongs
//! to its account until the account releases it: it stays `Failed`, keeps its usage record
//! open and its slot, and its release succeeds like any other.

use std::fmt;

/// Where a node's `NodeService` listens.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeEndpoint {
    /// Host name or IP address, as clients should dial it.
    pub address: String,
    /// The node service's gRPC port.
    pub port: u16,
}

impl fmt::Display for NodeEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.address.contains(':') {
            write!(f, "[{}]:{}", self.address, self.port)
        } else {
            write!(f, "{}:{}", self.address, self.port)
        }
    }
}

/// How a node's life is found again after the manager restarted (persisted in the state
/// file). Which fields are set depends on the provider.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct NodeHandle {
    /// The node service's process id (`local` provider).
    pub pid: Option<u32>,
    /// When that process started, in clock ticks since boot (`/proc/<pid>/stat` field 22):
    /// with the pid, it names exactly one process, even after the pid is reused.
    pub process_start: Option<u64>,
    /// The node's container id (`docker` provider), or its Swarm service id (`swarm`).
    pub container_id: Option<String>,
    /// The live id the node service reported once it was up (`DescribeNode`).
    pub live_id: Option<String>,
}

/// A node its provider just brought up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartedNode {
    /// Where its node service listens.
    pub endpoint: NodeEndpoint,
    /// How to find it again.
    pub handle: NodeHandle,
}

impl StartedNode {
    /// A node known by its address only (a static node, a test).
    pub fn at(endpoint: NodeEndpoint) -> StartedNode {
        StartedNode {
            endpoint,
            handle: NodeHandle::default(),
        }
    }
}

/// Where a node is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeState {
    /// Its provider is bringing it up; not reservable yet.
    Starting,
    /// Up and waiting in the pool; the next `ReserveNode` may take it.
    Ready,
    /// Handed to an account; billed from `reserved_at_ms` on.
    Reserved,
    /// Reserved, then its process exited or stopped answering: stopped already, still its
    /// account's (and billed) until the account releases it.
    Failed,
    /// Released by its account and stopped; kept for the usage records.
    Released,
}

impl NodeState {
    /// Every state, in life order.
    pub const ALL: [NodeState; 5] = [
        NodeState::Starting,
        NodeState::Ready,
        NodeState::Reserved,
        NodeState::Failed,
        NodeState::Released,
    ];

    /// A lower-case name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Starting => "starting",
            NodeState::Ready => "ready",
            NodeState::Reserved => "reserved",
            NodeState::Failed => "failed",
            NodeState::Released => "released",
        }
    }

    /// Whether a node in this state occupies one of the pool's `max_nodes` slots by itself:
    /// every state but `Released` (a failed node holds its slot until its owner releases it;
    /// a released node still occupies its slot for the refill delay, which the pool tracks).
    pub fn holds_slot(self) -> bool {
        !matches!(self, NodeState::Released)
    }

    /// Whether the node belongs to an account (reserved, or failed while reserved).
    pub fn is_owned(self) -> bool {
        matches!(self, NodeState::Reserved | NodeState::Failed)
    }
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a node failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureReason {
    /// Its process exited or its container is gone or not running.
    Exited,
    /// It did not answer its health probes for the configured time.
    Unresponsive,
}

impl FailureReason {
    /// Every reason (metric labels are made for each).
    pub const ALL: [FailureReason; 2] = [FailureReason::Exited, FailureReason::Unresponsive];

    /// A lower-case name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Exited => "exited",
            FailureReason::Unresponsive => "unresponsive",
        }
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How and when a node failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub reason: FailureReason,
    /// What was seen, for people (`the node-service process 42 was killed by signal 9`).
    pub detail: String,
    /// When it was noticed (ms since the Unix epoch).
    pub at_ms: i64,
}

/// One life of a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Unique among every node this manager ever started.
    pub id: String,
    /// The life number (1, 2, ...), unique per manager; the id is built from it.
    pub generation: u64,
    /// Memory the node offers to containers, in bytes (`NodeDesc.memory_in_bytes`).
    pub memory_bytes: u64,
    pub state: NodeState,
    /// Known once the node is ready.
    pub endpoint: Option<NodeEndpoint>,
    /// Known once the node is ready.
    pub handle: NodeHandle,
    /// The account it was handed to, once reserved.
    pub owner_account: Option<String>,
    /// When it was asked to start (ms since the Unix epoch).
    pub started_at_ms: i64,
    /// When it was reserved.
    pub reserved_at_ms: Option<i64>,
    /// When it was released.
    pub released_at_ms: Option<i64>,
    /// Set when it failed while reserved.
    pub failure: Option<Failure>,
}

impl Node {
    /// A node that is being started now.
    pub fn starting(id: String, generation: u64, memory_bytes: u64, now_ms: i64) -> Node {
        Node {
            id,
            generation,
            memory_bytes,
            state: NodeState::Starting,
            endpoint: None,
            handle: NodeHandle::default(),
            owner_account: None,
            started_at_ms: now_ms,
            reserved_at_ms: None,
            released_at_ms: None,
            failure: None,
        }
    }

    /// Milliseconds this node has been (or was) reserved as of `now_ms`: the contest's node
    /// duration, from reserve to release (or to now while still reserved). 0 if never reserved.
    pub fn reserved_ms(&self, now_ms: i64) -> i64 {
        match self.reserved_at_ms {
            Some(from) => (self.released_at_ms.unwrap_or(now_ms) - from).max(0),
            None => 0,
        }
    }
}

/// Each node's id and state, in order: what tests compare.
#[cfg(test)]
pub fn ids_and_states(nodes: &[Node]) -> Vec<(&str, NodeState)> {
    nodes.iter().map(|n| (n.id.as_str(), n.state)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_time_runs_until_release() {
        let mut node = Node::starting("node-1".into(), 1, 10, 0);
        assert_eq!(node.reserved_ms(5_000), 0);
        node.reserved_at_ms = Some(1_000);
        assert_eq!(node.reserved_ms(4_000), 3_000);
        node.released_at_ms = Some(2_500);
        assert_eq!(node.reserved_ms(9_000), 1_500);
    }

    #[test]
    fn endpoints_print_as_dialable_addresses() {
        let v4 = NodeEndpoint {
            address: "127.0.0.1".into(),
            port: 80,
        };
        let v6 = NodeEndpoint {
            address: "::1".into(),
            port: 80,
        };
        assert_eq!(v4.to_string(), "127.0.0.1:80");
        assert_eq!(v6.to_string(), "[::1]:80");
    }
}
