//! `adaptive`: the platform's default candidate. Learned sharing, packing, the hybrid
//! histogram keep-alive with pre-warm, single-flight creates, nodes reserved ahead and
//! released when idle. Built on the shared [`super::engine`]; see there for the mechanics.
//!
//! - **Reuse and learned concurrency.** A request takes a free slot of a warm container of its
//!   function. Per function the engine learns from `ReturnContainer` (duration, peak memory,
//!   errors) and `GetStats` (CPU and memory per container, divided by the requests in it):
//!   memory-heavy (a call uses 30% of the container's memory), CPU-heavy (10% of a core or
//!   half its quota of 0.67 vCPU per GiB; or shared calls take 1.5× a solo call; or fail when
//!   shared). Heavy functions run one request per container; light ones, after 3 returns, as
//!   many as 70% of the container's memory holds at the largest per-call memory seen, at
//!   most [`MAX_SHARE`].
//! - **Packing.** Best fit by memory (a container's CPU quota follows its memory, so memory
//!   packing is CPU-quota packing too); a CPU-heavy container best fits among nodes with fewer
//!   than [`super::engine::HEAVY_PER_NODE`] CPU-heavy containers, else goes to the node with the fewest
//!   CPU-heavy containers first.
//! - **Over-commit** ([`OVERCOMMIT`]). A container counts its limit until its function has
//!   returned 3 times; then, unless memory-heavy, twice what its calls use at once, at least
//!   half its limit. A node thus holds up to twice its memory in limits (the contest allows
//!   over-commit, and its nodes' CPU stayed under 50% at peak) while what its containers
//!   really use stays near half of it.
//! - **Keep-alive and pre-warm** (Shahrad et al., ATC 2020, with 10%-wide bins from 1 s). Per
//!   function, its containers' idle times (release to the next grant, pauses under 1 s
//!   ignored) go into a histogram: per container rather than per function, because a
//!   function's spare containers idle longer than the function does, and the window decides
//!   when each container goes. Once it holds 3 samples (at most half beyond 25 h):
//!   keep-alive = 1.25 × p99 plus 2 s (at most the fallback 10 minutes), but at least the
//!   fallback 10 minutes while fewer than 50 samples of irregular idle times (p99 above 4× p5)
//!   are in (a short histogram misses the tail). A cold start that ends an idle time of the
//!   function (all its containers had expired) records that idle time too: per-container
//!   reuse alone never sees gaps longer than the window. Measurements behind these rules:
//!   `docs/EXPERIMENTS.md`. If p5 is 20 s or more, containers are unloaded 1 s
//!   after the execution and loaded again (as many as the last busy period needed) at p5
//!   minus a lead of twice the measured container start + 1 s, kept until the keep-alive
//!   ends. Otherwise a fixed 10-minute window (as `keepalive-10m`).
//! - **Spares cost what they save.** While a function's histogram is not representative, its
//!   idle containers beyond the most recently used one are kept only
//!   [`EXTRA_COST`] × container start / mean call duration of the fallback window: a cold
//!   start costs a long call little, while a spare's memory costs the same whatever the call
//!   (measured in `docs/EXPERIMENTS.md`).
//! - **Pre-warmed containers.** When every slot of a function is taken by two or more
//!   requests, one spare container is started (it expires with the function's keep-alive).
//!   The function-agnostic pool that hides container start lives in the node service
//!   (`--warm-pool`): unbound container services bound at `CreateContainer`.
//! - **`adaptive-packed`** adds consolidation: the least used node, once its containers
//!   idled 10 s and fit elsewhere with room to spare, is emptied (each idle container copied
//!   to another node, keeping its idle clock, then removed) and released at once. Fewer
//!   node-seconds for more cold starts, so not the default (see [`PACKED_KNOBS`]).
//! - **Single-flight creates.** A waiting request starts a container only if the busy slots
//!   cannot serve it within one container start (busy × start / duration); recurring
//!   functions are brought to the slots their previous busy period needed. At most 8 creates
//!   in flight per function, 64 overall.
//! - **Nodes.** Reserved when memory runs short (after evicting containers idle for a minute)
//!   and ahead of demand: while requests arrive, free memory for one container of the largest
//!   function is kept. A node empty for 10 s is released unless it is that headroom.
//! - **Waiting.** A request that finds no slot waits (FIFO per function) until a slot frees or
//!   its deadline; a failed reserve is retried with a back-off while requests keep waiting.

