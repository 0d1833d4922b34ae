//! The technical edges: the gRPC server, the node providers (local, static, docker), the
//! node-service client, the refill timer, the node health watch and the metrics endpoint.
//! [`run`] wires them together.

mod clock;
mod docker;
mod grpc;
mod health;
mod local;
mod manager;
mod metrics;
mod node_client;
mod static_nodes;

use std::sync::Arc;
use std::time::Duration;

use faas_common::launch::Launcher;
use faas_common::shutdown::Shutdown;
use faas_proto::resourcemanagerproto::resource_manager_server::ResourceManagerServer;
use tokio::net::TcpListener;

pub use clock::Clock;
pub use docker::{DockerOptions, DockerProvider};
pub use grpc::{ResourceManagerApi, node_desc};
pub use health::{WatchOptions, watch};
pub use local::{LocalOptions, LocalProvider};
pub use manager::Manager;
pub use metrics::Counters;
pub use static_nodes::StaticProvider;

use crate::config::{Config, ProviderKind};
use crate::error::Error;
use crate::service::{NodeProvider, PoolRules};

/// Serves the resource manager on `listener` until `shutdown` fires, then stops every node
/// it started and returns.
pub async fn run(listener: TcpListener, config: Config, shutdown: Shutdown) -> Result<(), Error> {
    let mut rules = config.pool_rules()?;
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
                },
            );
            serve(listener, &config, rules, provider, shutdown).await
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
            serve(listener, &config, rules, provider, shutdown).await
        }
        ProviderKind::Docker => {
            let cpus = config.docker_cpus_per_gib()?;
            let provider = DockerProvider::connect(DockerOptions {
                node_image: config.docker_node_image.clone(),
                container_image: config.docker_container_image.clone(),
                network: config.docker_network.clone(),
                instance: config.docker_instance.clone(),
                socket: config.docker_socket.clone(),
                cpus_per_gib: cpus.to_string(),
                warm_pool: config.node_warm_pool,
                node_port: 7000,
                start_timeout: Duration::from_millis(config.node_start_timeout_ms),
                stop_grace: Duration::from_millis(config.node_stop_grace_ms),
            })
            .await
            .map_err(Error::Docker)?;
            tracing::info!(
                image = %config.docker_node_image,
                network = %config.docker_network,
                instance = %config.docker_instance,
                "docker node provider"
            );
            serve(listener, &config, rules, provider, shutdown).await
        }
    }
}

async fn serve<P: NodeProvider>(
    listener: TcpListener,
    config: &Config,
    rules: PoolRules,
    provider: P,
    shutdown: Shutdown,
) -> Result<(), Error> {
    let metrics_listener = match config.metrics_port.filter(|p| *p != 0) {
        Some(port) => Some(faas_common::serve::bind(&host_port(&config.host, port)).await?),
        None => None,
    };
    let counters = Counters::default();
    let manager = Arc::new(Manager::new(
        rules,
        provider,
        counters.clone(),
        Duration::from_millis(config.node_call_timeout_ms),
        Clock::new(),
    ));

    // Everything below stops on `stop`, which fires on `shutdown` or when the server ends.
    let (stop_trigger, stop) = faas_common::shutdown::channel();
    let forward = {
        let trigger = stop_trigger.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.wait().await;
            trigger.trigger();
        })
    };
    let metrics_task = metrics_listener.map(|listener| {
        let registry = metrics::registry(&counters, manager.pool_handle(), manager.clock());
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
            manager.warm_up(stop).await;
            reporter
                .set_serving::<ResourceManagerServer<ResourceManagerApi<P>>>()
                .await;
        })
    };
    let driver = tokio::spawn(manager.clone().drive(stop.clone()));
    let watcher = tokio::spawn(watch(manager.clone(), watch_options(config), stop.clone()));

    let served = tonic::transport::Server::builder()
        .add_service(health)
        .add_service(ResourceManagerServer::new(ResourceManagerApi::new(
            manager.clone(),
        )))
        .serve_with_incoming_shutdown(faas_common::serve::incoming(listener), shutdown.wait())
        .await;
    if let Err(e) = &served {
        tracing::error!(error = %e, "gRPC server failed; stopping");
    }

    stop_trigger.trigger();
    forward.abort();
    let _ = warm_up.await;
    let _ = driver.await;
    let _ = watcher.await;
    manager.shutdown().await;
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
