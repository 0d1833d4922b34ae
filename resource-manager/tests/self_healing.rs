//! Self-healing with real node-service processes: a node killed with SIGKILL is reaped (no
//! `<defunct>` zombie), marked failed and replaced; a reserved one stays its account's until
//! the account releases it, and that release succeeds; a node stopped with SIGSTOP is marked
//! failed once it has answered no probe for `--node-failed-after-ms`, then killed and reaped.
//!
//! What the manager decided is read from its Prometheus endpoint (`nodes{state=…}`,
//! `node_failures_total{reason=…}`), what happened to the processes from `/proc`.

mod support;

use std::time::Duration;

use faas_resource_manager::Config;
use support::{
    Manager, Stopped, eventually, node_processes, pid_of, process_state, release, reserve, signal,
    test_config, usage, wait_reaped,
};
use tonic::Code;

/// Long enough for a loaded 2-core machine; every wait ends as soon as its condition holds.
const PATIENCE: Duration = Duration::from_secs(30);

const READY: &str = "faas_resource_manager_nodes{state=\"ready\"}";
const FAILED: &str = "faas_resource_manager_nodes{state=\"failed\"}";
const EXITED: &str = "faas_resource_manager_node_failures_total{reason=\"exited\"}";
const UNRESPONSIVE: &str = "faas_resource_manager_node_failures_total{reason=\"unresponsive\"}";

/// [`test_config`] with a short refill delay, so failed nodes are replaced within the test.
fn refilling(prefix: &str, ready_nodes: usize, max_nodes: usize) -> Config {
    Config {
        refill_delay_ms: 200,
        ..test_config(prefix, ready_nodes, max_nodes)
    }
}

/// Waits until `prefix` has `count` live node processes, none of them `dead`; returns them.
async fn wait_replaced(prefix: &str, dead: &str, count: usize) -> Vec<(u32, String)> {
    eventually("the pool refilled", PATIENCE, || async {
        let running = node_processes(prefix);
        if running.len() == count && running.iter().all(|(_, id)| id != dead) {
            Ok(running)
        } else {
            Err(format!("{running:?}"))
        }
    })
    .await
}

#[tokio::test]
async fn a_killed_ready_node_is_reaped_marked_failed_and_replaced() {
    let prefix = "killready";
    let rm = Manager::start_with(refilling(prefix, 2, 3)).await;
    rm.wait_serving().await;
    let (pid, dead) = node_processes(prefix)[0].clone();

    signal(pid, "KILL");
    // Reaped at once (SIGCHLD), not left `<defunct>`.
    wait_reaped(pid, PATIENCE).await;
    rm.wait_metric(EXITED, 1.0, PATIENCE).await;

    // Replaced under a new id after the refill delay; the pool is back to --ready-nodes.
    let running = wait_replaced(prefix, &dead, 2).await;
    rm.wait_metric(READY, 2.0, PATIENCE).await;
    assert_eq!(rm.metric(EXITED).await, 1.0, "counted once");

    // The dead node is never handed out.
    let mut client = rm.client().await;
    let mut reserved = Vec::new();
    for _ in 0..2 {
        reserved.push(reserve(&mut client, "acct").await.unwrap().id);
    }
    reserved.sort();
    let mut expected: Vec<String> = running.into_iter().map(|(_, id)| id).collect();
    expected.sort();
    assert_eq!(reserved, expected);
    rm.stop().await;
}

#[tokio::test]
async fn a_killed_reserved_node_stays_reserved_until_its_release_which_succeeds() {
    let prefix = "killreserved";
    let rm = Manager::start_with(refilling(prefix, 1, 2)).await;
    let mut client = rm.client().await;
    let node = reserve(&mut client, "acct").await.unwrap();
    let pid = pid_of(prefix, &node.id);

    signal(pid, "KILL");
    wait_reaped(pid, PATIENCE).await;
    rm.wait_metric(FAILED, 1.0, PATIENCE).await;
    assert_eq!(rm.metric(EXITED).await, 1.0);

    // Still the account's: listed as reserved, not released.
    let records = usage(&mut client).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].id, node.id);
    assert_eq!(records[0].released_time_timestamp_ms, 0);

    // The scheduler declares the node lost and releases it: OK, record closed.
    release(&mut client, &node.id)
        .await
        .expect("releasing a dead node succeeds");
    let records = usage(&mut client).await;
    assert!(records[0].released_time_timestamp_ms >= records[0].reserved_time_timestamp_ms);
    assert_eq!(rm.metric(FAILED).await, 0.0);
    let err = release(&mut client, &node.id).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

    // The id is never used again: the refill owed for the reserve has another.
    rm.wait_metric(READY, 1.0, PATIENCE).await;
    let next = reserve(&mut client, "acct").await.unwrap();
    assert_ne!(next.id, node.id);
    rm.stop().await;
}

#[tokio::test]
async fn a_stopped_node_is_failed_after_the_configured_time_then_killed_and_reaped() {
    let prefix = "sigstop";
    let rm = Manager::start_with(Config {
        node_probe_interval_ms: 300,
        node_probe_timeout_ms: 300,
        node_failed_after_ms: 1_000,
        ..refilling(prefix, 1, 2)
    })
    .await;
    rm.wait_serving().await;
    let (pid, stuck) = node_processes(prefix)[0].clone();

    let _guard = Stopped(pid, stuck.clone());
    signal(pid, "STOP");
    let stopped_at = faas_common::clock::tokio_instant();
    rm.wait_metric(UNRESPONSIVE, 1.0, PATIENCE).await;
    // Failed only after a full --node-failed-after-ms of silence (a lower bound, which a slow
    // machine can only lengthen).
    let silent = stopped_at.elapsed();
    assert!(
        silent >= Duration::from_millis(1_000),
        "failed after {silent:?}"
    );

    // Killed (SIGKILL reaches a stopped process) and reaped, then replaced.
    wait_reaped(pid, PATIENCE).await;
    assert_eq!(process_state(pid), None);
    wait_replaced(prefix, &stuck, 1).await;
    rm.wait_metric(READY, 1.0, PATIENCE).await;
    assert_eq!(
        rm.metric(EXITED).await,
        0.0,
        "failed for its silence, not an exit"
    );
    rm.stop().await;
}
