//! The real scheduler server on 127.0.0.1:0 against in-test fake resource manager and node
//! service gRPC servers. With a cluster token ([`start_with`]) the fakes sit behind the
//! same gate as the real components, so a call the scheduler makes without the token fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use faas_common::token::{AuthChannel, ClusterAuth, ClusterGate, ClusterToken, TokenArgs};
use faas_proto::nodeservoceproto::node_service_server::{NodeService, NodeServiceServer};
use faas_proto::nodeservoceproto::{
    CreateContainerReply, CreateContainerRequest, GetStatsReply, GetStatsRequest,
    InvokeFunctionRequest, RemoveContainerReply, RemoveContainerRequest, ReserveReply,
    ReserveRequest,
};
use faas_proto::resourcemanagerproto::resource_manager_server::{
    ResourceManager, ResourceManagerServer,
};
use faas_proto::resourcemanagerproto::{
    GetNodesUsageReply, GetNodesUsageRequest, NodeDesc, ReleaseNodeReply, ReleaseNodeRequest,
    ReserveNodeReply, ReserveNodeRequest,
};
use faas_proto::scheduler_admin::scheduler_admin_client::SchedulerAdminClient;
use faas_proto::scheduler_admin::{
    HoldFunctionRequest, ListNodesRequest, NodeEntry, RetireFunctionRequest,
};
use faas_proto::schedulerproto::scheduler_client::SchedulerClient;
use faas_proto::schedulerproto::{
    AcquireContainerReply, AcquireContainerRequest, FunctionConfig, ReturnContainerRequest,
};
use faas_testkit::InvokeStream;
use tokio::net::TcpListener;
use tonic::{Code, Request, Response, Status};

#[derive(Default)]
struct Calls {
    reserves: AtomicU32,
    creates: AtomicU32,
    removes: AtomicU32,
    hang_creates: AtomicBool,
    create_hanging: tokio::sync::Notify,
    accounts: std::sync::Mutex<Vec<String>>,
}

struct FakeRm {
    calls: Arc<Calls>,
    node_port: u16,
}

#[tonic::async_trait]
impl ResourceManager for FakeRm {
    async fn reserve_node(
        &self,
        request: Request<ReserveNodeRequest>,
    ) -> Result<Response<ReserveNodeReply>, Status> {
        let n = self.calls.reserves.fetch_add(1, Ordering::SeqCst) + 1;
        self.calls
            .accounts
            .lock()
            .unwrap()
            .push(request.into_inner().account_id);
        Ok(Response::new(ReserveNodeReply {
            node: Some(NodeDesc {
                id: format!("node-{n}"),
                address: "127.0.0.1".into(),
                node_service_port: i64::from(self.node_port),
                memory_in_bytes: 3072 << 20,
                ..NodeDesc::default()
            }),
        }))
    }

    async fn release_node(
        &self,
        _request: Request<ReleaseNodeRequest>,
    ) -> Result<Response<ReleaseNodeReply>, Status> {
        Ok(Response::new(ReleaseNodeReply {}))
    }

    async fn get_nodes_usage(
        &self,
        _request: Request<GetNodesUsageRequest>,
    ) -> Result<Response<GetNodesUsageReply>, Status> {
        Ok(Response::new(GetNodesUsageReply::default()))
    }
}

struct FakeNode {
    calls: Arc<Calls>,
}

#[tonic::async_trait]
impl NodeService for FakeNode {
    async fn reserve(&self, _r: Request<ReserveRequest>) -> Result<Response<ReserveReply>, Status> {
        Ok(Response::new(ReserveReply {}))
    }

    async fn create_container(
        &self,
        request: Request<CreateContainerRequest>,
    ) -> Result<Response<CreateContainerReply>, Status> {
        let meta = request
            .into_inner()
            .function_meta
            .ok_or_else(|| Status::invalid_argument("no function meta"))?;
        assert_eq!(meta.memory_in_bytes, 512 << 20);
        if self.calls.hang_creates.load(Ordering::SeqCst) {
            self.calls.create_hanging.notify_one();
            std::future::pending::<()>().await;
        }
        let n = self.calls.creates.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(Response::new(CreateContainerReply {
            container_id: format!("{}-container-{n}", meta.function_name),
        }))
    }

    async fn remove_container(
        &self,
        _r: Request<RemoveContainerRequest>,
    ) -> Result<Response<RemoveContainerReply>, Status> {
        self.calls.removes.fetch_add(1, Ordering::SeqCst);
        Ok(Response::new(RemoveContainerReply {}))
    }

