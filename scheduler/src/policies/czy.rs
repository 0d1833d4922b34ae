//! `czy`: the strongest published contest scheduler (2nd place), as
//! `shared/workloads/contest.md` describes it, rebuilt on the shared [`super::engine`].
//!
//! - The first request reserves the 10 nodes the contest has ready; containers spread over
//!   them: a new container goes to the node with the fewest containers of its function, ties
//!   to the most free memory. More nodes are reserved only when nothing fits (retried with a
//!   back-off while requests wait).
//! - Functions are classified from `GetStats` (memory-heavy when a container uses 30% or more
//!   of its memory, CPU-heavy when its CPU reads 10 or more) and from `ReturnContainer`
//!   (memory-heavy the same way; "short" when a call takes 50 ms or less, dropped again above
//!   65 ms).
//! - One request per container while the function has fewer than 20 containers; then light
//!   functions run [`SHARE`] requests per container; CPU- and memory-heavy ones never share.
//! - One container is created per waiting request; when all of a function's containers are
//!   busy, one spare is created in advance.
//! - Every 10 s, containers idle for 5 minutes are removed, keeping one per function, and
//!   empty nodes are released.
//!
//! Not rebuilt (no effect without real CPU contention): letting short requests run first
//! while heavy ones wait up to 50 ms, and replacing a CPU-heavy container at 90% of its CPU
//! quota by one with twice the memory. The `short` class is learned and kept for both.

use super::engine::{Concurrency, Creates, Engine, KeepAlive, Knobs, Placement, Thresholds};
use crate::core::PolicyOptions;

/// The name the policy is registered under.
pub const NAME: &str = "czy";
/// Requests per container of a light function with 20 containers or more.
pub const SHARE: u32 = 10;

/// czy's knobs.
pub const KNOBS: Knobs = Knobs {
    name: NAME,
    concurrency: Concurrency::Czy {
        share_from: 20,
        share: SHARE,
    },
    creates: Creates::PerRequest,
    placement: Placement::SpreadByFunction,
    keep_alive: KeepAlive::Fixed {
        idle_ms: 5 * 60 * 1000,
        keep_one: true,
    },
    thresholds: Thresholds {
        memory_share: 0.30,
        cpu_pct: 10.0,
        cpu_quota_share: None,
        short_ms: 50.0,
        long_ms: 65.0,
        slowdown: None,
    },
    spare_from_inflight: Some(1),
    sweep_every_ms: 10_000,
    initial_nodes: 10,
    headroom: false,
    node_idle_ms: 0,
    evict_idle_ms: None,
    consolidate_after_ms: None,
    overcommit: None,
};

/// The 2nd-place contest scheduler.
#[derive(Debug)]
pub struct Czy {
    engine: Engine,
}

impl Czy {
    /// A czy policy with empty tables.
    pub fn new(opts: PolicyOptions) -> Czy {
        Czy {
            engine: Engine::new(opts, KNOBS),
        }
    }

    /// The engine (for tests and inspection).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

// The engine is the whole policy (its knobs' name is [`NAME`]).
super::policy_on_engine!(Czy);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Policy;
    use crate::model::FunctionSpec;
    use crate::policies::testkit::{Sim, spec};

    fn sim() -> Sim<Czy> {
        Sim::new(Czy::new(PolicyOptions::default()))
    }

