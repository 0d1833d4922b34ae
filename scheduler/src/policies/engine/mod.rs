//! The machinery shared by the `czy` and `adaptive` policies: per-function request queues,
//! learned classes and concurrency limits, container provisioning, placement, keep-alive and
//! pre-warm sweeps, node reserve (with back-off) and release.
//!
//! A policy is an [`Engine`] with a set of [`Knobs`]; the knobs pick the rule at each point
//! where the two policies differ (concurrency, how many containers to create, placement,
//! over-commit, keep-alive, consolidation). Everything stays pure: time is the `now`
//! argument.
//!
//! Placement works on a view of the nodes (module `view`): each node's memory minus what its
//! containers count (their limits, or with [`Overcommit`] their learned charges), and the
//! limits it may still take. The view is kept between rounds and caught up with the nodes
//! that changed since the last one.
//!
//! What each step costs, with n containers on N nodes (the store's indexes, see
//! [`crate::store`], answer every question about containers):
//! - a warm acquire or a return: O(log n) (a function's free stack, the LRU indexes);
//! - a provisioning round: catching the view up costs O(log N) per node changed since the
//!   last round (its containers, its row, creates on it, a charge of one of its functions),
//!   times the functions on it; best fit ([`Placement::Pack`]) is O(log N) in the view's
//!   free-memory orders; [`Placement::SpreadByFunction`] still visits every node;
//! - a provisioning round's queue: O(1) while no wait of the function ended other than by
//!   a grant from its front, else one pass over its waiting ids;
//! - eviction: the first node in reserve order with room once removals complete, else the
//!   nodes in reserve order, each walked from its least recently used idle container (the
//!   store's per-node LRU index) only as far as room is made, stopping at the first node
//!   that needs one eviction: O(victims) when the first nodes have evictable containers;
//! - the sweep: O(functions) for the per-function windows, the empty nodes (kept by the
//!   store) for releases, plus the idle containers whose idle time reached the shortest
//!   window any rule applies (the store's LRU index, walked from the least recently used).
//!
//! Eviction and the sweep take tied containers (the same last use) in key order (slot
//! index). Before the store kept these indexes, ties followed an unstable sort of a scan of
//! the containers table; a run whose tied containers that sort arranged otherwise could
//! evict or expire another of them. Measured with release builds, the simulator's reports
//! (the contest scenario and two Azure 2019 replays) are identical before and after.
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
//!
//! This file holds the types, the knobs and the routing of events ([`Engine::handle`]); the
//! engine's methods live by topic in `requests` (acquire, return, waiters), `learning`
//! (classes, concurrency limits), `containers` (create results, spares), `provisioning`
//! (placement, creates, reserves, eviction), `time` (adoption, healing, the sweep) and
//! `consolidation` (emptying nodes, pre-warming, headroom, releases).

mod consolidation;
mod containers;
pub mod histogram;
mod learning;
mod provisioning;
mod requests;
mod time;
mod view;

use std::collections::VecDeque;

use crate::core::{CoreError, Decision, Event, PolicyOptions, Snapshot, State};
use crate::model::{MIB, Millis, OpId, Text};
use crate::store::{FunctionKey, Map, NodeKey, Set};
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
/// 0.67 vCPU per GiB, follow memory); measured in `docs/EXPERIMENTS.md`.
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
    /// (see `Engine::consolidate`); a node must have been held this long (ms) first.
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
    /// [`State::waits_ended`] of the function as of the last time every id in `queue` was
    /// known to wait (see `Engine::provision`).
    waits_seen: u64,
    /// `queue` may hold an id twice (one was put back at its front).
    may_repeat: bool,
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
            waits_seen: 0,
            may_repeat: false,
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
    /// Its place in the reserve order (see [`crate::store::Store::node_seq`]).
    seq: u64,
    /// Memory not counted by containers (their charges, see [`Overcommit`]).
    free: u64,
    /// Limits the node may still take (its memory, times the over-commit factor).
    free_limit: u64,
    /// Charges that free when removals in flight complete.
    removing: u64,
    heavy: u32,
}

/// What a node's ready and removing containers count in the view.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct NodeLoad {
    /// Their charges (with over-commit; else 0).
    charged: u64,
    /// The charges of those being removed.
    removing: u64,
    /// CPU-heavy ones.
    heavy: u32,
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
    /// The placement view between rounds (module `view`).
    view: view::View,
    /// The view must be built again from scratch.
    view_stale: bool,
    /// Nodes holding containers of a function whose charge or CPU-heavy class changed since
    /// the view last caught up.
    charge_changed: Set<NodeKey>,
    /// Per function, the charge and CPU-heavy class last seen by `note_charge`.
    charges_seen: Vec<(u64, bool)>,
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
            view: Default::default(),
            view_stale: true,
            charge_changed: Set::default(),
            charges_seen: Vec::new(),
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
            // A function the engine knows counts its charge, not its containers' limits.
            if len == i {
                self.charge_changed_of(f);
            } else {
                self.view_stale = true;
            }
        }
        let fd = &mut self.fns[i];
        fd.key = f;
        fd
    }

    /// Notes `f`'s charge and CPU-heavy class: if either changed, the nodes holding its
    /// containers are stale in the placement view. Called wherever they may change
    /// (returns, stats, limits, a changed spec).
    fn note_charge(&mut self, f: FunctionKey) {
        let i = f.index() as usize;
        let now = (
            self.charge(f),
            self.fns.get(i).is_some_and(|d| d.class.cpu_heavy),
        );
        if i >= self.charges_seen.len() {
            self.charges_seen.resize(i + 1, (0, false));
        }
        if self.charges_seen[i] != now {
            self.charges_seen[i] = now;
            self.charge_changed_of(f);
        }
    }

    /// Marks the nodes holding containers of `f` for the view to recompute (their creates
    /// in flight are recomputed anyway).
    fn charge_changed_of(&mut self, f: FunctionKey) {
        let store = &self.state.store;
        self.charge_changed.extend(
            store
                .container_keys_of(f)
                .filter_map(|c| Some(store.container(c)?.node)),
        );
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
}

#[cfg(test)]
mod tests;
