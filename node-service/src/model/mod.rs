//! The node service's entities: plain data, no I/O.
//!
//! A node holds many [`Container`]s; each runs one function ([`ContainerSpec`]) and is either
//! running or dead (its process exited or stopped answering), and counts the invocations
//! running in it ([`Calls`]). An [`Invocation`] is the result of one call into a container;
//! [`StatsReport`] is what `GetStats` answers, [`NodeDescription`] what `DescribeNode` answers
//! (what a restarted scheduler rebuilds its view of the node from). The warm pool's
//! containers are bound to no function and are not the node's containers until a create
//! takes one ([`Created`], [`WarmPoolStats`]).
//!
//! Times of day (`*_at_ms`) are the node's wall clock in ms since the Unix epoch, read by the
//! service through its `HostProbe` port: they travel to other machines, so they cannot be
//! monotonic instants.
//!
//! A function made of the user's own code names a [`bundle`] in its handler.

pub mod bundle;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// The function a container runs, as `CreateContainer` asked for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerSpec {
    pub function_name: String,
    pub handler: String,
    /// The container's memory limit.
    pub memory_bytes: u64,
    /// The function's timeout; 0 = the container service's default.
    pub timeout_ms: u64,
}

/// Where a runtime started a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerHandle {
    /// A uuid v4 string.
    pub id: String,
    /// `host:port` of the container service inside it.
    pub address: String,
}

/// Whether a container can take invocations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContainerState {
    Running,
    /// Its process exited or stopped answering; it only waits for `RemoveContainer`.
    Dead {
        reason: String,
    },
}

/// The invocations running in one container now, and when one last started or ended.
///
/// Updated on the invoke path without a lock (two atomics), and shared by every version of
/// the container's record: a state change replaces the record (see the store) but clones
/// this `Arc`, so a call that began on the running record ends on the one marked dead.
#[derive(Debug, Default)]
pub struct Calls {
    in_flight: AtomicU64,
    last_used_at_ms: AtomicI64,
}

impl Calls {
    /// No call yet; "last used" is the creation time until one comes.
    pub fn new(created_at_ms: i64) -> Calls {
        Calls {
            in_flight: AtomicU64::new(0),
            last_used_at_ms: AtomicI64::new(created_at_ms),
        }
    }

    /// A call starts at `now_ms`.
    pub fn begin(&self, now_ms: i64) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.last_used_at_ms.fetch_max(now_ms, Ordering::AcqRel);
    }

    /// A call that [`Calls::begin`] counted ends at `now_ms`.
    pub fn end(&self, now_ms: i64) {
        self.last_used_at_ms.fetch_max(now_ms, Ordering::AcqRel);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// Calls running now.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// When a call last started or ended (the creation time if none did); never goes back.
    pub fn last_used_at_ms(&self) -> i64 {
        self.last_used_at_ms.load(Ordering::Acquire)
    }
}

/// Equal when both read the same now (records compare by what they say).
impl PartialEq for Calls {
    fn eq(&self, other: &Calls) -> bool {
        (self.in_flight(), self.last_used_at_ms()) == (other.in_flight(), other.last_used_at_ms())
    }
}

impl Eq for Calls {}

/// One container on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    pub address: String,
    pub spec: ContainerSpec,
    pub state: ContainerState,
    /// When it became this node's container (started for a create, or taken from the pool).
    pub created_at_ms: i64,
    /// Its invocations; shared by every version of this record.
    pub calls: Arc<Calls>,
}

/// One container as `DescribeNode` reports it: a snapshot of its record and its calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerDescription {
    pub id: String,
    /// Where the node reaches its container service (`host:port`).
    pub address: String,
    pub spec: ContainerSpec,
    pub dead: bool,
    pub in_flight: u64,
    pub created_at_ms: i64,
    pub last_used_at_ms: i64,
}

impl From<&Container> for ContainerDescription {
    fn from(c: &Container) -> ContainerDescription {
        ContainerDescription {
            id: c.id.clone(),
            address: c.address.clone(),
            spec: c.spec.clone(),
            dead: c.state != ContainerState::Running,
            in_flight: c.calls.in_flight(),
            created_at_ms: c.created_at_ms,
            last_used_at_ms: c.calls.last_used_at_ms(),
        }
    }
}

/// Who the node is, who reserved it, and every container it holds (running and dead; not
/// the warm pool's): what `DescribeNode` answers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeDescription {
    pub node_id: String,
    pub live_id: String,
    /// The account of the latest `Reserve` ("" before any).
    pub owner_account_id: String,
    /// When the latest `Reserve` came (0 before any).
    pub reserved_at_ms: i64,
    pub total_memory_bytes: u64,
    /// Ordered by creation time, then id.
    pub containers: Vec<ContainerDescription>,
    /// The machine the node runs on.
    pub machine: String,
}

/// What a create made: the container, and whether the warm pool served it (a container
/// started ahead of time, bound now) instead of a container started for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Created {
    pub container: Container,
    pub from_pool: bool,
}

