//! The scheduler: the brain of the platform. It serves the contest's
//! `schedulerproto.Scheduler` (`AcquireContainer`, `ReturnContainer`), hands out warm
//! containers, creates containers through the node services, and reserves and releases nodes
//! through the resource manager. It never talks to a container.
//!
//! Layers: [`model`] (plain data) → [`store`] (tables and indexes) → [`core`] (the pure policy
//! state machine: events in, decisions out, time as an argument) and [`policies`] (the
//! policies by name) → [`service`] (the async driver, ports) → [`api`] (tonic, clients, clock,
//! metrics). The e2e simulator drives [`core::Policy::handle`] directly in virtual time.
//! [`config`] holds the flags ([`Config`]); [`error`] the crate's errors and their one
//! mapping to `tonic::Status`.

pub mod api;
pub mod config;
pub mod core;
pub mod error;
pub mod model;
pub mod policies;
pub mod service;
pub mod store;

pub use config::Config;
pub use error::Error;

use std::sync::Arc;
use std::time::Duration;

use faas_common::shutdown::Shutdown;
use faas_proto::scheduler_admin::scheduler_admin_server::SchedulerAdminServer;
use faas_proto::schedulerproto::scheduler_server::SchedulerServer;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::api::{
    DecisionsApi, GrpcNodes, GrpcResource, InstantClock, Metrics, SchedulerAdminApi, SchedulerApi,
};
use crate::core::{PolicyOptions, policy_by_name};
use crate::service::{Scheduler, ServiceOptions};
use faas_proto::decisions::decisions_server::DecisionsServer;

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
    service.keep_decisions(config.decisions_kept);
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
    health
        .set_serving::<DecisionsServer<DecisionsApi<GrpcResource, GrpcNodes, InstantClock>>>()
        .await;
    tracing::info!(policy = %config.policy, resource_manager = %config.resource_manager, "scheduler serving");
    let gate = config.cluster.gate("scheduler");
    let served = tonic::transport::Server::builder()
        .add_routes(faas_proto::reflection::routes(&[
            faas_proto::schedulerproto::scheduler_server::SERVICE_NAME,
            faas_proto::scheduler_admin::scheduler_admin_server::SERVICE_NAME,
            faas_proto::decisions::decisions_server::SERVICE_NAME,
        ]))
        .add_service(health_service)
        .add_service(gate.guard(SchedulerServer::new(api)))
        .add_service(gate.guard(SchedulerAdminServer::new(SchedulerAdminApi::new(
            service.clone(),
        ))))
        .add_service(gate.guard(DecisionsServer::new(DecisionsApi::new(
            service.clone(),
            shutdown.clone(),
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
