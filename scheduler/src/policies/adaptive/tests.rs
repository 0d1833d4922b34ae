//! Tests of the adaptive policy (virtual time, through the policies' testkit).

use super::*;
use crate::core::{AcquireErrorCode, Policy};
use crate::model::{FunctionError, FunctionSpec, MIB};
use crate::policies::testkit::{Sim, spec};

fn sim() -> Sim<Adaptive> {
    Sim::new(Adaptive::new(PolicyOptions::default()))
}

fn engine(s: &Sim<Adaptive>) -> &Engine {
    s.p.engine()
}

/// Three solo calls so that the function's class and limit are learned.
fn learn(s: &mut Sim<Adaptive>, f: &crate::model::FunctionSpec, prefix: &str, ms: u64, mib: u64) {
    for i in 0..3 {
        let id = format!("{prefix}{i}");
        s.acquire(&id, f);
        s.now += ms;
        s.ret(&id, ms, mib);
    }
}

#[test]
fn reuses_a_warm_container() {
    let mut s = sim();
    let f = spec("f", 256);
    s.acquire("r1", &f);
    let g1 = s.grant("r1");
    assert!(g1.cold);
    assert_eq!((s.reserves, s.creates), (1, 1));
    s.now = 50;
    s.ret("r1", 10, 4);
    s.acquire("r2", &f);
    let g2 = s.grant("r2");
    assert!(!g2.cold);
    assert_eq!(g2.container_id, g1.container_id);
    assert_eq!((s.reserves, s.creates), (1, 1), "no new container or node");
    let snap = s.p.snapshot();
    assert_eq!((snap.cold_starts, snap.warm_hits), (1, 1));
}

#[test]
fn light_functions_learn_to_share_and_heavy_ones_do_not() {
    let mut s = sim();
    let light = spec("light", 256);
    learn(&mut s, &light, "l", 100, 4);
    let fd = engine(&s).function("light").unwrap();
    assert_eq!(
        fd.limit, MAX_SHARE,
        "256 MiB × 0.7 / 4 MiB per call is above the cap"
    );
    s.acquire("a", &light);
    s.acquire("b", &light);
    assert_eq!(s.grant("a").container_id, s.grant("b").container_id);
    assert_eq!(s.creates, 1, "both run in the one container");

    // Memory-heavy from returns: 200 of 512 MiB per call.
    let mem = spec("mem", 512);
    learn(&mut s, &mem, "m", 100, 200);
    let fd = engine(&s).function("mem").unwrap();
    assert!(fd.class.memory_heavy && fd.limit == 1, "{:?}", fd.class);
    s.acquire("m-a", &mem);
    s.acquire("m-b", &mem);
    assert_ne!(s.grant("m-a").container_id, s.grant("m-b").container_id);

    // CPU-heavy from stats: 15% of a core, alone in its container.
    let cpu = spec("cpu", 256);
    learn(&mut s, &cpu, "c", 100, 4);
    assert_eq!(engine(&s).function("cpu").unwrap().limit, MAX_SHARE);
    let c = s.grant("c2").container_id.to_string();
    s.stats(&c, 8, 15.0);
    let fd = engine(&s).function("cpu").unwrap();
    assert!(fd.class.cpu_heavy && fd.limit == 1, "{:?}", fd.class);
    let key = s.p.state().store.container_by_id(&c).unwrap();
    assert_eq!(
        s.p.state()
            .store
            .container(key)
            .unwrap()
            .container
            .max_concurrency,
        1,
        "existing containers follow the new limit"
    );
}

#[test]
fn shared_calls_that_slow_down_or_fail_stop_sharing() {
    let mut s = sim();
    let f = spec("spin", 256);
    learn(&mut s, &f, "s", 100, 4);
    for round in 0..3 {
        let (a, b) = (format!("a{round}"), format!("b{round}"));
        s.acquire(&a, &f);
        s.acquire(&b, &f);
        assert_eq!(s.grant(&a).container_id, s.grant(&b).container_id);
        s.now += 300;
        s.ret(&a, 300, 4);
        s.ret(&b, 300, 4);
    }
    let fd = engine(&s).function("spin").unwrap();
    assert!(fd.class.cpu_heavy && fd.limit == 1, "3× slower when shared");

    let g = spec("oom", 256);
    learn(&mut s, &g, "o", 10, 4);
    s.acquire("x", &g);
    s.acquire("y", &g);
    s.ret_err(
        "x",
        10,
        4,
        Some(FunctionError {
            code: "OutOfMemory".into(),
            message: "killed".into(),
        }),
    );
    let fd = engine(&s).function("oom").unwrap();
    assert!(fd.class.memory_heavy && fd.limit == 1);
}

