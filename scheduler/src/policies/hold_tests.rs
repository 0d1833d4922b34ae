//! Holds in virtual time, for every registered policy: a held function's idle containers
//! outlive the policy's keep-alive and go once the hold ends; a later hold replaces an
//! earlier one and 0 ends it; memory pressure and the health rules still remove them (the
//! rules are in `core::state::hold`).
//!
//! Each test runs a second, unheld function beside the held one, so a policy that ignored
//! the hold (or a keep-alive that never fires) makes the test fail.

use crate::core::{Event, Policy};
use crate::model::{FunctionSpec, Millis};
use crate::policies::health_tests::{Named, sim};
use crate::policies::testkit::{Sim, spec};
use crate::policies::{POLICY_NAMES, adaptive, baseline, czy};

const MINUTE: Millis = 60_000;

fn hold(s: &mut Sim<Named>, function: &str, hold_ms: Millis) {
    s.send(Event::HoldFunction {
        function: function.into(),
        hold_ms,
    });
}

fn ready(s: &Sim<Named>, function: &str) -> u32 {
    s.p.state().ready_containers(function)
}

/// Runs two calls of `f` at once (so it gets two containers) and returns both; hands back
/// how many ready containers `f` then has.
fn two_idle(s: &mut Sim<Named>, f: &FunctionSpec) -> u32 {
    let (a, b) = (format!("{}-a", f.name), format!("{}-b", f.name));
    s.acquire(&a, f);
    s.acquire(&b, f);
    // Single-flight creates start the second container after one container start.
    s.advance(s.now + 100);
    assert_ne!(s.grant(&a).container_id, s.grant(&b).container_id);
    s.ret(&a, 10, 4);
    s.ret(&b, 10, 4);
    ready(s, &f.name)
}

/// How many of a function's `idle` containers `name` keeps for good with no hold: the
/// baseline never removes one, czy keeps one per function, the others none.
fn kept_for_good(name: &str, idle: u32) -> u32 {
    match name {
        baseline::NAME => idle,
        czy::NAME => 1,
        _ => 0,
    }
}

#[test]
fn a_held_function_keeps_its_idle_containers_past_the_keep_alive_until_the_hold_ends() {
    for name in POLICY_NAMES {
        let mut s = sim(name);
        // Held before it was ever called: the hold applies to containers created later.
        hold(&mut s, "f", 30 * MINUTE);
        let f_idle = two_idle(&mut s, &spec("f", 256));
        let g_idle = two_idle(&mut s, &spec("g", 256));
        assert!(f_idle >= 2, "{name}: {f_idle}");
        // Every keep-alive is over (10 min at most), the hold is not.
        s.advance(25 * MINUTE);
        assert_eq!(
            ready(&s, "g"),
            kept_for_good(name, g_idle),
            "{name}: g expired"
        );
        assert_eq!(ready(&s, "f"), f_idle, "{name}: f is held");
        s.advance(30 * MINUTE - 1);
        assert_eq!(ready(&s, "f"), f_idle, "{name}: held to its end");
        // The hold is over: the policy's own rule applies at its next look (czy sweeps
        // every 10 s).
        s.advance(30 * MINUTE + 20_000);
        assert_eq!(
            ready(&s, "f"),
            kept_for_good(name, f_idle),
            "{name}: f expired"
        );
    }
}

#[test]
fn a_later_hold_replaces_the_earlier_one_and_zero_ends_it() {
    for name in POLICY_NAMES {
        let mut s = sim(name);
        let f_idle = two_idle(&mut s, &spec("f", 256));
        let h_idle = two_idle(&mut s, &spec("h", 256));
        let t0 = s.now;
        hold(&mut s, "f", 30 * MINUTE);
        hold(&mut s, "h", 60 * MINUTE);
        s.advance(t0 + 5 * MINUTE);
        hold(&mut s, "f", 60 * MINUTE);
        // Past every keep-alive, h's hold is cut to end in a minute.
        s.advance(t0 + 15 * MINUTE);
        assert_eq!(ready(&s, "h"), h_idle, "{name}: h is held");
        hold(&mut s, "h", MINUTE);
        s.advance(t0 + 16 * MINUTE + 20_000);
        assert_eq!(
            ready(&s, "h"),
            kept_for_good(name, h_idle),
            "{name}: h's hold was cut"
        );
        s.advance(t0 + 40 * MINUTE);
        assert_eq!(
            ready(&s, "f"),
            f_idle,
            "{name}: f's first hold was replaced"
        );
        hold(&mut s, "f", 0);
        s.advance(s.now + 20_000);
        assert_eq!(
            ready(&s, "f"),
            kept_for_good(name, f_idle),
            "{name}: f's hold ended"
        );
        // Ending a hold that no longer exists, of a function never seen, is fine.
        hold(&mut s, "f", 0);
        hold(&mut s, "never-seen", 0);
    }
}

