// The fakes the API server's integration tests run it against (included by each test file):
// Scheduler, SchedulerAdmin and NodeService servers on 127.0.0.1:0 that record every call.
// The SchedulerAdmin lists the nodes a test gives it (`Setup::listed_nodes`). With
// `Setup::http` the API server also serves its HTTP gateway on 127.0.0.1:0
// (`Platform::http`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use faas_apiserver::Config;
use faas_common::shutdown::{self, Trigger};
use faas_proto::admin::{self, admin_client::AdminClient};
use faas_proto::apiserverproto::{self, InvokeFunctionRequest, api_server_client::ApiServerClient};
use faas_proto::invoke::invocations_client::InvocationsClient;
use faas_proto::meta;
use faas_proto::nodeservoceproto::{
    self as node, InvokeFunctionReply,
    invoke_function_reply::{Footer, Header},
    node_service_server::{NodeService, NodeServiceServer},
};
use faas_proto::scheduler_admin::scheduler_admin_server::{SchedulerAdmin, SchedulerAdminServer};
use faas_proto::scheduler_admin::{
    HoldFunctionReply, HoldFunctionRequest, ListNodesReply, ListNodesRequest, NodeEntry,
    RetireFunctionReply, RetireFunctionRequest,
};
use faas_proto::schedulerproto::{
    AcquireContainerReply, AcquireContainerRequest, ReturnContainerReply, ReturnContainerRequest,
    scheduler_server::{Scheduler, SchedulerServer},
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

/// One call a fake received, in the order they arrived.
#[derive(Clone, Debug)]
enum Call {
    Acquire(AcquireContainerRequest),
    Invoke(node::InvokeFunctionRequest),
    Return(ReturnContainerRequest),
    Retire(String),
    Hold(String, i64),
}

type Log = Arc<Mutex<Vec<Call>>>;

struct FakeScheduler {
    log: Log,
    /// The port of the node each acquire hands out, in turn; the last one repeats.
    node_ports: Vec<i64>,
    refuse: Option<(Code, &'static str)>,
    /// With `refuse`: refuse only this many acquires, then hand out containers (0: all).
    refuse_first: usize,
    /// Never answer an acquire.
    hang: bool,
    /// The `grpc-timeout` of each acquire.
    timeouts: Arc<Mutex<Vec<Option<String>>>>,
}

/// The scheduler's platform API: records which functions the API server retires, and lists
/// the nodes it was given.
struct FakeSchedulerAdmin {
    log: Log,
    nodes: Vec<NodeEntry>,
}

#[tonic::async_trait]
impl SchedulerAdmin for FakeSchedulerAdmin {
    async fn list_nodes(
        &self,
        _: Request<ListNodesRequest>,
    ) -> Result<Response<ListNodesReply>, Status> {
        Ok(Response::new(ListNodesReply {
            nodes: self.nodes.clone(),
        }))
    }

    async fn retire_function(
        &self,
        request: Request<RetireFunctionRequest>,
    ) -> Result<Response<RetireFunctionReply>, Status> {
        let name = request.into_inner().function_name;
        self.log.lock().unwrap().push(Call::Retire(name));
        Ok(Response::new(RetireFunctionReply {}))
    }

    async fn hold_function(
        &self,
        request: Request<HoldFunctionRequest>,
    ) -> Result<Response<HoldFunctionReply>, Status> {
        let r = request.into_inner();
        self.log
            .lock()
            .unwrap()
            .push(Call::Hold(r.function_name, r.hold_ms));
        Ok(Response::new(HoldFunctionReply { containers: 1 }))
    }
}

#[tonic::async_trait]
impl Scheduler for FakeScheduler {
    async fn acquire_container(
        &self,
        request: Request<AcquireContainerRequest>,
    ) -> Result<Response<AcquireContainerReply>, Status> {
        self.timeouts.lock().unwrap().push(
            request
                .metadata()
                .get("grpc-timeout")
                .map(|v| v.to_str().unwrap().to_string()),
        );
        let n = {
            let mut log = self.log.lock().unwrap();
            log.push(Call::Acquire(request.into_inner()));
            log.iter().filter(|c| matches!(c, Call::Acquire(_))).count() - 1
        };
        if self.hang {
            std::future::pending::<()>().await;
        }
        if let Some((code, message)) = self.refuse
            && (self.refuse_first == 0 || n < self.refuse_first)
        {
            return Err(Status::new(code, message));
        }
        let i = n.min(self.node_ports.len() - 1);
        let mut response = Response::new(AcquireContainerReply {
            node_id: format!("node-{}", 7 + i),
            node_address: "127.0.0.1".into(),
            node_service_port: self.node_ports[i],
            container_id: format!("container-{}", 42 + i),
        });
        response
            .metadata_mut()
            .insert(meta::COLD_START, "true".parse().unwrap());
        Ok(response)
    }

    async fn return_container(
        &self,
        request: Request<ReturnContainerRequest>,
    ) -> Result<Response<ReturnContainerReply>, Status> {
        self.log
            .lock()
            .unwrap()
            .push(Call::Return(request.into_inner()));
        Ok(Response::new(ReturnContainerReply {}))
    }
}

#[derive(Clone, Copy)]
enum NodeBehaviour {
    /// Header, two body chunks, footer.
    Succeed,
    /// The function fails: header error and footer "Code: message".
    FunctionError,
    /// The function times out.
    Timeout,
    /// The function cannot read the event.
    #[allow(dead_code)]
    BadEvent,
    /// The container exits during the call (the function may have run).
    Exited,
    /// Refuses before delivery with this status and `x-faas-error-code`.
    Refuse(Code, &'static str),
    /// Never answers (a stopped node).
    Hang,
    /// Succeeds after this many ms (the call is logged as it arrives).
    Slow(u64),
    /// Sends the header, then nothing more (a node stopped mid-call).
    HangAfterHeader,
    /// Nothing listens on the node's port.
    Down,
}

struct FakeNode {
    log: Log,
    behaviour: NodeBehaviour,
}

use faas_testkit::InvokeStream as ReplyStream;

#[tonic::async_trait]
impl NodeService for FakeNode {
    type InvokeFunctionStream = ReplyStream;

    async fn reserve(
        &self,
        _: Request<node::ReserveRequest>,
    ) -> Result<Response<node::ReserveReply>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn create_container(
        &self,
        _: Request<node::CreateContainerRequest>,
    ) -> Result<Response<node::CreateContainerReply>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn remove_container(
        &self,
        _: Request<node::RemoveContainerRequest>,
    ) -> Result<Response<node::RemoveContainerReply>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn get_stats(
        &self,
        _: Request<node::GetStatsRequest>,
    ) -> Result<Response<node::GetStatsReply>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn invoke_function(
        &self,
        request: Request<node::InvokeFunctionRequest>,
    ) -> Result<Response<ReplyStream>, Status> {
        self.log
            .lock()
            .unwrap()
            .push(Call::Invoke(request.into_inner()));
        if let NodeBehaviour::Refuse(code, error_code) = self.behaviour {
            let mut map = tonic::metadata::MetadataMap::new();
            map.insert(meta::ERROR_CODE, error_code.parse().unwrap());
            return Err(Status::with_metadata(code, "refused by the fake", map));
        }
        if let NodeBehaviour::Hang = self.behaviour {
            std::future::pending::<()>().await;
        }
        if let NodeBehaviour::Slow(ms) = self.behaviour {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let header = |error: &str| InvokeFunctionReply {
            header: Some(Header {
                error: error.as_bytes().to_vec(),
                max_mem_usage_in_bytes: 777,
                ..Default::default()
            }),
            ..Default::default()
        };
        let body = |b: &str| InvokeFunctionReply {
            body: b.as_bytes().to_vec(),
            ..Default::default()
        };
        let footer = |error: &str| InvokeFunctionReply {
            footer: Some(Footer {
                duration_in_nanos: 4242,
                error: error.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let replies = match self.behaviour {
            NodeBehaviour::Succeed | NodeBehaviour::Slow(_) => {
                vec![header(""), body("hello "), body("world"), footer("")]
            }
            NodeBehaviour::FunctionError => vec![
                header("division by zero"),
                footer("FunctionError: division by zero"),
            ],
            // As the real node service reports it: the code also in `invoke_exception`.
            NodeBehaviour::Timeout => {
                let text = "Timeout: ran past its 10000 ms timeout";
                let mut last = footer(text);
                last.footer.as_mut().unwrap().invoke_exception = "Timeout".into();
                vec![header(text), last]
            }
            NodeBehaviour::BadEvent => {
                let text = "BadEvent: the event is not JSON";
                let mut last = footer(text);
                last.footer.as_mut().unwrap().invoke_exception = "BadEvent".into();
                vec![header(text), last]
            }
            NodeBehaviour::Exited => {
                let text = "ContainerExited: the container process exited (signal 9)";
                let mut last = footer(text);
                last.footer.as_mut().unwrap().invoke_exception = "ContainerExited".into();
                vec![header(text), last]
            }
            NodeBehaviour::HangAfterHeader => {
                use tokio_stream::StreamExt;
                let stream = tokio_stream::iter([Ok::<_, Status>(header(""))])
                    .chain(tokio_stream::pending());
                return Ok(Response::new(Box::pin(stream) as ReplyStream));
            }
            NodeBehaviour::Refuse(..) | NodeBehaviour::Hang | NodeBehaviour::Down => {
                unreachable!("handled above")
            }
        };
        let stream = tokio_stream::iter(replies.into_iter().map(Ok));
        Ok(Response::new(Box::pin(stream) as ReplyStream))
    }
}

/// The API server and its fakes, stopped when dropped.
struct Platform {
    log: Log,
    acquire_timeouts: Arc<Mutex<Vec<Option<String>>>>,
    api: ApiServerClient<Channel>,
    admin: AdminClient<Channel>,
    #[allow(dead_code)]
    invocations: InvocationsClient<Channel>,
    addr: String,
    /// The HTTP gateway's address, with `Setup::http`.
    #[allow(dead_code)]
    http: Option<String>,
    trigger: Trigger,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Platform {
    fn drop(&mut self) {
        self.trigger.trigger();
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Platform {
    fn calls(&self) -> Vec<Call> {
        self.log.lock().unwrap().clone()
    }

    fn acquires(&self) -> usize {
        self.calls()
            .iter()
            .filter(|c| matches!(c, Call::Acquire(_)))
            .count()
    }

    fn returns(&self) -> Vec<ReturnContainerRequest> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Return(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    /// The contest's `ListFunctions`.
    async fn list(&mut self) -> apiserverproto::ListFunctionsReply {
        self.api
            .list_functions(apiserverproto::ListFunctionsRequest {})
            .await
            .unwrap()
            .into_inner()
    }

    /// Deploys `spec` through the admin API; the record the server answers.
    async fn deploy(&mut self, spec: admin::FunctionSpec) -> Result<admin::FunctionRecord, Status> {
        self.admin
            .deploy_function(admin::DeployFunctionRequest {
                function: Some(spec),
            })
            .await
            .map(|r| r.into_inner().function.unwrap_or_default())
    }

    /// Invokes `function` (account `acct`, an empty event), expecting it to fail.
    async fn invoke_err(&mut self, function: &str) -> Status {
        self.api
            .invoke_function(invoke(function, "acct", b""))
            .await
            .unwrap_err()
    }

    /// The asynchronous call `id` as `GetInvocation` answers it.
    #[allow(dead_code)]
    async fn get(&mut self, id: &str) -> faas_proto::invoke::GetInvocationReply {
        self.invocations
            .get_invocation(faas_proto::invoke::GetInvocationRequest {
                invocation_id: id.into(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    async fn stop(mut self) {
        self.trigger.trigger();
        let tasks = std::mem::take(&mut self.tasks);
        for t in tasks {
            t.await.unwrap();
        }
    }
}

struct Setup {
    /// The nodes the scheduler hands out, one per acquire; the last one repeats.
    nodes: Vec<NodeBehaviour>,
    refuse: Option<(Code, &'static str)>,
    /// With `refuse`: only the first this many acquires are refused (0: all).
    refuse_first: usize,
    hang_acquire: bool,
    /// What the scheduler's `ListNodes` answers.
    listed_nodes: Vec<NodeEntry>,
    config: Config,
    /// Serve the HTTP gateway too, on 127.0.0.1:0.
    http: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            nodes: vec![NodeBehaviour::Succeed],
            refuse: None,
            refuse_first: 0,
            hang_acquire: false,
            listed_nodes: Vec::new(),
            config: Config::default(),
            http: false,
        }
    }
}

impl Setup {
    /// The scheduler hands out these nodes, one per acquire; the last one repeats.
    fn nodes(nodes: &[NodeBehaviour]) -> Setup {
        Setup {
            nodes: nodes.to_vec(),
            ..Setup::default()
        }
    }

    fn node(behaviour: NodeBehaviour) -> Setup {
        Setup::nodes(&[behaviour])
    }

    /// Every acquire is refused with `code` and `message`.
    fn refuse(code: Code, message: &'static str) -> Setup {
        Setup {
            refuse: Some((code, message)),
            ..Setup::default()
        }
    }
}

/// The fake scheduler (with its admin service) and nodes of `setup`, serving until
/// `shutdown`: their log, the acquires' timeouts, the scheduler's address and their tasks.
async fn start_fakes(setup: &Setup, shutdown: &shutdown::Shutdown) -> Fakes {
    let log: Log = Arc::default();
    let mut tasks = Vec::new();

    let mut node_ports = Vec::new();
    for behaviour in setup.nodes.iter().copied() {
        let node_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        node_ports.push(node_listener.local_addr().unwrap().port().into());
        if let NodeBehaviour::Down = behaviour {
            drop(node_listener);
            continue;
        }
        let node = NodeServiceServer::new(FakeNode {
            log: log.clone(),
            behaviour,
        });
        tasks.push(faas_testkit::serve_on(
            node_listener,
            tonic::transport::Server::builder().add_service(node),
            shutdown.clone().wait(),
        ));
    }

    let scheduler_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let scheduler_addr = scheduler_listener.local_addr().unwrap();
    let acquire_timeouts = Arc::default();
    let scheduler = SchedulerServer::new(FakeScheduler {
        log: log.clone(),
        node_ports,
        refuse: setup.refuse,
        refuse_first: setup.refuse_first,
        hang: setup.hang_acquire,
        timeouts: Arc::clone(&acquire_timeouts),
    });
    let scheduler_admin = SchedulerAdminServer::new(FakeSchedulerAdmin {
        log: log.clone(),
        nodes: setup.listed_nodes.clone(),
    });
    tasks.push(faas_testkit::serve_on(
        scheduler_listener,
        tonic::transport::Server::builder()
            .add_service(scheduler)
            .add_service(scheduler_admin),
        shutdown.clone().wait(),
    ));
    Fakes {
        log,
        acquire_timeouts,
        scheduler_addr,
        tasks,
    }
}

/// What [`start_fakes`] started.
struct Fakes {
    log: Log,
    acquire_timeouts: Arc<Mutex<Vec<Option<String>>>>,
    scheduler_addr: std::net::SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

async fn start(setup: Setup) -> Platform {
    let (trigger, shutdown) = shutdown::channel();
    let Fakes {
        log,
        acquire_timeouts,
        scheduler_addr,
        mut tasks,
    } = start_fakes(&setup, &shutdown).await;

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let config = Config {
        port: 0,
        scheduler: scheduler_addr.to_string(),
        ..setup.config
    };
    let (http, http_addr) = if setup.http {
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http_addr = http.local_addr().unwrap().to_string();
        (Some(http), Some(http_addr))
    } else {
        (None, None)
    };
    let stop = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        faas_apiserver::serve_with(listener, http, config, stop)
            .await
            .unwrap();
    }));

    let channel = faas_common::serve::connect(&addr).await.unwrap();
    Platform {
        log,
        acquire_timeouts,
        api: ApiServerClient::new(channel.clone()),
        admin: AdminClient::new(channel.clone()),
        invocations: InvocationsClient::new(channel),
        addr,
        http: http_addr,
        trigger,
        tasks,
    }
}

fn invoke(function: &str, account: &str, event: &[u8]) -> InvokeFunctionRequest {
    InvokeFunctionRequest {
        account_id: account.into(),
        function_name: function.into(),
        event: event.to_vec(),
    }
}

fn meta_str<'a>(response: &'a Response<apiserverproto::InvokeFunctionReply>, key: &str) -> &'a str {
    response
        .metadata()
        .get(key)
        .unwrap_or_else(|| panic!("no {key} in the reply metadata"))
        .to_str()
        .unwrap()
}

/// A function for the admin API: 128 MiB, no description.
#[allow(dead_code)]
fn admin_spec(name: &str, handler: &str, timeout_ms: i64) -> admin::FunctionSpec {
    admin::FunctionSpec {
        name: name.into(),
        handler: handler.into(),
        memory_in_bytes: (128 * faas_common::units::MIB) as i64,
        timeout_in_ms: timeout_ms,
        description: String::new(),
        ..Default::default()
    }
}