#[test]
fn fallback_keep_alive_expires_idle_containers_then_the_node() {
    let mut s = sim();
    let f = spec("f", 256);
    s.acquire("r1", &f);
    s.now = 100;
    s.ret("r1", 100, 4);
    s.advance(100 + FALLBACK_KEEP_ALIVE_MS - 1000);
    assert_eq!(s.ready(), 1, "kept within the window");
    s.advance(100 + FALLBACK_KEEP_ALIVE_MS + 1000);
    assert_eq!(s.ready(), 0, "removed after the window");
    assert_eq!(s.removed.len(), 1);
    s.advance(100 + FALLBACK_KEEP_ALIVE_MS + 12_000);
    assert_eq!(s.released, vec!["n1".to_string()], "the empty node goes");
    assert_eq!(s.nodes(), 0);
    assert!(s.p.snapshot().node_millis >= FALLBACK_KEEP_ALIVE_MS);
}

#[test]
fn regular_gaps_shorten_the_keep_alive_window() {
    let mut s = sim();
    let f = spec("f", 256);
    // Bursts every 5 s: the window becomes 1.25 × p99 + 2 s, well under the fallback.
    for i in 0..5u64 {
        s.advance(i * 5000);
        s.acquire(&format!("r{i}"), &f);
        s.now += 100;
        s.ret(&format!("r{i}"), 100, 4);
    }
    let fd = engine(&s).function("f").unwrap();
    assert!(fd.hist.samples() >= 3);
    assert!(
        (6_000..=10_000).contains(&fd.keep_ms),
        "window {}",
        fd.keep_ms
    );
    assert_eq!(fd.prewarm_at, None, "p5 under 20 s: keep warm, no pre-warm");
    s.advance(20_100 + fd.keep_ms - 1500);
    assert_eq!(s.ready(), 1);
    s.advance(20_100 + 15_000);
    assert_eq!(s.ready(), 0, "expired with the learned window");
}

#[test]
fn long_regular_gaps_unload_and_prewarm_before_the_next_arrival() {
    let mut s = sim();
    let f = spec("f", 256);
    for i in 0..4u64 {
        s.advance(i * 60_000);
        s.acquire(&format!("r{i}"), &f);
        s.now += 100;
        s.ret(&format!("r{i}"), 100, 4);
    }
    assert_eq!(
        s.p.snapshot().cold_starts,
        1,
        "the fallback kept it warm so far"
    );
    let t0 = s.now;
    let fd = engine(&s).function("f").unwrap();
    let at = fd.prewarm_at.expect("pre-warm planned");
    assert!(at > t0 + 40_000 && at < t0 + 60_000, "prewarm at {at}");
    s.advance(t0 + 3_000);
    assert_eq!(s.ready(), 0, "unloaded after the execution");
    assert_eq!(s.removed.len(), 1);
    let creates = s.creates;
    s.advance(240_000);
    assert_eq!(s.creates, creates + 1, "loaded again before the arrival");
    s.acquire("r4", &f);
    assert!(!s.grant("r4").cold, "the arrival finds it warm");
    assert_eq!(s.p.snapshot().cold_starts, 1);
}

#[test]
fn a_miss_after_the_window_records_the_functions_idle_time() {
    let mut s = sim();
    let f = spec("f", 256);
    s.acquire("r1", &f);
    s.now = 100;
    s.ret("r1", 100, 4);
    s.advance(100 + FALLBACK_KEEP_ALIVE_MS + 1000);
    assert_eq!(s.ready(), 0, "expired");
    assert_eq!(engine(&s).function("f").unwrap().hist.samples(), 0);
    s.advance(100 + 2 * FALLBACK_KEEP_ALIVE_MS);
    s.acquire("r2", &f);
    assert!(s.grant("r2").cold);
    assert_eq!(
        engine(&s).function("f").unwrap().hist.samples(),
        1,
        "the gap beyond the window is recorded"
    );
}

