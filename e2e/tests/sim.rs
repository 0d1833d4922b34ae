//! The simulator on the contest scenario and a slice of the real 2019 trace: deterministic
//! for a seed, the baseline scores exactly 1 against itself, a policy that never reuses a
//! container loses on response time, and the keep-alive reference gives idle nodes back.

use std::path::Path;

use faas_e2e::report::{Report, ReportOptions};
use faas_e2e::scenario::{self, ScenarioOptions};
use faas_e2e::score::{ScoreConfig, score};
use faas_e2e::sim::{SimOptions, simulate_named};
use faas_e2e::trace::{Selection, Trace, TraceOptions};
use faas_e2e::workload::Workload;

/// The default options, keeping every record (these tests read them).
fn kept() -> SimOptions {
    SimOptions {
        keep_records: true,
        ..SimOptions::default()
    }
}

fn contest(seconds: u64, seed: u64) -> Workload {
    scenario::build(
        "contest",
        &ScenarioOptions {
            duration_ms: seconds * 1000,
            seed,
            ..ScenarioOptions::default()
        },
    )
    .unwrap()
}

#[test]
fn same_seed_same_run_other_seed_other_latencies() {
    let w = contest(120, 1);
    let o = kept();
    for policy in ["baseline", "keepalive-10m", "no-reuse"] {
        let a = simulate_named(&w, policy, &o).unwrap();
        let b = simulate_named(&w, policy, &o).unwrap();
        assert_eq!(a.result, b.result, "{policy} is not deterministic");
        assert_eq!(a.events, b.events);
        assert_eq!(a.result.requests.len(), w.invocations.len());
    }
    let other = SimOptions { seed: 2, ..kept() };
    let a = simulate_named(&w, "baseline", &o).unwrap().result;
    let c = simulate_named(&w, "baseline", &other).unwrap().result;
    assert_ne!(
        a.requests, c.requests,
        "the seed draws container start latencies"
    );
}

#[test]
fn baseline_scores_exactly_one_against_itself() {
    let w = contest(120, 7);
    let o = kept();
    let first = simulate_named(&w, "baseline", &o).unwrap().result;
    let second = simulate_named(&w, "baseline", &o).unwrap().result;
    let s = score(&second.totals(), &first.totals(), &ScoreConfig::default()).unwrap();
    assert_eq!(s.value, 1.0, "{s:?}");
    assert_eq!(s.rt_ratio_mean, 1.0);
    assert_eq!(s.nd_ratio, 1.0);
    assert!(s.unmatched.is_empty(), "{:?}", s.unmatched);
    // And through the report, as `faas simulate` prints it.
    let mut again = second.clone();
    again.policy = "baseline-again".into();
    let report = Report::new(vec![first, again], ReportOptions::default()).unwrap();
    assert_eq!(report.policy("baseline").unwrap().score, Some(1.0));
    assert_eq!(report.policy("baseline-again").unwrap().score, Some(1.0));
}

#[test]
fn never_reusing_a_container_is_worse_on_response_time() {
    let w = contest(120, 3);
    let o = kept();
    let base = simulate_named(&w, "baseline", &o).unwrap().result;
    let none = simulate_named(&w, "no-reuse", &o).unwrap().result;
    assert_eq!(none.errors(), 0);
    assert_eq!(
        none.cold_starts(),
        w.invocations.len() as u64,
        "every call is cold"
    );
    assert!(base.cold_starts() * 5 < none.cold_starts());
    let s = score(&none.totals(), &base.totals(), &ScoreConfig::default()).unwrap();
    // Every call pays a container start (8-60 ms) on top of its duration.
    assert!(s.rt_ratio_mean > 1.05, "RT ratio {}", s.rt_ratio_mean);
    // Rare functions are cold under both (a burst of calls each gets its own container),
    // so only the functions with reuse to lose must lose.
    let worse = s.rt_ratios.values().filter(|r| **r > 1.0).count();
    assert!(worse * 10 >= s.rt_ratios.len() * 8, "{:?}", s.rt_ratios);
    assert!(s.value > 1.0, "score {}", s.value);
    assert!(
        none.scheduling_latency().p50 > base.scheduling_latency().p50 + 5.0,
        "median scheduling latency {} vs {}",
        none.scheduling_latency().p50,
        base.scheduling_latency().p50
    );
}

/// The 2019 sample, when the shared traces are present.
fn trace_slice() -> Option<Workload> {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/traces/azure2019-sampled-200fn");
    if !dir.is_dir() {
        eprintln!("SKIPPED: trace assertions: {} is absent", dir.display());
        return None;
    }
    let trace = Trace::open(&dir).unwrap();
    let options = TraceOptions {
        selection: Selection::Top(30),
        minutes: Some(60),
        duration_scale: 0.1,
        memory_scale: 0.25,
        ..TraceOptions::default()
    };
    Some(trace.to_workload(&options).unwrap())
}

