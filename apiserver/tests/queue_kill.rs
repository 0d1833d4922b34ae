//! The durable queue survives SIGKILL: a real `apiserver` process with its queue in a
//! temporary data directory, a fake scheduler and a fake node in this process (the node
//! counts how often each event reaches it and takes a few ms per call, so calls are queued
//! and running when the kill comes). Every call the killed server accepted must be delivered
//! by the restarted one; a call delivered twice is one that was running at the kill (at
//! least once: see `api::async_runner`), so there are never more of them than calls running
//! at once. It runs on both queues (`::sqlite`, `::nats`: the API server killed, the
//! `nats-server` left running).

#![allow(dead_code)]

include!("support/fakes.rs");

use std::collections::HashMap;

use faas_common::launch::Child;

#[path = "support/process.rs"]
mod process;
#[path = "support/queue_backend.rs"]
mod queue_backend;
use queue_backend::{Backend, QueueHome};

on_both_queues!(kill_9_with_calls_queued_loses_none_and_the_restarted_server_delivers_them);
use faas_proto::invoke::{GetInvocationRequest, InvokeAsyncRequest};

/// Calls submitted before the kill.
const CALLS: usize = 120;
/// Attempts running at once (`--async-concurrency`, and per function).
const RUNNING: usize = 4;
/// How long the fake node takes per call: long enough that most calls are still queued when
/// the kill comes, even on a slow machine whose submits each wait for a slow `fsync`.
const CALL_MS: u64 = 250;

/// How often each event reached the node (it logs a call as it arrives: the function has
/// the event from then on, and a server killed before it records the answer makes the next
/// one deliver it again).
fn arrivals(log: &Log) -> HashMap<Vec<u8>, usize> {
    let mut seen = HashMap::new();
    for call in log.lock().unwrap().iter() {
        if let Call::Invoke(r) = call {
            *seen.entry(r.event.clone()).or_default() += 1;
        }
    }
    seen
}

/// The `apiserver` binary on `home` (its data directory, and its queue), and its gRPC
/// address.
async fn spawn_apiserver(home: &QueueHome, scheduler: &str) -> (Child, String) {
    let running = RUNNING.to_string();
    let queue = home.flags();
    let mut flags = vec!["--http-port", "0", "--async-concurrency", &running];
    flags.extend(["--async-function-concurrency", &running]);
    flags.extend(queue.iter().map(String::as_str));
    let (child, addr) = process::spawn_apiserver(home.dir.path(), scheduler, &flags).await;
    (child, addr)
}

async fn client(addr: &str) -> InvocationsClient<Channel> {
    InvocationsClient::new(faas_common::serve::connect(addr).await.unwrap())
}

fn delivered(log: &Log) -> usize {
    arrivals(log).values().sum()
}

async fn kill_9_with_calls_queued_loses_none_and_the_restarted_server_delivers_them(
    home: QueueHome,
) {
    let backend = home.backend;
    let (_trigger, shutdown) = shutdown::channel();
    let fakes = start_fakes(&Setup::node(NodeBehaviour::Slow(CALL_MS)), &shutdown).await;
    let scheduler = fakes.scheduler_addr.to_string();
    let seen = fakes.log.clone();
    let (mut child, addr) = spawn_apiserver(&home, &scheduler).await;
    let mut c = client(&addr).await;
    let mut accepted = Vec::new();
    for i in 0..CALLS {
        let event = format!("event-{i:04}").into_bytes();
        let id = c
            .invoke_async(InvokeAsyncRequest {
                function_name: "hello".into(),
                account_id: "acct".into(),
                event: event.clone(),
                ..InvokeAsyncRequest::default()
            })
            .await
            .unwrap()
            .into_inner()
            .invocation_id;
        accepted.push((id, event));
    }
    // Some delivered, some running, most still queued: SIGKILL.
    while delivered(&seen) < RUNNING * 3 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.kill().await;
    let before_restart = delivered(&seen);
    assert!(
        before_restart < CALLS,
        "the kill came after every call was delivered ({before_restart}); the test proves nothing"
    );

    let (mut child, addr) = spawn_apiserver(&home, &scheduler).await;
    let mut c = client(&addr).await;
    for (id, event) in &accepted {
        loop {
            let got = c
                .get_invocation(GetInvocationRequest {
                    invocation_id: id.clone(),
                })
                .await
                .unwrap_or_else(|e| panic!("{id} was accepted and is lost: {e}"))
                .into_inner();
            match got.state.as_str() {
                "succeeded" => {
                    assert_eq!(got.body, b"hello world", "{id}: {event:?}");
                    break;
                }
                "queued" | "running" => tokio::time::sleep(Duration::from_millis(10)).await,
                other => panic!(
                    "{id} ended {other}: {} {}",
                    got.error_code, got.error_message
                ),
            }
        }
    }
    child.kill().await;

    let seen = arrivals(&seen);
    let lost: Vec<_> = accepted
        .iter()
        .filter(|(_, e)| !seen.contains_key(e))
        .collect();
    assert!(lost.is_empty(), "never delivered: {lost:?}");
    let twice = seen.values().filter(|n| **n == 2).count();
    let queued_at_kill = CALLS - before_restart;
    let more = seen.values().filter(|n| **n > 2).count();
    eprintln!(
        "{backend:?}: kill -9 after {before_restart} of {CALLS} calls had reached the function ({queued_at_kill} still queued): 0 lost, {twice} delivered twice (running at the kill), {more} more than twice"
    );
    assert_eq!(more, 0, "{seen:?}");
    assert!(
        twice <= RUNNING,
        "only calls running at the kill are delivered again: {twice} > {RUNNING}"
    );
}
