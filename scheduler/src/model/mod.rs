//! The scheduler's entities as plain data: functions, nodes, containers, leases, usage samples
//! and learned function profiles. No I/O, no clocks, no protocol types: the api layer converts
//! the contest's messages into these at the edge.
//!
//! Strings that are cloned on hot paths (ids, names, addresses) are `Arc<str>` so a clone is a
//! reference-count increment, not an allocation.

use std::fmt;
use std::sync::Arc;

/// Milliseconds on the scheduler's clock. The core never reads a clock: the caller passes `now`.
pub type Millis = u64;

/// A cheaply cloneable immutable string (ids, names, addresses).
pub type Text = Arc<str>;

/// One mebibyte, and the memory a contest node offers to containers (`ReserveNode`'s
/// `memory_in_bytes`, 3072 MiB), in bytes: the platform's units, re-exported.
pub use faas_common::units::{CONTEST_NODE_BYTES, MIB};

/// Identifies one asynchronous operation (a node reserve or a container create) the core asked
/// for; the result comes back as an event carrying the same id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(pub u64);

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "op-{}", self.0)
    }
}

/// A function as the scheduler sees it in an `AcquireContainer` call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionSpec {
    /// The function's name (unique per platform).
    pub name: Text,
    /// The memory limit of one container of this function, bytes.
    pub memory_bytes: u64,
    /// The function's execution timeout, ms.
    pub timeout_ms: u64,
    /// The handler string passed on to the node service.
    pub handler: Text,
}

/// A node as the resource manager describes it when it is reserved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's id.
    pub id: Text,
    /// Host name or IP of the node's node service.
    pub address: Text,
    /// Port of the node's node service.
    pub port: u16,
    /// Memory the node offers to containers, bytes.
    pub capacity_bytes: u64,
}

/// Where to reach a node's node service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeAddr {
    /// The node's id.
    pub id: Text,
    /// Host name or IP of the node service.
    pub address: Text,
    /// Port of the node service.
    pub port: u16,
}

/// The life cycle of a node the scheduler holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeState {
    /// Reserved and usable for new containers.
    Active,
    /// No new containers; its containers are being removed before a release.
    Draining,
    /// `ReleaseNode` was asked for; waiting for it to complete.
    Releasing,
}

impl NodeState {
    /// Every state, for metrics.
    pub const ALL: [NodeState; 3] = [NodeState::Active, NodeState::Draining, NodeState::Releasing];

    /// A lower-case name for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Active => "active",
            NodeState::Draining => "draining",
            NodeState::Releasing => "releasing",
        }
    }
}

/// The latest usage a node reported through `GetStats`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct NodeUsage {
    /// Total memory of the node, bytes.
    pub total_memory_bytes: u64,
    /// Memory in use, bytes.
    pub memory_usage_bytes: u64,
    /// Memory available, bytes.
    pub available_memory_bytes: u64,
    /// CPU in percent of one core (a 2-core node reads 0 to 200).
    pub cpu_pct: f64,
}

/// The latest usage of one container, from `GetStats`.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerUsage {
    /// The container's id.
    pub container_id: Text,
    /// The container's memory limit, bytes.
    pub total_memory_bytes: u64,
    /// Memory in use, bytes.
    pub memory_usage_bytes: u64,
    /// CPU in percent of one core.
    pub cpu_pct: f64,
}

/// One `GetStats` answer of one node.
#[derive(Clone, Debug, PartialEq)]
pub struct StatsSample {
    /// The node that answered.
    pub node_id: Text,
    /// When the sample was asked for (scheduler clock): containers created before this and
    /// missing from the sample are missing from the node.
    pub taken_at: Millis,
    /// The node's own usage.
    pub node: NodeUsage,
    /// Usage of each container on the node.
    pub containers: Vec<ContainerUsage>,
}