#[test]
fn keepalive_trades_cold_starts_for_node_time_on_a_trace_hour() {
    let Some(w) = trace_slice() else { return };
    let o = kept();
    let base = simulate_named(&w, "baseline", &o).unwrap().result;
    let ka = simulate_named(&w, "keepalive-10m", &o).unwrap().result;
    assert_eq!(base.requests.len(), w.invocations.len());
    // Keep-alive never holds more than the baseline, which never releases anything.
    assert!(
        ka.node_seconds() <= base.node_seconds() + 1e-9,
        "{} > {}",
        ka.node_seconds(),
        base.node_seconds()
    );
    assert!(ka.cold_starts() >= base.cold_starts());
    // Containers removed after 10 idle minutes hold less idle memory-time.
    assert!(ka.idle_memory_mb_seconds().unwrap() <= base.idle_memory_mb_seconds().unwrap());
    assert!(
        ka.containers.iter().any(|c| c.removed_ms.is_some()),
        "some container idled out"
    );
}

/// 40 s of steady load: calls of 300 ms (sleep) and 5 ms (hello), always some running.
fn steady() -> Workload {
    use faas_e2e::workload::{Arrivals, FunctionProfile, HandlerKind, MIB, WorkloadBuilder};
    let mut b = WorkloadBuilder::new("steady", 40_000);
    let nap = b.function(FunctionProfile::new(
        "nap",
        HandlerKind::Sleep,
        256 * MIB,
        60_000,
        300.0,
    ));
    let hi = b.function(FunctionProfile::new(
        "hi",
        HandlerKind::Hello,
        128 * MIB,
        60_000,
        5.0,
    ));
    b.stream(nap, Arrivals::Poisson { rate_per_s: 30.0 }, 0, 40_000);
    b.stream(hi, Arrivals::Poisson { rate_per_s: 20.0 }, 0, 40_000);
    b.build(5).unwrap()
}

#[test]
fn every_policy_recovers_from_a_lost_node_in_virtual_time() {
    use faas_e2e::fault::{fault_reports, parse_faults};
    let w = steady();
    let o = SimOptions {
        faults: parse_faults("kill-node@10s,kill-node@25s").unwrap(),
        ..kept()
    };
    for policy in faas_scheduler::core::POLICY_NAMES {
        let run = simulate_named(&w, policy, &o).unwrap().result;
        assert_eq!(run.requests.len(), w.invocations.len());
        let faults = fault_reports(&run);
        assert_eq!(faults.len(), 2, "{policy}");
        for f in &faults {
            assert_eq!(f.error, None, "{policy} {}", f.fault);
            assert!(
                f.target.contains("stops answering"),
                "{policy}: {}",
                f.target
            );
            assert!(f.sent_after > 500, "{policy}: {f:?}");
            // Calls sent after the loss go elsewhere (a container on the lost node is
            // refused and the call retried): none fails.
            assert_eq!(f.failed_after, 0, "{policy}: {f:?}");
            let first = f.first_success_ms.expect("a success after the fault");
            let back = f.recovered_ms.expect("the success rate is back");
            assert!(back >= first && back < 1_000.0, "{policy}: {f:?}");
        }
        // Only the calls the lost nodes were running failed, with UNAVAILABLE.
        let failed: Vec<&str> = run
            .requests
            .iter()
            .filter_map(|r| r.error.as_deref())
            .collect();
        let in_flight: u64 = faults.iter().map(|f| f.in_flight).sum();
        assert!(in_flight > 0, "{policy}: the lost nodes ran calls");
        assert_eq!(failed.len() as u64, in_flight, "{policy}: {failed:?}");
        assert!(
            failed
                .iter()
                .all(|e| e.starts_with("Unavailable") && e.contains("may have run")),
            "{policy}: {failed:?}"
        );
        // The lost nodes were released within the loss time (3 s) and a tick, and nothing
        // is held that the policy forgot.
        for f in &run.faults {
            let node = f.target.split_whitespace().nth(1).unwrap();
            let usage = run.nodes.iter().find(|n| n.id == node).unwrap();
            let released = usage.released_ms.expect("a lost node is released");
            let lost_after = released - f.at_ms as i64;
            assert!(
                (3_000..5_000).contains(&lost_after),
                "{policy}: {node} after {lost_after} ms"
            );
        }
        assert_eq!(run.leaks, Some(Default::default()), "{policy}");
    }
    // The simulator refuses what it does not model.
    let restart = SimOptions {
        faults: parse_faults("restart-scheduler@10s").unwrap(),
        ..kept()
    };
    let e = simulate_named(&w, "baseline", &restart).unwrap_err();
    assert!(e.to_string().contains("node loss only (kill-node)"), "{e}");
    let late = SimOptions {
        faults: parse_faults("kill-node@40s").unwrap(),
        ..kept()
    };
    let e = simulate_named(&w, "baseline", &late).unwrap_err();
    assert!(e.to_string().contains("not within the run"), "{e}");
}
