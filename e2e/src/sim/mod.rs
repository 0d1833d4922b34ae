//! The policy simulator: the scheduler's real policy core ([`faas_scheduler::core::Policy`])
//! driven in virtual time against models of the resource manager, the node services and the
//! functions, producing the same [`RunResult`] as a live run.
//!
//! ## The loop
//!
//! A discrete-event loop over a binary heap of timed events (integer microseconds; ties in
//! the order they were scheduled) merged with the workload's time-sorted invocations (an
//! invocation and an event at the same instant: the event first). Each invocation becomes an
//! `Acquire` (deadline: [`SimOptions::acquire_timeout_ms`], as the API server's); every
//! [`Decision`] the policy makes is carried out by a model, which later answers with the
//! matching result event; a `Tick` is delivered at the policy's [`Policy::next_wakeup`].
//! The policy sees whole milliseconds (`now` = virtual µs / 1000).
//!
//! ## What is modelled
//!
//! - **Resource manager**: the contest's pool rules, as the real one applies them
//!   (`resource-manager/src/service/pool.rs`): [`SimOptions::ready_nodes`] nodes ready at
//!   the start, at most [`SimOptions::max_nodes`] live; each reserve takes the longest-ready
//!   node and owes a refill due [`SimOptions::refill_delay_ms`] later; a refill starts a node
//!   (ready [`SimOptions::node_start_ms`] later) when the live nodes (starting, ready,
//!   reserved, and released ones still inside their refill delay) stay within the maximum; a
//!   reserve with no ready node fails with `RESOURCE_EXHAUSTED`. Node-seconds come from the
//!   reserve and release times, as `GetNodesUsage` reports them. Calls take
//!   [`SimOptions::reserve_ms`] / [`SimOptions::release_ms`].
//! - **Node service**: a create takes a start latency drawn from
//!   [`SimOptions::container_start_ms`] (a percentile distribution; the default is fitted to
//!   the live `process` runtime, see [`SimOptions::default`]); as the real node service
//!   (and the contest), it lets containers' limits add up to more than the node's memory
//!   (over-commit); a removal takes [`SimOptions::container_remove_ms`]; releasing a node
//!   ends its containers.
//! - **Functions**: an invocation runs exactly its `expected_duration_ms` (cut at the
//!   function's timeout, then a `Timeout` error), and fails with `OutOfMemory` (which kills
//!   the container) when its `expected_memory_mb` exceeds the container's limit, or when
//!   what the node's containers use (each [`SimOptions::container_rss_bytes`] plus the
//!   memory of the calls running) would exceed the node's memory: the risk over-commit
//!   takes.
//! - **`GetStats`**: every [`SimOptions::stats_interval_ms`] each held node reports its
//!   containers as the live scheduler polls them: CPU is the busy time of CPU-bound bodies
//!   (`spin`, `cpu`: all of it; `memory`: a tenth, the page touching) over the interval, in
//!   percent of one core; memory is [`SimOptions::container_rss_bytes`] plus what the running
//!   calls touch.
//! - **Overheads**: [`SimOptions::acquire_overhead_ms`] is added to every scheduling latency
//!   (the API server → scheduler round trip, which the policy does not see);
//!   [`SimOptions::invoke_overhead_ms`] is added between the grant and the return (the node
//!   service → container → reply path), so it counts in response time and container busy
//!   time but not in the contest's RT.
//!
//! - **Node loss** ([`SimOptions::faults`], `kill-node@T` only): at T the node holding the
//!   most containers stops answering, as a SIGKILLed node service does live. Its containers
//!   die; the calls running in them fail (`UNAVAILABLE`, "the function may have run"; the
//!   container is returned with `NodeUnavailable`, as the API server does); a call granted a
//!   container there afterwards is refused at once and retried once on a new acquire
//!   (`<id>-retry`), as the API server retries a refused connection; its `GetStats`, creates
//!   and removes fail, each an [`Event::NodeUnreachable`] as the live stats poller and
//!   driver feed them. The policy core's health rules must notice, forget the node and
//!   release it; the resource manager model accepts that release. Results the core refuses
//!   because it already forgot the node (a create that completed on it, a late return) are
//!   ignored, as the live driver ignores them. The run then reports each fault's figures and
//!   what leaked at its end (reserved nodes, and live containers, the policy does not hold).
//!
//! ## What is not modelled
//!
//! CPU contention (a live 2-core machine slows `spin` bodies when many run at once; here a
//! body always takes its expected time), the CPU share a container's memory buys, network
//! failures other than a lost node, component restarts, and node start failures.
//!
//! The run is deterministic for a workload, a policy and [`SimOptions::seed`] (the seed
//! draws the container start latencies; the policy core has no randomness that affects
//! decisions).
//!
//! ## Memory: a big day in constant space
//!
//! A day of ten million calls must fit beside the policy, so nothing the simulator keeps
//! grows with the calls made, only with the calls in flight, the containers alive and the
//! day's length:
//!
//! - **The workload** is a [`CompactWorkload`]: 24 bytes a call (send time, function
//!   index, duration, memory), no event bytes. `faas simulate` draws a trace straight into
//!   it ([`crate::trace::Trace::to_compact`]); [`simulate`] converts a [`Workload`].
//! - **Requests in progress** live in a map keyed by invocation index (`Live`), from
//!   arrival to their end; nothing is kept per finished request.
//! - **The result** is streamed: each request, as it ends, goes into a
//!   [`RunSummary`] (exact counts and score totals, log-linear latency histograms within
//!   0.4%, per-second series), and each container, as it ends, adds its idle memory-time:
//!   its lifetime less the union of its calls' execution intervals, merged as the calls
//!   start (`Busy`), which is exactly what [`RunResult::idle_memory_mb_seconds`] computes
//!   from records. [`RunResult`]'s accessors read the summary with the same meaning.
//!   [`SimOptions::keep_records`] (`faas simulate --runs-json`) keeps a [`RequestRecord`]
//!   per request and a [`ContainerLifetime`] per container as before; a run with faults
//!   always does (the fault figures come from the records).
//!
//! ## Speed
//!
//! The loop's own work per call is a few hash-map operations on the simulator's short
//! ids (with `FxHasher`, not SipHash), one heap push and pop for its `Done` (the heap's
//! items are 40 bytes: an event for the policy waits beside the heap, in `Sim::parked`,
//! and the item carries its number), one allocation for its request id (`r{index}`,
//! which the policy's API needs as a string) and three histogram increments; no record,
//! no `String` per call. What remains is the policy's own work per event, and the
//! `GetStats` round every
//! [`SimOptions::stats_interval_ms`] (one event per held node, each listing its
//! containers): on a day with hundreds of nodes and thousands of containers, a longer
//! interval makes the run markedly faster. A round costs the simulator little per
//! container: each node keeps its containers' ids in the order a sample lists them, and
//! only the containers granted a call since the last sample (or running one at it) are
//! looked up; every other one reports its idle RSS and no CPU. The policy still reads
//! every listed container. `e2e/examples/big_day.rs` measures the big day per policy
//! (`docs/EXPERIMENTS.md`, "The simulator on the big day").

