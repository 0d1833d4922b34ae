//! The scheduler: the brain of the platform. It serves the contest's
//! `schedulerproto.Scheduler` (`AcquireContainer`, `ReturnContainer`), hands out warm
//! containers, creates containers through the node services, and reserves and releases nodes
//! through the resource manager. It never talks to a container.
//!
//! Layers: [`model`] (plain data) → [`store`] (tables and indexes) → [`core`] (the pure policy
//! state machine: events in, decisions out, time as an argument) and [`policies`] (the
//! policies by name) → [`service`] (the async driver, ports) → [`api`] (tonic, clients, clock,
//! metrics). The e2e simulator drives [`core::Policy::handle`] directly in virtual time.

pub mod api;
pub mod core;
pub mod model;
pub mod policies;
pub mod service;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use faas_common::shutdown::Shutdown;
use faas_proto::scheduler_admin::scheduler_admin_server::SchedulerAdminServer;
use faas_proto::schedulerproto::scheduler_server::SchedulerServer;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::api::{GrpcNodes, GrpcResource, InstantClock, Metrics, SchedulerAdminApi, SchedulerApi};
use crate::core::{PolicyOptions, UnknownPolicy, policy_by_name};
use crate::service::{Scheduler, ServiceOptions};

/// The scheduler's settings. Every flag also reads an environment variable.
#[derive(clap::Args, Clone, Debug)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "FAAS_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (the contest's `SERVICE_PORT`).
    #[arg(long, env = "SERVICE_PORT", default_value_t = 10600)]
    pub port: u16,
    /// The resource manager, `host:port`.
    #[arg(
        long,
        env = "RESOURCE_MANAGER_ENDPOINT",
        default_value = "127.0.0.1:10400"
    )]
    pub resource_manager: String,
    /// The scheduling policy (see `core::POLICY_NAMES`).
    #[arg(long, env = "SCHEDULER_POLICY", default_value = policies::DEFAULT_POLICY)]
    pub policy: String,
    /// How often every node's `GetStats` is polled, ms (0 = never).
    #[arg(long, env = "SCHEDULER_STATS_INTERVAL_MS", default_value_t = 1000)]
    pub stats_interval_ms: u64,
    /// Port of the Prometheus `/metrics` endpoint (0 or unset = off).
    #[arg(long, env = "SCHEDULER_METRICS_PORT")]
    pub metrics_port: Option<u16>,
    /// How long an acquire waits when its caller sent no deadline, ms.
    #[arg(long, env = "SCHEDULER_ACQUIRE_TIMEOUT_MS", default_value_t = 30_000)]
    pub acquire_timeout_ms: u64,
    /// Memory a node is assumed to offer until one reports it, bytes (contest: 3072 MiB).
    #[arg(long, env = "SCHEDULER_NODE_MEMORY_BYTES", default_value_t = model::CONTEST_NODE_BYTES)]
    pub node_memory_bytes: u64,
    /// How long one `GetStats` poll may take before the node counts as not answering, ms.
    #[arg(long, env = "SCHEDULER_PROBE_TIMEOUT_MS", default_value_t = service::PROBE_TIMEOUT_MS, value_parser = clap::value_parser!(u64).range(1..))]
    pub probe_timeout_ms: u64,
    /// A node that fails every observation this long is lost: its containers are forgotten,
    /// its waiting requests placed elsewhere, and it is released, ms.
    #[arg(long, env = "SCHEDULER_NODE_LOST_AFTER_MS", default_value_t = core::NODE_LOST_AFTER_MS, value_parser = clap::value_parser!(u64).range(1..))]
    pub node_lost_after_ms: u64,
    /// A lease held this long past its function's timeout (a caller that never returned) is
    /// reclaimed, ms.
    #[arg(long, env = "SCHEDULER_LEASE_GRACE_MS", default_value_t = core::LEASE_GRACE_MS)]
    pub lease_grace_ms: u64,
    /// How often the nodes reserved at the resource manager are reconciled with the ones the
    /// scheduler holds (a restarted scheduler adopts them at start), ms; 0 = never.
    #[arg(long, env = "SCHEDULER_RECONCILE_INTERVAL_MS", default_value_t = service::RECONCILE_INTERVAL_MS)]
    pub reconcile_interval_ms: u64,
    /// The cluster token: required of every caller of `Scheduler` and `SchedulerAdmin`, and
    /// sent to the resource manager and the nodes (see `faas_common::token`).
    #[command(flatten)]
    pub cluster: faas_common::token::TokenArgs,
}

