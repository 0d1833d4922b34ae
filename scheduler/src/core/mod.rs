//! The policy core: a pure, deterministic state machine.
//!
//! Events go in ([`Event`]: an acquire, a return, a node reserved, a container created, a
//! stats sample, a timer tick...), decisions come out ([`Decision`]: grant, reject, reserve a
//! node, create or remove a container, release a node). There is no clock (time is the `now`
//! argument), no I/O, no async: the live gRPC service and the e2e simulator drive the same
//! code, the simulator in virtual time.
//!
//! [`State`] holds the bookkeeping every policy shares (tables, leases, waiting requests,
//! operations in flight, validation, memory accounting); a [`Policy`] owns a `State` and only
//! decides where and when. Policies are found by name with [`policy_by_name`].

pub mod reasons;
pub mod state;

use std::fmt;

use crate::model::{
    AdoptedContainer, FunctionError, FunctionSpec, Millis, NodeAddr, NodeInfo, OpId, StatsSample,
    Text,
};
pub use crate::policies::{POLICY_NAMES, policy_by_name};
pub use state::{CreateOp, Healed, Op, ReserveOp, Returned, State, Waiter};

/// An acquire: a request wants a container of `function` before `deadline`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acquire {
    /// The invocation's id; it comes back in the return.
    pub request_id: Text,
    /// The account the call is made for (passed on to `ReserveNode`).
    pub account_id: Text,
    /// The function to run.
    pub function: FunctionSpec,
    /// When the caller stops waiting (scheduler clock).
    pub deadline: Millis,
}

/// A return: the request is done with its container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Return {
    /// The invocation's id.
    pub request_id: Text,
    /// The container it held.
    pub container_id: Text,
    /// How long the function ran, ns.
    pub duration_ns: u64,
    /// The function's peak memory, bytes.
    pub max_memory_bytes: u64,
    /// The execution's failure, if it failed.
    pub error: Option<FunctionError>,
}

/// Something that happened: the input of [`Policy::handle`].
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A request wants a container.
    Acquire(Acquire),
    /// A request gives its container back.
    Return(Return),
    /// The caller of an acquire went away: forget the request if it waits, give the container
    /// back (without counting a call) if it was granted but never delivered.
    Cancel {
        /// The request.
        request_id: Text,
    },
    /// A [`Decision::ReserveNode`] succeeded.
    NodeReserved {
        /// The operation.
        op: OpId,
        /// The node.
        node: NodeInfo,
    },
    /// A [`Decision::ReserveNode`] failed.
    NodeReserveFailed {
        /// The operation.
        op: OpId,
        /// The resource manager had no node left (`RESOURCE_EXHAUSTED`).
        exhausted: bool,
        /// What it said.
        message: String,
    },
    /// A [`Decision::CreateContainer`] succeeded.
    ContainerCreated {
        /// The operation.
        op: OpId,
        /// The id the node service gave the container.
        container_id: Text,
    },
    /// A [`Decision::CreateContainer`] failed.
    ContainerCreateFailed {
        /// The operation.
        op: OpId,
        /// What the node service said.
        message: String,
        /// The node refused the create (FAILED_PRECONDITION / INVALID_ARGUMENT: it cannot
        /// run the function): the waiters are rejected at once, nothing is retried.
        refused: bool,
    },
    /// A [`Decision::RemoveContainer`] completed (or the container is gone anyway).
    ContainerRemoved {
        /// The container.
        container_id: Text,
    },
    /// A [`Decision::ReleaseNode`] completed.
    NodeReleased {
        /// The node.
        node_id: Text,
    },
    /// A node's `GetStats` answer (also a successful health observation of the node).
    Stats(StatsSample),
    /// A failed health observation of a node: `GetStats`, a create or a remove failed at the
    /// transport level or got no answer in time. A node that fails every observation for
    /// [`PolicyOptions::node_lost_after_ms`] is lost (see [`State::heal`]).
    NodeUnreachable {
        /// The node.
        node_id: Text,
        /// What failed.
        message: String,
    },
    /// The function was deleted (`faas.scheduler.v1.SchedulerAdmin/RetireFunction`): its
    /// containers are retired as for a changed definition (see [`State::retire_function`]).
    RetireFunction {
        /// The function's name.
        function: Text,
    },
    /// Keep the function's idle containers at least `hold_ms` from now, whatever the
    /// policy's keep-alive says (`faas.scheduler.v1.SchedulerAdmin/HoldFunction`): replaces
    /// an earlier hold, 0 ends it, unknown functions are fine (see [`state::hold`]).
    HoldFunction {
        /// The function's name.
        function: Text,
        /// How long from now, ms.
        hold_ms: Millis,
    },
    /// A node reserved for the scheduler that it did not know (it restarted, or the resource
    /// manager re-adopted the node): taken over with the containers the node reports (see
    /// [`State::adopt_node`]).
    NodeAdopted {
        /// The node.
        node: NodeInfo,
        /// When it was reserved (scheduler clock).
        reserved_at: Millis,
        /// Its containers, as the node describes them.
        containers: Vec<AdoptedContainer>,
    },
    /// Time passed (deadlines, periodic policy work).
    Tick,
}

