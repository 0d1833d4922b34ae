//! The node service: one per node. It creates and removes containers through a runtime,
//! invokes functions in them, and reports measured usage, serving the contest's
//! `nodeservoceproto.NodeService`, the platform's `faas.node.v1.NodeAdmin` (`DescribeNode`:
//! the node, its reservation and its containers with their calls in flight, for recovery)
//! and `grpc.health.v1`, all on one port.
//!
//! Layers: [`model`] (containers, invocations, stats, descriptions) → [`store`] (the
//! container table) → [`core`] (pure rules: request validation) → [`service`] (the node's
//! driver, the warm pool of unbound containers, the orphan timeout's activity, and the ports
//! `Runtime`, `ContainerInvoker`, `HostProbe`) → [`api`] (gRPC, the `process` and `docker`
//! runtimes, `/proc` readings, metrics). [`config`] holds the flags, [`error`] the errors and
//! their one mapping to gRPC statuses.
//!
//! Users' own code: with `--bundles-dir` (the API server's `DATA_DIR/bundles`), a
//! `CreateContainer` whose handler is `bundle:<sha256>` starts a container of that bundle
//! (see [`model::bundle`]; never from the warm pool). The `process` runtime starts the
//! container service with `--bundle`; the `docker` runtime runs a bundle that names an
//! `image` in a container of that image, the static container service
//! (`--docker-watchdog-bin`) mounted in as its entrypoint ([`api::docker_bundle`]).
//!
//! Memory: the Docker runtime gives each container its memory as a cgroup limit (swap off),
//! so the kernel stops a container at its limit. The `process` runtime does the same where
//! the host lets the node write a memory cgroup (cgroup v1, or v2 with `memory` enabled;
//! `--memory-cgroup auto`, the default): each container service runs, from its first
//! instruction, in a group of its own below the node's cgroup ([`api::cgroup`]), and a call
//! in flight when the kernel kills it ends `OutOfMemory`. The node says at start, once, which
//! groups it uses or why none; without them (or with `--memory-cgroup off`) a container's
//! memory is only measured and enforced by its container service, as before.
//!
//! Isolation on the `process` runtime ([`api::isolation`]): a node running as root starts
//! each container as `--container-user` (default `nobody`), with no_new_privs, limits, a
//! clean environment, a private directory and (beside its memory cgroup) a pids cgroup of
//! `--container-pids-max`; it refuses to start when that user could not run the container
//! service or reach `--bundles-dir`.
//!
//! Start-up order: check the configuration and build the runtime, bind every listener (the
//! gRPC port and the metrics port), and only then announce readiness: a parent that reads
//! the readiness line knows the node can be called, and a taken port is an early exit with
//! one line saying which port, never "ready, then dead".
//!
//! Stopping: on SIGINT/SIGTERM (or `run`'s shutdown signal), or by itself when
//! `--orphan-timeout-ms` passes without any call (see [`service::orphan`]); either way the
//! containers are stopped and reaped before it returns.

pub mod api;
pub mod config;
pub mod core;
pub mod error;
pub mod model;
pub mod service;
pub mod store;

pub use config::{Config, DEFAULT_MAX_OVERCOMMIT, DEFAULT_WARM_POOL, RuntimeKind};
pub use error::Error;

use std::sync::Arc;
use std::time::Duration;

use faas_common::launch::Launcher;
use faas_common::shutdown::Shutdown;
use tokio::net::TcpListener;

use api::admin::NodeAdminApi;
use api::cgroup::Report as CgroupReport;
use api::grpc::NodeApi;
use api::metrics::NodeMetrics;
use service::{Node, NodeIdentity, Runtime};

