//! The machinery shared by the `czy` and `adaptive` policies: per-function request queues,
//! learned classes and concurrency limits, container provisioning, placement, keep-alive and
//! pre-warm sweeps, node reserve (with back-off) and release.
//!
//! A policy is an [`Engine`] with a set of [`Knobs`]; the knobs pick the rule at each point
//! where the two policies differ (concurrency, how many containers to create, placement,
//! over-commit, keep-alive, consolidation). Everything stays pure: time is the `now`
//! argument.
//!
//! Placement works on a view built per provisioning round: each node's memory minus what
//! its containers count (their limits, or with [`Overcommit`] their learned charges), and
//! the limits it may still take.
//!
//! Rules every knob setting keeps:
//! - a request that finds no free slot waits in its function's FIFO queue (bounded by its
//!   deadline and by [`MAX_WAITING`] overall) and is served by the first slot that frees, be
//!   it a returned container or a new one; creates are not bound to a request;
//! - a failed reserve (`RESOURCE_EXHAUSTED` or not) is retried after a back-off (0.25 s
//!   doubling to 4 s) while requests keep waiting;
//! - a container is removed only when ready with no request in flight, a node is released
//!   only when it holds no container (creating, live or being removed) and no request;
//! - the sweep removes no idle container of a held function for idleness (keep-alive,
//!   unload after the execution, short-lived spares: see [`crate::core::state::hold`]); the
//!   next sweep after the hold ends applies the function's rules again. Eviction under
//!   memory pressure and consolidation still move or remove such containers.

pub mod histogram;
#[cfg(test)]
pub(crate) mod testkit;

use std::collections::VecDeque;

use crate::core::{
    Acquire, AcquireError, AcquireErrorCode, CoreError, Decision, Event, HealthNote, Op,
    PolicyOptions, Return, Snapshot, State,
};
use crate::model::{
    ContainerState, FunctionError, MIB, Millis, NodeState, OpId, StatsSample, Text,
};
use crate::store::{ContainerKey, FunctionKey, Map, NodeKey, Set};
use histogram::{IdleHistogram, Window};

/// More waiting requests than this (all functions together) are refused at once.
pub const MAX_WAITING: usize = 100_000;
/// An arrival this soon after the function went idle continues the same busy period.
pub const MERGE_GAP_MS: Millis = 1000;
/// The container start latency assumed before any create was measured, ms.
pub const INITIAL_START_MS: f64 = 1000.0;
/// Consecutive create failures of one function after which its waiting requests fail.
pub const MAX_CREATE_FAILURES: u32 = 3;
/// CPU-heavy containers one node takes before placement prefers other nodes. With 1, each
/// node gets one before any gets two, then they pack by memory like the rest (CPU quotas,
/// 0.67 vCPU per GiB, follow memory): on the simulated Azure day 8,887 cold starts and
/// 11.66 G MB·s idle, against 8,554 and 11.75 G when spread by count first, and the 5-min
/// contest 960 node-seconds against 976.
pub const HEAVY_PER_NODE: u32 = 1;
/// A node is emptied only if every container on it has been idle this long, ms.
pub const DRAIN_MIN_IDLE_MS: Millis = 10_000;
/// A node is emptied only if it holds at most this many containers (each is moved).
pub const DRAIN_MAX_CONTAINERS: usize = 4;
/// Reserves asked for at once when memory runs short.
pub const MAX_RESERVES_AT_ONCE: u64 = 4;

/// How many requests a container of a function may run at once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Concurrency {
    /// czy: one while the function has fewer than `share_from` containers, then `share` for
    /// light functions; heavy ones never share.
    Czy {
        /// Containers of the function from which light functions share.
        share_from: u32,
        /// Requests per container once sharing.
        share: u32,
    },
    /// Learned: one until `min_calls` returns were seen; heavy functions one; light ones as
    /// many as 70% of the container's memory holds at the largest per-call memory seen, at
    /// most `max_share`.
    Learned {
        /// The most requests one container runs at once.
        max_share: u32,
        /// Returns seen before a function may share.
        min_calls: u64,
    },
}

/// How many containers to create for waiting requests.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Creates {
    /// One per waiting request not covered by creates in flight (czy, baseline).
    PerRequest,
    /// Single-flight: only what the busy slots cannot serve within a container start, plus
    /// the slots the function's previous busy period needed; capped per function and overall.
    SingleFlight {
        /// Creates in flight per function at most.
        per_function: u32,
        /// Creates in flight overall at most.
        total: u32,
    },
}

/// Where a new container goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// czy: the node with the fewest containers of the function, ties to the most free memory.
    SpreadByFunction,
    /// Best fit by memory (fewer, fuller nodes); CPU-heavy containers best fit among the
    /// nodes with fewer than [`HEAVY_PER_NODE`] of them, else the node with the fewest.
    Pack,
}

/// When idle containers go.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum KeepAlive {
    /// A fixed idle time, optionally keeping each function's last container.
    Fixed {
        /// Idle time after which a container is removed, ms.
        idle_ms: Millis,
        /// Keep one container per function regardless.
        keep_one: bool,
    },
    /// The hybrid histogram policy (ATC 2020), see [`histogram`].
    Hybrid {
        /// The keep-alive window while the histogram is not representative, ms.
        fallback_ms: Millis,
        /// Pre-warm (unload, then load again) only when the 5th percentile is at least this, ms.
        prewarm_min_ms: Millis,
        /// Idle times needed for a representative histogram.
        min_samples: u32,
        /// How long a container stays after the execution before it is unloaded, ms.
        unload_grace_ms: Millis,
        /// The shortest keep-alive window, ms.
        min_keep_ms: Millis,
        /// Until a function's histogram holds this many idle times, its window is at least
        /// the fallback if its idle times are irregular (p99 above 4× p5): a short histogram
        /// of irregular idle times misses the long tail.
        trust_samples: u32,
        /// The longest keep-alive window, ms.
        max_keep_ms: Millis,
        /// Record each container's idle times (release to next grant) rather than the
        /// function's (last activity to next arrival).
        per_container: bool,
        /// While a function's histogram is not representative, its idle containers beyond
        /// the most recently used one are kept `extra_cost × start / duration` of the
        /// fallback window (at most all of it): a cold start costs a long call little, its
        /// spare containers' memory the same as a short call's (`None`: the fallback).
        extra_cost: Option<f64>,
    },
}

/// Classification thresholds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds {
    /// Memory-heavy when a call uses this share of its container's memory.
    pub memory_share: f64,
    /// CPU-heavy when a container's CPU reads this many percent of a core...
    pub cpu_pct: f64,
    /// ...or this share of its quota (0.67 vCPU per GiB), if set.
    pub cpu_quota_share: Option<f64>,
    /// Short when a call takes at most this, ms...
    pub short_ms: f64,
    /// ...until one takes more than this, ms.
    pub long_ms: f64,
    /// CPU-heavy when shared calls take this many times a solo call (if set), or fail.
    pub slowdown: Option<f64>,
}

/// Everything that tells one policy of this family from another.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Knobs {
    /// The policy's name.
    pub name: &'static str,
    /// Concurrency per container.
    pub concurrency: Concurrency,
    /// How many containers to create.
    pub creates: Creates,
    /// Where to put them.
    pub placement: Placement,
    /// When idle ones go.
    pub keep_alive: KeepAlive,
    /// Classification.
    pub thresholds: Thresholds,
    /// Create one spare container when all of a function's slots are taken and at least
    /// this many of its requests run (`None`: never).
    pub spare_from_inflight: Option<u32>,
    /// How often containers and nodes are swept, ms.
    pub sweep_every_ms: Millis,
    /// Nodes reserved at the first request.
    pub initial_nodes: u32,
    /// Keep free memory for one container of the largest function (reserve ahead, release
    /// only what is not needed for it).
    pub headroom: bool,
    /// How long a node stays empty before it is released, ms (at a sweep).
    pub node_idle_ms: Millis,
    /// When memory runs short, remove containers idle this long (ms) to make room instead
    /// of reserving; any idle one while reserves fail. `None`: never evict.
    pub evict_idle_ms: Option<Millis>,
    /// Empty the least used node into the others when they have room for its containers
    /// (see [`Engine::consolidate`]); a node must have been held this long (ms) first.
    /// `None`: never.
    pub consolidate_after_ms: Option<Millis>,
    /// Pack learned light containers by the memory they use rather than their limits
    /// (`None`: every container counts its limit).
    pub overcommit: Option<Overcommit>,
}