    #[test]
    fn classifies_from_stats_and_returns() {
        let mut s = sim();
        let f = spec("f", 512);
        s.acquire("r1", &f);
        let c = s.grant("r1").container_id.to_string();
        s.stats(&c, 100, 2.0);
        let class = s.p.engine().function("f").unwrap().class;
        assert!(!class.heavy(), "100 of 512 MiB and 2% CPU: light {class:?}");
        s.stats(&c, 160, 2.0);
        assert!(
            s.p.engine().function("f").unwrap().class.memory_heavy,
            "31%"
        );
        let g = spec("g", 256);
        s.acquire("r2", &g);
        let c = s.grant("r2").container_id.to_string();
        s.stats(&c, 4, 10.0);
        assert!(
            s.p.engine().function("g").unwrap().class.cpu_heavy,
            "CPU reads 10"
        );
        // Short from returns, with hysteresis.
        s.ret("r2", 50, 4);
        assert!(s.p.engine().function("g").unwrap().class.short);
        s.acquire("r3", &g);
        s.ret("r3", 60, 4);
        assert!(
            s.p.engine().function("g").unwrap().class.short,
            "kept up to 65 ms"
        );
        s.acquire("r4", &g);
        s.ret("r4", 66, 4);
        assert!(
            !s.p.engine().function("g").unwrap().class.short,
            "dropped above 65 ms"
        );
        // Memory-heavy from a return too.
        let h = spec("h", 128);
        s.acquire("r5", &h);
        s.ret("r5", 10, 40);
        assert!(s.p.engine().function("h").unwrap().class.memory_heavy);
    }

    #[test]
    fn spreads_over_ten_nodes_then_shares_light_functions_from_twenty_containers() {
        let mut s = sim();
        let f = spec("f", 128);
        s.acquire("r0", &f);
        assert_eq!(s.reserves, 10, "the ten ready nodes");
        for i in 1..3 {
            s.acquire(&format!("r{i}"), &f);
        }
        let nodes: std::collections::HashSet<_> =
            (0..3).map(|i| s.grant(&format!("r{i}")).node_id).collect();
        assert_eq!(nodes.len(), 3, "one container of f per node first");
        for i in 3..20 {
            s.acquire(&format!("r{i}"), &f);
        }
        assert!(s.creates >= 20);
        assert_eq!(s.p.engine().function("f").unwrap().limit, SHARE);
        let creates = s.creates;
        s.acquire("shared", &f);
        assert!(!s.grant("shared").cold);
        assert!(s.creates <= creates + 1, "at most the spare");
    }

    #[test]
    fn heavy_functions_never_share() {
        let mut s = sim();
        let f = spec("f", 128);
        s.acquire("r0", &f);
        s.ret("r0", 10, 64);
        for i in 1..25 {
            s.acquire(&format!("r{i}"), &f);
        }
        assert_eq!(s.p.engine().function("f").unwrap().limit, 1);
        let containers: std::collections::HashSet<_> = (1..25)
            .map(|i| s.grant(&format!("r{i}")).container_id)
            .collect();
        assert_eq!(containers.len(), 24);
    }

    #[test]
    fn idle_cleanup_keeps_one_container_per_function_and_releases_empty_nodes() {
        let mut s = sim();
        // A timeout longer than the test, so the held lease below never expires.
        let f = FunctionSpec {
            timeout_ms: 3_600_000,
            ..spec("f", 256)
        };
        s.acquire("a", &f);
        s.acquire("b", &f);
        s.now = 1_000;
        s.ret("a", 10, 4);
        s.ret("b", 10, 4);
        let ready = s.ready();
        assert_eq!(
            ready, 2,
            "two containers (the spare comes on a warm grant only)"
        );
        s.advance(10_000);
        assert_eq!(
            s.nodes(),
            ready as usize,
            "empty nodes released at the sweep"
        );
        s.advance(1_000 + 5 * 60 * 1000 - 1);
        assert_eq!(s.ready(), ready, "not idle 5 minutes yet");
        s.advance(1_000 + 5 * 60 * 1000 + 10_000);
        assert_eq!(s.ready(), 1, "one kept");
        assert_eq!(
            s.nodes(),
            2,
            "released at the sweep after the removal completed"
        );
        s.advance(1_000 + 5 * 60 * 1000 + 20_000);
        assert_eq!(s.nodes(), 1);
        // A busy container is never removed.
        s.acquire("c", &f);
        s.advance(s.now + 20 * 60 * 1000);
        assert!(s.ready() >= 1);
        assert_eq!(s.p.state().store.lease_count(), 1);
    }
}