/// Checks the configuration and builds its runtime (the docker runtime connects to the
/// daemon and removes this node's leftovers, the process runtime opens its memory cgroups
/// and says how once the node is ready; no container is started yet).
async fn runtime(config: &Config) -> Result<(Arc<dyn Runtime>, Option<Said>), Error> {
    if config.memory_bytes == 0 {
        return Err(Error::InvalidConfig("--memory-bytes must be > 0".into()));
    }
    if !(config.max_overcommit >= 1.0 && config.max_overcommit.is_finite()) {
        return Err(Error::InvalidConfig(format!(
            "--max-overcommit must be a number >= 1.0 (1.0 = no over-commit), got {}",
            config.max_overcommit
        )));
    }
    if config.warm_pool > service::pool::MAX_SIZE {
        return Err(Error::InvalidConfig(format!(
            "--warm-pool must be at most {}, got {}",
            service::pool::MAX_SIZE,
            config.warm_pool
        )));
    }
    let ready = Duration::from_millis(config.container_ready_timeout_ms);
    Ok(match config.runtime {
        RuntimeKind::Process => {
            let launcher = match &config.container_service_bin {
                Some(path) => Launcher::new(path, vec![]),
                None => Launcher::find("container-service")?,
            };
            let node_id = config.node_id.as_deref().unwrap_or_default();
            let isolation = isolation(config, &launcher, node_id)?;
            let runtime = api::process::ProcessRuntime::new(launcher, ready)
                .with_isolation(isolation.clone());
            let (cgroups, said) =
                api::cgroup::open(config.memory_cgroup, node_id, config.container_pids_max);
            let runtime = match cgroups {
                Some(cgroups) => runtime.with_cgroups(Arc::new(cgroups)),
                None => runtime,
            };
            (Arc::new(runtime), Some((said, isolation)))
        }
        RuntimeKind::Docker => {
            if !(config.docker_cpus_per_gib > 0.0 && config.docker_cpus_per_gib.is_finite()) {
                return Err(Error::InvalidConfig(format!(
                    "--docker-cpus-per-gib must be > 0, got {}",
                    config.docker_cpus_per_gib
                )));
            }
            if config.docker_pids_limit <= 0 {
                return Err(Error::InvalidConfig(
                    "--docker-pids-limit must be > 0".into(),
                ));
            }
            let user = config.docker_user.trim();
            if user.is_empty() || user == "0" || user.starts_with("0:") || user.starts_with("root")
            {
                return Err(Error::InvalidConfig(format!(
                    "--docker-user must name a non-root user, got {user:?}"
                )));
            }
            let node_id = config
                .node_id
                .clone()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    Error::InvalidConfig(
                        "the docker runtime needs --node-id (its containers are labelled with it)"
                            .into(),
                    )
                })?;
            let options = api::docker::DockerOptions {
                image: config.docker_image.clone(),
                network: config.docker_network.clone(),
                instance: config.docker_instance.clone(),
                node_id,
                cpus_per_gib: config.docker_cpus_per_gib,
                pids_limit: config.docker_pids_limit,
                user: user.to_string(),
                port: config.docker_container_port,
                ready_timeout: ready,
                watchdog_bin: config
                    .docker_watchdog_bin
                    .clone()
                    .or_else(api::docker_bundle::default_watchdog),
            };
            let docker = api::docker::DockerRuntime::connect(options)
                .await
                .map_err(Error::Docker)?;
            (Arc::new(docker), None)
        }
    })
}

/// The process runtime's isolation of its containers (`--container-user`): the user must be
/// able to run the container service and to read the bundles.
fn isolation(
    config: &Config,
    launcher: &Launcher,
    node_id: &str,
) -> Result<Arc<api::isolation::Isolation>, Error> {
    use api::isolation::{Isolation, reachable};
    let isolation = Isolation::open(&config.container_user, node_id, &std::env::temp_dir())
        .map_err(Error::InvalidConfig)?;
    let Some(account) = isolation.account() else {
        return Ok(Arc::new(isolation));
    };
    let user = format!(
        "--container-user {} (uid {})",
        config.container_user, account.uid
    );
    let fix = "or give --container-user root to run containers as the node's user";
    reachable(launcher.program(), account, 0o1).map_err(|why| {
        Error::InvalidConfig(format!(
            "{user} cannot run the container service {}: {why}; install it where that user \
             can reach it, {fix}",
            launcher.program().display()
        ))
    })?;
    if let Some(dir) = &config.bundles_dir {
        reachable(dir, account, 0o1).map_err(|why| {
            Error::InvalidConfig(format!(
                "{user} cannot reach the bundles of --bundles-dir {}: {why}; make the \
                 directories above it searchable (chmod o+x), keep the data directory \
                 elsewhere, {fix}",
                dir.display()
            ))
        })?;
    }
    Ok(Arc::new(isolation))
}