/// Over-commit: what a container counts against its node's memory when packing.
///
/// A container counts its limit until its function has returned `min_calls` times; then,
/// unless the function is memory-heavy, `margin` × what its calls were seen to use at once
/// (the largest per-call memory times the container's concurrency, plus
/// [`CONTAINER_BASE_BYTES`]), at least `1 / max_factor` of its limit and at most all of it.
/// So a node never holds more than `max_factor` × its memory in limits, nor CPU quotas
/// (0.67 vCPU per GiB of limit) beyond `max_factor` × its vCPUs: warm containers idle most
/// of the time (the contest saw node CPU under 50% at peak), and CPU-heavy ones are spread
/// one per node first ([`HEAVY_PER_NODE`]). The contest allows over-commit; what a node's
/// containers really use stays near `1 / margin` of its memory.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Overcommit {
    /// Limits a node holds at most, as a multiple of its memory.
    pub max_factor: f64,
    /// A learned container counts this many times the memory its calls use.
    pub margin: f64,
    /// Returns of a function before its measured memory is trusted.
    pub min_calls: u64,
}

/// What a container process uses besides its calls (runtime, code), bytes: counted on top
/// of the calls' memory when over-committing.
pub const CONTAINER_BASE_BYTES: u64 = 8 * MIB;

/// What a function was classified as.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Class {
    /// A call uses a large share of its container's memory (or died of it when shared).
    pub memory_heavy: bool,
    /// A call uses a large share of its CPU (or slowed down or failed when shared).
    pub cpu_heavy: bool,
    /// Calls are short.
    pub short: bool,
}

impl Class {
    /// Heavy functions never share a container.
    pub fn heavy(&self) -> bool {
        self.memory_heavy || self.cpu_heavy
    }
}

/// What the engine keeps per function.
#[derive(Debug)]
pub struct FnData {
    /// The function.
    pub key: FunctionKey,
    queue: VecDeque<Text>,
    starving: bool,
    /// Requests holding a container of the function.
    pub inflight: u32,
    /// Requests per container.
    pub limit: u32,
    /// The learned class.
    pub class: Class,
    /// When the function last became idle (no request in flight or waiting).
    pub idle_since: Option<Millis>,
    /// Idle times seen.
    pub hist: IdleHistogram,
    /// The histogram's window as of its last sample (`None` inside: not representative).
    window: Option<Option<Window>>,
    peak: u32,
    /// Slots (requests at once) the previous busy period needed.
    pub last_peak: u32,
    /// How long an idle container of the function is kept, ms.
    pub keep_ms: Millis,
    /// Idle containers are kept at least until then (pre-warmed ones).
    pub keep_until: Millis,
    /// When containers are loaded again for the next expected arrival.
    pub prewarm_at: Option<Millis>,
    /// How many.
    pub prewarm_count: u32,
    solo_ms: f64,
    solo_n: u32,
    shared_ratio: f64,
    shared_n: u32,
    call_memory: u64,
    create_failures: u32,
    /// Deleted (retired) and not called since: never pre-warmed.
    retired: bool,
}

impl FnData {
    fn new(key: FunctionKey) -> FnData {
        FnData {
            key,
            queue: VecDeque::new(),
            starving: false,
            inflight: 0,
            limit: 1,
            class: Class::default(),
            idle_since: None,
            hist: IdleHistogram::default(),
            window: None,
            peak: 0,
            last_peak: 0,
            keep_ms: Millis::MAX,
            keep_until: 0,
            prewarm_at: None,
            prewarm_count: 0,
            solo_ms: 0.0,
            solo_n: 0,
            shared_ratio: 1.0,
            shared_n: 0,
            call_memory: 0,
            create_failures: 0,
            retired: false,
        }
    }

    fn idle(&self) -> bool {
        self.inflight == 0 && self.queue.is_empty()
    }
}

/// One node as placement sees it.
#[derive(Clone, Debug)]
struct NodeView {
    key: NodeKey,
    /// Memory not counted by containers (their charges, see [`Overcommit`]).
    free: u64,
    /// Limits the node may still take (its memory, times the over-commit factor).
    free_limit: u64,
    /// Charges that free when removals in flight complete.
    removing: u64,
    heavy: u32,
}

/// The nodes and per-(node, function) container counts, built once per provisioning round.
struct View {
    nodes: Vec<NodeView>,
    per_function: Map<(NodeKey, FunctionKey), u32>,
}

/// The policy machinery; see the module documentation.
#[derive(Debug)]
pub struct Engine {
    /// The shared bookkeeping.
    pub state: State,
    knobs: Knobs,
    fns: Vec<FnData>,
    starving: Vec<FunctionKey>,
    /// Memory (per container) that found no node in this round.
    shortage: Vec<u64>,
    node_empty_since: Map<NodeKey, Millis>,
    next_sweep: Option<Millis>,
    reserve_retry_at: Option<Millis>,
    reserve_backoff_ms: Millis,
    pump_at: Option<Millis>,
    start_ms: f64,
    started: bool,
    largest_function: u64,
    last_arrival: Millis,
    /// Replacement creates of consolidation: create → the id of the container it replaces
    /// (ids, not keys: a key is reused once its container is gone).
    replacing: Map<OpId, Text>,
    /// Containers on a draining node whose replacement is ready → the replacement's id.
    replaced: Map<Text, Text>,
    /// When a node was last reserved or released by consolidation.
    last_node_change: Millis,
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "View({} nodes)", self.nodes.len())
    }
}

/// The keep-alive window a representative histogram gives: 1.25 × p99 + 2 s, at least the
/// floor that `samples` idle times earn (see [`KeepAlive::Hybrid`]), within bounds.
fn keep_for(w: Window, samples: u32, knobs: &KeepAlive) -> Millis {
    let KeepAlive::Hybrid {
        fallback_ms,
        min_keep_ms,
        trust_samples,
        max_keep_ms,
        ..
    } = *knobs
    else {
        return w.keep_alive_ms;
    };
    // Regular idle times (p99 within 4× p5) are trusted at once.
    let regular = w.keep_alive_ms <= 4 * w.prewarm_ms.max(1);
    let floor = if regular || samples >= trust_samples {
        0
    } else {
        fallback_ms
    };
    (w.keep_alive_ms + w.keep_alive_ms / 4 + 2000)
        .max(floor)
        .max(min_keep_ms)
        .min(max_keep_ms)
}

fn ewma(old: f64, n: u32, sample: f64) -> f64 {
    if n == 0 {
        sample
    } else {
        old + (sample - old) * 0.2
    }
}

impl Engine {
    /// An engine with empty tables.
    pub fn new(opts: PolicyOptions, knobs: Knobs) -> Engine {
        Engine {
            state: State::new(opts),
            knobs,
            fns: Vec::new(),
            starving: Vec::new(),
            shortage: Vec::new(),
            node_empty_since: Map::default(),
            next_sweep: None,
            reserve_retry_at: None,
            reserve_backoff_ms: 0,
            pump_at: None,
            start_ms: INITIAL_START_MS,
            started: false,
            largest_function: 0,
            last_arrival: 0,
            replacing: Map::default(),
            replaced: Map::default(),
            last_node_change: 0,
        }
    }

    /// The knobs.
    pub fn knobs(&self) -> &Knobs {
        &self.knobs
    }

    /// What the engine keeps about the function named `name`.
    pub fn function(&self, name: &str) -> Option<&FnData> {
        let key = self.state.store.function_by_name(name)?;
        self.fns.get(key.index() as usize)
    }

    /// The measured container start latency (moving average), ms.
    pub fn start_latency_ms(&self) -> f64 {
        self.start_ms
    }

    /// How long before an expected arrival pre-warmed containers are asked for, ms.
    pub fn prewarm_lead_ms(&self) -> Millis {
        (self.start_ms * 2.0) as Millis + 1000
    }

    fn fd(&mut self, f: FunctionKey) -> &mut FnData {
        let i = f.index() as usize;
        if i >= self.fns.len() {
            // Function keys are never reused (functions are never forgotten).
            let len = self.fns.len();
            self.fns.extend((len..=i).map(|_| FnData::new(f)));
        }
        let fd = &mut self.fns[i];
        fd.key = f;
        fd
    }

