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

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
use crate::record::{ContainerLifetime, NodeUsage, RequestRecord, RunResult};
use crate::workload::{HandlerKind, MIB, Percentiles, Workload};

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
}

impl Default for SimOptions {
    /// The contest's pool (10 ready, 20 at most, 10 s refill, 3 GiB nodes) and latencies
    /// fitted to the local platform (release build, `process` container runtime, 2 cores)
    /// on a 60 s contest run: a cold acquire took 3.6–57 ms (quartiles 5.2 / 8.0 / 18 ms,
    /// p95 45 ms; 85 samples), a warm one 0.17 ms at the median, and the invoke path around
    /// the body 1.4 ms at the median.
    fn default() -> Self {
        SimOptions {
            seed: 1,
            ready_nodes: 10,
            max_nodes: 20,
            refill_delay_ms: 10_000,
            node_memory_bytes: 3072 * MIB,
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
    let base = crate::record::percentile(&warm, 0.5);
    let points = [0.0, 0.25, 0.5, 0.75, 0.95, 1.0]
        .map(|q| (q, (crate::record::percentile(&cold, q) - base).max(0.0)));
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
        self.result.requests.len() as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

/// Simulates `workload` under the policy registered as `policy`.
pub fn simulate_named(
    workload: &Workload,
    policy: &str,
    options: &SimOptions,
) -> Result<SimRun, SimError> {
    let opts = PolicyOptions {
        expected_node_bytes: options.node_memory_bytes,
        ..PolicyOptions::default()
    };
    let p = policy_by_name(policy, &opts)?;
    simulate(workload, p, options)
}

/// Simulates `workload` under `policy` (see the module documentation).
pub fn simulate(
    workload: &Workload,
    policy: Box<dyn Policy>,
    options: &SimOptions,
) -> Result<SimRun, SimError> {
    validate(options)?;
    options
        .faults
        .check_within(workload.duration_ms)
        .map_err(|reason| SimError::InvalidOption {
            name: "faults",
            reason,
        })?;
    let started = Instant::now();
    let mut sim = Sim::new(workload, policy, options);
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

/// Virtual time, µs.
type Us = u64;

fn us(ms: f64) -> Us {
    (ms.max(0.0) * 1000.0).round() as Us
}

/// Something that happens at a virtual time.
enum Ev {
    /// Deliver a result event to the policy.
    Deliver(Event),
    /// Deliver an event about a lost node: the policy may refuse it (it forgot the node).
    DeliverLenient(Event),
    /// Strike fault `k` of [`SimOptions::faults`].
    Fault(usize),
    /// Invocation `i` acquires again (its first container was on a lost node).
    Retry(u32),
    /// Invocation `i`'s body ended: return its container.
    Done(u32),
    /// The policy asked to be woken.
    Tick,
    /// The pool has refills or cooling slots due.
    PoolWake,
    /// A refilled node finished starting.
    NodeUp(Text),
    /// A container's removal completed (the node model frees it, then tells the policy).
    Removed(Text),
    /// Every held node reports its usage.
    Stats,
}

struct Item {
    at: Us,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Item {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Item {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Reversed: the heap pops the earliest.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// The resource manager's pool rules (mirrors `resource-manager`'s `Pool`).
struct PoolModel {
    max: usize,
    refill_delay: Us,
    node_start: Us,
    memory: u64,
    ready: VecDeque<Text>,
    starting: usize,
    reserved: usize,
    refills: BinaryHeap<Reverse<Us>>,
    cooling: BinaryHeap<Reverse<Us>>,
    generation: u64,
}

impl PoolModel {
    fn occupied(&self) -> usize {
        self.starting + self.ready.len() + self.reserved + self.cooling.len()
    }

    fn new_id(&mut self) -> Text {
        self.generation += 1;
        Arc::from(format!("node-{}", self.generation))
    }

    fn next_wake(&self) -> Option<Us> {
        let Reverse(due) = *self.refills.peek()?;
        if self.occupied() < self.max {
            Some(due)
        } else {
            self.cooling.peek().map(|Reverse(t)| (*t).max(due))
        }
    }
}

/// A live container in the node model.
struct LiveContainer {
    lifetime: usize,
    node: Text,
    memory: u64,
    /// Invocations running in it.
    running: Vec<u32>,
    /// CPU time of CPU-bound bodies since the last stats sample, µs.
    cpu_us: u64,
}

/// A node held by the policy, in the node model.
struct HeldNode {
    usage: usize,
    /// What its containers use: their RSS and their running calls' memory, bytes.
    used: u64,
}

/// Per-invocation progress.
#[derive(Clone, Copy, Default)]
struct ReqState {
    granted: Option<Us>,
    answered: bool,
    /// Memory the running call holds on its node, bytes.
    holds: u64,
    /// It was granted a container on a lost node and acquired again.
    retried: bool,
}

struct Sim<'a> {
    w: &'a Workload,
    o: &'a SimOptions,
    policy: Box<dyn Policy>,
    policy_name: String,
    specs: Vec<FunctionSpec>,
    names: Vec<String>,
    rng: StdRng,
    heap: BinaryHeap<Item>,
    seq: u64,
    now: Us,
    out: Vec<Decision>,
    pool: PoolModel,
    pool_wake: Option<Us>,
    tick_at: Option<Us>,
    nodes: HashMap<Text, HeldNode>,
    containers: HashMap<Text, LiveContainer>,
    container_no: u64,
    reqs: Vec<ReqState>,
    records: Vec<Option<RequestRecord>>,
    /// The request id and container each granted request holds.
    holding: Vec<Option<(Text, Text)>>,
    /// Nodes lost to a fault (they answer nothing).
    lost: HashSet<Text>,
    /// Containers that died with a lost node, and their node.
    died_with_node: HashMap<Text, Text>,
    answered: usize,
    delivered: u64,
    /// When the nodes last reported their usage.
    last_stats: Us,
    result: RunResult,
}

impl<'a> Sim<'a> {
    fn new(w: &'a Workload, policy: Box<dyn Policy>, o: &'a SimOptions) -> Sim<'a> {
        let specs = w
            .functions
            .iter()
            .map(|f| FunctionSpec {
                name: Arc::from(f.name.as_str()),
                memory_bytes: f.memory_bytes,
                timeout_ms: f.timeout_ms,
                handler: Arc::from(f.handler.as_str()),
            })
            .collect();
        let names = w.functions.iter().map(|f| f.name.clone()).collect();
        let policy_name = policy.name().to_string();
        let mut pool = PoolModel {
            max: o.max_nodes,
            refill_delay: o.refill_delay_ms * 1000,
            node_start: us(o.node_start_ms),
            memory: o.node_memory_bytes,
            ready: VecDeque::new(),
            starting: 0,
            reserved: 0,
            refills: BinaryHeap::new(),
            cooling: BinaryHeap::new(),
            generation: 0,
        };
        for _ in 0..o.ready_nodes.min(o.max_nodes) {
            let id = pool.new_id();
            pool.ready.push_back(id);
        }
        let n = w.invocations.len();
        let mut result = RunResult::new(policy_name.clone(), w.name.clone());
        result.notes.push(format!(
            "simulated (seed {}): {} ready / {} max nodes of {} MiB, refill {} ms; container start {:.0}-{:.0} ms; \
             overheads: acquire {} ms, invoke {} ms; no CPU contention modelled",
            o.seed,
            o.ready_nodes,
            o.max_nodes,
            o.node_memory_bytes / MIB,
            o.refill_delay_ms,
            o.container_start_ms.min(),
            o.container_start_ms.max(),
            o.acquire_overhead_ms,
            o.invoke_overhead_ms
        ));
        Sim {
            w,
            o,
            policy,
            policy_name,
            specs,
            names,
            rng: StdRng::seed_from_u64(o.seed),
            heap: BinaryHeap::new(),
            seq: 0,
            now: 0,
            out: Vec::new(),
            pool,
            pool_wake: None,
            tick_at: None,
            nodes: HashMap::new(),
            containers: HashMap::new(),
            container_no: 0,
            reqs: vec![ReqState::default(); n],
            records: vec![None; n],
            holding: vec![None; n],
            lost: HashSet::new(),
            died_with_node: HashMap::new(),
            answered: 0,
            delivered: 0,
            last_stats: 0,
            result,
        }
    }

    fn push(&mut self, at: Us, ev: Ev) {
        self.seq += 1;
        self.heap.push(Item {
            at,
            seq: self.seq,
            ev,
        });
    }

    fn now_ms(&self) -> u64 {
        self.now / 1000
    }

    /// Runs until every invocation is answered, then to the end of the workload.
    fn run(&mut self) -> Result<(), SimError> {
        let w = self.w;
        let invs = &w.invocations;
        let mut next = 0usize;
        if self.o.stats_interval_ms > 0 {
            self.push(self.o.stats_interval_ms * 1000, Ev::Stats);
        }
        for (k, f) in self.o.faults.0.iter().enumerate() {
            self.push(f.at_ms * 1000, Ev::Fault(k));
        }
        loop {
            let arrival = invs.get(next).map(|i| i.at_ms * 1000);
            let event = self.heap.peek().map(|i| i.at);
            match (arrival, event) {
                (None, None) => break,
                (Some(a), Some(e)) if e <= a => self.step()?,
                (Some(a), _) => {
                    self.now = self.now.max(a);
                    self.arrive(next)?;
                    next += 1;
                }
                (None, Some(_)) => {
                    if self.answered == invs.len() {
                        break;
                    }
                    self.step()?;
                }
            }
        }
        // Events up to the end of the workload still count (node releases, removals).
        let end = (self.w.duration_ms * 1000).max(self.now);
        while self.heap.peek().is_some_and(|i| i.at <= end) {
            self.step()?;
        }
        self.now = end;
        Ok(())
    }

    fn step(&mut self) -> Result<(), SimError> {
        let Some(item) = self.heap.pop() else {
            return Ok(());
        };
        self.now = self.now.max(item.at);
        match item.ev {
            Ev::Deliver(Event::ContainerCreated { op, container_id })
                if self.died_with_node.contains_key(&container_id) =>
            {
                // Created on a node lost meanwhile: the create never answered.
                let node_id = self.died_with_node[&container_id].clone();
                self.unreachable(node_id, "CreateContainer: connection reset")?;
                self.deliver_lenient(Event::ContainerCreateFailed {
                    op,
                    message: "connection reset: the node stopped answering".into(),
                    refused: false,
                })
            }
            Ev::Deliver(e) => self.deliver(e),
            Ev::DeliverLenient(e) => self.deliver_lenient(e),
            Ev::Fault(k) => self.kill_node(k),
            Ev::Retry(i) => self.acquire(i as usize, true),
            Ev::Done(i) => self.done(i as usize),
            Ev::Tick => {
                if self.tick_at != Some(item.at) {
                    return Ok(()); // superseded by an earlier tick
                }
                self.tick_at = None;
                self.deliver(Event::Tick)
            }
            Ev::PoolWake => {
                if self.pool_wake == Some(item.at) {
                    self.pool_wake = None;
                }
                self.pool_tick();
                Ok(())
            }
            Ev::NodeUp(id) => {
                self.pool.starting = self.pool.starting.saturating_sub(1);
                self.pool.ready.push_back(id);
                Ok(())
            }
            Ev::Removed(id) => {
                if let Some(node_id) = self.died_with_node.remove(&id) {
                    self.unreachable(node_id, "RemoveContainer: connection refused")?;
                    return self.deliver_lenient(Event::ContainerRemoved { container_id: id });
                }
                if let Some(c) = self.containers.remove(&id) {
                    self.result.containers[c.lifetime].removed_ms = Some(self.now_ms() as i64);
                    if let Some(n) = self.nodes.get_mut(&c.node) {
                        n.used = n.used.saturating_sub(self.o.container_rss_bytes);
                    }
                }
                self.deliver(Event::ContainerRemoved { container_id: id })
            }
            Ev::Stats => self.stats(),
        }
    }

    fn arrive(&mut self, i: usize) -> Result<(), SimError> {
        self.acquire(i, false)
    }

    /// Invocation `i` asks for a container (again, as `r{i}-retry`, within its first
    /// deadline, after a lost node refused it).
    fn acquire(&mut self, i: usize, retry: bool) -> Result<(), SimError> {
        let w = self.w;
        let inv = &w.invocations[i];
        let spec = self.specs[inv.function].clone();
        let deadline = inv.at_ms + self.o.acquire_timeout_ms;
        let request_id = if retry {
            format!("r{i}-retry")
        } else {
            format!("r{i}")
        };
        let event = Event::Acquire(Acquire {
            request_id: Arc::from(request_id),
            account_id: Arc::from(self.o.account.as_str()),
            function: spec,
            deadline,
        });
        let mut out = std::mem::take(&mut self.out);
        self.delivered += 1;
        let r = self.policy.handle(self.now_ms(), event, &mut out);
        if let Err(e) = r {
            // The acquire itself was refused (an invalid function): the request fails.
            self.answer_error(i, format!("InvalidArgument: {e}"));
        }
        self.apply(&mut out)?;
        self.out = out;
        self.after_event();
        Ok(())
    }

    /// Delivers an event the policy may refuse because it already forgot a lost node (a
    /// late result, a failed observation of it): a refusal is ignored, as the live driver
    /// ignores it.
    fn deliver_lenient(&mut self, event: Event) -> Result<(), SimError> {
        let mut out = std::mem::take(&mut self.out);
        self.delivered += 1;
        let _ = self.policy.handle(self.now_ms(), event, &mut out);
        self.apply(&mut out)?;
        self.out = out;
        self.after_event();
        Ok(())
    }

    /// A failed observation of a lost node.
    fn unreachable(&mut self, node_id: Text, what: &str) -> Result<(), SimError> {
        let message = format!("{what} (node {node_id} stopped answering)");
        self.deliver_lenient(Event::NodeUnreachable { node_id, message })
    }

    fn deliver(&mut self, event: Event) -> Result<(), SimError> {
        let mut out = std::mem::take(&mut self.out);
        self.delivered += 1;
        let label = event_label(&event);
        if let Err(e) = self.policy.handle(self.now_ms(), event, &mut out) {
            return Err(SimError::Refused {
                policy: self.policy_name.clone(),
                at_ms: self.now_ms(),
                event: label.to_string(),
                reason: e.to_string(),
            });
        }
        self.apply(&mut out)?;
        self.out = out;
        self.after_event();
        Ok(())
    }

    /// Schedules the policy's next tick if it wants one earlier than the one pending.
    fn after_event(&mut self) {
        if let Some(w) = self.policy.next_wakeup() {
            let at = w.saturating_mul(1000).max(self.now);
            if self.tick_at.is_none_or(|t| at < t) {
                self.tick_at = Some(at);
                self.push(at, Ev::Tick);
            }
        }
    }

    fn apply(&mut self, out: &mut Vec<Decision>) -> Result<(), SimError> {
        for d in out.drain(..) {
            match d {
                Decision::Grant(g) => self.grant(g.request_id, g.container_id, g.node_id, g.cold),
                Decision::Reject { request_id, error } => {
                    if let Some(i) = request_index(&request_id) {
                        let code = match error.code {
                            AcquireErrorCode::ResourceExhausted => "ResourceExhausted",
                            AcquireErrorCode::DeadlineExceeded => "DeadlineExceeded",
                            AcquireErrorCode::Unavailable => "Unavailable",
                            AcquireErrorCode::FailedPrecondition => "FailedPrecondition",
                        };
                        self.answer_error(i, format!("{code}: {}", error.message));
                    }
                }
                Decision::ReserveNode { op } => self.reserve(op),
                Decision::CreateContainer { op, node, function } => {
                    self.create(op, node.id, function)
                }
                Decision::RemoveContainer { container_id, .. } => {
                    let at = self.now + us(self.o.container_remove_ms);
                    self.push(at, Ev::Removed(container_id));
                }
                Decision::ReleaseNode { node_id } => self.release(node_id),
                Decision::Health(_) => {}
            }
        }
        Ok(())
    }

    fn grant(&mut self, request_id: Text, container_id: Text, node_id: Text, cold: bool) {
        let Some(i) = request_index(&request_id) else {
            return;
        };
        if self.reqs[i].answered {
            return;
        }
        if self.lost.contains(&node_id) {
            self.refused(i, request_id, container_id, node_id);
            return;
        }
        self.reqs[i].answered = true;
        self.reqs[i].granted = Some(self.now);
        self.answered += 1;
        let w = self.w;
        let inv = &w.invocations[i];
        let f = &w.functions[inv.function];
        let waited_ms = (self.now - inv.at_ms * 1000) as f64 / 1000.0;
        let scheduling_ms = waited_ms + self.o.acquire_overhead_ms;
        let touches = inv.expected_memory_mb * MIB;
        let node_used = self.nodes.get(&node_id).map_or(0, |n| n.used);
        let (duration_ms, error) = if touches > f.memory_bytes {
            (
                0.0,
                Some(format!(
                    "OutOfMemory: the body touches {} MiB, the limit is {} MiB",
                    inv.expected_memory_mb,
                    f.memory_bytes / MIB
                )),
            )
        } else if node_used + touches > self.pool.memory {
            (
                0.0,
                Some(format!(
                    "OutOfMemory: node {node_id} has {} MiB of {} MiB in use, the body touches {} MiB",
                    node_used / MIB,
                    self.pool.memory / MIB,
                    inv.expected_memory_mb
                )),
            )
        } else if inv.expected_duration_ms > f.timeout_ms {
            (
                f.timeout_ms as f64,
                Some(format!("Timeout: ran past {} ms", f.timeout_ms)),
            )
        } else {
            (inv.expected_duration_ms as f64, None)
        };
        let runs = error.is_none();
        self.records[i] = Some(RequestRecord {
            function: self.names[inv.function].clone(),
            at_ms: inv.at_ms,
            response_ms: scheduling_ms + self.o.invoke_overhead_ms + duration_ms,
            scheduling_ms,
            duration_ms,
            cold,
            error,
            node_id: Some(node_id.to_string()),
            container_id: Some(container_id.to_string()),
        });
        if runs && let Some(n) = self.nodes.get_mut(&node_id) {
            n.used += touches;
            self.reqs[i].holds = touches;
        }
        if let Some(c) = self.containers.get_mut(&container_id) {
            c.running.push(i as u32);
        }
        self.holding[i] = Some((request_id, container_id));
        let at =
            self.now + us(self.o.acquire_overhead_ms + self.o.invoke_overhead_ms + duration_ms);
        self.push(at, Ev::Done(i as u32));
    }

    fn answer_error(&mut self, i: usize, error: String) {
        if self.reqs[i].answered {
            return;
        }
        self.reqs[i].answered = true;
        self.answered += 1;
        let w = self.w;
        let inv = &w.invocations[i];
        let waited = (self.now.saturating_sub(inv.at_ms * 1000)) as f64 / 1000.0
            + self.o.acquire_overhead_ms;
        self.records[i] = Some(RequestRecord {
            function: self.names[inv.function].clone(),
            at_ms: inv.at_ms,
            response_ms: waited,
            scheduling_ms: waited,
            duration_ms: 0.0,
            cold: false,
            error: Some(error),
            node_id: None,
            container_id: None,
        });
    }

    /// The API server's call to a container on a lost node is refused: the container goes
    /// back with `NodeUnavailable` and the call acquires once more (then fails).
    fn refused(&mut self, i: usize, request_id: Text, container_id: Text, node_id: Text) {
        let at = self.return_unavailable(
            request_id,
            container_id,
            format!("node {node_id} refused the connection"),
        );
        if self.reqs[i].retried {
            self.answer_error(
                i,
                format!(
                    "Unavailable: node {node_id} refused the call, and the retry's (connection refused)"
                ),
            );
        } else {
            self.reqs[i].retried = true;
            self.push(at, Ev::Retry(i as u32));
        }
    }

    /// Fault `k`: the held node with the most containers stops answering (see the module
    /// documentation).
    fn kill_node(&mut self, k: usize) -> Result<(), SimError> {
        let fault = self.o.faults.0[k];
        let mut per_node: HashMap<&Text, usize> = self
            .nodes
            .keys()
            .filter(|n| !self.lost.contains(*n))
            .map(|n| (n, 0))
            .collect();
        for c in self.containers.values() {
            if let Some(count) = per_node.get_mut(&c.node) {
                *count += 1;
            }
        }
        let victim = per_node
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(a.0)))
            .map(|(n, count)| (n.clone(), count));
        let now_ms = self.now_ms();
        let Some((node_id, count)) = victim else {
            self.result.faults.push(InjectedFault {
                fault: fault.to_string(),
                at_ms: now_ms,
                target: String::new(),
                in_flight: Some(0),
                error: Some("no node is held".into()),
            });
            return Ok(());
        };
        self.lost.insert(node_id.clone());
        let on_node: Vec<Text> = self
            .containers
            .iter()
            .filter(|(_, c)| c.node == node_id)
            .map(|(id, _)| id.clone())
            .collect();
        let mut in_flight = 0u64;
        for id in on_node {
            let Some(c) = self.containers.remove(&id) else {
                continue;
            };
            self.result.containers[c.lifetime].removed_ms = Some(now_ms as i64);
            self.died_with_node.insert(id, node_id.clone());
            for i in c.running {
                in_flight += 1;
                self.cut_off(i as usize, &node_id);
            }
        }
        if let Some(n) = self.nodes.get_mut(&node_id) {
            n.used = 0;
        }
        self.result.faults.push(InjectedFault {
            fault: fault.to_string(),
            at_ms: now_ms,
            target: format!("node {node_id} ({count} containers) stops answering"),
            in_flight: Some(in_flight),
            error: None,
        });
        Ok(())
    }

    /// Invocation `i` ran on a node that was just lost: it fails (the function may have run),
    /// and its container goes back with `NodeUnavailable`.
    fn cut_off(&mut self, i: usize, node_id: &Text) {
        let Some((request_id, container_id)) = self.holding[i].take() else {
            return;
        };
        self.reqs[i].holds = 0;
        let at_ms = self.w.invocations[i].at_ms;
        let waited_ms = self.now.saturating_sub(at_ms * 1000) as f64 / 1000.0;
        if let Some(r) = self.records[i].as_mut().filter(|r| r.error.is_none()) {
            r.error = Some(format!(
                "Unavailable: node {node_id} stopped answering during the call; the function may have run; not retried"
            ));
            r.response_ms = waited_ms + LOST_NODE_ANSWER_MS;
            r.duration_ms = 0.0;
        }
        self.return_unavailable(
            request_id,
            container_id,
            format!("node {node_id}: connection reset during the call"),
        );
    }

    /// The API server gives back a container on a lost node with `NodeUnavailable`, once
    /// its call failed; returns when.
    fn return_unavailable(&mut self, request_id: Text, container_id: Text, message: String) -> Us {
        let at = self.now + us(LOST_NODE_ANSWER_MS);
        self.push(
            at,
            Ev::DeliverLenient(Event::Return(Return {
                request_id,
                container_id,
                duration_ns: 0,
                max_memory_bytes: 0,
                error: Some(FunctionError {
                    code: NODE_UNAVAILABLE_CODE.to_string(),
                    message,
                }),
            })),
        );
        at
    }

    fn done(&mut self, i: usize) -> Result<(), SimError> {
        let Some((request_id, container_id)) = self.holding[i].take() else {
            return Ok(());
        };
        let busy = self.cpu_since_sample(i);
        let holds = std::mem::take(&mut self.reqs[i].holds);
        if let Some(c) = self.containers.get_mut(&container_id) {
            c.running.retain(|&r| r as usize != i);
            c.cpu_us += busy;
            if let Some(n) = self.nodes.get_mut(&c.node) {
                n.used = n.used.saturating_sub(holds);
            }
        }
        let w = self.w;
        let inv = &w.invocations[i];
        let error = self.records[i].as_ref().and_then(|r| r.error.clone());
        let error = error.map(|e| {
            let (code, message) = e.split_once(": ").unwrap_or((e.as_str(), ""));
            FunctionError {
                code: code.to_string(),
                message: message.to_string(),
            }
        });
        let duration_ns = self.records[i]
            .as_ref()
            .map_or(0, |r| (r.duration_ms * 1e6) as u64);
        self.deliver(Event::Return(Return {
            request_id,
            container_id,
            duration_ns,
            max_memory_bytes: inv.expected_memory_mb * MIB,
            error,
        }))
    }

    // ---- resource manager ----

    fn reserve(&mut self, op: faas_scheduler::model::OpId) {
        let at = self.now + us(self.o.reserve_ms);
        let event = match self.pool.ready.pop_front() {
            Some(id) => {
                self.pool.reserved += 1;
                self.pool
                    .refills
                    .push(Reverse(self.now + self.pool.refill_delay));
                self.schedule_pool_wake();
                let usage = self.result.nodes.len();
                self.result.nodes.push(NodeUsage {
                    id: id.to_string(),
                    reserved_ms: self.now_ms() as i64,
                    released_ms: None,
                });
                self.nodes.insert(id.clone(), HeldNode { usage, used: 0 });
                Event::NodeReserved {
                    op,
                    node: NodeInfo {
                        id,
                        address: Arc::from("sim"),
                        port: 0,
                        capacity_bytes: self.pool.memory,
                    },
                }
            }
            None => Event::NodeReserveFailed {
                op,
                exhausted: true,
                message: "no available node can be reserved".to_string(),
            },
        };
        self.push(at, Ev::Deliver(event));
    }

    fn release(&mut self, node_id: Text) {
        let Some(node) = self.nodes.remove(&node_id) else {
            return;
        };
        let now_ms = self.now_ms() as i64;
        self.result.nodes[node.usage].released_ms = Some(now_ms);
        self.pool.reserved = self.pool.reserved.saturating_sub(1);
        self.pool
            .cooling
            .push(Reverse(self.now + self.pool.refill_delay));
        // The node stops: its containers end with it.
        let result = &mut self.result;
        self.containers.retain(|_, c| {
            if c.node == node_id {
                result.containers[c.lifetime].removed_ms = Some(now_ms);
                false
            } else {
                true
            }
        });
        self.schedule_pool_wake();
        let at = self.now + us(self.o.release_ms);
        self.push(at, Ev::Deliver(Event::NodeReleased { node_id }));
    }

    fn schedule_pool_wake(&mut self) {
        if let Some(t) = self.pool.next_wake() {
            let t = t.max(self.now);
            if self.pool_wake.is_none_or(|w| t < w) {
                self.pool_wake = Some(t);
                self.push(t, Ev::PoolWake);
            }
        }
    }

    fn pool_tick(&mut self) {
        let now = self.now;
        while self.pool.cooling.peek().is_some_and(|Reverse(t)| *t <= now) {
            self.pool.cooling.pop();
        }
        while self.pool.refills.peek().is_some_and(|Reverse(t)| *t <= now)
            && self.pool.occupied() < self.pool.max
        {
            self.pool.refills.pop();
            let id = self.pool.new_id();
            self.pool.starting += 1;
            let at = now + self.pool.node_start;
            self.push(at, Ev::NodeUp(id));
        }
        self.schedule_pool_wake();
    }

    // ---- node service ----

    fn create(&mut self, op: faas_scheduler::model::OpId, node_id: Text, function: FunctionSpec) {
        if self.lost.contains(&node_id) {
            let at = self.now + us(LOST_NODE_ANSWER_MS);
            let message =
                format!("CreateContainer: connection refused (node {node_id} stopped answering)");
            self.push(
                at,
                Ev::DeliverLenient(Event::NodeUnreachable {
                    node_id,
                    message: message.clone(),
                }),
            );
            self.push(
                at,
                Ev::DeliverLenient(Event::ContainerCreateFailed {
                    op,
                    message,
                    refused: false,
                }),
            );
            return;
        }
        let fits = match self.nodes.get_mut(&node_id) {
            Some(n) => {
                n.used += self.o.container_rss_bytes;
                Ok(())
            }
            None => Err(format!("node {node_id} is not reserved")),
        };
        let event = match fits {
            Ok(()) => {
                let latency = self.o.container_start_ms.sample(&mut self.rng);
                let at = self.now + us(latency);
                self.container_no += 1;
                let id: Text = Arc::from(format!("c{}", self.container_no));
                let lifetime = self.result.containers.len();
                self.result.containers.push(ContainerLifetime {
                    id: id.to_string(),
                    node_id: node_id.to_string(),
                    function: function.name.to_string(),
                    memory_bytes: function.memory_bytes,
                    created_ms: (at / 1000) as i64,
                    removed_ms: None,
                });
                self.containers.insert(
                    id.clone(),
                    LiveContainer {
                        lifetime,
                        node: node_id,
                        memory: function.memory_bytes,
                        running: Vec::new(),
                        cpu_us: 0,
                    },
                );
                self.push(
                    at,
                    Ev::Deliver(Event::ContainerCreated {
                        op,
                        container_id: id,
                    }),
                );
                return;
            }
            Err(message) => Event::ContainerCreateFailed {
                op,
                message,
                refused: false,
            },
        };
        let at = self.now + us(self.o.reserve_ms);
        self.push(at, Ev::Deliver(event));
    }

    // ---- usage ----

    /// The CPU time invocation `i` used since the last stats sample, µs.
    fn cpu_since_sample(&self, i: usize) -> u64 {
        let Some(granted) = self.reqs[i].granted else {
            return 0;
        };
        let w = self.w;
        let share = match w.functions[w.invocations[i].function].handler {
            HandlerKind::Spin | HandlerKind::Cpu => 1.0,
            HandlerKind::Memory => 0.1,
            HandlerKind::Hello | HandlerKind::Echo | HandlerKind::Sleep => 0.0,
        };
        let from = granted.max(self.last_stats);
        (self.now.saturating_sub(from) as f64 * share) as u64
    }

    /// Every held node reports its containers' usage over the interval since the last one.
    fn stats(&mut self) -> Result<(), SimError> {
        let interval = self.now.saturating_sub(self.last_stats).max(1);
        let w = self.w;
        let mut per_node: HashMap<Text, Vec<ContainerUsage>> = HashMap::new();
        for (id, c) in &self.containers {
            let running_cpu: u64 = c
                .running
                .iter()
                .map(|&i| self.cpu_since_sample(i as usize))
                .sum();
            let touched: u64 = c
                .running
                .iter()
                .map(|&i| w.invocations[i as usize].expected_memory_mb * MIB)
                .sum();
            per_node
                .entry(c.node.clone())
                .or_default()
                .push(ContainerUsage {
                    container_id: id.clone(),
                    total_memory_bytes: c.memory,
                    memory_usage_bytes: (self.o.container_rss_bytes + touched).min(c.memory),
                    cpu_pct: (c.cpu_us + running_cpu) as f64 * 100.0 / interval as f64,
                });
        }
        for c in self.containers.values_mut() {
            c.cpu_us = 0;
        }
        self.last_stats = self.now;
        let mut nodes: Vec<Text> = self.nodes.keys().cloned().collect();
        nodes.sort_unstable();
        for node_id in nodes {
            if self.lost.contains(&node_id) {
                self.unreachable(node_id, "GetStats: connection refused")?;
                continue;
            }
            let mut containers = per_node.remove(&node_id).unwrap_or_default();
            containers.sort_unstable_by(|a, b| a.container_id.cmp(&b.container_id));
            let used: u64 = containers.iter().map(|c| c.memory_usage_bytes).sum();
            let cpu: f64 = containers.iter().map(|c| c.cpu_pct).sum();
            let sample = StatsSample {
                node_id,
                taken_at: self.now / 1000,
                node: SchedNodeUsage {
                    total_memory_bytes: self.pool.memory,
                    memory_usage_bytes: used,
                    available_memory_bytes: self.pool.memory.saturating_sub(used),
                    cpu_pct: cpu,
                },
                containers,
            };
            self.deliver(Event::Stats(sample))?;
        }
        let next = self.now + self.o.stats_interval_ms * 1000;
        if next <= self.w.duration_ms * 1000 || self.answered < self.reqs.len() {
            self.push(next, Ev::Stats);
        }
        Ok(())
    }

    fn finish(mut self) -> RunResult {
        let end_ms = (self.now / 1000) as i64;
        let unanswered = self.reqs.iter().filter(|r| !r.answered).count();
        for i in 0..self.reqs.len() {
            if !self.reqs[i].answered {
                self.answer_error(i, "Unavailable: the policy never answered".to_string());
            }
        }
        if unanswered > 0 {
            self.result.notes.push(format!(
                "{unanswered} requests were never answered by the policy"
            ));
        }
        if !self.o.faults.0.is_empty() {
            self.result.leaks = Some(self.leaks());
        }
        self.result.end_ms = end_ms;
        self.result.requests = self.records.into_iter().flatten().collect();
        self.result
    }

    /// Nodes the resource manager model holds reserved, and live containers, that the
    /// policy does not hold at the end of the run (no process can leak here). A reserve or
    /// a create whose answer is still on its way is not a leak.
    fn leaks(&self) -> Leaks {
        let store = &self.policy.state().store;
        let known: HashSet<Text> = store.nodes().map(|(_, n)| n.addr().id).collect();
        let now_ms = self.now_ms() as i64;
        let answered_by = now_ms - self.o.reserve_ms.ceil() as i64;
        Leaks {
            processes: 0,
            containers: self
                .containers
                .iter()
                .filter(|(id, c)| {
                    self.result.containers[c.lifetime].created_ms < now_ms
                        && store.container_by_id(id).is_none()
                })
                .count() as u64,
            nodes: self
                .nodes
                .iter()
                .filter(|(id, n)| {
                    self.result.nodes[n.usage].reserved_ms < answered_by && !known.contains(*id)
                })
                .count() as u64,
        }
    }
}

/// The invocation index of a simulated request id (`r{index}`, or `r{index}-retry`).
fn request_index(id: &str) -> Option<usize> {
    let id = id.strip_suffix("-retry").unwrap_or(id);
    id.strip_prefix('r')?.parse().ok()
}

fn event_label(e: &Event) -> &'static str {
    match e {
        Event::Acquire(_) => "Acquire",
        Event::Return(_) => "Return",
        Event::Cancel { .. } => "Cancel",
        Event::NodeReserved { .. } => "NodeReserved",
        Event::NodeReserveFailed { .. } => "NodeReserveFailed",
        Event::ContainerCreated { .. } => "ContainerCreated",
        Event::ContainerCreateFailed { .. } => "ContainerCreateFailed",
        Event::ContainerRemoved { .. } => "ContainerRemoved",
        Event::NodeReleased { .. } => "NodeReleased",
        Event::Stats(_) => "Stats",
        Event::NodeUnreachable { .. } => "NodeUnreachable",
        Event::RetireFunction { .. } => "RetireFunction",
        Event::HoldFunction { .. } => "HoldFunction",
        Event::NodeAdopted { .. } => "NodeAdopted",
        Event::Tick => "Tick",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{Arrivals, FunctionProfile, HandlerKind, WorkloadBuilder};

    fn small() -> Workload {
        let mut b = WorkloadBuilder::new("small", 20_000);
        let f = b.function(FunctionProfile::new(
            "nap",
            HandlerKind::Sleep,
            512 * MIB,
            60_000,
            100.0,
        ));
        let g = b.function(FunctionProfile::new(
            "hi",
            HandlerKind::Hello,
            128 * MIB,
            60_000,
            5.0,
        ));
        b.stream(f, Arrivals::Periodic { every_ms: 1000.0 }, 0, 20_000);
        b.stream(g, Arrivals::Poisson { rate_per_s: 5.0 }, 0, 20_000);
        b.build(3).unwrap()
    }

    /// Whether two calls of `function` ever ran in one container at once.
    fn shared(run: &RunResult, function: &str) -> bool {
        let mut calls: Vec<(&str, f64, f64)> = run
            .requests
            .iter()
            .filter(|r| r.function == function && r.error.is_none())
            .filter_map(|r| {
                let start = r.at_ms as f64 + r.scheduling_ms;
                Some((r.container_id.as_deref()?, start, start + r.duration_ms))
            })
            .collect();
        calls.sort_by(|a, b| a.partial_cmp(b).unwrap());
        calls
            .windows(2)
            .any(|w| w[0].0 == w[1].0 && w[1].1 < w[0].2)
    }

    #[test]
    fn node_stats_tell_the_policy_which_bodies_spin() {
        let mut b = WorkloadBuilder::new("spin-or-sleep", 30_000);
        for (name, handler) in [("spin", HandlerKind::Spin), ("nap", HandlerKind::Sleep)] {
            let f = b.function(FunctionProfile::new(
                name,
                handler,
                512 * MIB,
                60_000,
                200.0,
            ));
            let burst = Arrivals::Bursts {
                every_ms: 2_000.0,
                size: 4.0,
                spread_ms: 20.0,
            };
            b.stream(f, burst, 0, 30_000);
        }
        let w = b.build(1).unwrap();
        let run = |stats_interval_ms| {
            let o = SimOptions {
                stats_interval_ms,
                ..SimOptions::default()
            };
            simulate_named(&w, "adaptive", &o).unwrap().result
        };
        let with_stats = run(1000);
        assert!(shared(&with_stats, "nap"), "sleeping calls share");
        assert!(!shared(&with_stats, "spin"), "spinning calls never share");
        let blind = run(0);
        assert!(shared(&blind, "spin"), "without stats spin looks light");
    }

    #[test]
    fn one_request_one_cold_start_then_warm() {
        let w = small();
        let run = simulate_named(&w, "baseline", &SimOptions::default()).unwrap();
        let r = &run.result;
        assert_eq!(r.requests.len(), w.invocations.len());
        assert_eq!(r.errors(), 0);
        // `nap` runs 100 ms once a second: one container serves it all.
        let nap_cold = r
            .requests
            .iter()
            .filter(|q| q.function == "nap" && q.cold)
            .count();
        assert_eq!(nap_cold, 1);
        // The first request of a function waits for a reserve and a start: 3.4..57.1 ms, plus
        // 2 ms for the reserve and 0.2 ms of acquire overhead.
        let first = r.requests.iter().find(|q| q.function == "nap").unwrap();
        assert!(first.cold);
        assert!(
            (5.6..=59.3).contains(&first.scheduling_ms),
            "{}",
            first.scheduling_ms
        );
        // A warm one costs the acquire overhead only.
        let warm = r.requests.iter().find(|q| !q.cold).unwrap();
        assert!(
            (warm.scheduling_ms - 0.2).abs() < 1e-9,
            "{}",
            warm.scheduling_ms
        );
        assert!((warm.response_ms - warm.scheduling_ms - warm.duration_ms - 1.5).abs() < 1e-9);
        // The baseline holds its one node to the end of the run.
        assert_eq!(r.nodes.len(), 1);
        assert!(
            (r.node_seconds() - 20.0).abs() < 0.1,
            "{}",
            r.node_seconds()
        );
        assert_eq!(r.containers.len() as u64, r.cold_starts());
    }

    #[test]
    fn calls_fail_with_out_of_memory_when_a_node_runs_out() {
        // 256 MiB nodes, 128 MiB containers that use 60 MiB idle: two fit by their limits,
        // but two calls touching 100 MiB at once would use 320 MiB of the node.
        let mut b = WorkloadBuilder::new("oom", 5_000);
        let mut fat = FunctionProfile::new("fat", HandlerKind::Memory, 128 * MIB, 60_000, 500.0);
        fat.memory_mb = crate::workload::ValueModel::Fixed(100.0);
        let f = b.function(fat);
        let burst = Arrivals::Bursts {
            every_ms: 10_000.0,
            size: 2.0,
            spread_ms: 0.0,
        };
        b.stream(f, burst, 0, 5_000);
        let w = b.build(1).unwrap();
        let o = SimOptions {
            node_memory_bytes: 256 * MIB,
            container_rss_bytes: 60 * MIB,
            ..SimOptions::default()
        };
        let r = simulate_named(&w, "baseline", &o).unwrap().result;
        assert_eq!(r.requests.len(), 2);
        assert_eq!(
            r.nodes.len(),
            1,
            "both containers fit on one node by their limits"
        );
        let errors: Vec<&str> = r
            .requests
            .iter()
            .filter_map(|q| q.error.as_deref())
            .collect();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("OutOfMemory: node"), "{}", errors[0]);
        // With room for both calls, none fails.
        let roomy = SimOptions {
            container_rss_bytes: 20 * MIB,
            ..o
        };
        let r = simulate_named(&w, "baseline", &roomy).unwrap().result;
        assert_eq!(r.errors(), 0);
    }

    #[test]
    fn exhausted_pool_rejects_with_resource_exhausted() {
        // 2 GiB functions, one per node; 3 at once but only one node in the pool.
        let mut b = WorkloadBuilder::new("big", 5_000);
        let f = b.function(FunctionProfile::new(
            "big",
            HandlerKind::Sleep,
            2048 * MIB,
            60_000,
            3000.0,
        ));
        b.stream(
            f,
            Arrivals::Bursts {
                every_ms: 10_000.0,
                size: 3.0,
                spread_ms: 0.0,
            },
            0,
            5_000,
        );
        let w = b.build(1).unwrap();
        let o = SimOptions {
            ready_nodes: 1,
            max_nodes: 1,
            ..SimOptions::default()
        };
        let r = simulate_named(&w, "baseline", &o).unwrap().result;
        assert_eq!(r.requests.len(), 3);
        assert_eq!(r.errors(), 2);
        assert!(
            r.requests
                .iter()
                .filter_map(|q| q.error.as_deref())
                .all(|e| e.starts_with("ResourceExhausted")),
            "{:?}",
            r.requests
        );
    }

    #[test]
    fn keepalive_releases_idle_nodes_and_refills_follow_the_pool_rules() {
        // One call at 0 and one at 30 s: with a 10 s keep-alive the container and its node go
        // in between, so the second call is cold on a new node.
        let f = FunctionProfile::new("f", HandlerKind::Sleep, 256 * MIB, 60_000, 50.0);
        let call = |at_ms| crate::workload::Invocation {
            at_ms,
            function: 0,
            event: Vec::new(),
            expected_duration_ms: 50,
            expected_memory_mb: 1,
        };
        let w = Workload::new("gap", vec![f], vec![call(0), call(30_000)], 40_000).unwrap();
        let policy = Box::new(
            faas_scheduler::policies::keepalive::KeepAlive::with_keep_alive(
                PolicyOptions::default(),
                10_000,
            ),
        );
        let r = simulate(&w, policy, &SimOptions::default()).unwrap().result;
        assert_eq!(r.requests.len(), 2);
        assert_eq!(r.cold_starts(), 2);
        assert_eq!(r.nodes.len(), 2);
        let first = &r.nodes[0];
        let held = first.released_ms.unwrap() - first.reserved_ms;
        // Held for the call (~70 ms) + 10 s idle + the removal (5 ms).
        assert!((10_000..10_200).contains(&held), "{held}");
        let c = &r.containers[0];
        assert!(c.removed_ms.is_some());
        // Memory-time idle: 256 MiB x ~10 s for each container (the second one idles from its
        // call to the end of the run at 40 s).
        let idle = r.idle_memory_mb_seconds().unwrap();
        assert!((5090.0..5130.0).contains(&idle), "{idle}");
    }

    #[test]
    fn container_start_is_fitted_from_cold_acquires() {
        let mut run = RunResult::new("p", "w");
        let req = |sched: f64, cold: bool| RequestRecord {
            function: "f".into(),
            at_ms: 0,
            response_ms: sched,
            scheduling_ms: sched,
            duration_ms: 0.0,
            cold,
            error: None,
            node_id: None,
            container_id: None,
        };
        assert!(fit_container_start(&run).is_none());
        for v in 1..=100 {
            run.requests.push(req(f64::from(v) + 0.5, true));
            run.requests.push(req(0.5, false));
        }
        let p = fit_container_start(&run).unwrap();
        assert_eq!(
            p.points(),
            &[
                (0.0, 1.0),
                (0.25, 25.0),
                (0.5, 50.0),
                (0.75, 75.0),
                (0.95, 95.0),
                (1.0, 100.0)
            ]
        );
    }

    #[test]
    fn bad_options_are_refused() {
        let w = small();
        let o = SimOptions {
            max_nodes: 0,
            ..SimOptions::default()
        };
        assert!(matches!(
            simulate_named(&w, "baseline", &o),
            Err(SimError::InvalidOption { .. })
        ));
        assert!(matches!(
            simulate_named(&w, "nope", &SimOptions::default()),
            Err(SimError::UnknownPolicy(_))
        ));
    }
}