/// The bundles of `--bundles-dir`, when set (it must be a directory).
fn bundles(config: &Config) -> Result<Option<Arc<dyn service::Bundles>>, Error> {
    let Some(dir) = &config.bundles_dir else {
        return Ok(None);
    };
    let bundles =
        api::bundles::DirBundles::open("--bundles-dir", dir).map_err(Error::InvalidConfig)?;
    tracing::info!(dir = %bundles.dir().display(), "serving functions made of bundles");
    Ok(Some(Arc::new(bundles)))
}

/// Binds `host:port` for the setting `flag`.
async fn listen(flag: &'static str, host: &str, port: u16) -> Result<TcpListener, Error> {
    let addr = format!("{host}:{port}");
    TcpListener::bind(&addr)
        .await
        .map_err(|reason| Error::Listen { flag, addr, reason })
}

/// The metrics listener, when `--metrics-port` asks for one.
async fn listen_metrics(config: &Config) -> Result<Option<TcpListener>, Error> {
    match config.metrics_port.filter(|p| *p != 0) {
        Some(port) => Ok(Some(listen("--metrics-port", &config.host, port).await?)),
        None => Ok(None),
    }
}

/// Serves the node service on `listener` until `shutdown` fires (or the orphan timeout
/// passes); then stops and reaps every container. The metrics port, if any, is bound before
/// anything starts.
pub async fn run(listener: TcpListener, config: Config, shutdown: Shutdown) -> Result<(), Error> {
    let bundles = bundles(&config)?;
    let (runtime, said) = runtime(&config).await?;
    let metrics = listen_metrics(&config).await?;
    let parts = (runtime, bundles, said);
    serve(listener, metrics, config, parts, shutdown).await
}

/// Resolves when the node has heard no call for `--orphan-timeout-ms` (never when 0),
/// saying why it stops.
async fn orphaned(node: Arc<Node>, timeout_ms: u64) {
    if timeout_ms == 0 {
        return std::future::pending().await;
    }
    let activity = node.activity();
    activity.idle(Duration::from_millis(timeout_ms)).await;
    tracing::warn!(
        node_id = %node.identity().node_id,
        orphan_timeout_ms = timeout_ms,
        calls_heard = activity.heard(),
        "no gRPC call for --orphan-timeout-ms: the platform that started this node is gone; \
         stopping the node and its containers"
    );
}

/// What the process runtime says once the node is ready: its cgroups and its isolation.
type Said = (CgroupReport, Arc<api::isolation::Isolation>);

/// `--sweep`: removes what node `--node-id` left on this machine's Docker (the Docker
/// runtime does so whenever it connects), then returns without serving.
async fn sweep(config: &Config) -> anyhow::Result<()> {
    if config.runtime != RuntimeKind::Docker {
        return Err(Error::InvalidConfig(
            "--sweep removes a node's Docker containers: it needs --runtime docker".into(),
        )
        .into());
    }
    runtime(config).await?;
    tracing::info!(
        node_id = config.node_id.as_deref().unwrap_or_default(),
        machine = %config.machine(),
        "swept the node's function containers from this machine"
    );
    Ok(())
}

/// What `serve` serves with: the runtime, the bundles and what to say of the process runtime.
type Parts = (
    Arc<dyn Runtime>,
    Option<Arc<dyn service::Bundles>>,
    Option<Said>,
);

