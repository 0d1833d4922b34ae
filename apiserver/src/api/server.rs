//! The API server's gRPC services and the assembled server.
//!
//! `apiserverproto.APIServer` (the contest's `InvokeFunction` and `ListFunctions`),
//! `faas.invoke.v1.Invocations` (asynchronous invocations), `faas.events.v1.Events` and
//! `EventAdmin` (topics and chains, `api::events`), `faas.schedules.v1.Schedules` (timers,
//! `api::timers`), `faas.admin.v1.Admin` (deploy, get, list and delete functions) and
//! `grpc.health.v1`, all on one port; the HTTP gateway
//! (`api::gateway`) on a port of its own. Every invocation, whichever door it came in by,
//! goes through the one [`Front`] (`api::front`): admitted by its account's limits, run in
//! a task of its own (a client that goes away cannot stop the chain before the container is
//! returned), recorded in the metrics; this file only maps its answer to gRPC.
//!
//! The front door ([`crate::api::auth`]): each service sits behind the key check of its
//! scope (the health service behind none), and with `--tls-cert` the port speaks TLS only.
//! A server without keys decides at `serve` whether it may be open: only on a loopback
//! address or when told (`service::access::Access::decide`).

use std::sync::Arc;
use std::time::Duration;

use faas_common::serve::MAX_MESSAGE_BYTES;
use faas_common::shutdown::Shutdown;
use faas_proto::admin::admin_server::AdminServer;
use faas_proto::apiserverproto::{
    self, InvokeFunctionReply, InvokeFunctionRequest,
    api_server_server::{ApiServer, ApiServerServer},
};
use faas_proto::events::event_admin_server::EventAdminServer;
use faas_proto::events::events_server::EventsServer;
use faas_proto::invoke::invocations_server::InvocationsServer;
use faas_proto::meta;
use tokio::net::TcpListener;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Identity, ServerTlsConfig};
use tonic::{Request, Response, Status};

use crate::api::admin::AdminService;
use crate::api::async_runner::RunnerSettings;
use crate::api::auth::Authenticate;
use crate::api::clock::SystemClock;
use crate::api::convert::contest_function;
use crate::api::decisions::DecisionsProxy;
use crate::api::events::EventHub;
use crate::api::front::{Call, Front};
use crate::api::gateway::{self, Gateway};
use crate::api::invocations::{AsyncRunner, InvocationsService};
use crate::api::metrics::Metrics;
use crate::api::node::GrpcNodes;
use crate::api::routing::route_context;
use crate::api::scheduler::GrpcScheduler;
use crate::api::schedules::SchedulesService;
use crate::api::timers::Timers;
use crate::config::QueueBackend;
pub use crate::error::front_status;
use crate::model::keys::{KeyTable, Scope};
use crate::model::kind::MAX_CODE_BYTES;
use crate::service::access::{Access, KeylessFlags};
use crate::service::async_calls::InvocationStore;
use crate::service::events::EventStore;
use crate::service::routing::{RouteNote, Router};
use crate::service::{Invoked, Invoker, Registry};
use crate::store::sqlite::DATABASE_FILE;
use crate::store::{BundleStore, DirBundles, SqliteDao};
use crate::store::{JetStreamQueue, SqliteEvents, SqliteQueue};
use crate::{Config, Error};
use faas_proto::decisions::decisions_server::DecisionsServer;
use faas_proto::schedules::schedules_server::SchedulesServer;

/// The invoker with the live gRPC ports.
pub type LiveInvoker = Invoker<GrpcScheduler, GrpcNodes, SystemClock>;
/// The router in front of it.
pub type LiveRouter = Router<GrpcScheduler, GrpcNodes, SystemClock>;

/// Room for the other fields of an `InvokeFunctionRequest` beyond the event, so an event a
/// little over the limit still decodes and gets a clear message instead of a transport error.
pub const REQUEST_OVERHEAD_BYTES: usize = 1024 * 1024;

/// The largest admin request accepted, in bytes: a deploy's code ([`MAX_CODE_BYTES`]) with
/// room for its paths and the rest of the message. A limit still: a client cannot make the
/// server buffer an unbounded message. `faas deploy` checks it before sending.
pub const MAX_ADMIN_REQUEST_BYTES: usize = MAX_CODE_BYTES as usize + 8 * 1024 * 1024;

/// `apiserverproto.APIServer`.
#[derive(Clone, Debug)]
pub struct ApiServerService {
    front: Front,
}

fn set_meta(map: &mut MetadataMap, key: &'static str, value: impl TryInto<AsciiMetadataValue>) {
    if let Ok(value) = value.try_into() {
        map.insert(key, value);
    }
}