mod calls;
mod engine;
mod models;
mod nodes;
#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};

use std::sync::Arc;
use std::time::Duration;

use faas_common::stats::percentile_or_zero;
use faas_common::units::CONTEST_NODE_BYTES;
use faas_scheduler::core::{
    Acquire, AcquireErrorCode, Decision, Event, Policy, PolicyOptions, Return, UnknownPolicy,
    policy_by_name,
};
use faas_scheduler::model::{
    ContainerUsage, FunctionError, FunctionSpec, NODE_UNAVAILABLE_CODE, NodeInfo,
    NodeUsage as SchedNodeUsage, StatsSample, Text,
};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::fault::{FaultKind, FaultPlan, InjectedFault, Leaks};
use crate::record::{ContainerLifetime, NodeUsage, RequestRecord, RunResult, RunSummary};
use crate::workload::{CompactWorkload, HandlerKind, MIB, Percentiles, Workload};

use engine::{Sim, request_index};
pub use faas_scheduler::service::decisions::DecisionRecord;
use faas_scheduler::service::decisions::records as decision_records;
use models::*;

/// How long a connection to a lost node takes to fail (refused or reset), ms.
const LOST_NODE_ANSWER_MS: f64 = 1.0;

/// The models' settings (see the module documentation).
#[derive(Clone, Debug, PartialEq)]
pub struct SimOptions {
    /// Seeds the container start latencies.
    pub seed: u64,
    /// Nodes ready at the start (the contest: 10).
    pub ready_nodes: usize,
    /// Live nodes at most (the contest: 20).
    pub max_nodes: usize,
    /// Delay of a refill after a reserve, and of a released slot's reuse, ms.
    pub refill_delay_ms: u64,
    /// Memory each node offers, bytes (the contest: 3 GiB).
    pub node_memory_bytes: u64,
    /// Time a refilled node takes to become ready, ms.
    pub node_start_ms: f64,
    /// Time of a `ReserveNode` call, ms.
    pub reserve_ms: f64,
    /// Time of a `ReleaseNode` call, ms.
    pub release_ms: f64,
    /// Time a `CreateContainer` takes, ms: a distribution.
    pub container_start_ms: Percentiles,
    /// Time a `RemoveContainer` takes, ms.
    pub container_remove_ms: f64,
    /// Added to every scheduling latency, ms.
    pub acquire_overhead_ms: f64,
    /// Between a grant and the function's return, beyond its duration, ms.
    pub invoke_overhead_ms: f64,
    /// How long an acquire waits for a container (the API server's deadline), ms.
    pub acquire_timeout_ms: u64,
    /// The account acquires are made for.
    pub account: String,
    /// How often each node's usage reaches the policy (`GetStats`), ms; 0: never.
    pub stats_interval_ms: u64,
    /// A container's memory use with no call running, bytes.
    pub container_rss_bytes: u64,
    /// Faults struck during the run: `kill-node` only (see the module documentation).
    pub faults: FaultPlan,
    /// Keep a [`RequestRecord`] per request and a [`ContainerLifetime`] per container in the
    /// result (memory grows with the calls); otherwise the result carries a [`RunSummary`]
    /// (see "Memory" in the module documentation). A run with faults always keeps them (the
    /// fault figures are computed from the records).
    pub keep_records: bool,
}