#[test]
fn nodes_are_reserved_ahead_and_released_when_idle() {
    let mut s = sim();
    let f = spec("big", 512);
    for i in 0..6 {
        s.acquire(&format!("r{i}"), &f);
    }
    assert_eq!(s.reserves, 1, "six 512 MiB containers fill one node");
    s.advance(1000);
    assert_eq!(s.reserves, 2, "a node is reserved ahead: no free room left");
    for i in 0..6 {
        s.ret(&format!("r{i}"), 900, 4);
    }
    // Idle: the fallback window keeps the containers, the spare node is released once
    // requests stopped for a minute and it was empty 10 s.
    s.advance(80_000);
    assert_eq!(s.released, vec!["n2".to_string()]);
    assert_eq!(s.nodes(), 1);
}

#[test]
fn requests_wait_when_no_node_is_left_and_reserves_back_off() {
    let mut s = sim();
    let f = spec("f", 256);
    s.exhausted = true;
    s.acquire("r1", &f);
    assert!(s.rejects.is_empty(), "exhaustion does not fail the request");
    assert_eq!(s.failed_reserves, 1);
    s.advance(200);
    assert_eq!(s.failed_reserves, 1, "backing off");
    s.advance(300);
    assert_eq!(s.failed_reserves, 2, "retried after 250 ms");
    s.exhausted = false;
    s.advance(2_000);
    assert!(s.grant("r1").cold);
    assert!(s.rejects.is_empty());
    // With nothing left at all, a request fails only at its deadline.
    s.exhausted = true;
    let g = spec("g", 3072);
    s.acquire("r2", &g);
    s.advance(s.now + 59_000);
    assert!(s.rejects.is_empty());
    s.advance(s.now + 2_000);
    let [crate::core::Decision::Reject { error, .. }] = s.rejects.as_slice() else {
        panic!("{:?}", s.rejects)
    };
    assert_eq!(error.code, AcquireErrorCode::DeadlineExceeded);
}

#[test]
fn a_refused_create_rejects_the_waiters_at_once_and_is_not_retried() {
    let mut s = sim();
    let f = spec("f", 256);
    s.hold_creates = true;
    s.acquire("r1", &f);
    s.acquire("r2", &f);
    let op = *s.held.first().expect("a create was issued");
    let issued = s.held.len();
    s.send(crate::core::Event::ContainerCreateFailed {
        op,
        message: "image \"x\" is not on this machine".into(),
        refused: true,
    });
    let mut rejected: Vec<&str> = s
        .rejects
        .iter()
        .map(|d| {
            let crate::core::Decision::Reject { request_id, error } = d else {
                panic!("{d:?}")
            };
            assert_eq!(error.code, AcquireErrorCode::FailedPrecondition);
            assert!(
                error
                    .message
                    .starts_with("cannot create a container of function f on node n1: ")
                    && error
                        .message
                        .ends_with("image \"x\" is not on this machine"),
                "{}",
                error.message
            );
            &**request_id
        })
        .collect();
    rejected.sort_unstable();
    assert_eq!(rejected, ["r1", "r2"], "both waiters fail at once");
    assert_eq!(s.p.state().waiting_count(), 0);
    // No retry: no further create in the seconds after.
    s.advance(s.now + 5_000);
    assert_eq!(s.held.len(), issued, "{:?}", s.held);
    assert!(s.grants.is_empty());
}

#[test]
fn a_waiting_request_takes_a_returned_container_instead_of_a_new_one() {
    let mut s = sim();
    let f = spec("f", 512);
    s.hold_creates = true;
    s.acquire("r1", &f);
    s.now = 800;
    s.finish_creates();
    assert!(s.grant("r1").cold);
    assert_eq!(engine(&s).start_latency_ms(), 800.0);
    // r2 arrives while r1 runs: within one container start r1's slot frees, so no create.
    s.acquire("r2", &f);
    assert!(s.held.is_empty(), "single-flight: nothing started");
    s.now = 900;
    s.ret("r1", 100, 4);
    let g2 = s.grant("r2");
    assert!(!g2.cold);
    assert_eq!(g2.container_id, s.grant("r1").container_id);
}