use super::engine::{
    Concurrency, Creates, Engine, KeepAlive, Knobs, Overcommit, Placement, Thresholds,
};
use crate::core::PolicyOptions;
use crate::model::Millis;

/// The name the policy is registered under.
pub const NAME: &str = "adaptive";
/// The most requests one container of a light function runs at once.
pub const MAX_SHARE: u32 = 16;
/// The keep-alive window while a function's histogram is not representative.
pub const FALLBACK_KEEP_ALIVE_MS: Millis = 10 * 60 * 1000;

/// How many call durations of memory one cold start is worth (see
/// [`KeepAlive::Hybrid::extra_cost`]). At 2, a spare of a 50-second function lived under a
/// second and every burst of it paid its cold starts again; 20 keeps it about 7 s (30 ms
/// starts) and still lets a short function's spares go early. Measured in
/// `docs/EXPERIMENTS.md` ("Keep-alive Pareto"): the 200-function Azure day well below the
/// fixed windows' curve, the contest's score a little better.
pub const EXTRA_COST: f64 = 20.0;

/// How adaptive over-commits nodes (see [`Overcommit`]): limits up to twice a node's memory
/// (so CPU quotas up to twice its vCPUs, where the contest saw node CPU under 50% at peak
/// without over-commit); a learned container counts twice what its calls use, after 3
/// returns. Measured in `docs/EXPERIMENTS.md` (over-commit).
pub const OVERCOMMIT: Overcommit = Overcommit {
    max_factor: 2.0,
    margin: 2.0,
    min_calls: 3,
};

/// The adaptive policy's knobs.
pub const KNOBS: Knobs = Knobs {
    name: NAME,
    concurrency: Concurrency::Learned {
        max_share: MAX_SHARE,
        min_calls: 3,
    },
    creates: Creates::SingleFlight {
        per_function: 8,
        total: 64,
    },
    placement: Placement::Pack,
    keep_alive: KeepAlive::Hybrid {
        fallback_ms: FALLBACK_KEEP_ALIVE_MS,
        prewarm_min_ms: 20_000,
        min_samples: 3,
        unload_grace_ms: 1000,
        min_keep_ms: 0,
        trust_samples: 50,
        max_keep_ms: 10 * 60 * 1000,
        per_container: true,
        extra_cost: Some(EXTRA_COST),
    },
    thresholds: Thresholds {
        memory_share: 0.30,
        cpu_pct: 10.0,
        cpu_quota_share: Some(0.5),
        short_ms: 50.0,
        long_ms: 65.0,
        slowdown: Some(1.5),
    },
    spare_from_inflight: Some(2),
    sweep_every_ms: 1000,
    initial_nodes: 0,
    headroom: true,
    node_idle_ms: 10_000,
    evict_idle_ms: Some(60_000),
    consolidate_after_ms: None,
    overcommit: Some(OVERCOMMIT),
};

/// The name of adaptive with consolidation.
pub const PACKED_NAME: &str = "adaptive-packed";

/// `adaptive-packed`: [`KNOBS`] plus consolidation (a node held a minute or more whose
/// containers have idled 10 s and fit elsewhere is emptied and released). Fewer
/// node-seconds, more cold starts (measured in `docs/EXPERIMENTS.md`).
pub const PACKED_KNOBS: Knobs = Knobs {
    name: PACKED_NAME,
    consolidate_after_ms: Some(60_000),
    ..KNOBS
};

/// The adaptive policy.
#[derive(Debug)]
pub struct Adaptive {
    engine: Engine,
}

impl Adaptive {
    /// An adaptive policy with empty tables.
    pub fn new(opts: PolicyOptions) -> Adaptive {
        Adaptive::with_knobs(opts, KNOBS)
    }

    /// `adaptive-packed`: adaptive that also empties lightly used nodes into the others.
    pub fn packed(opts: PolicyOptions) -> Adaptive {
        Adaptive::with_knobs(opts, PACKED_KNOBS)
    }

    /// An adaptive policy with changed knobs (for experiments and tests).
    pub fn with_knobs(opts: PolicyOptions, knobs: Knobs) -> Adaptive {
        Adaptive {
            engine: Engine::new(opts, knobs),
        }
    }

    /// The engine (for tests and inspection).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

// The engine is the whole policy.
super::policy_on_engine!(Adaptive);

#[cfg(test)]
mod tests;
