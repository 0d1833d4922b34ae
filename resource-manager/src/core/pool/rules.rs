//! The pool's vocabulary: its rules from configuration, the actions it asks for, what a
//! reserve and a failure return, and how ids from clients are checked.

use std::fmt;

use faas_common::text::clip;
use faas_common::units::CONTEST_NODE_BYTES;

use crate::model::{Failure, Node, NodeState};

/// The longest account or node id accepted, in bytes.
pub const MAX_ID_BYTES: usize = 256;

/// A node fails for not answering only after at least this many missed probes in a row
/// (one late answer is not an outage).
pub const MISSED_PROBES_TO_FAIL: u32 = 2;

/// The pool's rules, from configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolRules {
    /// Nodes holding a slot at most (the contest: 20).
    pub max_nodes: usize,
    /// Nodes ready when the manager starts (the contest: 10).
    pub ready_nodes: usize,
    /// Delay of a refill after a reserve (or a failure), and of a released slot's reuse.
    pub refill_delay_ms: i64,
    /// Memory each node offers (the contest: 3072 MiB).
    pub node_memory_bytes: u64,
    /// Node ids are `{prefix}-{generation}`.
    pub node_id_prefix: String,
    /// A node that answered no probe for this long (and missed at least
    /// [`MISSED_PROBES_TO_FAIL`]) fails.
    pub failed_after_ms: i64,
    /// Back-off after the first start failure in a row; doubles with each further one.
    pub start_backoff_base_ms: i64,
    /// The longest back-off.
    pub start_backoff_max_ms: i64,
}

impl Default for PoolRules {
    fn default() -> PoolRules {
        PoolRules {
            max_nodes: 20,
            ready_nodes: 10,
            refill_delay_ms: 10_000,
            node_memory_bytes: CONTEST_NODE_BYTES,
            node_id_prefix: "node".to_string(),
            failed_after_ms: 3_000,
            start_backoff_base_ms: 1_000,
            start_backoff_max_ms: 30_000,
        }
    }
}

/// Something the caller must do for the pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start this node now; report back with [`Pool::node_started`](super::Pool::node_started) or [`Pool::node_start_failed`](super::Pool::node_start_failed).
    StartNode { node_id: String, memory_bytes: u64 },
    /// Stop this node now (gracefully: it may stop its containers first).
    StopNode { node_id: String },
    /// Kill this node now, without a grace period (it failed), and reap it.
    KillNode { node_id: String },
}

/// A node just taken for an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    /// The node as reserved (state `Reserved`, owner and reserved time set).
    pub node: Node,
    /// When the refill owed for it falls due.
    pub refill_at_ms: i64,
}

/// A node that just failed (or was found dead by a restarted manager): what to log and
/// count, and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedNode {
    pub node_id: String,
    /// The state it failed in: `Ready` (forgotten now, a refill owed) or `Reserved` (now
    /// `Failed`, until its account releases it).
    pub was: NodeState,
    pub failure: Failure,
    /// Kill it.
    pub actions: Vec<Action>,
}

/// What kind of id a client sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdKind {
    Account,
    Node,
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdKind::Account => "account ID",
            IdKind::Node => "node ID",
        })
    }
}

/// Why the pool refused a call. The messages are what clients see; ids in them are clipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("{0} cannot be empty")]
    EmptyId(IdKind),
    #[error("{kind} {id:?} is too long: at most {max} bytes are allowed", max = MAX_ID_BYTES)]
    IdTooLong { kind: IdKind, id: String },
    #[error("no available node can be reserved")]
    Exhausted,
    #[error(
        "node {0:?} not found: this resource manager has no node of that id (ids come from ReserveNode)"
    )]
    NotFound(String),
    #[error("node {id:?} is not reserved (it is {state}); only a reserved node can be released")]
    NotReserved { id: String, state: NodeState },
    #[error("the resource manager is shutting down")]
    Closed,
}

/// Checks an id a client sent: 1 to [`MAX_ID_BYTES`] bytes.
pub fn check_id(kind: IdKind, id: &str) -> Result<(), PoolError> {
    if id.is_empty() {
        return Err(PoolError::EmptyId(kind));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(PoolError::IdTooLong {
            kind,
            id: clip(id).into_owned(),
        });
    }
    Ok(())
}