impl Default for SimOptions {
    /// The contest's pool (10 ready, 20 at most, 10 s refill, 3 GiB nodes) and latencies
    /// fitted to a live run of the local platform with [`fit_container_start`] (the run and
    /// its figures: `docs/experiments-e2e.md`, "The simulator's default latencies").
    fn default() -> Self {
        SimOptions {
            seed: 1,
            ready_nodes: 10,
            max_nodes: 20,
            refill_delay_ms: 10_000,
            node_memory_bytes: CONTEST_NODE_BYTES,
            node_start_ms: 150.0,
            reserve_ms: 2.0,
            release_ms: 2.0,
            container_start_ms: default_container_start(),
            container_remove_ms: 5.0,
            acquire_overhead_ms: 0.2,
            invoke_overhead_ms: 1.5,
            acquire_timeout_ms: 30_000,
            account: "faas-sim".to_string(),
            stats_interval_ms: 1000,
            container_rss_bytes: 4 * MIB,
            faults: FaultPlan::default(),
            keep_records: false,
        }
    }
}

/// The default container start latency, ms (see [`SimOptions::default`]).
pub fn default_container_start() -> Percentiles {
    // The live cold acquires' percentiles less the warm acquire's cost (see
    // `SimOptions::default`); `Percentiles::new` accepts these constant points.
    Percentiles::new([
        (0.0, 3.4),
        (0.25, 5.0),
        (0.5, 7.8),
        (0.75, 17.9),
        (0.95, 45.1),
        (1.0, 57.1),
    ])
    .expect("constant, valid points")
}

/// Fits a container start distribution to a live run: the percentiles 0, 25, 50, 75, 95 and
/// 100 of its cold acquires' scheduling latencies, less the median warm acquire (the part of
/// every acquire that is not the start). `None` without a cold, successful request. This is
/// how [`default_container_start`] was made.
pub fn fit_container_start(run: &RunResult) -> Option<Percentiles> {
    let mut cold: Vec<f64> = run
        .requests
        .iter()
        .filter(|r| r.cold && r.error.is_none())
        .map(|r| r.scheduling_ms)
        .filter(|v| v.is_finite())
        .collect();
    if cold.is_empty() {
        return None;
    }
    cold.sort_by(f64::total_cmp);
    let mut warm: Vec<f64> = run
        .requests
        .iter()
        .filter(|r| !r.cold && r.error.is_none())
        .map(|r| r.scheduling_ms)
        .filter(|v| v.is_finite())
        .collect();
    warm.sort_by(f64::total_cmp);
    let base = percentile_or_zero(&warm, 0.5);
    let points = [0.0, 0.25, 0.5, 0.75, 0.95, 1.0]
        .map(|q| (q, (percentile_or_zero(&cold, q) - base).max(0.0)));
    Percentiles::new(points).ok()
}

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    UnknownPolicy(#[from] UnknownPolicy),
    #[error("invalid simulator option {name}: {reason}")]
    InvalidOption { name: &'static str, reason: String },
    #[error(
        "policy {policy} refused a result event at {at_ms} ms ({event}): {reason}; this is a bug in the policy or the simulator"
    )]
    Refused {
        policy: String,
        at_ms: u64,
        event: String,
        reason: String,
    },
}

