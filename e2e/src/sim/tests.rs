//! The simulator against small workloads: cold then warm, out of memory, an exhausted pool,
//! keep-alive releases, the fitted start latency, refused options.

use super::*;

use crate::workload::{Arrivals, FunctionProfile, HandlerKind, WorkloadBuilder};

/// The default options, keeping every record (these tests read them).
fn kept() -> SimOptions {
    SimOptions {
        keep_records: true,
        ..SimOptions::default()
    }
}

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
            ..kept()
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
    let run = simulate_named(&w, "baseline", &kept()).unwrap();
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
        ..kept()
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
        ..kept()
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
    let r = simulate(&w, policy, &kept()).unwrap().result;
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
        ..kept()
    };
    assert!(matches!(
        simulate_named(&w, "baseline", &o),
        Err(SimError::InvalidOption { .. })
    ));
    assert!(matches!(
        simulate_named(&w, "nope", &kept()),
        Err(SimError::UnknownPolicy(_))
    ));
}

#[test]
fn an_explained_run_hands_out_every_decision_with_its_reason() {
    let mut b = WorkloadBuilder::new("gap", 30_000);
    let f = b.function(FunctionProfile::new(
        "nap",
        HandlerKind::Sleep,
        256 * MIB,
        60_000,
        50.0,
    ));
    b.stream(f, Arrivals::Periodic { every_ms: 500.0 }, 0, 3_000);
    b.stream(f, Arrivals::Periodic { every_ms: 500.0 }, 20_000, 22_000);
    let w = b.build(3).unwrap();
    let mut records = Vec::new();
    let run = simulate_compact_explained(&(&w).into(), "keepalive-5s", &kept(), &mut |r| {
        records.push(r)
    })
    .unwrap();
    let quiet = simulate_named(&w, "keepalive-5s", &kept()).unwrap();
    assert_eq!(
        run.result.request_count(),
        quiet.result.request_count(),
        "listening changes no decision"
    );
    let find = |kind: &str, text: &str| {
        records
            .iter()
            .find(|r| r.kind == kind && r.reason.contains(text))
            .unwrap_or_else(|| panic!("no {kind} saying {text:?} in {records:#?}"))
    };
    let create = find("create", "created on ");
    assert_eq!(create.function, "nap");
    assert!(
        create.reason.contains("free after its 256 MiB"),
        "{create:?}"
    );
    find("grant-cold", "cold start: container");
    find("grant-warm", "warm: reused idle container");
    let removed = find("remove", "removed: idle ");
    assert!(
        removed.reason.contains(">= keep-alive 5.0 s"),
        "{removed:?}"
    );
    assert_eq!(removed.function, "nap");
    assert!(
        removed.at_unix_ms >= 7_000 && removed.at_unix_ms < 20_000,
        "at the run's virtual time: {removed:?}"
    );
}