#[test]
fn health_rules_still_remove_a_held_functions_containers() {
    for name in POLICY_NAMES {
        let mut s = sim(name);
        hold(&mut s, "f", 30 * MINUTE);
        hold(&mut s, "g", 30 * MINUTE);
        two_idle(&mut s, &spec("f", 256));
        let g_idle = two_idle(&mut s, &spec("g", 256));
        // A deleted function is drained at once.
        s.send(Event::RetireFunction {
            function: "f".into(),
        });
        assert_eq!(ready(&s, "f"), 0, "{name}: retired");
        // A container its node stops listing is dead, held or not.
        let g = s.grant("g-a");
        let (node, id) = (g.node_id.to_string(), g.container_id.to_string());
        for at in [s.now + 1_000, s.now + 2_000] {
            s.now = at;
            s.node_stats(&node, &[&id]);
        }
        assert!(s.removed.contains(&id), "{name}: dead container removed");
        assert_eq!(ready(&s, "g"), g_idle - 1, "{name}");
    }
}

#[test]
fn memory_pressure_still_evicts_a_held_functions_idle_container() {
    for name in [adaptive::NAME, adaptive::PACKED_NAME] {
        let mut s = sim(name);
        hold(&mut s, "f", 30 * MINUTE);
        let f = spec("f", 512);
        s.acquire("f0", &f);
        // No node beyond the first: room must come from f's idle containers.
        s.exhausted = true;
        for i in 1..6 {
            s.acquire(&format!("f{i}"), &f);
        }
        s.advance(s.now + 2_000);
        for i in 0..6 {
            // Memory-heavy calls: each container counts its whole limit, n1 is full. (One
            // after the other: eviction spares each function's most recently used one.)
            s.now += 10;
            s.ret(&format!("f{i}"), 10, 300);
        }
        assert_eq!((ready(&s, "f"), s.nodes()), (6, 1), "{name}");
        s.advance(s.now + 2 * MINUTE);
        assert_eq!(ready(&s, "f"), 6, "{name}: held past an idle minute");
        s.acquire("g1", &spec("g", 512));
        s.advance(s.now + 1_000);
        assert!(!s.grant("g1").node_id.is_empty(), "{name}: g found room");
        assert_eq!(ready(&s, "f"), 5, "{name}: one of f's evicted for it");
        assert!(s.rejects.is_empty(), "{name}: {:?}", s.rejects);
    }
}

#[test]
fn adaptive_does_not_unload_a_held_function_after_its_execution() {
    let mut s = sim(adaptive::NAME);
    let f = spec("f", 256);
    // A call a minute: adaptive learns to unload the container a second after each call
    // and to load it again just before the next (see `adaptive`'s own tests).
    for i in 0..4 {
        s.advance(i * MINUTE);
        s.acquire(&format!("r{i}"), &f);
        s.now += 100;
        s.ret(&format!("r{i}"), 100, 4);
    }
    let t0 = s.now;
    hold(&mut s, "f", 10 * MINUTE);
    s.advance(t0 + 3_000);
    assert_eq!(ready(&s, "f"), 1, "held: not unloaded");
    s.advance(t0 + 10 * MINUTE - 1);
    assert_eq!(ready(&s, "f"), 1, "held: kept past its 77 s window");
    assert!(s.removed.is_empty(), "{:?}", s.removed);
    s.advance(t0 + 10 * MINUTE + 2_000);
    assert_eq!(ready(&s, "f"), 0, "the hold is over");
}