/// The routing metadata of a reply (success or error): the version, the target, the fallback.
fn route_metadata(map: &mut MetadataMap, note: &RouteNote) {
    for (key, value) in route_headers(note) {
        set_meta(map, key, value.as_str());
    }
}

/// The routing keys and values of a reply (`x-faas-version`, `x-faas-target`,
/// `x-faas-fallback`), for gRPC metadata and HTTP headers alike.
pub fn route_headers(note: &RouteNote) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(version) = &note.version {
        out.push((meta::VERSION, version.clone()));
    }
    if let Some(target) = &note.target {
        out.push((meta::TARGET, target.clone()));
    }
    if let Some(fb) = &note.fallback {
        out.push((
            meta::FALLBACK,
            format!("{}; {}", fb.meant_for, fb.reason.as_str()),
        ));
    }
    out
}

/// The acquire time of a reply in fractional milliseconds (µs resolution: a warm acquire
/// takes well under a millisecond).
pub fn acquire_ms(done: &Invoked) -> String {
    format!("{:.3}", done.acquire_nanos as f64 / 1e6)
}

fn reply_metadata(map: &mut MetadataMap, done: &Invoked) {
    set_meta(map, meta::ACQUIRE_MS, acquire_ms(done).as_str());
    set_meta(map, meta::DURATION_NS, done.duration_nanos);
    set_meta(
        map,
        meta::CONTAINER_ID,
        done.placement.container_id.as_str(),
    );
    set_meta(map, meta::NODE_ID, done.placement.node_id.as_str());
    set_meta(map, meta::MAX_MEMORY_BYTES, done.max_memory_bytes);
    if let Some(cold) = done.placement.cold_start {
        set_meta(map, meta::COLD_START, if cold { "true" } else { "false" });
    }
}

impl ApiServerService {
    /// Invocations go through `front` (limits, the router, the metrics).
    pub fn new(front: Front) -> ApiServerService {
        ApiServerService { front }
    }
}

#[tonic::async_trait]
impl ApiServer for ApiServerService {
    async fn invoke_function(
        &self,
        request: Request<InvokeFunctionRequest>,
    ) -> Result<Response<InvokeFunctionReply>, Status> {
        let deadline = faas_common::serve::client_timeout(request.metadata());
        let route = route_context(request.metadata()).map_err(Status::invalid_argument)?;
        let req = request.into_inner();
        let answered = self
            .front
            .invoke(Call {
                account_id: req.account_id,
                function_name: req.function_name,
                event: req.event,
                route,
                deadline,
            })
            .await;
        match answered.result {
            Ok(mut done) => {
                let mut response = Response::new(InvokeFunctionReply {
                    request_id: answered.request_id,
                    server_side_latency_in_ms: i64::try_from(answered.latency.as_millis())
                        .unwrap_or(i64::MAX),
                    body: std::mem::take(&mut done.body),
                });
                reply_metadata(response.metadata_mut(), &done);
                route_metadata(response.metadata_mut(), &answered.note);
                Ok(response)
            }
            Err(err) => {
                let mut status = front_status(&err);
                route_metadata(status.metadata_mut(), &answered.note);
                Err(status)
            }
        }
    }

    async fn list_functions(
        &self,
        _request: Request<apiserverproto::ListFunctionsRequest>,
    ) -> Result<Response<apiserverproto::ListFunctionsReply>, Status> {
        let functions = self
            .front
            .router()
            .invoker()
            .registry()
            .list()
            .iter()
            .map(|f| contest_function(f))
            .collect();
        Ok(Response::new(apiserverproto::ListFunctionsReply {
            request_id: uuid::Uuid::new_v4().to_string(),
            functions,
        }))
    }
}