/// A node the scheduler holds.
#[derive(Clone, Debug)]
pub struct Node {
    /// The node's id.
    pub id: Text,
    /// Host name or IP of its node service.
    pub address: Text,
    /// Port of its node service.
    pub port: u16,
    /// Memory the node offers to containers, bytes.
    pub capacity_bytes: u64,
    /// Sum of the memory of the containers placed on the node (creating or live), bytes.
    pub used_bytes: u64,
    /// Containers placed on the node (creating or live, not dead).
    pub containers: u32,
    /// Life-cycle state.
    pub state: NodeState,
    /// When the node was reserved (scheduler clock).
    pub reserved_at: Millis,
    /// The latest `GetStats` usage, if any arrived.
    pub usage: Option<NodeUsage>,
    /// When `usage` was sampled.
    pub usage_at: Millis,
    /// Since when the node has failed every observation (no success since), if it has.
    pub suspect_since: Option<Millis>,
    /// Failed observations since the last success.
    pub failures: u32,
    /// What the latest failed observation said.
    pub last_failure: String,
}

impl Node {
    /// A freshly reserved node.
    pub fn new(info: NodeInfo, now: Millis) -> Node {
        Node {
            id: info.id,
            address: info.address,
            port: info.port,
            capacity_bytes: info.capacity_bytes,
            used_bytes: 0,
            containers: 0,
            state: NodeState::Active,
            reserved_at: now,
            usage: None,
            usage_at: 0,
            suspect_since: None,
            failures: 0,
            last_failure: String::new(),
        }
    }

    /// Memory not yet given to containers, bytes.
    pub fn free_bytes(&self) -> u64 {
        self.capacity_bytes.saturating_sub(self.used_bytes)
    }

    /// Where to reach the node's node service.
    pub fn addr(&self) -> NodeAddr {
        NodeAddr {
            id: self.id.clone(),
            address: self.address.clone(),
            port: self.port,
        }
    }
}

/// The life cycle of a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContainerState {
    /// `CreateContainer` is in flight (the container has no id yet).
    Creating,
    /// Live and grantable.
    Ready,
    /// `RemoveContainer` was asked for; never granted again.
    Removing,
    /// Reported dead (exited, out of memory); never granted again, removal asked for.
    Dead,
}

impl ContainerState {
    /// Every state, for metrics.
    pub const ALL: [ContainerState; 4] = [
        ContainerState::Creating,
        ContainerState::Ready,
        ContainerState::Removing,
        ContainerState::Dead,
    ];

    /// A lower-case name for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerState::Creating => "creating",
            ContainerState::Ready => "ready",
            ContainerState::Removing => "removing",
            ContainerState::Dead => "dead",
        }
    }
}

/// A live (or dying) container the scheduler knows by id.
#[derive(Clone, Debug)]
pub struct Container {
    /// The id the node service gave it.
    pub id: Text,
    /// The node it runs on.
    pub node_id: Text,
    /// The function it runs.
    pub function: Text,
    /// Its memory limit, bytes.
    pub memory_bytes: u64,
    /// Life-cycle state.
    pub state: ContainerState,
    /// Requests currently leased on it.
    pub in_flight: u32,
    /// How many requests may run on it at once.
    pub max_concurrency: u32,
    /// When it became ready.
    pub created_at: Millis,
    /// When a request last started or finished on it.
    pub last_used_at: Millis,
    /// Requests it has served.
    pub served: u64,
    /// The latest `GetStats` usage, if any arrived.
    pub usage: Option<ContainerUsage>,
    /// It runs a definition of its function that was replaced: never granted again, removed
    /// once its calls are done.
    pub stale: bool,
    /// Consecutive stats samples of its node that did not list it.
    pub missing_samples: u8,
    /// Its node is suspect (it failed its latest observations): not granted until the node
    /// answers again.
    pub parked: bool,
    /// How many of `in_flight` are calls no lease of this scheduler knows (they were granted
    /// before a restart, see [`AdoptedContainer`]): they hold their slots until they return
    /// or expire.
    pub orphans: u32,
}

impl Container {
    /// Whether it can take one more request now.
    pub fn has_free_slot(&self) -> bool {
        self.state == ContainerState::Ready
            && !self.stale
            && !self.parked
            && self.in_flight < self.max_concurrency
    }
}

/// A container a node reports holding, adopted by a scheduler that (re)starts: its view is
/// rebuilt from the nodes, as a Kubernetes controller re-lists before it reconciles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdoptedContainer {
    /// The container's id.
    pub id: Text,
    /// The definition it runs.
    pub function: FunctionSpec,
    /// Calls running in it now (granted by an earlier life of the scheduler).
    pub in_flight: u32,
    /// The node reports it dead: it is removed, not adopted.
    pub dead: bool,
}

