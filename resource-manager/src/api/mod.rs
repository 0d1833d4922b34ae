//! The technical edges: the gRPC server, the node providers (local, static, docker), the
//! node-service client, the refill timer, the node health watch, the state file and the
//! metrics endpoint. [`run`] wires them together; [`run_with`] also stops as a crash would.

mod clock;
mod docker;
mod grpc;
mod health;
mod local;
mod metrics;
mod node_client;
mod node_metrics;
mod processes;
#[cfg(test)]
mod processes_fake;
#[cfg(test)]
pub(crate) mod provider_fake;
mod state_file;
#[cfg(test)]
pub(crate) mod state_memory;
mod static_nodes;

use std::sync::Arc;
use std::time::Duration;

use faas_common::launch::{Launcher, Lifetime};
use faas_common::shutdown::Shutdown;
use faas_proto::resourcemanagerproto::resource_manager_server::ResourceManagerServer;
use tokio::net::TcpListener;

pub use clock::Clock;
pub use docker::{DockerOptions, DockerProvider, SwarmOptions, SwarmProvider};
pub use grpc::{ResourceManagerApi, node_desc};
pub use health::{WatchOptions, watch};
pub use local::{LocalOptions, LocalProvider};
pub use metrics::Counters;
pub use node_client::GrpcNodes;
pub use processes::{ProcessRef, ProcessTable, SystemProcesses};
pub use state_file::StateFile;
pub use static_nodes::StaticProvider;

use crate::config::{Config, ProviderKind};
use crate::core::{PoolRules, SavedState};
use crate::error::Error;
use crate::service::{Manager, NodeProvider, Ports, StateStore};

/// Serves the resource manager on `listener` until `shutdown` fires, then stops every node
/// it started (and every node it took back) and returns.
pub async fn run(listener: TcpListener, config: Config, shutdown: Shutdown) -> Result<(), Error> {
    run_with(listener, config, shutdown, Shutdown::never()).await
}

/// [`run`] with a second way to stop, for tests and fault injection: when `detach` fires
/// (and `shutdown` has not), the manager stops serving as a crash would. Its nodes keep
/// running and the state file stays as it is, so a manager started again on the same
/// `--state-dir` takes them back; without a state dir the nodes die with their handles.
pub async fn run_with(
    listener: TcpListener,
    config: Config,
    shutdown: Shutdown,
    detach: Shutdown,
) -> Result<(), Error> {
    let mut rules = config.pool_rules()?;
    let orphan_timeout = config.node_orphan_timeout()?;
    let code = config.node_code()?;
    let state = match &config.state_dir {
        Some(dir) => {
            let file = StateFile::open(dir, provider_name(config.provider))?;
            let saved = file.load()?.unwrap_or_default();
            tracing::info!(
                file = %file.path().display(),
                nodes = saved.nodes.len(),
                "state file read"
            );
            Some(State {
                store: Arc::new(file),
                saved,
            })
        }
        None => None,
    };
    let stops = Stops { shutdown, detach };
    match config.provider {
        ProviderKind::Local => {
            let launcher = match &config.node_service_bin {
                Some(path) => Launcher::new(path.clone(), vec![]),
                None => Launcher::find("node-service")?,
            };
            tracing::info!(node_service = %launcher.program().display(), "local node provider");
            let provider = LocalProvider::new(
                launcher,
                LocalOptions {
                    runtime: config.node_runtime.clone(),
                    warm_pool: config.node_warm_pool,
                    start_timeout: Duration::from_millis(config.node_start_timeout_ms),
                    stop_grace: Duration::from_millis(config.node_stop_grace_ms),
                    lifetime: if state.is_some() {
                        Lifetime::Detached
                    } else {
                        Lifetime::Guarded
                    },
                    orphan_timeout,
                    code,
                    metrics_port_base: config.node_metrics_port_base(
                        std::env::var(crate::config::NODE_METRICS_PORT_ENV)
                            .ok()
                            .as_deref(),
                    )?,
                },
            );
            serve(listener, &config, rules, provider, stops, state).await
        }
        ProviderKind::Static => {
            let endpoints = config.static_endpoints()?;
            if rules.max_nodes > endpoints.len() {
                tracing::warn!(
                    max_nodes = rules.max_nodes,
                    addresses = endpoints.len(),
                    "fewer static node addresses than --max-nodes: at most one node per address"
                );
                rules.max_nodes = endpoints.len();
                rules.ready_nodes = rules.ready_nodes.min(endpoints.len());
            }
            let provider = StaticProvider::new(
                endpoints,
                Duration::from_millis(config.node_start_timeout_ms),
            );
            serve(listener, &config, rules, provider, stops, state).await
        }
        ProviderKind::Docker => {
            let provider =
                DockerProvider::connect(docker_options(&config, &state, orphan_timeout, code)?)
                    .await
                    .map_err(Error::Docker)?;
            log_docker_provider(&config);
            serve(listener, &config, rules, provider, stops, state).await
        }
        ProviderKind::Swarm => {
            let provider = SwarmProvider::connect(SwarmOptions {
                docker: docker_options(&config, &state, orphan_timeout, code)?,
                placement_timeout: Duration::from_millis(config.swarm_placement_timeout_ms),
                stack: config.swarm_stack.clone(),
            })
            .await
            .map_err(Error::Docker)?;
            log_docker_provider(&config);
            serve(listener, &config, rules, provider, stops, state).await
        }
    }
}