impl Config {
    /// The defaults, listening on `127.0.0.1:0` and reaching the resource manager at
    /// `resource_manager` (for tests and embedding).
    pub fn local(resource_manager: impl Into<String>) -> Config {
        Config {
            host: "127.0.0.1".into(),
            port: 0,
            resource_manager: resource_manager.into(),
            policy: policies::baseline::NAME.into(),
            stats_interval_ms: 1000,
            metrics_port: None,
            acquire_timeout_ms: 30_000,
            node_memory_bytes: model::CONTEST_NODE_BYTES,
            probe_timeout_ms: service::PROBE_TIMEOUT_MS,
            node_lost_after_ms: core::NODE_LOST_AFTER_MS,
            lease_grace_ms: core::LEASE_GRACE_MS,
            reconcile_interval_ms: service::RECONCILE_INTERVAL_MS,
            cluster: faas_common::token::TokenArgs::default(),
        }
    }
}

/// Why the scheduler could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `--policy` names no policy.
    #[error(transparent)]
    Policy(#[from] UnknownPolicy),
    /// Binding or connecting failed.
    #[error(transparent)]
    Serve(#[from] faas_common::serve::ServeError),
    /// The gRPC server failed.
    #[error("the gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves the scheduler on `listener` until `shutdown` fires. Then waiting acquires fail with
/// `UNAVAILABLE` "scheduler is shutting down", the timers stop and in-flight calls finish.
pub async fn run(listener: TcpListener, config: Config, shutdown: Shutdown) -> Result<(), Error> {
    let opts = PolicyOptions {
        expected_node_bytes: config.node_memory_bytes,
        node_lost_after_ms: config.node_lost_after_ms,
        lease_grace_ms: config.lease_grace_ms,
        ..PolicyOptions::default()
    };
    let policy = policy_by_name(&config.policy, &opts)?;
    let auth = config.cluster.auth();
    let channel = faas_common::serve::connect_lazy(&config.resource_manager)?;
    let resource = GrpcResource::new(
        auth.channel(channel),
        config.resource_manager.clone(),
        config.node_memory_bytes,
    );
    let service = Scheduler::new(
        policy,
        resource,
        GrpcNodes::new(auth),
        InstantClock::new(),
        ServiceOptions {
            stats_interval_ms: config.stats_interval_ms,
            probe_timeout_ms: config.probe_timeout_ms,
            reconcile_interval_ms: config.reconcile_interval_ms,
        },
    );
    let metrics = Arc::new(Metrics::default());

    if let Some(port) = config.metrics_port.filter(|p| *p != 0) {
        let mut registry = Registry::default();
        let snap = service.clone();
        metrics.register(&mut registry, move || snap.snapshot());
        let metrics_listener = faas_common::serve::bind(&format!("{}:{port}", config.host)).await?;
        if let Ok(addr) = metrics_listener.local_addr() {
            tracing::info!(%addr, "metrics on /metrics");
        }
        tokio::spawn(faas_common::metrics::serve(
            metrics_listener,
            Arc::new(registry),
            shutdown.clone(),
        ));
    }

    let tasks = service.start(shutdown.clone());
    // Waiting acquires must be answered for the server's graceful shutdown to complete.
    let stopper = {
        let service = service.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.wait().await;
            tracing::info!("scheduler shutting down");
            service.shutdown();
        })
    };

    let api = SchedulerApi::new(
        service.clone(),
        metrics,
        Duration::from_millis(config.acquire_timeout_ms),
    );
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<SchedulerServer<SchedulerApi<GrpcResource, GrpcNodes, InstantClock>>>()
        .await;
    health
        .set_serving::<SchedulerAdminServer<SchedulerAdminApi<GrpcResource, GrpcNodes, InstantClock>>>()
        .await;
    tracing::info!(policy = %config.policy, resource_manager = %config.resource_manager, "scheduler serving");
    let gate = config.cluster.gate("scheduler");
    let served = tonic::transport::Server::builder()
        .add_routes(faas_proto::reflection::routes(&[
            faas_proto::schedulerproto::scheduler_server::SERVICE_NAME,
            faas_proto::scheduler_admin::scheduler_admin_server::SERVICE_NAME,
        ]))
        .add_service(health_service)
        .add_service(gate.guard(SchedulerServer::new(api)))
        .add_service(gate.guard(SchedulerAdminServer::new(SchedulerAdminApi::new(
            service.clone(),
        ))))
        .serve_with_incoming_shutdown(faas_common::serve::incoming(listener), shutdown.wait())
        .await;
    service.shutdown();
    stopper.abort();
    for task in tasks {
        task.abort();
        let _ = task.await;
    }
    served?;
    tracing::info!("scheduler stopped");
    Ok(())
}

/// What `main` does: bind `host:port`, announce the address, serve until SIGINT/SIGTERM.
pub async fn main_with(config: Config) -> anyhow::Result<()> {
    // Refuse a bad --policy before announcing a listening address.
    policy_by_name(&config.policy, &PolicyOptions::default())?;
    let listener = faas_common::serve::bind(&format!("{}:{}", config.host, config.port)).await?;
    faas_common::serve::announce(listener.local_addr()?);
    let (trigger, shutdown) = faas_common::shutdown::channel();
    tokio::spawn(async move {
        faas_common::shutdown::os_signal().await;
        trigger.trigger();
    });
    run(listener, config, shutdown).await?;
    Ok(())
}