async fn serve(
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    config: Config,
    (runtime, bundles, said): Parts,
    shutdown: Shutdown,
) -> Result<(), Error> {
    let identity = NodeIdentity {
        node_id: config
            .node_id
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        live_id: uuid::Uuid::new_v4().to_string(),
        total_memory_bytes: config.memory_bytes,
        // Checked to be finite and >= 1 at start; the cast saturates.
        max_committed_bytes: (config.memory_bytes as f64 * config.max_overcommit) as u64,
        ready_timeout: Duration::from_millis(config.container_ready_timeout_ms),
        machine: config.machine(),
    };
    let mut node = Node::new(
        identity,
        runtime,
        Arc::new(api::invoker::GrpcInvoker::default()),
        Arc::new(api::host::ProcHost::default()),
    )
    .with_warm_pool(config.warm_pool);
    if let Some(bundles) = bundles {
        node = node.with_bundles(bundles);
    }
    let node = Arc::new(node);
    node.warm_pool().fill();

    // One stop for every part: the caller's shutdown, or the orphan timeout.
    let (stop_trigger, stop) = faas_common::shutdown::channel();
    let stopper = {
        let node = node.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.wait() => {}
                _ = orphaned(node, config.orphan_timeout_ms) => {}
            }
            stop_trigger.trigger();
        })
    };

    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Arc::new(NodeMetrics::register(&mut registry));
    registry.register_collector(Box::new(api::metrics::WarmPoolCollector(
        node.warm_pool().clone(),
    )));
    if let Some(metrics_listener) = metrics_listener {
        tracing::info!(addr = ?metrics_listener.local_addr().ok(), "metrics endpoint");
        tokio::spawn(faas_common::metrics::serve(
            metrics_listener,
            Arc::new(registry),
            stop.clone(),
        ));
    }

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<faas_proto::nodeservoceproto::node_service_server::NodeServiceServer<NodeApi>>()
        .await;
    health
        .set_serving::<faas_proto::node_admin::node_admin_server::NodeAdminServer<NodeAdminApi>>()
        .await;
    if let Some((cgroups, isolation)) = said {
        cgroups.log();
        isolation.log();
    }
    tracing::info!(
        node_id = %node.identity().node_id,
        live_id = %node.identity().live_id,
        runtime = ?config.runtime,
        memory_bytes = config.memory_bytes,
        max_overcommit = config.max_overcommit,
        warm_pool = config.warm_pool,
        orphan_timeout_ms = config.orphan_timeout_ms,
        "node service ready"
    );
    let gate = config.cluster.gate("node service");
    let served = tonic::transport::Server::builder()
        .layer(api::admin::stamp_calls(node.activity().clone()))
        .add_routes(faas_proto::reflection::routes(&[
            faas_proto::nodeservoceproto::node_service_server::SERVICE_NAME,
            faas_proto::node_admin::node_admin_server::SERVICE_NAME,
        ]))
        .add_service(health_service)
        .add_service(gate.guard(NodeApi::new(node.clone(), metrics).into_server()))
        .add_service(gate.guard(NodeAdminApi::new(node.clone()).into_server()))
        .serve_with_incoming_shutdown(faas_common::serve::incoming(listener), stop.wait())
        .await;
    stopper.abort();
    // Whatever ended the server, no container outlives it.
    node.shutdown().await;
    tracing::info!(node_id = %node.identity().node_id, "node service stopped");
    Ok(served?)
}

/// What `main` does: check the configuration and find the container binary, bind every
/// listener (gRPC and metrics), print the readiness line, serve until SIGINT/SIGTERM (or the
/// orphan timeout), then stop every container.
pub async fn main_with(config: Config) -> anyhow::Result<()> {
    if config.sweep {
        return sweep(&config).await;
    }
    let bundles = bundles(&config)?;
    let (runtime, said) = runtime(&config).await?;
    let listener = listen("--port", &config.host, config.port).await?;
    let metrics = listen_metrics(&config).await?;
    let addr = listener.local_addr().map_err(Error::LocalAddr)?;
    let (trigger, shutdown) = faas_common::shutdown::channel();
    tokio::spawn(async move {
        faas_common::shutdown::os_signal().await;
        trigger.trigger();
    });
    faas_common::serve::announce(addr);
    let parts = (runtime, bundles, said);
    serve(listener, metrics, config, parts, shutdown).await?;
    Ok(())
}