    type InvokeFunctionStream = InvokeStream;

    async fn invoke_function(
        &self,
        _r: Request<InvokeFunctionRequest>,
    ) -> Result<Response<Self::InvokeFunctionStream>, Status> {
        Err(Status::unimplemented("the scheduler never invokes"))
    }

    async fn get_stats(
        &self,
        _r: Request<GetStatsRequest>,
    ) -> Result<Response<GetStatsReply>, Status> {
        Ok(Response::new(GetStatsReply::default()))
    }
}

struct Platform {
    /// Clients with the platform's cluster token, if any.
    client: SchedulerClient<AuthChannel>,
    admin: SchedulerAdminClient<AuthChannel>,
    /// A channel without any token, as a stranger's.
    channel: tonic::transport::Channel,
    calls: Arc<Calls>,
    node_port: u16,
    trigger: faas_common::shutdown::Trigger,
    scheduler: tokio::task::JoinHandle<Result<(), faas_scheduler::Error>>,
}

async fn start() -> Platform {
    start_with(None).await
}

/// The platform with `token` required by the scheduler and the fakes alike.
async fn start_with(token: Option<&str>) -> Platform {
    let token: Option<ClusterToken> = token.map(|t| t.parse().unwrap());
    let gate = ClusterGate::new("fake", token.clone());
    let auth = ClusterAuth::new(token.as_ref());
    let calls = Arc::new(Calls::default());
    let (trigger, shutdown) = faas_common::shutdown::channel();

    let (node_addr, _) = faas_testkit::serve(
        tonic::transport::Server::builder().add_service(gate.guard(NodeServiceServer::new(
            FakeNode {
                calls: calls.clone(),
            },
        ))),
        shutdown.clone().wait(),
    )
    .await;
    let node_port = node_addr.port();

    let (rm_addr, _) = faas_testkit::serve(
        tonic::transport::Server::builder().add_service(gate.guard(ResourceManagerServer::new(
            FakeRm {
                calls: calls.clone(),
                node_port,
            },
        ))),
        shutdown.clone().wait(),
    )
    .await;

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = faas_scheduler::Config {
        cluster: TokenArgs::with(token),
        ..faas_scheduler::Config::local(rm_addr.to_string())
    };
    let scheduler = tokio::spawn(faas_scheduler::run(listener, config, shutdown));
    let channel = faas_common::serve::connect(&addr.to_string())
        .await
        .unwrap();
    Platform {
        admin: SchedulerAdminClient::new(auth.channel(channel.clone())),
        client: SchedulerClient::new(auth.channel(channel.clone())),
        channel,
        calls,
        node_port,
        trigger,
        scheduler,
    }
}

impl Platform {
    /// Runs call `r1` of `hello` and returns it: `hello` then has one idle container.
    async fn one_idle_container(&mut self) -> AcquireContainerReply {
        let first = self
            .client
            .acquire_container(acquire("r1"))
            .await
            .unwrap()
            .into_inner();
        self.client
            .return_container(give_back("r1", &first.container_id))
            .await
            .unwrap();
        first
    }
}

fn acquire(id: &str) -> Request<AcquireContainerRequest> {
    let mut r = Request::new(AcquireContainerRequest {
        request_id: id.into(),
        account_id: "account-1".into(),
        function_name: "hello".into(),
        function_config: Some(FunctionConfig {
            timeout_in_ms: 60_000,
            memory_in_bytes: 512 << 20,
            handler: "index.handler".into(),
        }),
    });
    r.set_timeout(Duration::from_secs(30));
    r
}

fn cold(reply: &Response<AcquireContainerReply>) -> String {
    reply
        .metadata()
        .get(faas_proto::meta::COLD_START)
        .expect("cold-start metadata")
        .to_str()
        .unwrap()
        .to_string()
}

fn give_back(id: &str, container: &str) -> ReturnContainerRequest {
    ReturnContainerRequest {
        request_id: id.into(),
        container_id: container.into(),
        duration_in_nanos: 2_000_000,
        max_memory_usage_in_bytes: 3 << 20,
        ..ReturnContainerRequest::default()
    }
}