/// A container handed to a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The request.
    pub request_id: Text,
    /// The container.
    pub container_id: Text,
    /// The container's node.
    pub node_id: Text,
    /// Its node service's address.
    pub node_address: Text,
    /// Its node service's port.
    pub node_port: u16,
    /// Whether the container was created for this request.
    pub cold: bool,
}

/// What to do: the output of [`Policy::handle`].
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Answer a waiting acquire with a container.
    Grant(Grant),
    /// Answer a waiting acquire with an error.
    Reject {
        /// The request.
        request_id: Text,
        /// Why.
        error: AcquireError,
    },
    /// Reserve one more node; answer with `NodeReserved` / `NodeReserveFailed` for `op`.
    ReserveNode {
        /// The operation.
        op: OpId,
    },
    /// Create a container; answer with `ContainerCreated` / `ContainerCreateFailed` for `op`.
    CreateContainer {
        /// The operation.
        op: OpId,
        /// Where.
        node: NodeAddr,
        /// Of which function.
        function: FunctionSpec,
    },
    /// Remove a container; answer with `ContainerRemoved`.
    RemoveContainer {
        /// Where.
        node: NodeAddr,
        /// Which.
        container_id: Text,
    },
    /// Release a node; answer with `NodeReleased`.
    ReleaseNode {
        /// Which.
        node_id: Text,
    },
    /// Something about the platform's health changed (for logs, metrics and reports; no
    /// answer expected).
    Health(HealthNote),
}

/// A health transition the core decided, with what it saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HealthNote {
    /// A node failed its first observation since its last success.
    NodeSuspect {
        /// The node.
        node_id: Text,
        /// What failed.
        reason: String,
    },
    /// A suspect node answered again.
    NodeRecovered {
        /// The node.
        node_id: Text,
        /// How long it was suspect, ms.
        after_ms: Millis,
    },
    /// A node failed every observation for the loss time: forgotten and released.
    NodeLost {
        /// The node.
        node_id: Text,
        /// Containers forgotten with it.
        containers: u32,
        /// Requests that waited on creates there and are placed again.
        replaced_requests: u32,
        /// The latest failure seen.
        reason: String,
    },
    /// A container was found dead outside a call (missing from its node's stats).
    ContainerLost {
        /// The container.
        container_id: Text,
        /// Its node.
        node_id: Text,
        /// Why it is taken for dead.
        reason: String,
    },
    /// A lease was held past its function's timeout plus the grace and was reclaimed.
    LeaseExpired {
        /// The request that held it.
        request_id: Text,
        /// The container.
        container_id: Text,
        /// How long it was held, ms.
        held_ms: Millis,
    },
    /// A node reserved for the scheduler that it did not hold was taken over (a restart).
    NodeAdopted {
        /// The node.
        node_id: Text,
        /// Containers adopted.
        containers: u32,
        /// Calls running in them that were granted before the restart.
        orphan_calls: u32,
        /// Containers removed instead (dead, or of an older definition and idle).
        removed: u32,
    },
    /// A function's definition changed or the function was deleted: its containers of the
    /// old definition are retired.
    DefinitionChanged {
        /// The function.
        function: Text,
        /// Idle containers removed at once.
        removed: u32,
        /// Busy containers that finish their calls first.
        draining: u32,
    },
}