/// The warm pool's figures at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WarmPoolStats {
    /// How many unbound containers the pool keeps (0 = off).
    pub size: usize,
    /// Started, answering, waiting to be taken.
    pub ready: usize,
    /// Being started (or waiting to retry a failed start).
    pub starting: usize,
    /// Creates served from the pool.
    pub hits: u64,
    /// Creates that found the pool empty (or every ready container failing to bind).
    pub misses: u64,
    /// Pool containers thrown away: died while waiting, or failed to bind.
    pub discarded: u64,
    /// Pool containers that failed to start.
    pub start_failures: u64,
}

/// The codes a node sets in `x-faas-error-code` (`faas_proto::meta::ERROR_CODE`) on an
/// `InvokeFunction` error whose event never reached the function, so the API server can tell
/// "retry on another container" from "the function may have run" (see
/// `docs/CONVENTIONS.md`, self-healing).
pub mod error_code {
    /// No such container on this node (status NOT_FOUND).
    pub const CONTAINER_NOT_FOUND: &str = "ContainerNotFound";
    /// The node already knew the container was dead (status FAILED_PRECONDITION).
    pub const CONTAINER_DEAD: &str = "ContainerDead";
    /// Connecting to the container failed: its process is gone; the node buried it
    /// (status UNAVAILABLE).
    pub const CONTAINER_UNREACHABLE: &str = "ContainerUnreachable";
    /// The container runs another function or handler (status FAILED_PRECONDITION).
    pub const WRONG_FUNCTION: &str = "WrongFunction";
}

/// The function fields an `InvokeFunction` request may carry (all optional).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FunctionMeta {
    pub function_name: String,
    pub handler: String,
    pub timeout_ms: i64,
    pub memory_bytes: i64,
}

/// One call into a container, as the container service receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvokeCall {
    pub request_id: String,
    pub function_name: String,
    pub handler: String,
    pub event: Vec<u8>,
    /// 0 = the container's own timeout.
    pub timeout_ms: u64,
}

/// Why an invocation failed: the container service's `error_code` ("Timeout",
/// "OutOfMemory", "BadEvent", "FunctionError") or the node's own "ContainerExited".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub code: String,
    pub message: String,
}

impl Failure {
    /// The error code the node reports when a container's process is gone or silent.
    pub const CONTAINER_EXITED: &'static str = "ContainerExited";
    /// The error code the node reports when the kernel killed a container for memory.
    pub const OUT_OF_MEMORY: &'static str = "OutOfMemory";

    /// `"<code>: <message>"`, the form the reply's error fields carry.
    pub fn text(&self) -> String {
        format!("{}: {}", self.code, self.message)
    }
}

/// The result of one invocation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Invocation {
    pub body: Vec<u8>,
    pub duration_nanos: i64,
    pub max_memory_bytes: i64,
    pub function_log: String,
    /// `None` on success.
    pub failure: Option<Failure>,
    /// Whether the container ran the function (false when it could not be reached).
    pub handled: bool,
}

impl Invocation {
    /// The invocation that never reached a live container.
    pub fn container_exited(reason: &str) -> Invocation {
        Invocation::lost(Failure::CONTAINER_EXITED, reason)
    }

    /// The invocation whose container the kernel killed for passing its memory limit.
    pub fn out_of_memory(reason: &str) -> Invocation {
        Invocation::lost(Failure::OUT_OF_MEMORY, reason)
    }

    fn lost(code: &str, reason: &str) -> Invocation {
        Invocation {
            failure: Some(Failure {
                code: code.to_string(),
                message: reason.to_string(),
            }),
            handled: false,
            ..Invocation::default()
        }
    }
}

/// Whether a runtime's container process still runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Liveness {
    Running,
    Exited,
    /// The container was killed for passing its memory limit (the kernel's OOM killer).
    OutOfMemory,
    /// The runtime does not know the container.
    Unknown,
}

/// Measured usage of one container.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerUsage {
    pub id: String,
    /// Resident memory of the container's processes.
    pub memory_bytes: u64,
    /// Percent of one core, like `docker stats` (2 busy cores = 200).
    pub cpu_pct: f64,
    pub memory_limit_bytes: u64,
    pub alive: bool,
}

/// Measured usage of one process (the node service itself).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessUsage {
    pub memory_bytes: u64,
    pub cpu_pct: f64,
}

/// The node's working file system.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskUsage {
    pub total_bytes: u64,
    pub avail_bytes: u64,
    pub total_inodes: u64,
    pub free_inodes: u64,
}

/// The node's figures in `GetStats`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeStats {
    pub total_memory_bytes: u64,
    pub memory_usage_bytes: u64,
    pub available_memory_bytes: u64,
    pub cpu_pct: f64,
    pub disk: DiskUsage,
    /// Sum of the memory limits of the running containers (may exceed the total: the
    /// contest allows over-commit).
    pub committed_memory_bytes: u64,
}

/// What `GetStats` answers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatsReport {
    pub node: NodeStats,
    pub containers: Vec<ContainerUsage>,
    pub live_id: String,
    pub owner_account_id: String,
}

/// How long the node waits for a container's answer beyond the function's own timeout
/// before it declares the container silent.
pub const ANSWER_GRACE: Duration = Duration::from_secs(5);

/// The timeout assumed when neither the request nor the container sets one (the container
/// service's own default).
pub const DEFAULT_TIMEOUT_MS: u64 = 60_000;
