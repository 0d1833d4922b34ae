//! The API server's gRPC services and the assembled server.
//!
//! `apiserverproto.APIServer` (the contest's `InvokeFunction` and `ListFunctions`),
//! `faas.admin.v1.Admin` (deploy, get, list and delete functions) and `grpc.health.v1`, all on
//! one port. Each invocation runs in a task of its own, so a client that goes away mid-call
//! cannot stop the chain before the container is returned to the scheduler.
//!
//! The front door ([`crate::api::auth`]): each of the two services sits behind the key check
//! of its scope (the health service behind none), `InvokeFunction` admits a call only within
//! its account's limits and holds its slot until the chain ends, and with `--tls-cert` the
//! port speaks TLS only. A server without keys decides at `serve` whether it may be open:
//! only on a loopback address or when told (`service::access::Access::decide`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use faas_common::serve::MAX_MESSAGE_BYTES;
use faas_common::shutdown::Shutdown;
use faas_common::text::clip;
use faas_proto::admin::admin_server::AdminServer;
use faas_proto::apiserverproto::{
    self, InvokeFunctionReply, InvokeFunctionRequest,
    api_server_server::{ApiServer, ApiServerServer},
};
use faas_proto::meta;
use tokio::net::TcpListener;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Identity, ServerTlsConfig};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::api::admin::AdminService;
use crate::api::auth::{Authenticate, limit_status};
use crate::api::clock::SystemClock;
use crate::api::convert::{contest_function, invoke_status};
use crate::api::metrics::{Metrics, UNKNOWN_FUNCTION};
use crate::api::node::GrpcNodes;
use crate::api::routing::route_context;
use crate::api::scheduler::GrpcScheduler;
use crate::model::keys::{KeyTable, Scope};
use crate::model::kind::MAX_CODE_BYTES;
use crate::service::Clock;
use crate::service::access::{Access, KeylessFlags};
use crate::service::limits::Limits;
use crate::service::routing::{RouteContext, RouteNote, Routed, Router};
use crate::service::{InvokeError, InvokeRequest, Invoked, Invoker, Registry};
use crate::store::{BundleStore, DirBundles, SqliteDao};
use crate::{Config, Error};

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
    router: Arc<LiveRouter>,
    metrics: Arc<Metrics>,
    limits: Arc<Limits>,
    clock: SystemClock,
}

fn set_meta(map: &mut MetadataMap, key: &'static str, value: impl TryInto<AsciiMetadataValue>) {
    if let Ok(value) = value.try_into() {
        map.insert(key, value);
    }
}

/// The routing metadata of a reply (success or error): the version, the target, the fallback.
fn route_metadata(map: &mut MetadataMap, note: &RouteNote) {
    if let Some(version) = &note.version {
        set_meta(map, meta::VERSION, version.as_str());
    }
    if let Some(target) = &note.target {
        set_meta(map, meta::TARGET, target.as_str());
    }
    if let Some(fb) = &note.fallback {
        let text = format!("{}; {}", fb.meant_for, fb.reason.as_str());
        set_meta(map, meta::FALLBACK, text.as_str());
    }
}

fn reply_metadata(map: &mut MetadataMap, done: &Invoked) {
    // Fractional ms (µs resolution): a warm acquire takes well under a millisecond.
    let acquire_ms = format!("{:.3}", done.acquire_nanos as f64 / 1e6);
    set_meta(map, meta::ACQUIRE_MS, acquire_ms.as_str());
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
    /// Invocations go through `router`, each admitted by its account's `limits` first.
    pub fn new(
        router: Arc<LiveRouter>,
        metrics: Arc<Metrics>,
        limits: Arc<Limits>,
    ) -> ApiServerService {
        ApiServerService {
            router,
            metrics,
            limits,
            clock: SystemClock::new(),
        }
    }

    async fn invoke(
        router: Arc<LiveRouter>,
        metrics: Arc<Metrics>,
        req: InvokeFunctionRequest,
        route: RouteContext,
        request_id: String,
        deadline: Option<Duration>,
        started: Instant,
    ) -> Result<Response<InvokeFunctionReply>, Status> {
        let _in_flight = metrics.start();
        let function_name = req.function_name.clone();
        let Routed { result, note } = router
            .invoke(
                InvokeRequest {
                    request_id: request_id.clone(),
                    account_id: req.account_id,
                    function_name: req.function_name,
                    event: req.event,
                    deadline,
                },
                &route,
            )
            .await;
        let latency = started.elapsed();
        metrics.routed(&note, result.is_ok());
        for (target, t) in &note.transitions {
            tracing::warn!(target = %target, from = %t.from, to = %t.to, reason = %t.reason, "circuit breaker");
        }
        match &result {
            Ok(Invoked {
                retried_after: Some(because),
                ..
            })
            | Err(InvokeError::Retried { because, .. }) => metrics.retried(because, result.is_ok()),
            _ => {}
        }
        match result {
            Ok(mut done) => {
                metrics.finished(&function_name, "ok", latency);
                metrics.acquired(
                    &function_name,
                    Duration::from_nanos(done.acquire_nanos),
                    done.placement.cold_start,
                );
                tracing::debug!(
                    container_id = %done.placement.container_id,
                    node_id = %done.placement.node_id,
                    duration_ns = done.duration_nanos,
                    latency_ms = latency.as_millis() as u64,
                    "invocation succeeded"
                );
                let mut response = Response::new(InvokeFunctionReply {
                    request_id,
                    server_side_latency_in_ms: i64::try_from(started.elapsed().as_millis())
                        .unwrap_or(i64::MAX),
                    body: std::mem::take(&mut done.body),
                });
                reply_metadata(response.metadata_mut(), &done);
                route_metadata(response.metadata_mut(), &note);
                Ok(response)
            }
            Err(err) => {
                let label = if err.function_known() {
                    function_name.as_str()
                } else {
                    UNKNOWN_FUNCTION
                };
                metrics.finished(label, err.outcome(), latency);
                match err.outcome() {
                    "invalid_argument" | "not_found" | "function_error" | "timeout"
                    | "out_of_memory" | "bad_event" => {
                        tracing::info!(error = %err, "invocation failed")
                    }
                    _ => tracing::warn!(error = %err, "invocation failed"),
                }
                let mut status = invoke_status(&err);
                route_metadata(status.metadata_mut(), &note);
                Err(status)
            }
        }
    }
}