impl HealthNote {
    /// A short lower-case label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            HealthNote::NodeSuspect { .. } => "node_suspect",
            HealthNote::NodeRecovered { .. } => "node_recovered",
            HealthNote::NodeLost { .. } => "node_lost",
            HealthNote::ContainerLost { .. } => "container_lost",
            HealthNote::LeaseExpired { .. } => "lease_expired",
            HealthNote::DefinitionChanged { .. } => "definition_changed",
            HealthNote::NodeAdopted { .. } => "node_adopted",
        }
    }
}

impl fmt::Display for HealthNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HealthNote::NodeSuspect { node_id, reason } => {
                write!(f, "node {node_id} is suspect: {reason}")
            }
            HealthNote::NodeRecovered { node_id, after_ms } => {
                write!(f, "node {node_id} answers again after {after_ms} ms")
            }
            HealthNote::NodeLost {
                node_id,
                containers,
                replaced_requests,
                reason,
            } => write!(
                f,
                "node {node_id} is lost ({reason}): {containers} containers forgotten, {replaced_requests} waiting requests placed again, node released"
            ),
            HealthNote::ContainerLost {
                container_id,
                node_id,
                reason,
            } => write!(
                f,
                "container {container_id} on node {node_id} is dead: {reason}"
            ),
            HealthNote::LeaseExpired {
                request_id,
                container_id,
                held_ms,
            } => write!(
                f,
                "lease of request {request_id} on container {container_id} reclaimed after {held_ms} ms"
            ),
            HealthNote::NodeAdopted {
                node_id,
                containers,
                orphan_calls,
                removed,
            } => write!(
                f,
                "node {node_id} adopted with {containers} containers ({orphan_calls} calls running from before; {removed} removed)"
            ),
            HealthNote::DefinitionChanged {
                function,
                removed,
                draining,
            } => write!(
                f,
                "function {function} changed or was deleted: {removed} idle containers of the old definition removed, {draining} draining"
            ),
        }
    }
}

/// Why an acquire is answered with an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AcquireErrorCode {
    /// No node can be reserved (the resource manager said so) or a function cannot fit a node.
    ResourceExhausted,
    /// No container became available before the request's deadline.
    DeadlineExceeded,
    /// A node or container could not be obtained for another reason (worth a retry).
    Unavailable,
    /// A node refused to create the function's container (it cannot run it: an image not
    /// on the machine, a bundle it cannot find): not worth a retry until that is fixed.
    FailedPrecondition,
}

/// An acquire answered with an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcquireError {
    /// The kind of failure.
    pub code: AcquireErrorCode,
    /// A message a person can act on.
    pub message: String,
}

impl fmt::Display for AcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AcquireError {}

/// The triggering event itself is wrong (answered to its caller; the state is unchanged).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    /// A return names a container the scheduler does not hold.
    #[error("container {container_id} is not known to the scheduler")]
    UnknownContainer {
        /// The container.
        container_id: Text,
    },
    /// A second return of one request.
    #[error("request {request_id} was already returned")]
    AlreadyReturned {
        /// The request.
        request_id: Text,
    },
    /// A return of a request whose lease expired and was reclaimed.
    #[error(
        "request {request_id} held its container past its function's timeout plus the grace; the lease expired and was reclaimed"
    )]
    LeaseExpired {
        /// The request.
        request_id: Text,
    },
    /// A return of a request that holds no container.
    #[error(
        "request {request_id} holds no container: it was never granted one (or was returned too long ago to be remembered)"
    )]
    UnknownRequest {
        /// The request.
        request_id: Text,
    },
    /// A return naming another container than the one the request holds.
    #[error("request {request_id} holds container {held}, not {given}")]
    WrongContainer {
        /// The request.
        request_id: Text,
        /// The container it holds.
        held: Text,
        /// The container the return named.
        given: Text,
    },
    /// An acquire with the id of a request that is already waiting or holding a container.
    #[error(
        "request {request_id} is already being served: return its container before reusing the id"
    )]
    AlreadyExists {
        /// The request.
        request_id: Text,
    },
    /// An acquire with an unusable function.
    #[error("function {name:?} is invalid: {reason}")]
    InvalidFunction {
        /// The function's name.
        name: Text,
        /// What is wrong.
        reason: String,
    },
    /// A result event for an operation the core does not know (a driver bug).
    #[error("{event} names unknown operation {op}")]
    UnknownOperation {
        /// The operation.
        op: OpId,
        /// The event's kind.
        event: &'static str,
    },
    /// An event contradicts the core's tables (a driver or peer bug).
    #[error("inconsistent event: {0}")]
    Inconsistent(String),
}