    /// Applies one event (see [`crate::core::Policy::handle`]).
    pub fn handle(
        &mut self,
        now: Millis,
        event: Event,
        out: &mut Vec<Decision>,
    ) -> Result<(), CoreError> {
        match event {
            Event::Acquire(a) => self.on_acquire(now, a, out)?,
            Event::Return(r) => self.on_return(now, r, out)?,
            Event::Cancel { request_id } => {
                if let Some(c) = self.state.cancel(now, &request_id, out) {
                    self.slot_freed(now, c, out);
                }
            }
            Event::NodeReserved { op, node } => {
                let (_, waiters) = self.state.node_reserved(now, op, node)?;
                debug_assert!(waiters.is_empty(), "the engine never binds to reserves");
                self.reserve_backoff_ms = 0;
                self.reserve_retry_at = None;
                self.last_node_change = now;
                self.pump(now, out);
            }
            Event::NodeReserveFailed { op, .. } => {
                self.state.reserve_failed(op)?;
                self.reserve_backoff_ms = (self.reserve_backoff_ms * 2).clamp(250, 4000);
                self.reserve_retry_at = Some(now + self.reserve_backoff_ms);
            }
            Event::ContainerCreated { op, container_id } => {
                self.on_created(now, op, container_id, out)?
            }
            Event::ContainerCreateFailed {
                op,
                message,
                refused,
            } => self.on_create_failed(now, op, &message, refused, out)?,
            Event::ContainerRemoved { container_id } => {
                self.state.container_removed(&container_id);
                if !self.starving.is_empty() {
                    self.pump(now, out);
                }
            }
            Event::NodeReleased { node_id } => {
                if let Some(k) = self.state.store.node_by_id(&node_id) {
                    self.node_empty_since.remove(&k);
                }
                self.state.node_released(&node_id);
            }
            Event::NodeUnreachable { node_id, message } => {
                self.state.node_unreachable(now, &node_id, message, out);
            }
            Event::NodeAdopted {
                node,
                reserved_at,
                containers,
            } => self.on_adopted(now, node, reserved_at, containers, out)?,
            Event::RetireFunction { function } => {
                if self.state.retire_function(&function, out).is_some()
                    && let Some(f) = self.state.store.function_by_name(&function)
                {
                    // No pre-warming or spares for a deleted function until it is called.
                    let fd = self.fd(f);
                    fd.retired = true;
                    fd.prewarm_at = None;
                }
            }
            hold @ Event::HoldFunction { .. } => self.state.apply_shared(now, hold, out),
            Event::Stats(sample) => self.on_stats(now, sample, out),
            Event::Tick => self.on_tick(now, out),
        }
        self.state.observe(now);
        Ok(())
    }

    /// When the engine next needs a tick.
    pub fn next_wakeup(&self) -> Option<Millis> {
        let mut at = self.state.next_deadline();
        let mut min = |t: Option<Millis>| {
            if let Some(t) = t {
                at = Some(at.map_or(t, |a| a.min(t)));
            }
        };
        min(self.next_sweep);
        min(self.pump_at);
        if !self.starving.is_empty() {
            min(self.reserve_retry_at);
        }
        at
    }

    /// Counts for metrics.
    pub fn snapshot(&self) -> Snapshot {
        self.state.snapshot(self.knobs.name)
    }

    // ---- requests ----

    fn on_acquire(
        &mut self,
        now: Millis,
        a: Acquire,
        out: &mut Vec<Decision>,
    ) -> Result<(), CoreError> {
        let f = self.state.accept_acquire(&a, out)?;
        let per_container = matches!(
            self.knobs.keep_alive,
            KeepAlive::Hybrid {
                per_container: true,
                ..
            }
        );
        self.last_arrival = now;
        self.fd(f).retired = false;
        if self.next_sweep.is_none() {
            self.next_sweep = Some(now + self.knobs.sweep_every_ms);
        }
        let fd = self.fd(f);
        // The function's idle time, if this arrival ends one (for a miss, below).
        let mut fn_gap = 0;
        if fd.idle() {
            if let Some(since) = fd.idle_since.take() {
                let gap = now.saturating_sub(since);
                fn_gap = gap;
                if gap >= MERGE_GAP_MS {
                    if !per_container {
                        fd.hist.record(gap);
                        fd.window = None;
                    }
                    fd.last_peak = fd.peak;
                    fd.peak = 0;
                }
            }
            fd.prewarm_at = None;
        }
        let queued = !fd.queue.is_empty();
        let warm = if queued {
            None
        } else {
            self.state.store.free_container(f)
        };
        let gap = warm
            .and_then(|c| self.state.store.container(c))
            .filter(|r| r.container.in_flight == 0)
            .map_or(0, |r| now.saturating_sub(r.container.last_used_at));
        if let Some(c) = warm
            && self.state.grant(now, a.request_id.clone(), c, false, out)
        {
            let fd = &mut self.fns[f.index() as usize];
            if per_container && gap >= MERGE_GAP_MS {
                fd.hist.record(gap);
                fd.window = None;
            }
            fd.inflight += 1;
            fd.peak = fd.peak.max(fd.inflight);
            if self
                .knobs
                .spare_from_inflight
                .is_some_and(|n| self.fns[f.index() as usize].inflight >= n)
            {
                self.maybe_spare(now, f, out);
            }
            return Ok(());
        }
        // A miss after the window let every container go: per-container idle times only see
        // gaps shorter than the window (right-censored), so the function's idle time is
        // recorded here, where the window was too short.
        if per_container && warm.is_none() && fn_gap >= MERGE_GAP_MS {
            let fd = &mut self.fns[f.index() as usize];
            fd.hist.record(fn_gap);
            fd.window = None;
        }
        if !self.started && self.knobs.initial_nodes > 0 {
            self.started = true;
            let have = self.state.store.node_count() as u32;
            for _ in have..self.knobs.initial_nodes {
                self.state.start_reserve(now, out);
            }
        }
        let memory = a.function.memory_bytes;
        self.largest_function = self.largest_function.max(memory);
        let expected = self.state.expected_node_bytes();
        if memory > expected || self.state.waiting_count() >= MAX_WAITING {
            let message = if memory > expected {
                format!(
                    "function {} needs {} MiB per container, more than a node offers ({} MiB)",
                    a.function.name,
                    memory / MIB,
                    expected / MIB
                )
            } else {
                format!(
                    "{MAX_WAITING} requests already wait for a container; retry later or add capacity"
                )
            };
            let error = AcquireError {
                code: AcquireErrorCode::ResourceExhausted,
                message,
            };
            self.state.reject(a.request_id, error, out);
            return Ok(());
        }
        self.state.wait(now, a.request_id.clone(), f, a.deadline);
        let fd = &mut self.fns[f.index() as usize];
        fd.queue.push_back(a.request_id);
        fd.peak = fd.peak.max(fd.inflight + fd.queue.len() as u32);
        if !fd.starving {
            fd.starving = true;
            self.starving.push(f);
        }
        self.drain(now, f, false, out);
        if !self.fns[f.index() as usize].queue.is_empty() {
            self.pump(now, out);
        }
        Ok(())
    }

    fn on_return(
        &mut self,
        now: Millis,
        r: Return,
        out: &mut Vec<Decision>,
    ) -> Result<(), CoreError> {
        let (duration_ns, memory, error) = (r.duration_ns, r.max_memory_bytes, r.error.clone());
        let shared = self
            .state
            .store
            .lease(&r.request_id)
            .and_then(|l| self.state.store.container(l.container))
            .is_some_and(|c| c.container.in_flight > 1);
        let returned = self.state.accept_return(now, r, out)?;
        let Some(f) = returned.function else {
            return Ok(());
        };
        let fd = self.fd(f);
        if !returned.orphan {
            fd.inflight = fd.inflight.saturating_sub(1);
        }
        self.learn_call(
            f,
            duration_ns,
            memory,
            error.as_ref(),
            shared,
            returned.died,
        );
        self.update_limit(f);
        self.drain(now, f, false, out);
        self.check_idle(now, f);
        Ok(())
    }