#[test]
fn a_burst_starts_fewer_containers_than_requests() {
    let mut s = sim();
    let f = spec("m", 512);
    s.hold_creates = true;
    s.acquire("w", &f);
    s.now = 1000;
    s.finish_creates();
    s.now += 10;
    s.ret("w", 10, 300);
    learn(&mut s, &f, "l", 10, 300); // memory-heavy: one request per container
    assert_eq!(engine(&s).function("m").unwrap().limit, 1);
    s.acquire("b0", &f);
    for i in 1..10 {
        s.acquire(&format!("b{i}"), &f);
    }
    // One slot busy serving 10 ms calls frees 8 times within a 1 s start: 1 create.
    assert_eq!(s.held.len(), 1, "{:?}", s.held);
    s.advance(s.now + 2_000);
    assert_eq!(
        s.held.len(),
        8,
        "after a start without progress: the cap of 8"
    );
}

#[test]
fn spare_containers_of_long_calls_expire_before_the_fallback() {
    let mut s = sim();
    let f = spec("long", 512);
    s.hold_creates = true;
    for i in 0..3 {
        s.acquire(&format!("r{i}"), &f);
    }
    s.now = 800;
    s.finish_creates();
    assert_eq!(s.ready(), 3);
    // 20 s calls, 800 ms starts: spares are worth EXTRA_COST × 800 / 20,000 of the 10-min
    // fallback (480 s at 20); the most recently used container keeps the fallback.
    let spare_ms = (EXTRA_COST * 800.0 / 20_000.0 * FALLBACK_KEEP_ALIVE_MS as f64) as Millis;
    assert!(spare_ms < FALLBACK_KEEP_ALIVE_MS - 60_000);
    s.now = 20_800;
    for i in 0..3 {
        s.ret(&format!("r{i}"), 20_000, 4);
    }
    let returned = s.now;
    s.advance(returned + spare_ms - 30_000);
    assert_eq!(s.ready(), 3, "spares within their {spare_ms} ms");
    s.advance(returned + spare_ms + 30_000);
    assert_eq!(s.ready(), 1, "spares gone, one container kept");
    s.advance(s.now + FALLBACK_KEEP_ALIVE_MS);
    assert_eq!(s.ready(), 0);
}

/// Six 512 MiB calls fill node n1; two 256 MiB calls of `g` go to n2; after the calls
/// only one container of each function stays (spares of 900 ms calls with instant
/// starts go at once), n1 with 512 MiB and n2 with 256 MiB placed.
fn two_lightly_used_nodes(s: &mut Sim<Adaptive>) {
    let (f, g) = (spec("f", 512), spec("g", 256));
    for i in 0..6 {
        s.acquire(&format!("f{i}"), &f);
    }
    s.advance(2_000);
    for i in 0..2 {
        s.acquire(&format!("g{i}"), &g);
    }
    s.advance(4_000);
    assert_eq!((s.nodes(), s.ready()), (2, 8));
    s.now = 4_900;
    // f's calls use enough memory that its container counts its whole limit.
    for i in 0..6 {
        s.ret(&format!("f{i}"), 900, 100);
    }
    for i in 0..2 {
        s.ret(&format!("g{i}"), 900, 4);
    }
    s.advance(8_000);
    assert_eq!(s.ready(), 2);
}

/// Limits placed per node, MiB.
fn limits_by_node(s: &Sim<Adaptive>) -> Vec<u64> {
    let store = &s.p.state().store;
    let mut by_node: Vec<(String, u64)> = Vec::new();
    for (_, r) in store.containers() {
        let id = r.container.node_id.to_string();
        match by_node.iter_mut().find(|(n, _)| *n == id) {
            Some((_, m)) => *m += r.container.memory_bytes / MIB,
            None => by_node.push((id, r.container.memory_bytes / MIB)),
        }
    }
    by_node.sort();
    by_node.into_iter().map(|(_, m)| m).collect()
}

#[test]
fn learned_light_containers_pack_by_the_memory_they_use() {
    let mut s = sim();
    // Six 512 MiB functions whose calls use 4 MiB fill one node by their limits.
    let light: Vec<_> = (0..6).map(|i| spec(&format!("a{i}"), 512)).collect();
    for (i, f) in light.iter().enumerate() {
        learn(&mut s, f, &format!("a{i}-"), 10, 4);
    }
    assert_eq!((s.reserves, s.nodes()), (1, 1));
    assert_eq!(limits_by_node(&s), vec![3072]);
    // Learned, each counts half its limit: a new function still fits on that node.
    let b = spec("b", 512);
    s.acquire("b1", &b);
    assert_eq!(s.grant("b1").node_id.as_ref(), "n1");
    assert_eq!(s.reserves, 1, "no node reserved for it");
    // Never more than twice the node's memory in limits.
    for i in 0..10 {
        let f = spec(&format!("c{i}"), 512);
        learn(&mut s, &f, &format!("c{i}-"), 10, 4);
    }
    let limits = limits_by_node(&s);
    assert_eq!(limits.len(), 2, "{limits:?}");
    assert!(limits.iter().all(|&m| m <= 2 * 3072), "{limits:?}");
    assert_eq!(limits.iter().sum::<u64>(), 17 * 512);
}