/// The registry the server starts with: in memory only, or opened over the database in the
/// data directory (seeded from the start-up functions when new).
async fn load_registry(config: &Config) -> Result<Registry, Error> {
    let (specs, origin) = config.load_functions()?;
    let now_ms = faas_common::clock::now_ms();
    let Some(dir) = config.data_dir.clone() else {
        let registry = Registry::with_functions(specs, now_ms)?;
        tracing::info!(
            functions = registry.len(),
            from = %origin,
            "functions loaded (memory only: deployments last until this server stops; --data-dir keeps them)"
        );
        return Ok(registry);
    };
    // Opening checks the whole file and may wait for a lock: not on a runtime worker.
    let (opened, path) = tokio::task::spawn_blocking(move || -> Result<_, Error> {
        let dao = SqliteDao::open(&dir)?;
        let path = dao.path().to_path_buf();
        // Opened under the database's lock: its leftovers are no other server's.
        let bundles: Arc<dyn BundleStore> =
            Arc::new(DirBundles::open(&DirBundles::in_data_dir(&dir))?);
        let opened = Registry::open_with(Arc::new(dao), Some(bundles), specs, now_ms)?;
        Ok((opened, path))
    })
    .await
    .map_err(|e| Error::Startup(format!("opening the database failed: {e}")))??;
    let functions = opened.registry.len();
    if opened.seeded {
        tracing::info!(
            functions,
            path = %path.display(),
            from = %origin,
            "new database: stored the start-up functions"
        );
    } else {
        tracing::info!(
            functions,
            path = %path.display(),
            "functions loaded from the database, the source of truth: {origin} is not applied (faas deploy FILE applies a file; faas up --fresh starts over)"
        );
    }
    Ok(opened.registry)
}

/// The asynchronous calls' queue: in the database of the data directory (opened after the
/// registry's DAO, which holds the directory's lock and brought the schema up to date), or in
/// memory without one.
fn open_queue(config: &Config) -> Result<Arc<dyn InvocationStore>, Error> {
    let limits = config.async_limits();
    if let QueueBackend::Nats(address) = &config.queue {
        let queue = JetStreamQueue::connect(address, limits)
            .map_err(|e| Error::Startup(format!("cannot open the asynchronous queue: {e}")))?;
        tracing::info!(address, "asynchronous calls are kept in NATS JetStream");
        return Ok(Arc::new(queue));
    }
    let Some(dir) = &config.data_dir else {
        tracing::info!(
            "asynchronous calls are kept in memory (--data-dir keeps them across restarts)"
        );
        return Ok(Arc::new(SqliteQueue::in_memory(limits)));
    };
    let path = dir.join(DATABASE_FILE);
    let queue = SqliteQueue::open(&path, limits).map_err(|e| {
        Error::Startup(format!(
            "cannot open the asynchronous queue in {}: {e}",
            path.display()
        ))
    })?;
    Ok(Arc::new(queue))
}

/// Topics and chains: in the data directory's database (opened after the DAO), or in memory.
fn open_events(config: &Config) -> Result<Arc<dyn EventStore>, Error> {
    let Some(dir) = &config.data_dir else {
        return Ok(Arc::new(SqliteEvents::in_memory()));
    };
    let path = dir.join(DATABASE_FILE);
    let store = SqliteEvents::open(&path).map_err(|e| {
        Error::Startup(format!(
            "cannot open topics and chains in {}: {e}",
            path.display()
        ))
    })?;
    Ok(Arc::new(store))
}

/// The TLS configuration of `--tls-cert` and `--tls-key`, read now so a missing file fails
/// the start.
fn tls_config(config: &Config) -> Result<Option<ServerTlsConfig>, Error> {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return Ok(None);
    };
    let read = |flag: &str, path: &std::path::Path| {
        std::fs::read(path)
            .map_err(|e| Error::Startup(format!("cannot read {flag} {}: {e}", path.display())))
    };
    let identity = Identity::from_pem(read("--tls-cert", cert)?, read("--tls-key", key)?);
    Ok(Some(ServerTlsConfig::new().identity(identity)))
}

/// A ready-to-serve API server: functions, keys and limits loaded, clients made.
#[derive(Debug)]
pub struct App {
    config: Config,
    front: Front,
    runner: AsyncRunner,
    timers: Timers,
    events: EventHub,
    keys: KeyTable,
    tls: Option<ServerTlsConfig>,
}