#[tokio::test]
async fn invalid_acquires_are_refused_with_the_contest_messages() {
    let mut p = start().await;
    let mut r = acquire("r1");
    r.get_mut().account_id.clear();
    let s = p.client.acquire_container(r).await.unwrap_err();
    assert_eq!(
        (s.code(), s.message()),
        (Code::InvalidArgument, "account ID cannot be empty")
    );
    let mut r = acquire("r1");
    r.get_mut().function_config = None;
    let s = p.client.acquire_container(r).await.unwrap_err();
    assert_eq!(
        (s.code(), s.message()),
        (Code::InvalidArgument, "function config cannot be nil")
    );
    assert_eq!(p.calls.reserves.load(Ordering::SeqCst), 0);
    p.trigger.trigger();
    p.scheduler.await.unwrap().unwrap();
}

#[tokio::test]
async fn cold_then_warm_then_return_errors() {
    let mut p = start().await;
    let reply = p.client.acquire_container(acquire("r1")).await.unwrap();
    assert_eq!(cold(&reply), "true");
    let first = reply.into_inner();
    assert_eq!(first.node_address, "127.0.0.1");
    assert_eq!(first.node_service_port, i64::from(p.node_port));
    assert_eq!(first.node_id, "node-1");
    assert_eq!(first.container_id, "hello-container-1");
    assert_eq!(p.calls.reserves.load(Ordering::SeqCst), 1);
    assert_eq!(p.calls.creates.load(Ordering::SeqCst), 1);
    assert_eq!(
        *p.calls.accounts.lock().unwrap(),
        vec!["account-1".to_string()]
    );

    p.client
        .return_container(give_back("r1", &first.container_id))
        .await
        .unwrap();
    let reply = p.client.acquire_container(acquire("r2")).await.unwrap();
    assert_eq!(cold(&reply), "false");
    assert_eq!(reply.into_inner().container_id, first.container_id);
    assert_eq!(
        p.calls.creates.load(Ordering::SeqCst),
        1,
        "no second create"
    );

    let s = p
        .client
        .return_container(give_back("r9", "no-such-container"))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::NotFound, "{s:?}");
    assert!(s.message().contains("no-such-container"), "{}", s.message());

    let s = p
        .client
        .return_container(give_back("r1", &first.container_id))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
    assert_eq!(s.message(), "request r1 was already returned");

    p.trigger.trigger();
    p.scheduler.await.unwrap().unwrap();
}