/// A request holding a container between `AcquireContainer` and `ReturnContainer`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The invocation's request id.
    pub request_id: Text,
    /// The container it holds.
    pub container_id: Text,
    /// When it was granted.
    pub started_at: Millis,
    /// Whether the container was created for it.
    pub cold: bool,
    /// When the lease is reclaimed if it was not returned (its function's timeout plus the
    /// grace of [`crate::core::PolicyOptions::lease_grace_ms`]).
    pub expires_at: Millis,
}

/// An execution failure reported in `ReturnContainer`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionError {
    /// The error code (`error_code`), e.g. `ContainerExited`, `OutOfMemory`, `Timeout`.
    pub code: String,
    /// The error message (`error_message`).
    pub message: String,
}

/// Error codes (case-insensitive) in `ReturnContainer` meaning the container itself is gone
/// or unusable: it is marked dead, never granted again, and removed (see the self-healing
/// section of `docs/CONVENTIONS.md`).
pub const CONTAINER_FATAL_CODES: &[&str] = &[
    "ContainerExited",
    "OutOfMemory",
    "OOMKilled",
    "ContainerNotFound",
    "ContainerDead",
    "ContainerUnreachable",
    "WrongFunction",
];

/// The error code (case-insensitive) of a return whose caller could not reach the
/// container's node: a failed health observation of that node.
pub const NODE_UNAVAILABLE_CODE: &str = "NodeUnavailable";

impl FunctionError {
    /// Whether this error means the container cannot serve again.
    pub fn kills_container(&self) -> bool {
        let code = self.code.trim();
        CONTAINER_FATAL_CODES
            .iter()
            .any(|c| c.eq_ignore_ascii_case(code))
    }

    /// Whether the caller could not reach the container's node.
    pub fn node_unavailable(&self) -> bool {
        self.code.trim().eq_ignore_ascii_case(NODE_UNAVAILABLE_CODE)
    }
}

/// What the scheduler learned about a function from its returns and stats.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FunctionProfile {
    /// Returns seen.
    pub calls: u64,
    /// Returns with an error.
    pub errors: u64,
    /// Mean duration of the returned calls, ns.
    pub mean_duration_ns: f64,
    /// Longest duration seen, ns.
    pub max_duration_ns: u64,
    /// Highest memory use seen (returns and stats), bytes.
    pub peak_memory_bytes: u64,
    /// Highest container CPU seen in stats, percent of one core.
    pub peak_cpu_pct: f64,
    /// Containers of the function that died.
    pub deaths: u64,
}

impl FunctionProfile {
    /// Folds in one returned call.
    pub fn record_call(&mut self, duration_ns: u64, max_memory_bytes: u64, failed: bool) {
        self.calls += 1;
        if failed {
            self.errors += 1;
        }
        self.mean_duration_ns += (duration_ns as f64 - self.mean_duration_ns) / self.calls as f64;
        self.max_duration_ns = self.max_duration_ns.max(duration_ns);
        self.peak_memory_bytes = self.peak_memory_bytes.max(max_memory_bytes);
    }

    /// Folds in one container usage sample.
    pub fn record_usage(&mut self, memory_bytes: u64, cpu_pct: f64) {
        self.peak_memory_bytes = self.peak_memory_bytes.max(memory_bytes);
        if cpu_pct > self.peak_cpu_pct {
            self.peak_cpu_pct = cpu_pct;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fatal_codes_are_matched_case_insensitively() {
        let e = |code: &str| FunctionError {
            code: code.into(),
            message: String::new(),
        };
        assert!(e("ContainerExited").kills_container());
        assert!(e("outofmemory").kills_container());
        assert!(!e("Timeout").kills_container());
        assert!(!e("UserError").kills_container());
    }

    #[test]
    fn profile_keeps_a_running_mean_and_peaks() {
        let mut p = FunctionProfile::default();
        p.record_call(10, 100, false);
        p.record_call(30, 50, true);
        assert_eq!(p.calls, 2);
        assert_eq!(p.errors, 1);
        assert!((p.mean_duration_ns - 20.0).abs() < 1e-9);
        assert_eq!(p.max_duration_ns, 30);
        assert_eq!(p.peak_memory_bytes, 100);
        p.record_usage(500, 12.5);
        assert_eq!(p.peak_memory_bytes, 500);
        assert_eq!(p.peak_cpu_pct, 12.5);
    }
}