impl App {
    /// Loads the functions (from the database in `--data-dir`, else from `--functions` or
    /// the built-in set) and makes the scheduler client; fails on a bad functions file, a
    /// database it must not use, or a bad scheduler endpoint, before anything listens.
    pub async fn new(config: Config) -> Result<App, Error> {
        let loaded = config.load_keys()?;
        let keys = KeyTable::from_lines(&loaded.lines, &loaded.origin)
            .map_err(|e| Error::Keys(e.into()))?;
        if let Some(path) = &loaded.created {
            tracing::info!(path = %path.display(), "made an admin key (faas commands on this machine read it from there)");
        }
        if !keys.is_empty() {
            tracing::info!(keys = keys.len(), from = %loaded.origin, "calls need a key");
        }
        let limits = Arc::new(config.load_limits()?);
        let tls = tls_config(&config)?;
        let registry = load_registry(&config).await?;
        let scheduler = GrpcScheduler::connect_lazy(
            &config.scheduler,
            Duration::from_millis(config.scheduler_timeout_ms),
            &config.cluster.auth(),
        )
        .map_err(Error::SchedulerEndpoint)?;
        let invoker = Invoker::new(
            Arc::new(registry),
            scheduler,
            GrpcNodes::with_auth(config.cluster.auth()),
            SystemClock::new(),
            config.max_event_bytes,
        )
        .with_node_grace(Duration::from_millis(config.node_call_grace_ms))
        .returning_after_reply();
        let front = Front::new(
            Arc::new(Router::new(invoker, None)),
            Arc::new(Metrics::new()),
            limits,
        );
        let runner = AsyncRunner::new(
            front.clone(),
            open_queue(&config)?,
            RunnerSettings {
                concurrency: config.async_concurrency,
                per_function: config.async_function_concurrency,
                retention_ms: config.async_retention_ms,
                retry: config.async_retry(),
            },
        );
        let events = EventHub::new(runner.clone(), open_events(&config)?);
        runner.set_hooks(Arc::new(events.chains()));
        front.set_after_call(Arc::new(events.chains()));
        let timers = Timers::new(
            crate::api::timers::open_store(config.data_dir.as_deref())?,
            runner.clone(),
        );
        Ok(App {
            config,
            front,
            runner,
            timers,
            events,
            keys,
            tls,
        })
    }

    /// The function registry.
    pub fn registry(&self) -> &Arc<Registry> {
        self.front.router().invoker().registry()
    }

    /// Serves gRPC on `listener` until `shutdown` fires; in-flight calls finish first.
    pub async fn serve(self, listener: TcpListener, shutdown: Shutdown) -> Result<(), Error> {
        self.serve_with(listener, None, shutdown).await
    }

