//! The manager's tests, with the fake provider, an in-memory state store and a paused
//! tokio clock.

use super::*;
use crate::api::provider_fake::{FakeNode, FakeProvider};
use crate::api::state_memory::MemoryState;
use crate::api::{Clock, Counters, GrpcNodes};
use crate::model::{FailureReason, ids_and_states};

const DELAY_MS: i64 = 10_000;

fn manager(ready: usize, max: usize, provider: FakeProvider) -> Arc<Manager<FakeProvider>> {
    counted(ready, max, provider).0
}

/// [`manager`], and the counters it counts into.
fn counted(
    ready: usize,
    max: usize,
    provider: FakeProvider,
) -> (Arc<Manager<FakeProvider>>, Counters) {
    let counters = Counters::default();
    let ports = Ports {
        clock: Arc::new(Clock::new()),
        nodes: Arc::new(GrpcNodes::default()),
        metrics: Arc::new(counters.clone()),
    };
    let rules = PoolRules {
        ready_nodes: ready,
        max_nodes: max,
        refill_delay_ms: DELAY_MS,
        ..PoolRules::default()
    };
    let m = Manager::new(rules, provider, ports, Duration::from_secs(5));
    (Arc::new(m), counters)
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// [`manager`] saving to `store`.
fn persistent(
    ready: usize,
    max: usize,
    provider: FakeProvider,
    store: Arc<MemoryState>,
) -> (Arc<Manager<FakeProvider>>, Counters) {
    let (m, counters) = counted(ready, max, provider);
    let m = Arc::into_inner(m).unwrap();
    (
        Arc::new(m.with_state(store, Duration::from_secs(5))),
        counters,
    )
}

/// Reserves without the node-service hand-over (the pool's side of `reserve`).
fn take_node(m: &Manager<FakeProvider>) -> String {
    let id = m.pool().reserve("acct", m.now_ms()).unwrap().node.id;
    m.wake.notify_one();
    id
}

async fn advance(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

#[tokio::test(start_paused = true)]
async fn the_timer_refills_after_the_delay_and_reuses_released_slots() {
    let m = manager(2, 3, FakeProvider::default());
    m.warm_up(Shutdown::never()).await;
    assert_eq!(m.provider.started().len(), 2);
    let (trigger, shutdown) = faas_common::shutdown::channel();
    let driver = tokio::spawn(m.clone().drive(shutdown));

    let first = take_node(&m);
    advance(DELAY_MS as u64 - 10).await;
    assert_eq!(m.provider.started().len(), 2, "refill not due yet");
    advance(20).await;
    assert_eq!(m.provider.started().len(), 3, "refilled after the delay");
    assert_eq!(m.pool().counts().ready, 2);

    // At the cap (1 reserved + 2 ready = 3): the next refill waits for a free slot.
    take_node(&m);
    advance(3 * DELAY_MS as u64).await;
    assert_eq!(m.provider.started().len(), 3, "never more than max nodes");

    m.release(&first).await.unwrap();
    assert!(m.provider.stopped.lock().unwrap().contains(&first));
    advance(DELAY_MS as u64 - 10).await;
    assert_eq!(m.provider.started().len(), 3, "released slot still cooling");
    advance(20).await;
    assert_eq!(
        m.provider.started().len(),
        4,
        "released slot reused after the delay"
    );

    trigger.trigger();
    driver.await.unwrap();
    m.shutdown().await;
    assert!(
        m.provider.running().is_empty(),
        "{:?}",
        m.provider.running()
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_nodes_whose_start_was_in_flight() {
    let m = manager(
        2,
        2,
        FakeProvider {
            start_delay: Duration::from_secs(5),
            ..FakeProvider::default()
        },
    );
    let (trigger, shutdown) = faas_common::shutdown::channel();
    let warm = tokio::spawn({
        let m = m.clone();
        async move { m.warm_up(shutdown).await }
    });
    advance(1_000).await;
    assert!(m.provider.started().is_empty());
    trigger.trigger();
    warm.await.unwrap();
    m.shutdown().await;
    assert_eq!(
        m.provider.started().len(),
        2,
        "starts in flight were awaited"
    );
    assert!(
        m.provider.running().is_empty(),
        "{:?}",
        m.provider.running()
    );
}

#[tokio::test]
async fn nodes_that_refuse_the_handover_are_dropped_and_stopped() {
    let (m, counters) = counted(
        2,
        2,
        FakeProvider {
            port: closed_port(),
            ..FakeProvider::default()
        },
    );
    m.warm_up(Shutdown::never()).await;
    let err = m.reserve("req", "acct").await.unwrap_err();
    // Both nodes refused; then none was left.
    assert_eq!(err, CallError::Pool(PoolError::Exhausted), "{err:?}");
    m.shutdown().await;
    assert_eq!(counters.handover_failures.get(), 2);
    assert_eq!(counters.reserves.get(), 0);
    assert!(m.usage().await.is_empty(), "refused nodes are not billed");
    assert!(
        m.provider.running().is_empty(),
        "{:?}",
        m.provider.running()
    );
    assert_eq!(m.provider.stopped.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_reserve_that_finds_no_node_says_why_the_latest_start_failed() {
    let m = manager(
        1,
        1,
        FakeProvider {
            refuse_starts: Some("no machine has 3072 MiB free".into()),
            ..FakeProvider::default()
        },
    );
    m.warm_up(Shutdown::never()).await;
    let err = m.reserve("req", "acct").await.unwrap_err();
    let status = tonic::Status::from(err);
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert!(
        status.message().contains("no machine has 3072 MiB free"),
        "{status:?}"
    );
    m.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_gone_ready_node_is_killed_counted_once_and_replaced_after_the_delay() {
    let (m, counters) = counted(2, 3, FakeProvider::default());
    m.warm_up(Shutdown::never()).await;
    let (trigger, shutdown) = faas_common::shutdown::channel();
    let driver = tokio::spawn(m.clone().drive(shutdown));
    let dead = m.provider.started()[0].clone();

    m.provider.gone.lock().unwrap().push(dead.clone());
    m.check_gone().await;
    m.check_gone().await; // nothing new: counted and killed once
    advance(1).await;
    assert_eq!(*m.provider.killed.lock().unwrap(), vec![dead.clone()]);
    assert_eq!(counters.node_failures(FailureReason::Exited), 1);
    assert_eq!(m.pool().counts().ready, 1);
    assert!(m.probe_targets().iter().all(|(id, _)| *id != dead));

    advance(DELAY_MS as u64 + 10).await;
    assert_eq!(m.provider.started().len(), 3, "replaced after the delay");
    assert_eq!(m.pool().counts().ready, 2);

    trigger.trigger();
    driver.await.unwrap();
    m.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_silent_reserved_node_fails_and_its_release_succeeds() {
    let (m, counters) = counted(1, 1, FakeProvider::default());
    m.warm_up(Shutdown::never()).await;
    let id = take_node(&m);
    let missed = |m: &Arc<Manager<FakeProvider>>| {
        m.probe_results(vec![(id.clone(), Err("no answer within 1000 ms".into()))]);
    };
    missed(&m);
    advance(1_000).await;
    m.probe_results(vec![(id.clone(), Ok(()))]);
    advance(1_000).await;
    missed(&m);
    advance(2_999).await;
    missed(&m);
    assert_eq!(
        counters.node_failures(FailureReason::Unresponsive),
        0,
        "silent for 2999 ms only"
    );
    advance(1).await;
    missed(&m);
    advance(1).await;
    assert_eq!(counters.node_failures(FailureReason::Unresponsive), 1);
    assert_eq!(*m.provider.killed.lock().unwrap(), vec![id.clone()]);
    let usage = m.usage().await;
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0].state, NodeState::Failed);
    assert_eq!(usage[0].released_at_ms, None, "still its account's");

    m.release(&id)
        .await
        .expect("a failed node's release succeeds");
    assert_eq!(m.usage().await[0].state, NodeState::Released);
    m.shutdown().await;
}

#[tokio::test]
async fn recovery_takes_back_live_nodes_fails_dead_ones_and_cleans_up_before_any_start() {
    let one = FakeNode::serve("node-1", "live-1", Some(("acct", 5_000))).await;
    let two = FakeNode::serve("node-2", "live-2", None).await;
    let node = |generation: u64, state: NodeState, endpoint: NodeEndpoint| {
        let mut n = Node::starting(format!("node-{generation}"), generation, 64, 0);
        n.state = state;
        n.endpoint = Some(endpoint);
        n.handle.live_id = Some(format!("live-{generation}"));
        if state != NodeState::Ready {
            n.owner_account = Some("acct".into());
            n.reserved_at_ms = Some(1_000 * generation as i64);
        }
        if state == NodeState::Released {
            n.released_at_ms = Some(9_000);
        }
        n
    };
    let nowhere = NodeEndpoint {
        address: "127.0.0.1".into(),
        port: 1,
    };
    let saved = SavedState {
        next_generation: 6,
        nodes: vec![
            node(1, NodeState::Reserved, one.endpoint.clone()),
            node(2, NodeState::Ready, two.endpoint.clone()),
            node(3, NodeState::Reserved, nowhere.clone()),
            node(4, NodeState::Ready, nowhere.clone()),
            node(5, NodeState::Released, nowhere),
        ],
    };
    let provider = FakeProvider {
        serve_nodes: true,
        alive: Mutex::new(["node-1".into(), "node-2".into()].into()),
        ..FakeProvider::default()
    };
    let store = Arc::new(MemoryState::default());
    let (m, counters) = persistent(2, 5, provider, store.clone());
    m.recover(saved, Shutdown::never()).await;
    m.finish_tasks().await;

    let usage = m.usage().await;
    assert_eq!(
        ids_and_states(&usage),
        vec![
            ("node-1", NodeState::Reserved),
            ("node-3", NodeState::Failed),
            ("node-5", NodeState::Released)
        ]
    );
    assert_eq!(
        usage[0].reserved_at_ms,
        Some(1_000),
        "the saved reserve time: node time stays correct"
    );
    let mut killed = m.provider.killed();
    killed.sort();
    assert_eq!(killed, vec!["node-3", "node-4"]);
    assert_eq!(counters.node_failures(FailureReason::Exited), 2);
    assert_eq!(
        *m.provider.adoption_done.lock().unwrap(),
        vec![(vec!["node-1".to_string(), "node-2".to_string()], 0)],
        "leftovers removed before any start"
    );
    assert_eq!(
        m.provider.started(),
        vec!["node-6"],
        "refilled to --ready-nodes under a new id"
    );
    let latest = store.latest().unwrap();
    assert_eq!(latest.next_generation, 7);
    assert_eq!(
        ids_and_states(&latest.nodes),
        vec![
            ("node-1", NodeState::Reserved),
            ("node-3", NodeState::Failed),
            ("node-5", NodeState::Released),
            ("node-2", NodeState::Ready),
            ("node-6", NodeState::Ready)
        ]
    );
    assert_eq!(
        latest.nodes[4].handle.live_id.as_deref(),
        Some("live-node-6"),
        "a started node's live id is saved"
    );

    m.shutdown().await;
    assert!(
        m.provider.running().is_empty(),
        "{:?}",
        m.provider.running()
    );
    assert_eq!(
        store.latest(),
        Some(SavedState {
            next_generation: 7,
            nodes: Vec::new()
        }),
        "a clean stop leaves an empty state"
    );
}

#[tokio::test]
async fn detach_leaves_the_nodes_running_and_the_saved_state_as_it_is() {
    let provider = FakeProvider {
        serve_nodes: true,
        ..FakeProvider::default()
    };
    let store = Arc::new(MemoryState::default());
    let (m, _) = persistent(2, 2, provider, store.clone());
    m.warm_up(Shutdown::never()).await;
    let saved = store.latest().unwrap();
    assert_eq!(
        ids_and_states(&saved.nodes),
        vec![("node-1", NodeState::Ready), ("node-2", NodeState::Ready)]
    );
    let saves = store.saves();

    m.detach().await;
    assert!(
        m.provider
            .detached
            .load(std::sync::atomic::Ordering::Acquire)
    );
    assert_eq!(m.provider.running().len(), 2, "nothing stopped");
    assert_eq!(store.saves(), saves, "nothing saved");
}

#[tokio::test]
async fn with_a_state_store_a_node_that_cannot_say_who_it_is_is_a_failed_start() {
    let provider = FakeProvider {
        port: closed_port(),
        ..FakeProvider::default()
    };
    let store = Arc::new(MemoryState::default());
    let (m, counters) = persistent(1, 1, provider, store.clone());
    m.warm_up(Shutdown::never()).await;
    assert_eq!(m.provider.killed(), vec!["node-1"]);
    assert_eq!(counters.start_failures(), 1);
    assert_eq!(m.pool().counts().ready, 0);
    assert_eq!(
        store.latest(),
        Some(SavedState {
            next_generation: 2,
            nodes: Vec::new()
        })
    );
    m.shutdown().await;
}
