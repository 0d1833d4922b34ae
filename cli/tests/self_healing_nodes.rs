//! Self-healing when a node dies or hangs, on the real local platform (node services and
//! containers as child processes): a SIGKILLed node is replaced and nothing leaks, a
//! SIGSTOPped one is given up and never used again. Also the recovery figures the fault
//! tests judge by.
//!
//! The harness (platform, load, shared checks) is `support/healing.rs`; the other kinds of
//! fault are in the other `self_healing_*.rs` files (`docs/CONVENTIONS.md`, "Self-healing").

mod support;

use support::healing::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_node_is_replaced_and_nothing_leaks() {
    on_platform("adaptive", |env| async move {
        let warm = env
            .invoke("hello", b"{}")
            .await
            .expect("hello before the fault");
        let load = start_load(
            &env,
            &[("hello", "{}"), ("sleep", r#"{"ms":50}"#)],
            Duration::from_millis(30),
        )
        .await;
        // The node holding hello's warm container: where the latest hello call ran.
        let node_id = load
            .calls()
            .iter()
            .rev()
            .filter(|c| c.function == "hello")
            .find_map(|c| c.ok()?.node_id.clone())
            .or(warm.node_id)
            .expect("x-faas-node-id on hello's reply");
        let victim = procs::node(&node_id)
            .unwrap_or_else(|| panic!("no node-service process with --node-id {node_id}"));
        env.note_processes();
        let fault = faas_common::clock::instant();
        assert!(procs::kill9(victim.pid), "cannot SIGKILL node {node_id}");

        // A function never called before is served within the recovery time.
        let (fresh, fresh_failures) =
            first_success(&env, "cpu", br#"{"rounds":1000}"#, fault + RECOVERY).await;
        assert!(
            fresh.is_some(),
            "cpu (never called before) failed for {RECOVERY:?} after node {node_id} was \
             killed: {fresh_failures:#?}"
        );
        let wrong: Vec<&Status> = fresh_failures
            .iter()
            .filter(|s| !acceptable_failure(s))
            .collect();
        assert!(
            wrong.is_empty(),
            "cpu failed with statuses a client cannot act on: {wrong:#?}"
        );

        let calls = wait_recovered(load, fault, fault + Duration::from_secs(5)).await;
        assert_failures_acceptable(&calls, fault);

        // The killed process is reaped: no zombie anywhere under this process.
        let reaped = observe::poll(Duration::from_secs(5), || async {
            (!procs::zombie(victim.pid) && procs::unreaped().is_empty()).then_some(())
        })
        .await;
        assert!(
            reaped.is_some(),
            "the killed node-service {} was not reaped: zombies under the test process {:?}",
            victim.pid,
            procs::unreaped()
        );
        // The resource manager reserves exactly the nodes the scheduler holds; the dead node
        // is released.
        env.assert_nodes_consistent(&node_id).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_node_is_given_up_and_never_used_again() {
    const TIMEOUT_MS: u64 = 1000;
    const PAUSE: Duration = Duration::from_secs(5);
    on_platform("adaptive", |env| async move {
        env.deploy("pause-victim", "sleep", TIMEOUT_MS as i64).await;
        env.invoke("pause-victim", br#"{"ms":1}"#)
            .await
            .expect("warm-up call");
        let load = start_load(
            &env,
            &[
                ("pause-victim", r#"{"ms":50}"#),
                ("pause-victim", r#"{"ms":700}"#),
            ],
            Duration::from_millis(30),
        )
        .await;
        let busy = observe::poll(Duration::from_secs(5), || async {
            observe::containers_of("pause-victim")
                .await
                .into_iter()
                .max_by_key(|c| c.status.in_flight)
                .filter(|c| c.status.in_flight >= 1)
        })
        .await
        .expect("a pause-victim container with calls in flight");
        let node_id = busy.node_id.clone();
        env.note_processes();
        let paused = procs::Paused::stop(busy.node_pid);
        let fault = faas_common::clock::instant();

        // The calls in flight at the stop end by their deadline, not when the node continues.
        let bound = Duration::from_millis(TIMEOUT_MS) + Duration::from_secs(3);
        let in_flight: Vec<Instant> = load::in_flight_at(&load.calls(), fault)
            .iter()
            .map(|c| c.started)
            .collect();
        let latest = in_flight.iter().max().copied().unwrap_or(fault);
        load.wait_until(latest + bound, |calls| {
            calls
                .iter()
                .filter(|c| in_flight.contains(&c.started))
                .all(|c| c.ended.is_some())
        })
        .await;
        // The fault lasts PAUSE (longer than `bound`, so a hanging call shows).
        tokio::time::sleep_until((fault + PAUSE).into()).await;
        paused.resume();
        let resumed = faas_common::clock::instant();

        let calls = wait_recovered(load, fault, resumed + STAY_HEALTHY).await;
        let stuck: Vec<String> = load::in_flight_at(&calls, fault)
            .into_iter()
            .filter(|c| {
                c.ended.is_none_or(|e| e > c.started + bound)
                    || c.status().is_some_and(|s| {
                        !matches!(s.code(), Code::Unavailable | Code::DeadlineExceeded)
                    })
            })
            .map(|c| c.describe(fault))
            .collect();
        assert!(
            stuck.is_empty(),
            "calls in flight on the stopped node must end by {bound:?} after they started with \
             UNAVAILABLE or DEADLINE_EXCEEDED: {stuck:#?}"
        );
        let cut_off = load::in_flight_at(&calls, fault)
            .iter()
            .filter(|c| c.ok().is_none())
            .count();
        assert!(
            cut_off >= 1,
            "no call was in flight on the stopped node: the test set-up failed"
        );
        assert_failures_acceptable(&calls, fault);
        let on_old_node: Vec<String> = calls
            .iter()
            .filter(|c| c.started >= resumed)
            .filter(|c| c.ok().and_then(|o| o.node_id.as_deref()) == Some(node_id.as_str()))
            .map(|c| c.describe(fault))
            .collect();
        assert!(
            on_old_node.is_empty(),
            "node {node_id} was handed work again after it continued: {on_old_node:#?}"
        );
        env.assert_nodes_consistent(&node_id).await;
        let stopped = observe::poll(RECOVERY, || async {
            (!procs::alive(busy.node_pid)).then_some(())
        })
        .await;
        assert!(
            stopped.is_some(),
            "the node-service of lost node {node_id} (pid {}) still runs after it continued",
            busy.node_pid
        );
    })
    .await;
}

/// The figures the fault tests judge by see a dip, its end and the calls it cut off.
#[test]
fn the_recovery_figures_see_a_dip() {
    let t0 = faas_common::clock::instant();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    // A call every 50 ms for 6 s, each taking 30 ms; those started in [1 s, 2.5 s) fail.
    let calls = |fails: fn(u64) -> bool| -> Vec<Call> {
        (0..120)
            .map(|i| Call {
                function: "f".into(),
                started: at(i * 50),
                ended: Some(at(i * 50 + 30)),
                outcome: if fails(i * 50) {
                    Outcome::Failed(Status::unavailable("down"))
                } else {
                    Outcome::Ok(InvokeOutcome::default())
                },
            })
            .collect()
    };
    let dip = calls(|ms| (1000..2500).contains(&ms));
    let second = Duration::from_secs(1);
    assert_eq!(
        load::recovered_after(&dip, at(1000), at(6000), second),
        Some(Duration::from_millis(1500))
    );
    assert_eq!(
        load::first_success_after(&dip, at(1000)),
        Some(Duration::from_millis(1530))
    );
    assert_eq!(load::in_flight_at(&dip, at(1010)).len(), 1);
    assert_eq!(load::failures_by_code(&dip)["UNAVAILABLE"].0, 30);
    let never = calls(|ms| ms >= 1000);
    assert_eq!(
        load::recovered_after(&never, at(1000), at(6000), second),
        None
    );
    assert_eq!(load::first_success_after(&never, at(1000)), None);
    let clean = calls(|_| false);
    assert_eq!(
        load::recovered_after(&clean, at(1000), at(6000), second),
        Some(Duration::ZERO)
    );
}
