//! The driver with in-process fake ports and tokio's paused clock.

use std::sync::Mutex as StdMutex;
use std::sync::atomic::AtomicU32;

use super::*;
use crate::core::{AcquireErrorCode, PolicyOptions, policy_by_name};
use crate::model::{
    CONTEST_NODE_BYTES, ContainerUsage, FunctionSpec, MIB, NodeInfo, NodeUsage, StatsSample,
};

#[derive(Default)]
struct Fakes {
    reserves: AtomicU32,
    nodes_left: StdMutex<Option<u32>>,
    creates: AtomicU32,
    removes: AtomicU32,
    stats_calls: AtomicU32,
    create_delay_ms: AtomicU64,
    /// GetStats never answers (a paused node, or a slow one).
    stats_hang: std::sync::atomic::AtomicBool,
    /// The health probe fails (a dead or paused node).
    probe_fails: std::sync::atomic::AtomicBool,
    releases: StdMutex<Vec<String>>,
    /// The nodes the fake resource manager reports reserved (a restart's view).
    reserved: StdMutex<Vec<ReservedNode>>,
    /// What every node describes itself as holding.
    described: StdMutex<Vec<crate::model::AdoptedContainer>>,
    /// The release of these answers "unreachable" this many times first.
    release_unreachable: AtomicU32,
}

#[derive(Clone, Default)]
struct FakeResource(Arc<Fakes>);
#[derive(Clone, Default)]
struct FakeNodes(Arc<Fakes>);

impl ResourcePort for FakeResource {
    async fn reserve_node(&self, _account_id: &str) -> Result<NodeInfo, ReserveError> {
        if let Some(left) = self.0.nodes_left.lock().unwrap().as_mut() {
            if *left == 0 {
                return Err(ReserveError {
                    exhausted: true,
                    message: "no available node can be reserved".into(),
                });
            }
            *left -= 1;
        }
        let n = self.0.reserves.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(NodeInfo {
            id: format!("n{n}").into(),
            address: "127.0.0.1".into(),
            port: 7000 + n as u16,
            capacity_bytes: CONTEST_NODE_BYTES,
        })
    }

    async fn release_node(&self, node_id: &str) -> Result<(), PortError> {
        if self
            .0
            .release_unreachable
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(PortError::unreachable("connection refused"));
        }
        self.0.releases.lock().unwrap().push(node_id.to_string());
        Ok(())
    }

    async fn reserved_nodes(&self) -> Result<Vec<ReservedNode>, PortError> {
        Ok(self.0.reserved.lock().unwrap().clone())
    }
}

impl NodePort for FakeNodes {
    async fn create_container(
        &self,
        _node: &NodeAddr,
        _function: &FunctionSpec,
        _request_id: Option<&str>,
    ) -> Result<Text, PortError> {
        let delay = self.0.create_delay_ms.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let n = self.0.creates.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(format!("c{n}").into())
    }