/// The docker or swarm provider's start line.
fn log_docker_provider(config: &Config) {
    tracing::info!(
        provider = provider_name(config.provider),
        image = %config.docker_node_image,
        network = %config.docker_network,
        instance = %config.docker_instance,
        "docker node provider"
    );
}

/// How the docker and swarm providers make nodes, from the `--docker-*` flags.
fn docker_options(
    config: &Config,
    state: &Option<State>,
    orphan_timeout: Option<Duration>,
    code: crate::config::NodeCode,
) -> Result<DockerOptions, Error> {
    Ok(DockerOptions {
        node_image: config.docker_node_image.clone(),
        container_image: config.docker_container_image.clone(),
        network: config.docker_network.clone(),
        instance: config.docker_instance.clone(),
        socket: config.docker_socket.clone(),
        cpus_per_gib: config.docker_cpus_per_gib()?.to_string(),
        warm_pool: config.node_warm_pool,
        node_port: 7000,
        start_timeout: Duration::from_millis(config.node_start_timeout_ms),
        stop_grace: Duration::from_millis(config.node_stop_grace_ms),
        keep_nodes: state.is_some(),
        orphan_timeout,
        code,
        machine: String::new(),
    })
}

/// Puts node `node_id`, taken back from an earlier run, into a provider's table `nodes`,
/// unless the provider is closing or already has that id (the shared tail of the local and
/// docker providers' `adopt`).
fn register_adopted<T>(
    nodes: &mut std::collections::HashMap<String, T>,
    closed: &std::sync::atomic::AtomicBool,
    node_id: &str,
    node: T,
) -> Result<(), String> {
    if closed.load(std::sync::atomic::Ordering::Acquire) {
        return Err("the node provider is shutting down".to_string());
    }
    if nodes.contains_key(node_id) {
        return Err(format!("node {node_id} is already this provider's"));
    }
    nodes.insert(node_id.to_string(), node);
    Ok(())
}

/// Takes out of a provider's table `nodes` every node for which `gone` says why it is no
/// longer running (the shared part of the docker and swarm providers' `gone_nodes`).
fn take_gone<T>(
    nodes: &mut std::collections::HashMap<String, T>,
    gone: impl Fn(&T) -> Option<String>,
) -> Vec<(crate::service::GoneNode, T)> {
    let found: Vec<(String, String)> = nodes
        .iter()
        .filter_map(|(id, n)| Some((id.clone(), gone(n)?)))
        .collect();
    found
        .into_iter()
        .filter_map(|(node_id, detail)| {
            let node = nodes.remove(&node_id)?;
            Some((crate::service::GoneNode { node_id, detail }, node))
        })
        .collect()
}

/// The provider's name in the state file.
fn provider_name(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Local => "local",
        ProviderKind::Static => "static",
        ProviderKind::Docker => "docker",
        ProviderKind::Swarm => "swarm",
    }
}

/// The ways [`run_with`] stops.
struct Stops {
    /// Clean: every node stopped, the saved state emptied.
    shutdown: Shutdown,
    /// As a crash: nodes and saved state left as they are.
    detach: Shutdown,
}

/// The state store and what it held at start.
struct State {
    store: Arc<dyn StateStore>,
    saved: SavedState,
}