#[tonic::async_trait]
impl ApiServer for ApiServerService {
    async fn invoke_function(
        &self,
        request: Request<InvokeFunctionRequest>,
    ) -> Result<Response<InvokeFunctionReply>, Status> {
        let started = Instant::now();
        let deadline = faas_common::serve::client_timeout(request.metadata());
        let route = route_context(request.metadata()).map_err(Status::invalid_argument)?;
        let req = request.into_inner();
        // Refused at once, before any work: one account's burst costs the others nothing.
        let permit = self
            .limits
            .admit(&req.account_id, self.clock.monotonic_nanos())
            .map_err(|e| {
                tracing::debug!(error = %e, "invocation refused");
                limit_status(&e)
            })?;
        let request_id = uuid::Uuid::new_v4().to_string();
        let span = tracing::info_span!(
            "invoke",
            request_id = %request_id,
            function = %clip(&req.function_name)
        );
        let invoke = Self::invoke(
            self.router.clone(),
            self.metrics.clone(),
            req,
            route,
            request_id,
            deadline,
            started,
        );
        // The permit is held until the chain ends (the container is back), even when the
        // caller leaves first.
        let task = tokio::spawn(
            async move {
                let result = invoke.await;
                drop(permit);
                result
            }
            .instrument(span),
        );
        task.await
            .map_err(|e| Status::internal(format!("the invocation task failed: {e}")))?
    }

    async fn list_functions(
        &self,
        _request: Request<apiserverproto::ListFunctionsRequest>,
    ) -> Result<Response<apiserverproto::ListFunctionsReply>, Status> {
        let functions = self
            .router
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
    router: Arc<LiveRouter>,
    metrics: Arc<Metrics>,
    keys: KeyTable,
    limits: Arc<Limits>,
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
        .with_node_grace(Duration::from_millis(config.node_call_grace_ms));
        Ok(App {
            config,
            router: Arc::new(Router::new(invoker, None)),
            metrics: Arc::new(Metrics::new()),
            keys,
            limits,
            tls,
        })
    }

    /// The function registry.
    pub fn registry(&self) -> &Arc<Registry> {
        self.router.invoker().registry()
    }

    /// Serves on `listener` until `shutdown` fires; in-flight calls finish first.
    pub async fn serve(self, listener: TcpListener, shutdown: Shutdown) -> Result<(), Error> {
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
                self.metrics.registry(),
                shutdown.clone(),
            ));
        }

        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_serving::<ApiServerServer<ApiServerService>>()
            .await;
        health.set_serving::<AdminServer<AdminService>>().await;
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
        let api = ApiServerServer::new(ApiServerService::new(
            self.router.clone(),
            self.metrics.clone(),
            self.limits.clone(),
        ))
        .max_decoding_message_size(max_request)
        .max_encoding_message_size(usize::MAX);
        let api = InterceptedService::new(api, Authenticate::new(access.clone(), Scope::Invoke));
        let scheduler = faas_common::serve::connect_lazy(&self.config.scheduler)
            .map_err(Error::SchedulerEndpoint)?;
        let admin = AdminService::new(
            self.router.clone(),
            Duration::from_millis(self.config.version_grace_ms),
        )
        .with_scheduler(scheduler, self.config.cluster.auth());
        admin.keep_holds(shutdown.clone());
        let admin = AdminServer::new(admin)
            .max_decoding_message_size(MAX_ADMIN_REQUEST_BYTES.max(MAX_MESSAGE_BYTES))
            .max_encoding_message_size(usize::MAX);
        let admin = InterceptedService::new(admin, Authenticate::new(access, Scope::Admin));

        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = self.tls {
            builder = builder.tls_config(tls).map_err(Error::Transport)?;
        }
        builder
            .add_service(health_service)
            .add_service(api)
            .add_service(admin)
            .serve_with_incoming_shutdown(faas_common::serve::incoming(listener), shutdown.wait())
            .await
            .map_err(Error::Transport)?;
        tracing::info!("apiserver stopped");
        Ok(())
    }
}