    async fn remove_container(&self, _node: &NodeAddr, _id: &str) -> Result<(), PortError> {
        self.0.removes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn describe(&self, _node: &NodeAddr) -> Result<NodeDescription, PortError> {
        Ok(NodeDescription {
            owner_account_id: "acct".into(),
            containers: self.0.described.lock().unwrap().clone(),
        })
    }

    async fn probe(&self, _node: &NodeAddr) -> Result<(), PortError> {
        if self.0.probe_fails.load(Ordering::SeqCst) {
            return Err(PortError::unreachable("connection refused"));
        }
        Ok(())
    }

    async fn get_stats(&self, node: &NodeAddr) -> Result<StatsSample, PortError> {
        self.0.stats_calls.fetch_add(1, Ordering::SeqCst);
        if self.0.stats_hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        Ok(StatsSample {
            node_id: node.id.clone(),
            taken_at: 0,
            node: NodeUsage {
                total_memory_bytes: 4096 * MIB,
                memory_usage_bytes: 1024 * MIB,
                available_memory_bytes: 3072 * MIB,
                cpu_pct: 12.0,
            },
            containers: vec![ContainerUsage {
                container_id: "c1".into(),
                total_memory_bytes: 512 * MIB,
                memory_usage_bytes: 40 * MIB,
                cpu_pct: 7.5,
            }],
        })
    }
}

struct TokioClock(tokio::time::Instant);

impl Clock for TokioClock {
    fn now(&self) -> Millis {
        self.0.elapsed().as_millis() as Millis
    }
}

type Svc = Scheduler<FakeResource, FakeNodes, TokioClock>;

fn service(stats_interval_ms: Millis) -> (Svc, Arc<Fakes>) {
    service_with("baseline", stats_interval_ms)
}

fn service_with(policy: &str, stats_interval_ms: Millis) -> (Svc, Arc<Fakes>) {
    let fakes = Arc::new(Fakes::default());
    let policy = policy_by_name(policy, &PolicyOptions::default()).unwrap();
    let svc = Scheduler::new(
        policy,
        FakeResource(fakes.clone()),
        FakeNodes(fakes.clone()),
        TokioClock(faas_common::clock::tokio_instant()),
        ServiceOptions {
            stats_interval_ms,
            ..ServiceOptions::default()
        },
    );
    (svc, fakes)
}

fn acquire(svc: &Svc, id: &str, timeout_ms: Millis) -> Acquire {
    Acquire {
        request_id: id.into(),
        account_id: "acct".into(),
        function: FunctionSpec {
            name: "f".into(),
            memory_bytes: 512 * MIB,
            timeout_ms: 60_000,
            handler: "h".into(),
        },
        deadline: svc.now() + timeout_ms,
    }
}

fn ret(id: &str, container: &Text) -> Return {
    Return {
        request_id: id.into(),
        container_id: container.clone(),
        duration_ns: 1000,
        max_memory_bytes: MIB,
        error: None,
    }
}

#[tokio::test(start_paused = true)]
async fn cold_then_warm_through_the_ports() {
    let (svc, fakes) = service(0);
    let g = svc.acquire(acquire(&svc, "r1", 30_000)).await.unwrap();
    assert!(g.cold);
    assert_eq!((&*g.node_id, g.node_port), ("n1", 7001));
    assert_eq!(fakes.reserves.load(Ordering::SeqCst), 1);
    assert_eq!(fakes.creates.load(Ordering::SeqCst), 1);
    svc.release(ret("r1", &g.container_id)).unwrap();
    let g2 = svc.acquire(acquire(&svc, "r2", 30_000)).await.unwrap();
    assert!(!g2.cold);
    assert_eq!(g2.container_id, g.container_id);
    assert_eq!(fakes.creates.load(Ordering::SeqCst), 1);
    let err = svc.release(ret("r1", &g.container_id)).unwrap_err();
    assert!(
        matches!(
            err,
            ServiceError::Refused(CoreError::AlreadyReturned { .. })
        ),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_timer_rejects_requests_past_their_deadline() {
    let (svc, fakes) = service(0);
    fakes.create_delay_ms.store(3_600_000, Ordering::SeqCst);
    let (trigger, shutdown) = faas_common::shutdown::channel();
    let tasks = svc.start(shutdown);
    let start = faas_common::clock::tokio_instant();
    let err = svc.acquire(acquire(&svc, "r1", 1_500)).await.unwrap_err();
    let ServiceError::Rejected(e) = err else {
        panic!("{err:?}")
    };
    assert_eq!(e.code, AcquireErrorCode::DeadlineExceeded);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(1_500)
            && waited <= Duration::from_millis(1_500 + MAX_TICK_MS),
        "rejected after {waited:?} of virtual time"
    );
    trigger.trigger();
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_fails_waiting_acquires_and_refuses_new_ones() {
    let (svc, fakes) = service(0);
    fakes.create_delay_ms.store(3_600_000, Ordering::SeqCst);
    let waiting = tokio::spawn({
        let svc = svc.clone();
        let a = acquire(&svc, "r1", 30_000);
        async move { svc.acquire(a).await }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(svc.snapshot().waiting, 1);
    svc.shutdown();
    assert_eq!(waiting.await.unwrap(), Err(ServiceError::ShuttingDown));
    assert_eq!(
        svc.acquire(acquire(&svc, "r2", 30_000)).await,
        Err(ServiceError::ShuttingDown)
    );
    assert_eq!(
        ServiceError::ShuttingDown.to_string(),
        "scheduler is shutting down"
    );
}

#[tokio::test(start_paused = true)]
async fn resource_exhausted_passes_through() {
    let (svc, fakes) = service(0);
    *fakes.nodes_left.lock().unwrap() = Some(0);
    let err = svc.acquire(acquire(&svc, "r1", 30_000)).await.unwrap_err();
    let ServiceError::Rejected(e) = err else {
        panic!("{err:?}")
    };
    assert_eq!(e.code, AcquireErrorCode::ResourceExhausted);
    assert_eq!(e.message, "no available node can be reserved");
}

#[tokio::test(start_paused = true)]
async fn a_dropped_acquire_is_cancelled_and_its_container_serves_the_next() {
    let (svc, fakes) = service(0);
    fakes.create_delay_ms.store(500, Ordering::SeqCst);
    let gave_up = tokio::time::timeout(
        Duration::from_millis(100),
        svc.acquire(acquire(&svc, "r1", 30_000)),
    )
    .await;
    assert!(gave_up.is_err(), "the create takes 500 ms");
    assert_eq!(
        svc.snapshot().waiting,
        0,
        "the dropped request stopped waiting"
    );
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let snap = svc.snapshot();
    assert_eq!((snap.containers_ready, snap.leased), (1, 0));
    let g = svc.acquire(acquire(&svc, "r2", 30_000)).await.unwrap();
    assert!(!g.cold, "the container created for r1 is reused");
    assert_eq!(fakes.creates.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn the_stats_poller_feeds_samples_of_every_node() {
    let (svc, fakes) = service(1_000);
    let (trigger, shutdown) = faas_common::shutdown::channel();
    let tasks = svc.start(shutdown);
    let g = svc.acquire(acquire(&svc, "r1", 30_000)).await.unwrap();
    assert_eq!(&*g.container_id, "c1");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert!(fakes.stats_calls.load(Ordering::SeqCst) >= 1);
    svc.inspect(|p| {
        let store = &p.state().store;
        let n = store.node(store.node_by_id("n1").unwrap()).unwrap();
        assert_eq!(n.usage.unwrap().cpu_pct, 12.0);
        let f = store
            .function(store.function_by_name("f").unwrap())
            .unwrap();
        assert_eq!(f.profile.peak_memory_bytes, 40 * MIB);
    });
    trigger.trigger();
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_dead_container_is_removed_through_the_node_port() {
    let (svc, fakes) = service(0);
    let g = svc.acquire(acquire(&svc, "r1", 30_000)).await.unwrap();
    let mut r = ret("r1", &g.container_id);
    r.error = Some(crate::model::FunctionError {
        code: "OutOfMemory".into(),
        message: "killed".into(),
    });
    svc.release(r).unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(fakes.removes.load(Ordering::SeqCst), 1);
    assert_eq!(svc.snapshot().containers_dead, 0, "forgotten once removed");
}

#[tokio::test(start_paused = true)]
async fn a_silent_node_is_lost_and_released_but_slow_stats_alone_are_fine() {
    let (svc, fakes) = service(1_000);
    let (trigger, shutdown) = faas_common::shutdown::channel();
    let tasks = svc.start(shutdown);
    svc.acquire(acquire(&svc, "r1", 30_000)).await.unwrap();
    // Stats never answer, but the node answers its probe: it is alive.
    fakes.stats_hang.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(10_000)).await;
    let snap = svc.snapshot();
    assert_eq!((snap.nodes_suspect, snap.nodes_lost), (0, 0));
    // Now the probe fails too: suspect at the next poll, lost 3 s later, released.
    fakes.probe_fails.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(svc.snapshot().nodes_suspect, 1);
    tokio::time::sleep(Duration::from_millis(5_000)).await;
    let snap = svc.snapshot();
    assert_eq!((snap.nodes_suspect, snap.nodes_lost), (0, 1));
    assert_eq!(*fakes.releases.lock().unwrap(), vec!["n1".to_string()]);
    trigger.trigger();
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_restarted_scheduler_adopts_the_reserved_nodes_and_their_containers() {
    let (svc, fakes) = service(0);
    *fakes.reserved.lock().unwrap() = vec![ReservedNode {
        info: NodeInfo {
            id: "n7".into(),
            address: "127.0.0.1".into(),
            port: 7007,
            capacity_bytes: CONTEST_NODE_BYTES,
        },
        reserved_at_wall_ms: 0,
    }];
    *fakes.described.lock().unwrap() = vec![crate::model::AdoptedContainer {
        id: "kept".into(),
        function: FunctionSpec {
            name: "f".into(),
            memory_bytes: 512 * MIB,
            timeout_ms: 60_000,
            handler: "h".into(),
        },
        in_flight: 0,
        dead: false,
    }];
    assert_eq!(svc.reconcile().await.unwrap(), 1);
    assert_eq!(svc.reconcile().await.unwrap(), 0, "adopted once");
    let g = svc.acquire(acquire(&svc, "r1", 30_000)).await.unwrap();
    assert_eq!(
        (&*g.container_id, &*g.node_id, g.cold),
        ("kept", "n7", false)
    );
    assert_eq!(
        fakes.reserves.load(Ordering::SeqCst),
        0,
        "no new node needed"
    );
    assert_eq!(fakes.creates.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn a_release_waits_for_the_resource_manager_and_a_released_node_is_never_adopted() {
    let (svc, fakes) = service(0);
    svc.acquire(acquire(&svc, "r1", 30_000)).await.unwrap();
    // The resource manager is down for the first two tries, then answers.
    fakes.release_unreachable.store(2, Ordering::SeqCst);
    let id: Text = "n1".into();
    let done = svc.release_until_done(&id).await;
    assert!(done);
    assert_eq!(*fakes.releases.lock().unwrap(), vec!["n1".to_string()]);
    // The resource manager still reports it reserved for a moment: not adopted again.
    *fakes.reserved.lock().unwrap() = vec![ReservedNode {
        info: NodeInfo {
            id: "n1".into(),
            address: "127.0.0.1".into(),
            port: 7001,
            capacity_bytes: CONTEST_NODE_BYTES,
        },
        reserved_at_wall_ms: 0,
    }];
    svc.feed(Event::NodeReleased { node_id: id }).unwrap();
    assert_eq!(svc.reconcile().await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_hold_through_the_admin_api_keeps_an_idle_container_past_its_keep_alive() {
    use faas_proto::scheduler_admin::HoldFunctionRequest;
    use faas_proto::scheduler_admin::scheduler_admin_server::SchedulerAdmin;

    let (svc, fakes) = service_with(crate::policies::keepalive::NAME, 0);
    let (trigger, shutdown) = faas_common::shutdown::channel();
    let tasks = svc.start(shutdown);
    let admin = crate::api::SchedulerAdminApi::new(svc.clone());
    let g = svc.acquire(acquire(&svc, "r1", 30_000)).await.unwrap();
    svc.release(ret("r1", &g.container_id)).unwrap();
    let reply = admin
        .hold_function(tonic::Request::new(HoldFunctionRequest {
            function_name: "f".into(),
            hold_ms: 30 * 60_000,
        }))
        .await
        .unwrap();
    assert_eq!(reply.into_inner().containers, 1);
    // Past the 10-minute keep-alive, within the hold.
    tokio::time::sleep(Duration::from_secs(25 * 60)).await;
    assert_eq!(fakes.removes.load(Ordering::SeqCst), 0, "held");
    tokio::time::sleep(Duration::from_secs(6 * 60)).await;
    assert_eq!(
        fakes.removes.load(Ordering::SeqCst),
        1,
        "removed once the hold ended"
    );
    trigger.trigger();
    for t in tasks {
        t.await.unwrap();
    }
}
