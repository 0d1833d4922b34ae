//! The simulator's streamed figures ([`faas_e2e::record::RunSummary`]) against the records of
//! the same run: every count and total exact, idle memory-time equal to the union of the
//! records' execution intervals, latency percentiles within the histogram's 1/256, the time
//! series equal at whole seconds: for every policy, on the contest scenario and a slice of
//! the real 2019 trace.

use std::path::Path;

use faas_e2e::RunResult;
use faas_e2e::scenario::{self, ScenarioOptions};
use faas_e2e::sim::{SimOptions, simulate_compact_named, simulate_named};
use faas_e2e::trace::{Selection, Trace, TraceOptions};
use faas_e2e::workload::{CompactWorkload, Workload};
use faas_scheduler::policies::POLICY_NAMES;

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()) + 1e-9
}

/// Asserts that `streamed` (a summary) says what `kept` (records) says.
fn same_run(streamed: &RunResult, kept: &RunResult, what: &str) {
    assert!(streamed.requests.is_empty() && streamed.containers.is_empty());
    assert!(streamed.summary.is_some() && kept.summary.is_none());
    assert_eq!(
        streamed.request_count(),
        kept.requests.len() as u64,
        "{what}"
    );
    assert_eq!(streamed.errors(), kept.errors(), "{what}: errors");
    assert_eq!(
        streamed.cold_starts(),
        kept.cold_starts(),
        "{what}: cold starts"
    );
    assert_eq!(
        streamed.effective_end_ms(),
        kept.effective_end_ms(),
        "{what}"
    );
    assert_eq!(streamed.node_seconds(), kept.node_seconds(), "{what}");
    let (s, k) = (streamed.totals(), kept.totals());
    assert_eq!((s.requests, s.errors), (k.requests, k.errors), "{what}");
    assert_eq!(
        s.functions.keys().collect::<Vec<_>>(),
        k.functions.keys().collect::<Vec<_>>()
    );
    for (name, f) in &k.functions {
        let g = &s.functions[name];
        assert_eq!((g.calls, g.ok), (f.calls, f.ok), "{what}: {name}");
        assert!(close(g.ok_rt_ms, f.ok_rt_ms, 1e-12), "{what}: {name}");
    }
    match (
        streamed.idle_memory_mb_seconds(),
        kept.idle_memory_mb_seconds(),
    ) {
        (Some(a), Some(b)) => assert!(close(a, b, 1e-9), "{what}: idle memory {a} vs {b}"),
        (a, b) => assert_eq!(a, b, "{what}: idle memory"),
    }
    for (a, b) in [
        (streamed.latency(), kept.latency()),
        (streamed.scheduling_latency(), kept.scheduling_latency()),
    ] {
        for (x, y) in [(a.p50, b.p50), (a.p99, b.p99), (a.p999, b.p999)] {
            assert!((x - y).abs() <= y / 256.0 + 1e-3, "{what}: {x} vs {y}");
        }
        assert_eq!(a.max, b.max, "{what}");
        assert!(close(a.mean, b.mean, 1e-9), "{what}");
    }
    for bucket in [1000, 5000, streamed.default_bucket_ms()] {
        assert_eq!(
            streamed.cold_starts_over_time(bucket),
            kept.cold_starts_over_time(bucket),
            "{what}"
        );
        assert_eq!(
            streamed.errors_over_time(bucket),
            kept.errors_over_time(bucket),
            "{what}"
        );
        assert_eq!(
            streamed.containers_over_time(bucket),
            kept.containers_over_time(bucket),
            "{what}"
        );
        assert_eq!(
            streamed.nodes_over_time(bucket),
            kept.nodes_over_time(bucket),
            "{what}"
        );
    }
}

fn both(w: &Workload, policy: &str, o: &SimOptions) -> (RunResult, RunResult) {
    let kept = SimOptions {
        keep_records: true,
        ..o.clone()
    };
    let streamed = SimOptions {
        keep_records: false,
        ..o.clone()
    };
    (
        simulate_named(w, policy, &streamed).unwrap().result,
        simulate_named(w, policy, &kept).unwrap().result,
    )
}

#[test]
fn streamed_figures_equal_the_records_on_the_contest_for_every_policy() {
    let w = scenario::build(
        "contest",
        &ScenarioOptions {
            duration_ms: 120_000,
            ..ScenarioOptions::default()
        },
    )
    .unwrap();
    // A small pool: errors (exhausted, out of memory) and node churn happen too.
    let tight = SimOptions {
        ready_nodes: 2,
        max_nodes: 3,
        ..SimOptions::default()
    };
    for policy in POLICY_NAMES {
        for (name, o) in [("default", SimOptions::default()), ("tight", tight.clone())] {
            let (streamed, kept) = both(&w, policy, &o);
            same_run(&streamed, &kept, &format!("{policy} ({name} pool)"));
        }
    }
    // The tight pool does fail calls, so the error figures were compared.
    let (_, kept) = both(&w, "baseline", &tight);
    assert!(kept.errors() > 0);
}

#[test]
fn streamed_figures_equal_the_records_on_a_trace_hour() {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/traces/azure2019-sampled-200fn");
    if !dir.is_dir() {
        eprintln!("SKIPPED: {} is absent", dir.display());
        return;
    }
    let trace = Trace::open(&dir).unwrap();
    let options = TraceOptions {
        selection: Selection::Top(30),
        minutes: Some(30),
        duration_scale: 0.1,
        memory_scale: 0.25,
        ..TraceOptions::default()
    };
    let w = trace.to_workload(&options).unwrap();
    // The compact path draws the very same calls.
    let compact = trace.to_compact(&options).unwrap();
    assert_eq!(compact, CompactWorkload::from(&w));
    for policy in ["baseline", "keepalive-10m", "size-aware"] {
        let (streamed, kept) = both(&w, policy, &SimOptions::default());
        same_run(&streamed, &kept, policy);
        let direct = simulate_compact_named(&compact, policy, &SimOptions::default())
            .unwrap()
            .result;
        assert_eq!(direct, streamed);
    }
}