#[test]
fn memory_heavy_and_unlearned_containers_count_their_limits() {
    let mut s = sim();
    // Calls using 200 MiB of 512 (39%) make the function memory-heavy.
    let heavy: Vec<_> = (0..6).map(|i| spec(&format!("m{i}"), 512)).collect();
    for (i, f) in heavy.iter().enumerate() {
        learn(&mut s, f, &format!("m{i}-"), 10, 200);
    }
    assert!(engine(&s).function("m0").unwrap().class.memory_heavy);
    assert_eq!(s.nodes(), 1);
    // The node is full: a function not yet learned needs another node.
    let b = spec("b", 512);
    s.acquire("b1", &b);
    assert_eq!(s.grant("b1").node_id.as_ref(), "n2");
    assert_eq!(limits_by_node(&s), vec![3072, 512]);
    // Functions not yet learned count their limits: five more fill n2 exactly.
    for i in 0..5 {
        s.acquire(&format!("u{i}"), &spec(&format!("u{i}"), 512));
    }
    assert_eq!(limits_by_node(&s), vec![3072, 3072]);
    s.acquire("u5", &spec("u5", 512));
    assert_eq!(s.grant("u5").node_id.as_ref(), "n3");
}

#[test]
fn adaptive_keeps_a_node_that_holds_a_warm_container() {
    let mut s = sim();
    two_lightly_used_nodes(&mut s);
    s.advance(120_000);
    assert!(s.released.is_empty(), "{:?}", s.released);
    assert_eq!(s.nodes(), 2);
}

#[test]
fn packed_moves_idle_containers_off_the_least_used_node_and_releases_it() {
    let mut s = Sim::new(Adaptive::packed(PolicyOptions::default()));
    two_lightly_used_nodes(&mut s);
    let g_container = s.grant("g1").container_id.clone();
    // The copy of g's container on n1 is held back; meanwhile g is called.
    s.hold_creates = true;
    s.advance(62_000);
    assert_eq!(s.held.len(), 1, "one copy started");
    assert!(s.released.is_empty());
    let g = spec("g", 256);
    s.acquire("g2", &g);
    let g2 = s.grant("g2");
    assert!(!g2.cold, "the original still serves");
    assert_eq!(g2.container_id, g_container);
    s.finish_creates();
    s.advance(s.now + 5_000);
    assert!(
        !s.removed.contains(&g_container.to_string()),
        "a container with a request in flight is never removed"
    );
    assert!(s.released.is_empty(), "nor its node released");
    s.ret("g2", 10, 4);
    s.advance(s.now + 2_000);
    assert!(s.removed.contains(&g_container.to_string()));
    assert_eq!(s.released, vec!["n2".to_string()]);
    assert_eq!((s.nodes(), s.ready()), (1, 2), "no warm container lost");
    s.acquire("g3", &g);
    let g3 = s.grant("g3");
    assert!(!g3.cold);
    assert_eq!(g3.node_id.as_ref(), "n1");
}

#[test]
fn busy_containers_and_their_nodes_are_never_removed() {
    let mut s = sim();
    // A timeout longer than the test, so the held lease never expires.
    let f = FunctionSpec {
        timeout_ms: 24 * 3_600_000,
        ..spec("f", 256)
    };
    s.acquire("r1", &f);
    s.advance(3 * FALLBACK_KEEP_ALIVE_MS);
    assert_eq!(s.ready(), 1);
    assert!(s.removed.is_empty() && s.released.is_empty());
    s.ret("r1", 1000, 4);
    s.advance(5 * FALLBACK_KEEP_ALIVE_MS);
    assert_eq!(s.ready(), 0);
    assert_eq!(s.nodes(), 0);
}