#[tokio::test]
async fn shutdown_answers_waiting_acquires_with_unavailable() {
    let p = start().await;
    p.calls.hang_creates.store(true, Ordering::SeqCst);
    let mut client = p.client.clone();
    let waiting = tokio::spawn(async move { client.acquire_container(acquire("r1")).await });
    // Once the create is in flight, the request waits inside the core.
    p.calls.create_hanging.notified().await;
    assert_eq!(p.calls.reserves.load(Ordering::SeqCst), 1);
    p.trigger.trigger();
    let s = waiting.await.unwrap().unwrap_err();
    assert_eq!(
        (s.code(), s.message()),
        (Code::Unavailable, "scheduler is shutting down")
    );
    p.scheduler.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_retired_function_drains_and_its_next_call_is_cold() {
    let mut p = start().await;
    let first = p.one_idle_container().await;
    p.admin
        .retire_function(RetireFunctionRequest {
            function_name: "hello".into(),
        })
        .await
        .unwrap();
    let deadline = faas_common::clock::tokio_instant() + Duration::from_secs(10);
    while p.calls.removes.load(Ordering::SeqCst) == 0 {
        assert!(
            faas_common::clock::tokio_instant() < deadline,
            "no RemoveContainer"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let reply = p.client.acquire_container(acquire("r2")).await.unwrap();
    assert_eq!(cold(&reply), "true");
    assert_ne!(reply.into_inner().container_id, first.container_id);
    // Unknown functions are fine; empty or oversized names are not.
    p.admin
        .retire_function(RetireFunctionRequest {
            function_name: "never-called".into(),
        })
        .await
        .unwrap();
    for name in [String::new(), "x".repeat(100_000)] {
        let s = p
            .admin
            .retire_function(RetireFunctionRequest {
                function_name: name,
            })
            .await
            .unwrap_err();
        assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
        assert!(s.message().len() < 200, "{}", s.message());
    }
    p.trigger.trigger();
    p.scheduler.await.unwrap().unwrap();
}

fn hold(function_name: &str, hold_ms: i64) -> HoldFunctionRequest {
    HoldFunctionRequest {
        function_name: function_name.into(),
        hold_ms,
    }
}

#[tokio::test]
async fn a_hold_answers_with_the_functions_containers_and_refuses_absurd_input() {
    let mut p = start().await;
    let first = p.one_idle_container().await;
    let held = p.admin.hold_function(hold("hello", 600_000)).await.unwrap();
    assert_eq!(held.into_inner().containers, 1);
    // A later hold replaces it, 0 ends it; a function never seen is fine (held for later).
    for ms in [86_400_000, 0] {
        let reply = p.admin.hold_function(hold("hello", ms)).await.unwrap();
        assert_eq!(reply.into_inner().containers, 1, "hold_ms {ms}");
    }
    let unknown = p.admin.hold_function(hold("never-called", 1_000)).await;
    assert_eq!(unknown.unwrap().into_inner().containers, 0);
    // The held container still serves warm.
    let again = p.client.acquire_container(acquire("r2")).await.unwrap();
    assert_eq!(cold(&again), "false");
    assert_eq!(again.into_inner().container_id, first.container_id);
    let refused = [
        (hold("", 1_000), "function_name"),
        (hold(&"x".repeat(100_000), 1_000), "function_name"),
        (hold("hello", -1), "hold_ms"),
        (hold("hello", 86_400_001), "24 h"),
        (hold("hello", i64::MAX), "24 h"),
    ];
    for (request, says) in refused {
        let s = p.admin.hold_function(request).await.unwrap_err();
        assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
        assert!(s.message().contains(says), "{}", s.message());
        assert!(s.message().len() < 200, "{}", s.message());
    }
    p.trigger.trigger();
    p.scheduler.await.unwrap().unwrap();
}

#[tokio::test]
async fn list_nodes_names_each_reserved_node_with_its_node_service_address() {
    let mut p = start().await;
    let first = p.one_idle_container().await;
    let nodes = p
        .admin
        .list_nodes(ListNodesRequest {})
        .await
        .unwrap()
        .into_inner()
        .nodes;
    assert_eq!(p.calls.reserves.load(Ordering::SeqCst), 1);
    assert_eq!(
        nodes,
        vec![NodeEntry {
            node_id: first.node_id,
            address: format!("127.0.0.1:{}", p.node_port),
        }]
    );
    p.trigger.trigger();
    p.scheduler.await.unwrap().unwrap();
}

#[tokio::test]
async fn with_a_cluster_token_only_the_platform_is_served() {
    const TOKEN: &str = "scheduler-test-token-0123456789";
    let mut p = start_with(Some(TOKEN)).await;

    let mut stranger = SchedulerClient::new(p.channel.clone());
    let s = stranger.acquire_container(acquire("s1")).await.unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");
    assert!(
        s.message()
            .starts_with("this scheduler requires the cluster token"),
        "{s:?}"
    );
    let s = SchedulerAdminClient::new(p.channel.clone())
        .list_nodes(ListNodesRequest {})
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");
    let wrong = ClusterAuth::new(Some(&"a-wrong-token-0123456789".parse().unwrap()));
    let s = SchedulerClient::new(wrong.channel(p.channel.clone()))
        .return_container(give_back("s1", "hello-container-1"))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");
    assert!(s.message().contains("is wrong"), "{s:?}");
    assert_eq!(
        p.calls.reserves.load(Ordering::SeqCst),
        0,
        "a stranger's acquire reserved nothing"
    );

    // The platform is served: the scheduler's own calls to the resource manager and the node
    // (both behind the gate) carried the token.
    let held = p
        .client
        .acquire_container(acquire("r1"))
        .await
        .expect("an acquire with the token")
        .into_inner();
    assert_eq!(p.calls.reserves.load(Ordering::SeqCst), 1);
    assert_eq!(p.calls.creates.load(Ordering::SeqCst), 1);

    // Only leases it granted come back: a made-up request on a busy container is refused
    // and the lease stays held.
    let s = p
        .client
        .return_container(give_back("made-up", &held.container_id))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::NotFound, "{s:?}");
    p.client
        .return_container(give_back("r1", &held.container_id))
        .await
        .expect("the holder returns its lease");

    let health = tonic_health::pb::health_client::HealthClient::new(p.channel.clone())
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health needs no token");
    assert_eq!(
        health.into_inner().status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    p.trigger.trigger();
    p.scheduler.await.unwrap().unwrap();
}