    fn slot_freed(&mut self, now: Millis, c: ContainerKey, out: &mut Vec<Decision>) {
        let Some(f) = self.state.store.container(c).map(|r| r.function) else {
            return;
        };
        let fd = self.fd(f);
        fd.inflight = fd.inflight.saturating_sub(1);
        self.drain(now, f, false, out);
        self.check_idle(now, f);
    }

    /// The oldest request still waiting in `f`'s queue.
    fn pop_waiter(&mut self, f: FunctionKey) -> Option<Text> {
        let i = f.index() as usize;
        while let Some(id) = self.fns.get_mut(i)?.queue.pop_front() {
            if self.state.waiter(&id).is_some_and(|w| w.function == f) {
                return Some(id);
            }
        }
        None
    }

    /// Grants free slots of `f`'s containers to its waiting requests, oldest first.
    fn drain(&mut self, now: Millis, f: FunctionKey, cold: bool, out: &mut Vec<Decision>) {
        let i = f.index() as usize;
        while self.fns.get(i).is_some_and(|fd| !fd.queue.is_empty()) {
            let Some(c) = self.state.store.free_container(f) else {
                break;
            };
            let Some(id) = self.pop_waiter(f) else {
                break;
            };
            if self.state.grant(now, id.clone(), c, cold, out) {
                let fd = &mut self.fns[i];
                fd.inflight += 1;
                fd.peak = fd.peak.max(fd.inflight + fd.queue.len() as u32);
            } else {
                self.fns[i].queue.push_front(id);
                break;
            }
        }
    }

    fn check_idle(&mut self, now: Millis, f: FunctionKey) {
        let i = f.index() as usize;
        let Some(fd) = self.fns.get(i) else {
            return;
        };
        if !fd.idle() || fd.idle_since.is_some() {
            return;
        }
        let lead = self.prewarm_lead_ms();
        let fd = &mut self.fns[i];
        fd.idle_since = Some(now);
        let KeepAlive::Hybrid {
            fallback_ms,
            prewarm_min_ms,
            min_samples,
            unload_grace_ms,
            ..
        } = self.knobs.keep_alive
        else {
            return;
        };
        fd.prewarm_at = None;
        fd.keep_until = 0;
        if fd.retired {
            fd.keep_ms = 0;
            return;
        }
        let window = *fd.window.get_or_insert_with(|| fd.hist.window(min_samples));
        let Some(w) = window else {
            fd.keep_ms = fallback_ms;
            return;
        };
        let keep = keep_for(w, fd.hist.samples(), &self.knobs.keep_alive);
        if w.prewarm_ms >= prewarm_min_ms && w.prewarm_ms > lead + 2 * unload_grace_ms {
            fd.prewarm_at = Some(now + w.prewarm_ms - lead);
            fd.prewarm_count = fd
                .peak
                .max(fd.last_peak)
                .div_ceil(fd.limit.max(1))
                .clamp(1, 32);
            fd.keep_until = now + keep;
            fd.keep_ms = lead + unload_grace_ms;
        } else {
            fd.keep_ms = keep;
        }
    }

    // ---- learning ----

    fn learn_call(
        &mut self,
        f: FunctionKey,
        duration_ns: u64,
        memory: u64,
        error: Option<&FunctionError>,
        shared: bool,
        died: bool,
    ) {
        let t = self.knobs.thresholds;
        let limit_bytes = self
            .state
            .store
            .function(f)
            .map_or(0, |r| r.spec.memory_bytes);
        let fd = self.fd(f);
        let ms = duration_ns as f64 / 1e6;
        fd.call_memory = fd.call_memory.max(memory);
        if !shared {
            fd.solo_ms = ewma(fd.solo_ms, fd.solo_n, ms);
            fd.solo_n = fd.solo_n.saturating_add(1);
            if ms <= t.short_ms {
                fd.class.short = true;
            }
        }
        if ms > t.long_ms {
            fd.class.short = false;
        }
        if limit_bytes > 0 && memory as f64 >= t.memory_share * limit_bytes as f64 {
            fd.class.memory_heavy = true;
        }
        if let Some(slowdown) = t.slowdown {
            if shared && fd.solo_n > 0 {
                let ratio = ms / fd.solo_ms.max(1.0);
                fd.shared_ratio = ewma(fd.shared_ratio, fd.shared_n, ratio);
                fd.shared_n = fd.shared_n.saturating_add(1);
                if fd.shared_n >= 3 && fd.shared_ratio > slowdown {
                    fd.class.cpu_heavy = true;
                }
            }
            if shared && (error.is_some() || died) {
                let oom = error.is_some_and(|e| {
                    let c = e.code.to_ascii_lowercase();
                    c.contains("memory") || c.contains("oom")
                });
                if oom {
                    fd.class.memory_heavy = true;
                } else {
                    fd.class.cpu_heavy = true;
                }
            }
        }
        if died
            && error.is_some_and(|e| {
                let c = e.code.to_ascii_lowercase();
                c.contains("memory") || c.contains("oom")
            })
        {
            fd.class.memory_heavy = true;
        }
    }

    fn on_stats(&mut self, now: Millis, sample: StatsSample, out: &mut Vec<Decision>) {
        let t = self.knobs.thresholds;
        let per_call = matches!(self.knobs.concurrency, Concurrency::Learned { .. });
        let mut touched = Vec::new();
        for u in &sample.containers {
            let Some(row) = self
                .state
                .store
                .container_by_id(&u.container_id)
                .and_then(|k| self.state.store.container(k))
            else {
                continue;
            };
            let (f, memory, in_flight) = (
                row.function,
                row.container.memory_bytes,
                row.container.in_flight,
            );
            let share = if per_call { in_flight.max(1) } else { 1 } as f64;
            let quota_pct = memory as f64 / (1024.0 * MIB as f64) * 0.67 * 100.0;
            let cpu = u.cpu_pct / share;
            let fd = self.fd(f);
            if memory > 0 && u.memory_usage_bytes as f64 / share >= t.memory_share * memory as f64 {
                fd.class.memory_heavy = true;
            }
            let cpu_limit = match t.cpu_quota_share {
                Some(s) => t.cpu_pct.min(s * quota_pct),
                None => t.cpu_pct,
            };
            if cpu >= cpu_limit {
                fd.class.cpu_heavy = true;
            }
            if per_call {
                fd.call_memory = fd
                    .call_memory
                    .max(u.memory_usage_bytes / in_flight.max(1) as u64);
            }
            touched.push(f);
        }
        let before = out.len();
        self.state.apply_stats(now, sample, out);
        let lost = out[before..]
            .iter()
            .any(|d| matches!(d, Decision::Health(HealthNote::ContainerLost { .. })));
        if lost && !self.starving.is_empty() {
            self.pump(now, out);
        }
        touched.dedup();
        for f in touched {
            self.update_limit(f);
            self.drain(now, f, false, out);
        }
    }

    /// The concurrency limit `f` should have now.
    fn wanted_limit(&self, f: FunctionKey) -> u32 {
        let (Some(fd), Some(row)) = (
            self.fns.get(f.index() as usize),
            self.state.store.function(f),
        ) else {
            return 1;
        };
        if fd.class.heavy() {
            return 1;
        }
        match self.knobs.concurrency {
            Concurrency::Czy { share_from, share } => {
                if row.containers + row.creating >= share_from {
                    share
                } else {
                    1
                }
            }
            Concurrency::Learned {
                max_share,
                min_calls,
            } => {
                if row.profile.calls < min_calls {
                    return 1;
                }
                let per_call = fd.call_memory.max(MIB);
                let by_memory = (row.spec.memory_bytes as f64 * 0.7 / per_call as f64) as u32;
                by_memory.clamp(1, max_share.max(1))
            }
        }
    }

    /// Applies a changed concurrency limit to the function and its containers.
    fn update_limit(&mut self, f: FunctionKey) {
        let want = self.wanted_limit(f);
        let fd = self.fd(f);
        if fd.limit == want {
            return;
        }
        fd.limit = want;
        let keys: Vec<ContainerKey> = self
            .state
            .store
            .containers()
            .filter(|(_, r)| r.function == f)
            .map(|(k, _)| k)
            .collect();
        for k in keys {
            self.state
                .store
                .update_container(k, |c| c.max_concurrency = want);
        }
    }

    // ---- containers ----

