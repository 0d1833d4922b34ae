//! Fault plans: durations and specs parsed (and refused with a reason), status names, recovery
//! windows, and which calls each fault owns.

use super::*;
use crate::record::RequestRecord;

#[test]
fn durations_parse_with_units() {
    assert_eq!(parse_duration_ms("2m"), Ok(120_000));
    assert_eq!(parse_duration_ms("90s"), Ok(90_000));
    assert_eq!(parse_duration_ms("1500ms"), Ok(1_500));
    assert_eq!(parse_duration_ms("1h"), Ok(3_600_000));
    assert_eq!(parse_duration_ms("30"), Ok(30_000));
    assert_eq!(parse_duration_ms("0.5s"), Ok(500));
    assert!(parse_duration_ms("2 weeks").is_err());
    assert!(parse_duration_ms("0s").is_err());
    assert!(parse_duration_ms("s").is_err());
}

#[test]
fn fault_plans_parse_sort_and_print_back() {
    let plan = parse_faults("restart-scheduler@60s, kill-node@30s,kill-containers:3@1m30s0ms")
        .unwrap_err();
    assert!(plan.contains("kill-containers:3@1m30s0ms"), "{plan}");
    let plan = parse_faults(
        "restart-scheduler@60s, kill-node@30s,kill-containers:3@1500ms,pause-node:2.5s@2m,\
         restart-apiserver@0,restart-resource-manager@90",
    )
    .unwrap();
    assert_eq!(
        plan.0,
        [
            Fault {
                kind: FaultKind::RestartApiserver,
                at_ms: 0
            },
            Fault {
                kind: FaultKind::KillContainers(3),
                at_ms: 1_500
            },
            Fault {
                kind: FaultKind::KillNode,
                at_ms: 30_000
            },
            Fault {
                kind: FaultKind::RestartScheduler,
                at_ms: 60_000
            },
            Fault {
                kind: FaultKind::RestartResourceManager,
                at_ms: 90_000
            },
            Fault {
                kind: FaultKind::PauseNode(2_500),
                at_ms: 120_000
            },
        ]
    );
    assert_eq!(
        plan.to_string(),
        "restart-apiserver@0s,kill-containers:3@1500ms,kill-node@30s,restart-scheduler@60s,\
         restart-resource-manager@90s,pause-node:2500ms@120s"
    );
    assert_eq!(parse_faults(&plan.to_string()).unwrap(), plan);
    assert!(plan.has(FaultKind::is_restart));
    assert!(plan.check_within(120_001).is_ok());
    let late = plan.check_within(120_000).unwrap_err();
    assert!(late.contains("pause-node:2500ms@120s"), "{late}");
}

#[test]
fn bad_fault_specs_say_what_is_wrong() {
    let cases = [
        ("", "empty fault"),
        ("kill-node@30s,", "empty fault"),
        ("kill-node", "has no time"),
        (
            "kill-nodes@30s",
            "unknown fault \"kill-nodes\"; known: kill-node,",
        ),
        ("kill-node@soon", "\"soon\" is not a duration"),
        ("kill-node@3d", "unknown unit \"d\""),
        ("kill-node:2@3s", "kill-node takes no argument"),
        ("kill-containers@3s", "needs how many"),
        ("kill-containers:0@3s", "at least 1, not \"0\""),
        ("kill-containers:x@3s", "at least 1, not \"x\""),
        ("pause-node@3s", "needs how long"),
        ("pause-node:0s@3s", "pause-node: \"0s\" is too short"),
        ("restart-scheduler@-5s", "not a duration"),
    ];
    for (spec, wanted) in cases {
        let e = parse_faults(spec).unwrap_err();
        assert!(e.contains(wanted), "{spec:?}: {e}");
    }
}

#[test]
fn statuses_get_their_canonical_names() {
    assert_eq!(status_name("DeadlineExceeded"), "DEADLINE_EXCEEDED");
    assert_eq!(status_name("Unavailable"), "UNAVAILABLE");
    assert_eq!(error_status("Unavailable: node lost: x"), "UNAVAILABLE");
    assert_eq!(error_status("Client: no reply"), "CLIENT");
    assert_eq!(error_status("OutOfMemory: too much"), "OUT_OF_MEMORY");
    assert_eq!(error_status("weird"), "WEIRD");
}

fn span(start_ms: f64, end_ms: f64, ok: bool) -> Span {
    Span {
        start_ms,
        end_ms: Some(end_ms),
        ok,
    }
}

