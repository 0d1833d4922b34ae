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
    let o = SimOptions::default();
    for policy in ["baseline", "keepalive-10m", "no-reuse"] {
        let a = simulate_named(&w, policy, &o).unwrap();
        let b = simulate_named(&w, policy, &o).unwrap();
        assert_eq!(a.result, b.result, "{policy} is not deterministic");
        assert_eq!(a.events, b.events);
        assert_eq!(a.result.requests.len(), w.invocations.len());
    }
    let other = SimOptions {
        seed: 2,
        ..SimOptions::default()
    };
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
    let o = SimOptions::default();
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
    let o = SimOptions::default();
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
    let o = SimOptions::default();
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