    fn on_created(
        &mut self,
        now: Millis,
        op: crate::model::OpId,
        container_id: Text,
        out: &mut Vec<Decision>,
    ) -> Result<(), CoreError> {
        let (started_at, f) = match self.state.op(op) {
            Some(Op::Create(c)) => (c.started_at, c.function),
            _ => {
                return Err(CoreError::UnknownOperation {
                    op,
                    event: "ContainerCreated",
                });
            }
        };
        let limit = self.fd(f).limit;
        let (key, request) = self.state.container_created(now, op, container_id, limit)?;
        if let Some(old) = self.replacing.remove(&op) {
            self.replaced_by(&old, key, out);
        }
        let n = self.start_samples();
        self.start_ms = ewma(self.start_ms, n, now.saturating_sub(started_at) as f64);
        let fd = self.fd(f);
        fd.create_failures = 0;
        if let Some(r) = request {
            if self.state.grant(now, r.clone(), key, true, out) {
                self.fd(f).inflight += 1;
            } else {
                // Created for an older definition of its function: the request waits on.
                self.requeue(f, r);
            }
        }
        self.update_limit(f);
        self.drain(now, f, true, out);
        if !self.starving.is_empty() {
            self.pump(now, out);
        }
        Ok(())
    }

    fn start_samples(&self) -> u32 {
        // The first measured start replaces the assumption.
        if self.start_ms == INITIAL_START_MS {
            0
        } else {
            1
        }
    }

    fn on_create_failed(
        &mut self,
        now: Millis,
        op: crate::model::OpId,
        message: &str,
        refused: bool,
        out: &mut Vec<Decision>,
    ) -> Result<(), CoreError> {
        let (create, request) = self.state.create_failed(op)?;
        self.replacing.remove(&op);
        let f = create.function;
        let fd = self.fd(f);
        if let Some(r) = request {
            fd.queue.push_front(r);
        }
        fd.create_failures += 1;
        // A node that refused the create cannot run the function: no retry.
        if !refused && fd.create_failures < MAX_CREATE_FAILURES {
            let retry = now + 200 * fd.create_failures as Millis;
            self.pump_at = Some(self.pump_at.map_or(retry, |p| p.min(retry)));
            return Ok(());
        }
        fd.create_failures = 0;
        let error = self.state.create_failed_error(&create, message, refused);
        while let Some(id) = self.pop_waiter(f) {
            self.state.reject(id, error.clone(), out);
        }
        Ok(())
    }

    /// One spare container when every slot of a recurring function is taken.
    fn maybe_spare(&mut self, now: Millis, f: FunctionKey, out: &mut Vec<Decision>) {
        let Some(row) = self.state.store.function(f) else {
            return;
        };
        if row.free_containers() > 0 || row.creating > 0 {
            return;
        }
        let mut view = self.view();
        match self.place(&mut view, f) {
            Ok(node) => {
                self.state.start_create(now, node, f, None, out);
            }
            Err(charge) => {
                self.shortage.push(charge);
                self.ensure_nodes(now, &view, out);
            }
        }
    }

    // ---- provisioning ----

    /// What one container of `f` counts against its node's memory when packing (see
    /// [`Overcommit`]), bytes.
    fn charge(&self, f: FunctionKey) -> u64 {
        let Some(row) = self.state.store.function(f) else {
            return 0;
        };
        let limit = row.spec.memory_bytes;
        let (Some(oc), Some(fd)) = (self.knobs.overcommit, self.fns.get(f.index() as usize)) else {
            return limit;
        };
        if fd.class.memory_heavy || row.profile.calls < oc.min_calls || fd.call_memory == 0 {
            return limit;
        }
        let used = fd
            .call_memory
            .saturating_mul(u64::from(fd.limit.max(1)))
            .saturating_add(CONTAINER_BASE_BYTES);
        let floor = (limit as f64 / oc.max_factor.max(1.0)) as u64;
        ((used as f64 * oc.margin) as u64).clamp(floor.min(limit), limit)
    }

    fn view(&self) -> View {
        let factor = self.knobs.overcommit.map_or(1.0, |o| o.max_factor.max(1.0));
        let mut nodes: Vec<NodeView> = self
            .state
            .store
            .nodes()
            // A suspect node takes no new container: it may be gone.
            .filter(|(_, n)| n.state == NodeState::Active && n.suspect_since.is_none())
            .map(|(k, n)| NodeView {
                key: k,
                // Without over-commit charges are limits: the store's free memory.
                free: if self.knobs.overcommit.is_some() {
                    n.capacity_bytes
                } else {
                    n.free_bytes()
                },
                free_limit: ((n.capacity_bytes as f64 * factor) as u64)
                    .saturating_sub(n.used_bytes),
                removing: 0,
                heavy: 0,
            })
            .collect();
        let charges: Vec<u64> = match self.knobs.overcommit {
            Some(_) => self.fns.iter().map(|fd| self.charge(fd.key)).collect(),
            None => Vec::new(),
        };
        let mut per_function: Map<(NodeKey, FunctionKey), u32> = Map::default();
        let mut bump = |nodes: &mut Vec<NodeView>,
                        node: NodeKey,
                        f: FunctionKey,
                        limit: u64,
                        removing: bool| {
            *per_function.entry((node, f)).or_default() += 1;
            let heavy = self
                .fns
                .get(f.index() as usize)
                .is_some_and(|d| d.class.cpu_heavy);
            let charge = if charges.is_empty() {
                limit
            } else {
                charges.get(f.index() as usize).copied().unwrap_or(limit)
            };
            if let Some(v) = nodes.iter_mut().find(|v| v.key == node) {
                if !charges.is_empty() {
                    v.free = v.free.saturating_sub(charge);
                }
                if removing {
                    v.removing += charge;
                }
                v.heavy += heavy as u32;
            }
        };
        for (_, r) in self.state.store.containers() {
            match r.container.state {
                ContainerState::Ready => bump(
                    &mut nodes,
                    r.node,
                    r.function,
                    r.container.memory_bytes,
                    false,
                ),
                ContainerState::Removing => bump(
                    &mut nodes,
                    r.node,
                    r.function,
                    r.container.memory_bytes,
                    true,
                ),
                _ => {}
            }
        }
        for (_, c) in self.state.creates() {
            bump(&mut nodes, c.node, c.function, c.memory_bytes, false);
        }
        View {
            nodes,
            per_function,
        }
    }

