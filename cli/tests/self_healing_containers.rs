//! Self-healing when a container process dies, on the real local platform: an idle one is
//! replaced without an error, a busy one fails its call clearly and is replaced.
//!
//! The harness (platform, load, shared checks) is `support/healing.rs`; the other kinds of
//! fault are in the other `self_healing_*.rs` files (`docs/CONVENTIONS.md`, "Self-healing").

mod support;

use support::healing::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_idle_container_is_replaced_without_an_error() {
    on_platform("adaptive", |env| async move {
        env.deploy("idle-victim", "hello", 10_000).await;
        let first = env.invoke("idle-victim", b"{}").await.expect("first call");

        // Killed just before the next call: that call still succeeds (retried or replaced).
        env.note_processes();
        kill_containers_of("idle-victim").await;
        let next = env
            .invoke("idle-victim", b"{}")
            .await
            .unwrap_or_else(|s| panic!("the first call after its container was killed: {s:?}"));
        assert_ne!(
            next.container_id, first.container_id,
            "served by the killed container"
        );

        // Killed, and seen dead by the node's stats before the next call.
        env.note_processes();
        let deaths = env
            .metric("faas_scheduler_container_deaths_total")
            .await
            .unwrap_or(0.0);
        kill_containers_of("idle-victim").await;
        // Give the scheduler's stats polls (every 300 ms) the chance to see it first.
        observe::poll(Duration::from_secs(3), || async {
            env.metric("faas_scheduler_container_deaths_total")
                .await
                .filter(|&d| d > deaths)
        })
        .await;
        env.assert_calls_succeed(
            "idle-victim",
            b"{}",
            "after the stats saw the container die",
        )
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_busy_container_fails_its_call_clearly_and_is_replaced() {
    on_platform("adaptive", |env| async move {
        env.deploy("busy-victim", "sleep", 20_000).await;
        env.invoke("busy-victim", br#"{"ms":1}"#)
            .await
            .expect("warm-up call");
        let long = {
            let env = env.clone();
            tokio::spawn(async move { env.invoke("busy-victim", br#"{"ms":2000}"#).await })
        };
        let busy = observe::poll(Duration::from_secs(5), || async {
            observe::containers_of("busy-victim")
                .await
                .into_iter()
                .find(|c| c.status.in_flight >= 1)
        })
        .await
        .expect("a busy-victim container with the 2 s call in flight");
        env.note_processes();
        assert!(
            procs::kill9(busy.pid),
            "cannot SIGKILL container process {}",
            busy.pid
        );

        let answer = tokio::time::timeout(RECOVERY, long)
            .await
            .expect("the call whose container was killed is answered")
            .expect("the call task");
        let status = answer.expect_err("a call whose container was killed mid-run cannot succeed");
        assert_ne!(status.code(), Code::Internal, "{status:?}");
        assert!(
            status.message().contains("may have run"),
            "the status must say the function may have run: {status:?}"
        );
        env.assert_calls_succeed(
            "busy-victim",
            br#"{"ms":10}"#,
            "after the busy container was killed",
        )
        .await;
    })
    .await;
}
