//! The fault bench end to end: `faas replay --faults` on a short contest run against the
//! real local platform (node services and containers as child processes), read back from
//! its `--json` report: every fault's figures present and consistent, the platform healed,
//! and nothing left behind.
//!
//! The tests run one at a time (a lock): faults find their victims in this process's tree,
//! which must hold one platform only.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use faas_cli::bench::{ReplayArgs, replay};
use faas_e2e::fault::FAULT_FIELDS;
use serde_json::Value;

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The longest a replay may take (20 s of load, the platform's start and stop, the leak
/// count).
const RUN_LIMIT: Duration = Duration::from_secs(80);

#[derive(Parser)]
struct Replay {
    #[command(flatten)]
    args: ReplayArgs,
}

/// Replays 20 s of the contest scenario (bodies touching little memory: the test build's
/// handlers are slow at it) with `faults`; the JSON report.
async fn replay_with(faults: &str) -> Value {
    support::use_built_binary();
    let _one = ONE_AT_A_TIME.lock().await;
    let json: PathBuf = std::env::temp_dir().join(format!(
        "faas-fault-bench-{}-{}.json",
        std::process::id(),
        uuid::Uuid::new_v4()
    ));
    let argv = [
        "replay",
        "--duration",
        "20s",
        "--memory-scale",
        "0.02",
        "--settle-ms",
        "2000",
        "--no-progress",
        "--faults",
        faults,
        "--json",
        json.to_str().expect("a UTF-8 temporary path"),
    ];
    let args = Replay::try_parse_from(argv).expect("flags parse").args;
    tokio::time::timeout(RUN_LIMIT, replay(args))
        .await
        .unwrap_or_else(|_| panic!("the replay ran longer than {RUN_LIMIT:?}"))
        .expect("the replay runs");
    let text = std::fs::read_to_string(&json).expect("the JSON report is written");
    let _ = std::fs::remove_file(&json);
    serde_json::from_str(&text).expect("the report is JSON")
}

fn number(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v:#}"))
}

/// Every fault of the report has its fields, in order, at its planned time, with figures
/// that agree with each other and with the run; the platform recovered within `within_ms`
/// of each fault; nothing leaked.
fn assert_consistent(report: &Value, planned: &[(&str, u64)], within_ms: f64) {
    let policy = &report["policies"]["adaptive"];
    let requests = number(policy, "requests");
    let faults = report["faults"].as_array().expect("a faults array");
    assert_eq!(faults.len(), planned.len(), "{faults:#?}");
    for (f, (name, at_ms)) in faults.iter().zip(planned) {
        for key in FAULT_FIELDS {
            assert!(f.get(key).is_some(), "no {key} in {f:#}");
        }
        assert_eq!(f["fault"], *name, "{f:#}");
        assert_eq!(f["policy"], "adaptive");
        assert!(f.get("error").is_none(), "the fault did not strike: {f:#}");
        // Struck at its time, never before it (finding the victim takes a moment: a few
        // process listings and Status calls, seconds on two loaded cores).
        let at = number(f, "at_ms");
        assert!(
            (*at_ms as f64..*at_ms as f64 + 5_000.0).contains(&at),
            "{f:#}"
        );
        let (in_flight, sent, failed) = (
            number(f, "in_flight"),
            number(f, "sent_after"),
            number(f, "failed_after"),
        );
        assert!(in_flight <= requests && sent <= requests, "{f:#}");
        assert!(sent > 0.0 && failed <= sent, "{f:#}");
        let by_status: f64 = f["failed_by_status"]
            .as_object()
            .expect("failed_by_status is a map")
            .values()
            .map(|n| n.as_f64().expect("a count"))
            .sum();
        assert_eq!(by_status, failed, "{f:#}");
        let first = number(f, "first_success_ms");
        let back = number(f, "recovered_ms");
        assert!(back >= first, "{f:#}");
        assert!(
            back <= within_ms,
            "not recovered within {within_ms} ms: {f:#}"
        );
    }
    let none = serde_json::json!({"processes": 0, "containers": 0, "nodes": 0});
    assert_eq!(report["leaks"], none, "left behind");
    assert_eq!(policy["leaks"], none, "left behind by the run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_kill_and_a_scheduler_restart_are_measured_and_healed() {
    let report = replay_with("kill-node@5s,restart-scheduler@12s").await;
    assert_consistent(
        &report,
        &[("kill-node@5s", 5_000), ("restart-scheduler@12s", 12_000)],
        7_000.0,
    );
    // The node held containers when it was killed.
    let kill = &report["faults"][0];
    let target = kill["target"].as_str().unwrap_or_default();
    assert!(target.starts_with("SIGKILL node-service node-"), "{target}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn container_kills_a_pause_and_the_other_restarts_are_measured_and_healed() {
    let report = replay_with(
        "kill-containers:2@3s,pause-node:1500ms@6s,restart-apiserver@10s,\
         restart-resource-manager@14s",
    )
    .await;
    assert_consistent(
        &report,
        &[
            ("kill-containers:2@3s", 3_000),
            ("pause-node:1500ms@6s", 6_000),
            ("restart-apiserver@10s", 10_000),
            ("restart-resource-manager@14s", 14_000),
        ],
        // The last fault's windows end with the run (20 s).
        5_000.0,
    );
}