#[test]
fn recovery_is_judged_over_windows_that_stay_good() {
    // One call every 10 ms from 0 to 6 s; the ones sent in [1.0, 1.3) s fail.
    let dip: Vec<Span> = (0..600)
        .map(|k| {
            let t = k as f64 * 10.0;
            span(t, t + 5.0, !(1000.0..1300.0).contains(&t))
        })
        .collect();
    assert_eq!(recovered_after(&dip, 1000.0, 6000.0, 1000.0), Some(300.0));
    assert_eq!(first_success_after(&dip, 1000.0), Some(305.0));
    assert_eq!(in_flight_at(&dip, 1002.0).count(), 1);
    let never: Vec<Span> = dip.iter().map(|s| Span { ok: false, ..*s }).collect();
    assert_eq!(recovered_after(&never, 1000.0, 6000.0, 1000.0), None);
    assert_eq!(first_success_after(&never, 1000.0), None);
    let clean: Vec<Span> = dip.iter().map(|s| Span { ok: true, ..*s }).collect();
    assert_eq!(recovered_after(&clean, 1000.0, 6000.0, 1000.0), Some(0.0));
    // No full window fits.
    assert_eq!(recovered_after(&clean, 5500.0, 6000.0, 1000.0), None);
    // An unanswered call is in flight for ever, and a failure.
    let hung = [Span {
        start_ms: 0.0,
        end_ms: None,
        ok: false,
    }];
    assert_eq!(in_flight_at(&hung, 1e9).count(), 1);
}

fn request(at_ms: u64, response_ms: f64, error: Option<&str>) -> RequestRecord {
    RequestRecord {
        function: "f".into(),
        at_ms,
        response_ms,
        scheduling_ms: 0.0,
        duration_ms: response_ms,
        cold: false,
        error: error.map(str::to_string),
        node_id: None,
        container_id: None,
    }
}

#[test]
fn each_fault_owns_the_calls_up_to_the_next_one() {
    let mut run = RunResult::new("p", "w");
    run.end_ms = 10_000;
    // A call every 50 ms, each lasting 100 ms. Around the node kill at 2 s the calls
    // sent in [2.0, 2.5) s fail; around the restart at 6 s every call in flight at it,
    // and the ones sent in [6.0, 6.2) s fail.
    for k in 0..200u64 {
        let at = k * 50;
        let fails = (2000..2500).contains(&at) || (5901..6200).contains(&at);
        let error = fails.then_some(if at < 6000 {
            "Unavailable: reset"
        } else {
            "DeadlineExceeded: late"
        });
        run.requests.push(request(at, 100.0, error));
    }
    run.faults = vec![
        InjectedFault {
            fault: "kill-node@2s".into(),
            at_ms: 2000,
            target: "node-1".into(),
            in_flight: Some(1),
            error: None,
        },
        InjectedFault {
            fault: "restart-scheduler@6s".into(),
            at_ms: 6000,
            target: "scheduler".into(),
            in_flight: None,
            error: None,
        },
    ];
    let r = fault_reports(&run);
    assert_eq!(r.len(), 2);
    let kill = &r[0];
    assert_eq!((kill.in_flight, kill.sent_after), (1, 80));
    // The calls sent at 5950 (in flight at 6 s) failed: the restart's, not the kill's.
    assert_eq!(kill.failed_after, 10);
    assert_eq!(kill.failed_by_status["UNAVAILABLE"], 10);
    assert_eq!(kill.first_success_ms, Some(600.0));
    assert_eq!(kill.recovered_ms, Some(600.0));
    let restart = &r[1];
    // In flight at 6 s: the calls sent at 5950 and 6000.
    assert_eq!(restart.in_flight, 2);
    assert_eq!(restart.sent_after, 80);
    assert_eq!(restart.failed_after, 4);
    assert_eq!(restart.failed_by_status["DEADLINE_EXCEEDED"], 4);
    assert_eq!(restart.first_success_ms, Some(300.0));
    assert_eq!(restart.recovered_ms, Some(300.0));
}

#[test]
fn a_fault_that_could_not_strike_has_no_calls_in_flight() {
    let mut run = RunResult::new("p", "w");
    run.end_ms = 5_000;
    run.requests.push(request(900, 300.0, None));
    run.faults.push(InjectedFault {
        fault: "kill-node@1s".into(),
        at_ms: 1000,
        target: String::new(),
        in_flight: None,
        error: Some("no node holds a function container".into()),
    });
    let r = fault_reports(&run);
    assert_eq!(r[0].in_flight, 0);
    assert_eq!(r[0].sent_after, 0);
    assert_eq!(r[0].first_success_ms, None);
    assert_eq!(r[0].recovered_ms, None);
    let leaks = Leaks {
        processes: 1,
        ..Leaks::default()
    } + Leaks {
        nodes: 2,
        ..Leaks::default()
    };
    assert_eq!(leaks.to_string(), "1 processes, 0 containers, 2 nodes");
    assert!(!leaks.is_none() && Leaks::default().is_none());
}