    /// Serves gRPC on `listener` and, when given, the HTTP gateway on `http`, until
    /// `shutdown` fires; in-flight calls (of both) finish first. A gateway in plain HTTP
    /// beside a TLS gRPC port is refused unless `--http-allow-plaintext`.
    pub async fn serve_with(
        self,
        listener: TcpListener,
        http: Option<TcpListener>,
        shutdown: Shutdown,
    ) -> Result<(), Error> {
        if http.is_some() {
            self.config.http_allowed().map_err(Error::Startup)?;
        }
        let loopback = listener
            .local_addr()
            .map_err(|e| Error::Startup(format!("the listener has no address: {e}")))?
            .ip()
            .is_loopback();
        let flags = KeylessFlags {
            allow_anonymous: self.config.allow_anonymous,
            allow_anonymous_invoke: self.config.allow_anonymous_invoke,
        };
        let access =
            Arc::new(Access::decide(self.keys.clone(), flags, loopback).map_err(Error::Startup)?);
        match access.anonymous() {
            Some(Scope::Admin) if self.keys.is_empty() => {
                tracing::warn!(
                    "no keys: every call is accepted (give --data-dir, --keys-file or --api-key to require keys)"
                )
            }
            Some(Scope::Admin) => {
                tracing::warn!("--allow-anonymous: calls without a key may do everything")
            }
            Some(Scope::Invoke) => tracing::info!(
                "--allow-anonymous-invoke: calls without a key may invoke and list functions"
            ),
            None => {}
        }
        if let Some(port) = self.config.metrics_port.filter(|p| *p != 0) {
            let addr = crate::config::host_port(&self.config.host, port);
            let metrics_listener = faas_common::serve::bind(&addr).await?;
            tracing::info!(addr = %metrics_listener.local_addr().map(|a| a.to_string()).unwrap_or(addr), "metrics on /metrics");
            tokio::spawn(faas_common::metrics::serve(
                metrics_listener,
                self.front.metrics().registry(),
                shutdown.clone(),
            ));
        }

        self.runner.start();
        self.timers.start();
        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_serving::<ApiServerServer<ApiServerService>>()
            .await;
        health.set_serving::<AdminServer<AdminService>>().await;
        health
            .set_serving::<DecisionsServer<DecisionsProxy>>()
            .await;
        health
            .set_serving::<InvocationsServer<InvocationsService>>()
            .await;
        health.set_serving::<EventsServer<EventHub>>().await;
        health.set_serving::<EventAdminServer<EventHub>>().await;
        health
            .set_serving::<SchedulesServer<SchedulesService>>()
            .await;
        health
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;

        // Requests: at least the platform's message limit, and room for the largest event
        // plus its other fields. Replies are not limited: a function's body and the function
        // lists (a long description each, thousands of functions) are as large as they are.
        let max_request = self
            .config
            .max_event_bytes
            .saturating_add(REQUEST_OVERHEAD_BYTES)
            .max(MAX_MESSAGE_BYTES);
        let api = ApiServerServer::new(ApiServerService::new(self.front.clone()))
            .max_decoding_message_size(max_request)
            .max_encoding_message_size(usize::MAX);
        let api = InterceptedService::new(api, Authenticate::new(access.clone(), Scope::Invoke));
        let invocations = InvocationsServer::new(InvocationsService::new(self.runner.clone()))
            .max_decoding_message_size(max_request)
            .max_encoding_message_size(usize::MAX);
        let invocations = InterceptedService::new(
            invocations,
            Authenticate::new(access.clone(), Scope::Invoke),
        );
        let events = EventsServer::new(self.events.clone())
            .max_decoding_message_size(max_request)
            .max_encoding_message_size(usize::MAX);
        let events =
            InterceptedService::new(events, Authenticate::new(access.clone(), Scope::Invoke));
        let event_admin = InterceptedService::new(
            EventAdminServer::new(self.events.clone()),
            Authenticate::new(access.clone(), Scope::Admin),
        );
        let scheduler = faas_common::serve::connect_lazy(&self.config.scheduler)
            .map_err(Error::SchedulerEndpoint)?;
        let decisions = DecisionsServer::new(DecisionsProxy::new(
            scheduler.clone(),
            &self.config.cluster.auth(),
            shutdown.clone(),
        ));
        let decisions =
            InterceptedService::new(decisions, Authenticate::new(access.clone(), Scope::Admin));
        let admin = AdminService::new(
            self.front.router().clone(),
            Duration::from_millis(self.config.version_grace_ms),
        )
        .with_scheduler(scheduler.clone(), self.config.cluster.auth())
        .with_queue(self.runner.clone());
        admin.keep_holds(shutdown.clone());
        let admin = AdminServer::new(admin)
            .max_decoding_message_size(MAX_ADMIN_REQUEST_BYTES.max(MAX_MESSAGE_BYTES))
            .max_encoding_message_size(usize::MAX);
        let admin = InterceptedService::new(admin, Authenticate::new(access.clone(), Scope::Admin));
        let schedules = InterceptedService::new(
            SchedulesServer::new(SchedulesService::new(self.timers.clone()))
                .max_decoding_message_size(max_request),
            Authenticate::new(access.clone(), Scope::Admin),
        );

        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = self.tls {
            builder = builder.tls_config(tls).map_err(Error::Transport)?;
        }
        // Nothing can fail the start any more: the gateway may begin.
        let gateway = http.map(|http| {
            let addr = http.local_addr().map(|a| a.to_string()).unwrap_or_default();
            tracing::info!(addr = %addr, "http gateway listening");
            let ui = crate::api::gateway::ui::Ui::new(
                scheduler.clone(),
                self.config.cluster.auth(),
                shutdown.clone(),
            );
            let gateway = Gateway::new(self.runner.clone(), access.clone())
                .with_ui(ui)
                .with_events(self.events.clone());
            tokio::spawn(gateway::serve(http, gateway, shutdown.clone()))
        });
        let served = builder
            .add_routes(faas_proto::reflection::routes(&[
                faas_proto::apiserverproto::api_server_server::SERVICE_NAME,
                faas_proto::admin::admin_server::SERVICE_NAME,
                faas_proto::invoke::invocations_server::SERVICE_NAME,
                faas_proto::decisions::decisions_server::SERVICE_NAME,
                faas_proto::schedules::schedules_server::SERVICE_NAME,
                faas_proto::events::events_server::SERVICE_NAME,
                faas_proto::events::event_admin_server::SERVICE_NAME,
            ]))
            .add_service(health_service)
            .add_service(api)
            .add_service(invocations)
            .add_service(admin)
            .add_service(decisions)
            .add_service(schedules)
            .add_service(events)
            .add_service(event_admin)
            .serve_with_incoming_shutdown(
                faas_common::serve::incoming(listener),
                shutdown.clone().wait(),
            )
            .await
            .map_err(Error::Transport);
        // The gRPC server stopped (asked to, or failed): so does the gateway.
        self.runner.close();
        self.timers.close();
        if let Some(task) = gateway {
            if served.is_err() {
                task.abort();
            }
            match task.await {
                Ok(Err(e)) => tracing::warn!(error = %e, "the http gateway failed"),
                Err(e) if e.is_panic() => tracing::warn!(error = %e, "the http gateway failed"),
                _ => {}
            }
        }
        served?;
        tracing::info!("apiserver stopped");
        Ok(())
    }
}