async fn serve<P: NodeProvider>(
    listener: TcpListener,
    config: &Config,
    rules: PoolRules,
    provider: P,
    stops: Stops,
    state: Option<State>,
) -> Result<(), Error> {
    let metrics_listener = match config.metrics_port.filter(|p| *p != 0) {
        Some(port) => Some(faas_common::serve::bind(&host_port(&config.host, port)).await?),
        None => None,
    };
    let counters = Counters::default();
    let node_call_timeout = Duration::from_millis(config.node_call_timeout_ms);
    let clock = Clock::new();
    let ports = Ports {
        clock: Arc::new(clock),
        nodes: Arc::new(GrpcNodes::new(config.cluster.auth())),
        metrics: Arc::new(counters.clone()),
    };
    let manager = Manager::new(rules, provider, ports, node_call_timeout);
    let (manager, saved) = match state {
        Some(State { store, saved }) => {
            let identify_timeout = match config.node_probe_timeout_ms {
                0 => node_call_timeout,
                ms => Duration::from_millis(ms),
            };
            (manager.with_state(store, identify_timeout), Some(saved))
        }
        None => (manager, None),
    };
    let manager = Arc::new(manager);

    // Everything below stops on `stop`, which fires on either way to stop, or when the
    // server ends.
    let Stops { shutdown, detach } = stops;
    let (stop_trigger, stop) = faas_common::shutdown::channel();
    let forward = {
        let trigger = stop_trigger.clone();
        let (shutdown, detach) = (shutdown.clone(), detach.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.wait() => {}
                _ = detach.wait() => {}
            }
            trigger.trigger();
        })
    };
    let metrics_task = metrics_listener.map(|listener| {
        let registry = metrics::registry(&counters, manager.pool_handle(), clock);
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "metrics on /metrics");
        }
        tokio::spawn(faas_common::metrics::serve(
            listener,
            Arc::new(registry),
            stop.clone(),
        ))
    });

    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_not_serving::<ResourceManagerServer<ResourceManagerApi<P>>>()
        .await;
    let warm_up = {
        let manager = manager.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            match saved {
                Some(saved) => manager.recover(saved, stop).await,
                None => manager.warm_up(stop).await,
            }
            reporter
                .set_serving::<ResourceManagerServer<ResourceManagerApi<P>>>()
                .await;
        })
    };
    let driver = tokio::spawn(manager.clone().drive(stop.clone()));
    let watcher = tokio::spawn(watch(manager.clone(), watch_options(config), stop.clone()));

    let served = tonic::transport::Server::builder()
        .add_routes(faas_proto::reflection::routes(&[
            faas_proto::resourcemanagerproto::resource_manager_server::SERVICE_NAME,
        ]))
        .add_service(health)
        .add_service(
            config
                .cluster
                .gate("resource manager")
                .guard(ResourceManagerServer::new(ResourceManagerApi::new(
                    manager.clone(),
                ))),
        )
        .serve_with_incoming_shutdown(faas_common::serve::incoming(listener), stop.clone().wait())
        .await;
    if let Err(e) = &served {
        tracing::error!(error = %e, "gRPC server failed; stopping");
    }

    stop_trigger.trigger();
    forward.abort();
    let _ = warm_up.await;
    let _ = driver.await;
    let _ = watcher.await;
    if detach.is_triggered() && !shutdown.is_triggered() {
        manager.detach().await;
    } else {
        manager.shutdown().await;
    }
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    served.map_err(Error::from)
}

/// The health watch's settings from the `--node-probe-*` flags (interval 0: no probes).
fn watch_options(config: &Config) -> WatchOptions {
    WatchOptions {
        probe_interval: (config.node_probe_interval_ms > 0)
            .then(|| Duration::from_millis(config.node_probe_interval_ms)),
        probe_timeout: Duration::from_millis(config.node_probe_timeout_ms),
    }
}

/// `host:port`, with brackets around an IPv6 host.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// What `main` does: bind, announce the readiness line, serve until SIGINT/SIGTERM, stop cleanly.
pub async fn main_with(config: Config) -> anyhow::Result<()> {
    let listener = faas_common::serve::bind(&host_port(&config.host, config.port)).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "resource manager listening");
    faas_common::serve::announce(addr);
    let (trigger, shutdown) = faas_common::shutdown::channel();
    tokio::spawn(async move {
        faas_common::shutdown::os_signal().await;
        tracing::info!("shutting down");
        trigger.trigger();
    });
    run(listener, config, shutdown).await?;
    Ok(())
}