    /// A node for a new container of `f` (updating the view), if one has room; else the
    /// charge that found none.
    fn place(&self, view: &mut View, f: FunctionKey) -> Result<NodeKey, u64> {
        let charge = self.charge(f);
        let limit = self
            .state
            .store
            .function(f)
            .map_or(charge, |r| r.spec.memory_bytes);
        let heavy = self
            .fns
            .get(f.index() as usize)
            .is_some_and(|d| d.class.cpu_heavy);
        let fits = view
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, v)| v.free >= charge && v.free_limit >= limit);
        let best = match self.knobs.placement {
            Placement::SpreadByFunction => fits
                .min_by_key(|(_, v)| {
                    let count = view.per_function.get(&(v.key, f)).copied().unwrap_or(0);
                    (count, std::cmp::Reverse(v.free))
                })
                .map(|(i, _)| i),
            // CPU-heavy: best fit among nodes under the cap, else the fewest CPU-heavy.
            Placement::Pack if heavy => fits
                .min_by_key(|(_, v)| (v.heavy >= HEAVY_PER_NODE, v.free, v.heavy))
                .map(|(i, _)| i),
            Placement::Pack => fits.min_by_key(|(_, v)| v.free).map(|(i, _)| i),
        }
        .ok_or(charge)?;
        let v = &mut view.nodes[best];
        v.free -= charge;
        v.free_limit -= limit;
        v.heavy += heavy as u32;
        let key = v.key;
        *view.per_function.entry((key, f)).or_default() += 1;
        Ok(key)
    }

    /// Whether removals in flight will make room for `memory` somewhere.
    fn room_after_removals(view: &View, memory: u64) -> bool {
        view.nodes.iter().any(|v| v.free + v.removing >= memory)
    }

    /// Provisions every function with waiting requests, then finds nodes for what did not fit.
    fn pump(&mut self, now: Millis, out: &mut Vec<Decision>) {
        let mut view = self.view();
        let list = std::mem::take(&mut self.starving);
        for f in list {
            self.provision(now, f, &mut view, out);
            let fd = self.fd(f);
            if fd.queue.is_empty() {
                fd.starving = false;
            } else {
                self.starving.push(f);
            }
        }
        self.ensure_nodes(now, &view, out);
    }

    fn provision(&mut self, now: Millis, f: FunctionKey, view: &mut View, out: &mut Vec<Decision>) {
        let i = f.index() as usize;
        let Some(fd) = self.fns.get_mut(i) else {
            return;
        };
        let state = &self.state;
        fd.queue
            .retain(|id| state.waiter(id).is_some_and(|w| w.function == f));
        let waiting = fd.queue.len() as u32;
        if waiting == 0 {
            return;
        }
        let Some(row) = self.state.store.function(f) else {
            return;
        };
        let (creating, live) = (row.creating, row.containers);
        let limit = fd.limit.max(1);
        let mut need = match self.knobs.creates {
            Creates::PerRequest => waiting.saturating_sub(creating * limit).div_ceil(limit),
            Creates::SingleFlight {
                per_function,
                total,
            } => {
                let s = self.start_ms.max(1.0);
                let d = if row.profile.calls > 0 {
                    row.profile.mean_duration_ns / 1e6
                } else {
                    s
                };
                let oldest = fd
                    .queue
                    .front()
                    .and_then(|id| state.waiter(id))
                    .map_or(now, |w| w.since);
                let servable = if now.saturating_sub(oldest) < s as Millis {
                    (fd.inflight as f64 * (s / d.max(1.0)).min(8.0)) as u32
                } else {
                    0
                };
                let need_now = waiting
                    .saturating_sub(creating * limit + servable)
                    .div_ceil(limit);
                let steady = if fd.hist.samples() > 0 {
                    fd.last_peak
                        .saturating_sub((live + creating) * limit)
                        .div_ceil(limit)
                } else {
                    0
                };
                let need = need_now.max(steady);
                if need_now == 0 {
                    let again = now + (s / 2.0) as Millis + 1;
                    self.pump_at = Some(self.pump_at.map_or(again, |p| p.min(again)));
                }
                let in_flight = self.state.creates().count() as u32;
                need.min(per_function.saturating_sub(creating))
                    .min(total.saturating_sub(in_flight))
            }
        };
        while need > 0 {
            match self.place(view, f) {
                Ok(node) => {
                    self.state.start_create(now, node, f, None, out);
                }
                Err(charge) => {
                    if !Self::room_after_removals(view, charge) {
                        self.shortage.push(charge);
                    }
                    break;
                }
            }
            need -= 1;
        }
    }

    /// Makes room for the memory that found no node: evicts idle containers, reserves nodes.
    fn ensure_nodes(&mut self, now: Millis, view: &View, out: &mut Vec<Decision>) {
        let shortage = std::mem::take(&mut self.shortage);
        if shortage.is_empty() {
            return;
        }
        if self.draining().is_some() {
            // Memory ran short while a node empties: use it again before anything else.
            self.undrain();
            self.pump_at = Some(now);
            return;
        }
        let backing_off = self.reserve_retry_at.is_some_and(|t| t > now);
        let mut missing = 0u64;
        for memory in shortage {
            if let Some(min_idle) = self.knobs.evict_idle_ms {
                let min_idle = if backing_off { 0 } else { min_idle };
                if self.evict_for(now, view, memory, min_idle, out) {
                    continue;
                }
            }
            missing += memory;
        }
        if missing == 0 || backing_off {
            return;
        }
        let coming: u64 = self.state.reserves().map(|(_, r)| r.expected_bytes).sum();
        if missing <= coming {
            return;
        }
        let node_bytes = self.state.expected_node_bytes().max(1);
        let count = (missing - coming)
            .div_ceil(node_bytes)
            .min(MAX_RESERVES_AT_ONCE);
        for _ in 0..count {
            self.state.start_reserve(now, out);
        }
    }

    /// Removes idle containers (least recently used first, none of a function with waiting
    /// requests) on one node so that `memory` fits there once they are gone.
    fn evict_for(
        &mut self,
        now: Millis,
        view: &View,
        memory: u64,
        min_idle: Millis,
        out: &mut Vec<Decision>,
    ) -> bool {
        // Unless reserves fail, each function keeps its most recently used container.
        let mut newest: Map<FunctionKey, Millis> = Map::default();
        if min_idle > 0 {
            for (_, r) in self.state.store.containers() {
                if r.container.state == ContainerState::Ready {
                    let t = newest.entry(r.function).or_insert(0);
                    *t = (*t).max(r.container.last_used_at);
                }
            }
        }
        let mut victims: Vec<(Millis, ContainerKey, NodeKey, u64)> = self
            .state
            .store
            .containers()
            .filter(|(_, r)| {
                r.container.state == ContainerState::Ready
                    && r.container.in_flight == 0
                    && now.saturating_sub(r.container.last_used_at) >= min_idle
                    && newest
                        .get(&r.function)
                        .is_none_or(|&t| r.container.last_used_at < t)
                    && self
                        .fns
                        .get(r.function.index() as usize)
                        .is_none_or(|d| d.queue.is_empty())
            })
            .map(|(k, r)| (r.container.last_used_at, k, r.node, self.charge(r.function)))
            .collect();
        if victims.is_empty() {
            return false;
        }
        victims.sort_unstable_by_key(|v| v.0);
        // The node where the fewest evictions make room.
        let mut best: Option<(usize, NodeKey)> = None;
        for v in &view.nodes {
            let mut have = v.free + v.removing;
            let mut n = 0;
            for victim in victims.iter().filter(|x| x.2 == v.key) {
                if have >= memory {
                    break;
                }
                have += victim.3;
                n += 1;
            }
            if have >= memory && best.is_none_or(|(b, _)| n < b) {
                best = Some((n, v.key));
            }
        }
        let Some((_, node)) = best else {
            return false;
        };
        let v = view.nodes.iter().find(|v| v.key == node);
        let mut have = v.map_or(0, |v| v.free + v.removing);
        for victim in victims.iter().filter(|x| x.2 == node) {
            if have >= memory {
                break;
            }
            if self.state.remove_container(victim.1, out) {
                have += victim.3;
            }
        }
        true
    }

    // ---- time ----

    /// Takes over a node after a restart: its containers get their function's concurrency
    /// and serve the waiting requests.
    fn on_adopted(
        &mut self,
        now: Millis,
        node: crate::model::NodeInfo,
        reserved_at: Millis,
        containers: Vec<crate::model::AdoptedContainer>,
        out: &mut Vec<Decision>,
    ) -> Result<(), CoreError> {
        let Some((_, adopted)) = self
            .state
            .adopt_node(now, node, reserved_at, containers, out)?
        else {
            return Ok(());
        };
        let mut functions = Vec::new();
        for c in adopted {
            let Some(f) = self.state.store.container(c).map(|r| r.function) else {
                continue;
            };
            let limit = self.fd(f).limit;
            self.state
                .store
                .update_container(c, |c| c.max_concurrency = limit);
            functions.push(f);
        }
        functions.dedup();
        for f in functions {
            self.drain(now, f, false, out);
            self.check_idle(now, f);
        }
        self.last_node_change = now;
        if !self.starving.is_empty() {
            self.pump(now, out);
        }
        Ok(())
    }

    /// Puts a request that still waits back at the front of its function's queue.
    fn requeue(&mut self, f: FunctionKey, request_id: Text) {
        let fd = self.fd(f);
        fd.queue.push_front(request_id);
        if !fd.starving {
            fd.starving = true;
            self.starving.push(f);
        }
    }

    /// Acts on what [`State::heal`] found: reclaimed slots serve waiting requests, requests
    /// that waited on lost nodes wait on (placed again by the pump).
    fn heal(&mut self, now: Millis, out: &mut Vec<Decision>) {
        let healed = self.state.heal(now, out);
        if healed.is_empty() {
            return;
        }
        for (_, f) in healed.freed {
            let fd = self.fd(f);
            fd.inflight = fd.inflight.saturating_sub(1);
            self.drain(now, f, false, out);
            self.check_idle(now, f);
        }
        for (_, f) in healed.orphans_ended {
            self.drain(now, f, false, out);
        }
        for request_id in healed.replace.into_iter().rev() {
            if let Some(f) = self.state.waiter(&request_id).map(|w| w.function) {
                self.requeue(f, request_id);
            }
        }
        if !healed.lost.is_empty() {
            for key in &healed.lost {
                self.node_empty_since.remove(key);
            }
            let state = &self.state;
            self.replacing.retain(|op, _| state.op(*op).is_some());
            self.last_node_change = now;
        }
        if !self.starving.is_empty() {
            self.pump(now, out);
        }
    }

    fn on_tick(&mut self, now: Millis, out: &mut Vec<Decision>) {
        self.state.expire(now, out);
        self.heal(now, out);
        if self.next_sweep.is_some_and(|s| s <= now) {
            self.sweep(now, out);
            self.next_sweep = Some(now + self.knobs.sweep_every_ms.max(1));
        }
        let retry = self.reserve_retry_at.is_some_and(|t| t <= now);
        if retry {
            self.reserve_retry_at = None;
        }
        let poke = self.pump_at.is_some_and(|t| t <= now);
        if poke {
            self.pump_at = None;
        }
        if (retry || poke) && !self.starving.is_empty() {
            self.pump(now, out);
        }
    }

    /// Keep-alive expiry, pre-warm, headroom and node release.
    fn sweep(&mut self, now: Millis, out: &mut Vec<Decision>) {
        let lead = self.prewarm_lead_ms();
        if let KeepAlive::Hybrid {
            fallback_ms,
            min_samples,
            ..
        } = self.knobs.keep_alive
        {
            let knobs = self.knobs.keep_alive;
            // Functions that never went idle still need a window for their spare containers.
            for fd in &mut self.fns {
                if fd.prewarm_at.is_none() && (fd.window.is_none() || fd.keep_ms == Millis::MAX) {
                    let window = *fd.window.get_or_insert_with(|| fd.hist.window(min_samples));
                    let samples = fd.hist.samples();
                    fd.keep_ms = window.map_or(fallback_ms, |w| keep_for(w, samples, &knobs));
                }
            }
        }
        let mut ready = vec![0u32; self.fns.len()];
        let mut busy_nodes: Vec<NodeKey> = Vec::new();
        let mut idle: Vec<(Millis, ContainerKey, FunctionKey)> = Vec::new();
        for (k, r) in self.state.store.containers() {
            if r.container.in_flight > 0 {
                busy_nodes.push(r.node);
            }
            if r.container.state != ContainerState::Ready {
                continue;
            }
            if let Some(n) = ready.get_mut(r.function.index() as usize) {
                *n += 1;
            }
            if r.container.in_flight == 0 {
                idle.push((r.container.last_used_at, k, r.function));
            }
        }
        idle.sort_unstable_by_key(|x| x.0);
        let extra_keep = self.extra_keep_ms();
        for (last_used, key, f) in idle {
            let idle_ms = now.saturating_sub(last_used);
            let Some(fd) = self.fns.get(f.index() as usize) else {
                continue;
            };
            let remove = match self.knobs.keep_alive {
                KeepAlive::Fixed {
                    idle_ms: max,
                    keep_one,
                } => idle_ms >= max && (!keep_one || ready[f.index() as usize] > 1),
                KeepAlive::Hybrid {
                    unload_grace_ms, ..
                } => {
                    let unload = fd.idle()
                        && idle_ms >= unload_grace_ms
                        && fd.prewarm_at.is_some_and(|p| p > now + lead);
                    let extra = ready[f.index() as usize] > 1
                        && extra_keep
                            .get(f.index() as usize)
                            .is_some_and(|&k| idle_ms >= k);
                    unload || extra || (idle_ms >= fd.keep_ms && now >= fd.keep_until)
                }
            };
            if remove && !self.state.held(f, now) && self.state.remove_container(key, out) {
                ready[f.index() as usize] -= 1;
            }
        }
        self.prewarm(now, out);
        if self.knobs.consolidate_after_ms.is_some() {
            self.consolidate(now, out);
        }
        let view = self.view();
        if self.knobs.headroom {
            self.keep_headroom(now, &view, out);
        }
        self.release_empty_nodes(now, &view, &busy_nodes, out);
    }

    // ---- consolidation ----

    /// The node being emptied, if any.
    fn draining(&self) -> Option<NodeKey> {
        self.state
            .store
            .nodes()
            .find(|(_, n)| n.state == NodeState::Draining)
            .map(|(k, _)| k)
    }

    /// Empties one node into the others so that it can be released: when the other nodes'
    /// free memory holds the least used node's containers and the headroom, that node is
    /// marked draining (no new containers), each of its idle containers is created again
    /// on another node (best fit) and removed once the copy is ready, busy ones when their
    /// requests end; the empty node is released at once. The copy keeps the original's idle
    /// clock, so keep-alive is not extended, and no warm container is lost. Draining stops
    /// (the node is usable again) as soon as memory runs short anywhere.
    fn consolidate(&mut self, now: Millis, out: &mut Vec<Decision>) {
        self.finish_moves(out);
        let node = match self.draining() {
            Some(n) => n,
            None if !self.starving.is_empty() => return,
            None => match self.drain_candidate(now) {
                Some(n) => {
                    if let Some(node) = self.state.store.node_mut(n) {
                        node.state = NodeState::Draining;
                    }
                    n
                }
                None => return,
            },
        };
        let creating_there = self.state.creates().any(|(_, c)| c.node == node);
        let mut on_node: Vec<(ContainerKey, FunctionKey, u64, bool)> = self
            .state
            .store
            .containers()
            .filter(|(_, r)| r.node == node)
            .map(|(k, r)| {
                let idle = r.container.state == ContainerState::Ready && r.container.in_flight == 0;
                (k, r.function, r.container.memory_bytes, idle)
            })
            .collect();
        if on_node.is_empty() && !creating_there {
            let busy = self.state.store.node(node).is_none_or(|n| n.containers > 0);
            if !busy && self.state.release_node(node, out) {
                self.node_empty_since.remove(&node);
                self.last_node_change = now;
            }
            return;
        }
        on_node.sort_unstable_by_key(|c| std::cmp::Reverse(c.2));
        let pending: Set<Text> = self.replacing.values().cloned().collect();
        let mut view = self.view();
        for (key, f, _, idle) in on_node {
            let Some(id) = self
                .state
                .store
                .container(key)
                .map(|r| r.container.id.clone())
            else {
                continue;
            };
            if !idle || pending.contains(&id) || self.replaced.contains_key(&id) {
                continue;
            }
            match self.place(&mut view, f) {
                Ok(to) => {
                    if let Some(op) = self.state.start_create(now, to, f, None, out) {
                        self.replacing.insert(op, id);
                    }
                }
                Err(_) => {
                    self.undrain();
                    return;
                }
            }
        }
    }

    /// A node worth emptying: the least used of at least two, held long enough, whose
    /// containers (and the headroom) fit into the other nodes' free memory.
    fn drain_candidate(&self, now: Millis) -> Option<NodeKey> {
        let hold = self.knobs.consolidate_after_ms?;
        if self.reserve_retry_at.is_some_and(|t| t > now)
            || self.state.reserves().next().is_some()
            || now.saturating_sub(self.last_node_change) < hold
        {
            return None;
        }
        let view = self.view();
        if view.nodes.len() < 2 {
            return None;
        }
        let capacity = |k: NodeKey| self.state.store.node(k).map_or(0, |n| n.capacity_bytes);
        let candidate = view
            .nodes
            .iter()
            .filter(|v| {
                self.state
                    .store
                    .node(v.key)
                    .is_some_and(|n| now.saturating_sub(n.reserved_at) >= hold)
            })
            .min_by_key(|v| capacity(v.key).saturating_sub(v.free))?
            .key;
        if self.state.creates().any(|(_, c)| c.node == candidate) {
            return None;
        }
        // Best fit of its containers, largest first, into the other nodes.
        let mut others = View {
            nodes: view
                .nodes
                .iter()
                .filter(|v| v.key != candidate)
                .cloned()
                .collect(),
            per_function: Map::default(),
        };
        let on_node = || {
            self.state
                .store
                .containers()
                .filter(move |(_, r)| r.node == candidate)
        };
        // Only a node of idle containers: moving the containers of busy functions would
        // have their requests wait for the copies.
        let quiet = on_node().all(|(_, r)| {
            r.container.state == ContainerState::Ready
                && r.container.in_flight == 0
                && now.saturating_sub(r.container.last_used_at) >= DRAIN_MIN_IDLE_MS
        });
        if !quiet || on_node().count() > DRAIN_MAX_CONTAINERS {
            return None;
        }
        let mut moving: Vec<(FunctionKey, u64)> = on_node()
            .map(|(_, r)| (r.function, r.container.memory_bytes))
            .collect();
        moving.sort_unstable_by_key(|m| std::cmp::Reverse(m.1));
        for (f, _) in moving {
            self.place(&mut others, f).ok()?;
        }
        // Room to spare afterwards: the headroom and a quarter of a node, so that the next
        // burst does not reserve the node just released.
        let free: u64 = others.nodes.iter().map(|v| v.free).sum();
        let slack = self.headroom_bytes() + self.state.expected_node_bytes() / 4;
        (free >= slack).then_some(candidate)
    }

    /// The draining node takes containers again (moves already begun complete).
    fn undrain(&mut self) {
        if let Some(n) = self.draining()
            && let Some(node) = self.state.store.node_mut(n)
        {
            node.state = NodeState::Active;
        }
    }

    /// Removes the moved containers whose requests have ended; forgets those already gone.
    fn finish_moves(&mut self, out: &mut Vec<Decision>) {
        if self.replaced.is_empty() {
            return;
        }
        let moved: Vec<(Text, Text)> = self
            .replaced
            .iter()
            .map(|(a, b)| (a.clone(), b.clone()))
            .collect();
        for (id, copy) in moved {
            let copy_ready = self
                .state
                .store
                .container_by_id(&copy)
                .and_then(|k| self.state.store.container(k))
                .is_some_and(|r| r.container.state == ContainerState::Ready);
            if !copy_ready {
                // The copy is gone (expired or died): the original stays.
                self.replaced.remove(&id);
                continue;
            }
            let row = self
                .state
                .store
                .container_by_id(&id)
                .and_then(|k| Some((k, self.state.store.container(k)?)));
            let Some((key, row)) = row else {
                self.replaced.remove(&id);
                continue;
            };
            match row.container.state {
                ContainerState::Ready if row.container.in_flight == 0 => {
                    self.state.remove_container(key, out);
                    self.replaced.remove(&id);
                }
                ContainerState::Ready => {}
                _ => {
                    self.replaced.remove(&id);
                }
            }
        }
    }

    /// A replacement `new` of `old` is ready: `new` takes over `old`'s idle clock and `old`
    /// goes now if idle, else once its requests end (next sweep), draining or not.
    fn replaced_by(&mut self, old_id: &str, new: ContainerKey, out: &mut Vec<Decision>) {
        let Some(new_id) = self
            .state
            .store
            .container(new)
            .map(|r| r.container.id.clone())
        else {
            return;
        };
        let Some(old) = self.state.store.container_by_id(old_id) else {
            return;
        };
        let Some(row) = self.state.store.container(old) else {
            return;
        };
        let (last_used, idle) = (
            row.container.last_used_at,
            row.container.state == ContainerState::Ready && row.container.in_flight == 0,
        );
        self.state
            .store
            .update_container(new, |c| c.last_used_at = last_used);
        if idle {
            self.state.remove_container(old, out);
        } else {
            self.replaced.insert(Text::from(old_id), new_id);
        }
    }

    /// Per function, how long its idle containers beyond the most recently used one are
    /// kept while its histogram is not representative (see [`KeepAlive::Hybrid`]);
    /// `Millis::MAX` where the rule does not apply.
    fn extra_keep_ms(&self) -> Vec<Millis> {
        let KeepAlive::Hybrid {
            extra_cost: Some(cost),
            fallback_ms,
            ..
        } = self.knobs.keep_alive
        else {
            return Vec::new();
        };
        self.fns
            .iter()
            .map(|fd| {
                let representative = matches!(fd.window, Some(Some(_)));
                let duration_ms = self
                    .state
                    .store
                    .function(fd.key)
                    .filter(|r| r.profile.calls > 0)
                    .map(|r| r.profile.mean_duration_ns / 1e6);
                match duration_ms {
                    Some(d) if !representative => {
                        let share = (cost * self.start_ms / d.max(1.0)).min(1.0);
                        (fallback_ms as f64 * share) as Millis
                    }
                    _ => Millis::MAX,
                }
            })
            .collect()
    }

    fn prewarm(&mut self, now: Millis, out: &mut Vec<Decision>) {
        let due: Vec<(FunctionKey, u32)> = self
            .fns
            .iter_mut()
            .filter(|fd| fd.idle() && !fd.retired && fd.prewarm_at.is_some_and(|p| p <= now))
            .map(|fd| {
                fd.prewarm_at = None;
                (fd.key, fd.prewarm_count)
            })
            .collect();
        if due.is_empty() {
            return;
        }
        let mut view = self.view();
        for (f, count) in due {
            let Some(row) = self.state.store.function(f) else {
                continue;
            };
            let have = row.containers + row.creating;
            for _ in have..count {
                match self.place(&mut view, f) {
                    Ok(node) => {
                        self.state.start_create(now, node, f, None, out);
                    }
                    Err(charge) => {
                        self.shortage.push(charge);
                        break;
                    }
                }
            }
        }
        self.ensure_nodes(now, &view, out);
    }

    fn headroom_bytes(&self) -> u64 {
        if self.knobs.headroom {
            self.largest_function
        } else {
            0
        }
    }

    fn keep_headroom(&mut self, now: Millis, view: &View, out: &mut Vec<Decision>) {
        let recently_active = now.saturating_sub(self.last_arrival) < 60_000;
        let backing_off = self.reserve_retry_at.is_some_and(|t| t > now);
        if !recently_active || backing_off || self.state.reserves().next().is_some() {
            return;
        }
        let free: u64 = view.nodes.iter().map(|v| v.free).sum();
        let want = self.headroom_bytes();
        if free < want && !view.nodes.is_empty() {
            self.state.start_reserve(now, out);
        }
    }

    fn release_empty_nodes(
        &mut self,
        now: Millis,
        view: &View,
        busy_nodes: &[NodeKey],
        out: &mut Vec<Decision>,
    ) {
        let mut free: u64 = view.nodes.iter().map(|v| v.free).sum();
        let recently_active = now.saturating_sub(self.last_arrival) < 60_000;
        let want = if recently_active {
            self.headroom_bytes()
        } else {
            0
        };
        let nodes: Vec<(NodeKey, u64, u32, NodeState)> = self
            .state
            .store
            .nodes()
            .map(|(k, n)| (k, n.free_bytes(), n.containers, n.state))
            .collect();
        for (key, node_free, containers, state) in nodes {
            if state != NodeState::Active || containers > 0 || busy_nodes.contains(&key) {
                self.node_empty_since.remove(&key);
                continue;
            }
            let since = *self.node_empty_since.entry(key).or_insert(now);
            if now.saturating_sub(since) < self.knobs.node_idle_ms {
                continue;
            }
            if free.saturating_sub(node_free) < want {
                continue;
            }
            if self.state.release_node(key, out) {
                free = free.saturating_sub(node_free);
                self.node_empty_since.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn irregular_short_histograms_keep_the_fallback_until_trusted() {
        let knobs = crate::policies::adaptive::KNOBS.keep_alive;
        let regular = Window {
            prewarm_ms: 50_000,
            keep_alive_ms: 60_000,
        };
        assert_eq!(keep_for(regular, 3, &knobs), 77_000, "1.25 × p99 + 2 s");
        let irregular = Window {
            prewarm_ms: 2_000,
            keep_alive_ms: 60_000,
        };
        assert_eq!(keep_for(irregular, 10, &knobs), 600_000);
        assert_eq!(keep_for(irregular, 100, &knobs), 77_000);
        let long = Window {
            prewarm_ms: 20 * 3_600_000,
            keep_alive_ms: 24 * 3_600_000,
        };
        assert_eq!(
            keep_for(long, 100, &knobs),
            crate::policies::adaptive::FALLBACK_KEEP_ALIVE_MS,
            "capped at the fallback"
        );
    }
}