/// Settings every policy reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyOptions {
    /// The memory a reserved node is expected to offer before any was seen, bytes.
    pub expected_node_bytes: u64,
    /// How many returned request ids are remembered (to answer "already returned").
    pub remembered_returns: usize,
    /// A node failing every observation this long (and at least twice) is lost, ms.
    pub node_lost_after_ms: Millis,
    /// A lease held this long past its function's timeout is reclaimed, ms.
    pub lease_grace_ms: Millis,
}

/// The default of [`PolicyOptions::node_lost_after_ms`].
pub const NODE_LOST_AFTER_MS: Millis = 3000;
/// The default of [`PolicyOptions::lease_grace_ms`].
pub const LEASE_GRACE_MS: Millis = 10_000;

impl Default for PolicyOptions {
    fn default() -> Self {
        PolicyOptions {
            expected_node_bytes: crate::model::CONTEST_NODE_BYTES,
            remembered_returns: 100_000,
            node_lost_after_ms: NODE_LOST_AFTER_MS,
            lease_grace_ms: LEASE_GRACE_MS,
        }
    }
}

/// Counts for metrics and logs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The policy's name.
    pub policy: String,
    /// Containers being created.
    pub containers_creating: u64,
    /// Containers ready (idle or busy).
    pub containers_ready: u64,
    /// Containers being removed.
    pub containers_removing: u64,
    /// Dead containers not yet forgotten.
    pub containers_dead: u64,
    /// Nodes that take new containers.
    pub nodes_active: u64,
    /// Nodes being emptied.
    pub nodes_draining: u64,
    /// Nodes being released.
    pub nodes_releasing: u64,
    /// Reserves in flight.
    pub reserves_in_flight: u64,
    /// Memory of all held nodes, bytes.
    pub node_capacity_bytes: u64,
    /// Memory given to containers, bytes.
    pub node_used_bytes: u64,
    /// Requests waiting for a container.
    pub waiting: u64,
    /// Requests holding a container.
    pub leased: u64,
    /// Functions seen.
    pub functions: u64,
    /// Acquires accepted so far.
    pub acquires: u64,
    /// Grants of a container created for the request.
    pub cold_starts: u64,
    /// Grants of an existing container.
    pub warm_hits: u64,
    /// Acquires answered with an error.
    pub rejects: u64,
    /// Returns accepted.
    pub returns: u64,
    /// Containers that died.
    pub container_deaths: u64,
    /// Nodes that failed their observations (not yet lost).
    pub nodes_suspect: u64,
    /// Nodes declared lost.
    pub nodes_lost: u64,
    /// Leases reclaimed after they expired.
    pub leases_expired: u64,
    /// Node-milliseconds held so far (reserve to release, or to the latest time seen).
    pub node_millis: u64,
}

/// A scheduling policy: events in, decisions out, time as an argument.
pub trait Policy: Send {
    /// The name it is registered under.
    fn name(&self) -> &str;

    /// Applies `event` at time `now` and appends the resulting decisions to `out`.
    /// An `Err` means the event itself was refused; the state is as before the call and
    /// `out` received nothing.
    fn handle(
        &mut self,
        now: Millis,
        event: Event,
        out: &mut Vec<Decision>,
    ) -> Result<(), CoreError>;

    /// When the policy next needs a [`Event::Tick`] (the earliest deadline or timer), if ever.
    fn next_wakeup(&self) -> Option<Millis>;

    /// Counts for metrics.
    fn snapshot(&self) -> Snapshot;

    /// The shared bookkeeping, read-only (for inspection, tests and the simulator).
    fn state(&self) -> &State;

    /// The sink of decision reasons (`core::reasons`), for the driver to turn on and read;
    /// `None` for a policy that gives no reasons.
    fn reasons(&mut self) -> Option<&mut reasons::Reasons> {
        None
    }
}

/// `--policy` named a policy that does not exist.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown scheduling policy {name:?}; known policies: {}", known.join(", "))]
pub struct UnknownPolicy {
    /// The name asked for.
    pub name: String,
    /// The names that exist.
    pub known: Vec<&'static str>,
}