/// A simulation's result and how much work it was.
#[derive(Clone, Debug)]
pub struct SimRun {
    pub result: RunResult,
    /// Events delivered to the policy.
    pub events: u64,
    /// Wall-clock time the loop took.
    pub wall: Duration,
}

impl SimRun {
    /// Invocations simulated per wall-clock second.
    pub fn invocations_per_second(&self) -> f64 {
        self.result.request_count() as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

/// Simulates `workload` under the policy registered as `policy`.
pub fn simulate_named(
    workload: &Workload,
    policy: &str,
    options: &SimOptions,
) -> Result<SimRun, SimError> {
    simulate_compact_named(&workload.into(), policy, options)
}

/// [`simulate_named`] on a compact workload (a big day: see [`CompactWorkload`]).
pub fn simulate_compact_named(
    workload: &CompactWorkload,
    policy: &str,
    options: &SimOptions,
) -> Result<SimRun, SimError> {
    let opts = PolicyOptions {
        expected_node_bytes: options.node_memory_bytes,
        ..PolicyOptions::default()
    };
    let p = policy_by_name(policy, &opts)?;
    simulate_compact(workload, p, options)
}

/// Simulates `workload` under `policy` (see the module documentation).
pub fn simulate(
    workload: &Workload,
    policy: Box<dyn Policy>,
    options: &SimOptions,
) -> Result<SimRun, SimError> {
    simulate_compact(&workload.into(), policy, options)
}

/// [`simulate`] on a compact workload.
pub fn simulate_compact(
    workload: &CompactWorkload,
    policy: Box<dyn Policy>,
    options: &SimOptions,
) -> Result<SimRun, SimError> {
    simulate_compact_with(workload, policy, options, None)
}

/// [`simulate_compact_named`], handing each of the policy's decisions with its reason to
/// `sink` as it is made (`at_unix_ms` is then the run's virtual time, ms from its start).
pub fn simulate_compact_explained(
    workload: &CompactWorkload,
    policy: &str,
    options: &SimOptions,
    sink: &mut dyn FnMut(DecisionRecord),
) -> Result<SimRun, SimError> {
    let opts = PolicyOptions {
        expected_node_bytes: options.node_memory_bytes,
        ..PolicyOptions::default()
    };
    let mut p = policy_by_name(policy, &opts)?;
    if let Some(r) = p.reasons() {
        r.listen(true);
    }
    simulate_compact_with(workload, p, options, Some(sink))
}

fn simulate_compact_with<'a>(
    workload: &'a CompactWorkload,
    policy: Box<dyn Policy>,
    options: &'a SimOptions,
    explain: Option<&'a mut dyn FnMut(DecisionRecord)>,
) -> Result<SimRun, SimError> {
    validate(options)?;
    options
        .faults
        .check_within(workload.duration_ms)
        .map_err(|reason| SimError::InvalidOption {
            name: "faults",
            reason,
        })?;
    let started = faas_common::clock::instant();
    let mut sim = Sim::new(workload, policy, options);
    sim.explain = explain;
    sim.run()?;
    let events = sim.delivered;
    let result = sim.finish();
    Ok(SimRun {
        result,
        events,
        wall: started.elapsed(),
    })
}

fn validate(o: &SimOptions) -> Result<(), SimError> {
    let bad = |name: &'static str, reason: String| Err(SimError::InvalidOption { name, reason });
    if o.max_nodes == 0 {
        return bad("max_nodes", "at least one node is needed".into());
    }
    if o.node_memory_bytes == 0 {
        return bad("node_memory_bytes", "a node must offer memory".into());
    }
    for (name, v) in [
        ("node_start_ms", o.node_start_ms),
        ("reserve_ms", o.reserve_ms),
        ("release_ms", o.release_ms),
        ("container_remove_ms", o.container_remove_ms),
        ("acquire_overhead_ms", o.acquire_overhead_ms),
        ("invoke_overhead_ms", o.invoke_overhead_ms),
    ] {
        if !(v.is_finite() && v >= 0.0) {
            return bad(name, format!("must be a finite number >= 0, got {v}"));
        }
    }
    if o.acquire_timeout_ms == 0 {
        return bad("acquire_timeout_ms", "must be above 0".into());
    }
    if let Some(f) = o.faults.0.iter().find(|f| f.kind != FaultKind::KillNode) {
        return bad(
            "faults",
            format!("the simulator models node loss only (kill-node), not {f}"),
        );
    }
    Ok(())
}
