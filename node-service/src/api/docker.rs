//! The `docker` runtime: each container is a real Docker container of the container-service
//! image, created through the Docker Engine API (bollard).
//!
//! A container gets the function's memory as its cgroup limit (swap off, so the kernel's OOM
//! killer acts at the limit), a CPU quota proportional to that memory, a pids limit, a
//! read-only root file system, `no-new-privileges`, no capabilities and a non-root user. It
//! joins the platform's user-defined bridge network, and its address is its IP there.
//!
//! Every container carries [`labels`]: its role (`function`), the platform instance, the node
//! and the function. At start-up the runtime removes containers of this instance and node
//! left by an earlier run; at shutdown it removes everything it made.
//!
//! A warm pool container is started `--unbound` with small limits ([`UNBOUND_MEMORY_BYTES`])
//! and the label `minifaas.pool` instead of `minifaas.function` (labels cannot change after
//! creation); when it is assigned a function its limits are raised to the function's with
//! Docker's update API (memory and swap together, CPU quota, pids).
//!
//! A function made of a bundle with an `image` runs in a container of that image, with the
//! container service mounted in as its entrypoint ([`super::docker_bundle`]); it may take
//! the bundle's start time on top of the readiness timeout. A container that exits before
//! it listens fails its create with the reason at the end of its logs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, ContainerStatsResponse, ContainerUpdateBody, EndpointSettings, HostConfig,
    Network, NetworkCreateRequest, NetworkingConfig,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListNetworksOptionsBuilder, StatsOptionsBuilder,
    StopContainerOptionsBuilder,
};
use futures::StreamExt;

use super::docker_bundle::{self, ImageRun};
use crate::model::bundle::Bundle;
use crate::model::{ContainerHandle, ContainerSpec, ContainerUsage, Liveness};
use crate::service::{Runtime, RuntimeError};

mod containers;
mod engine;

pub use engine::{container_ip, ensure_network, remove_network_if_unused, settle_network};
use engine::{cpu_sample, memory_used};
pub use faas_common::docker::{force_remove, is_not_found, labels, name_part, remove_labelled};

/// The CPU period the quota is expressed in (Docker's default, 100 ms).
pub const CPU_PERIOD_MICROS: i64 = 100_000;
/// The memory limit of a warm pool container until it is assigned a function (an idle
/// container service holds a few MiB).
pub const UNBOUND_MEMORY_BYTES: u64 = 64 << 20;
/// The smallest quota Docker accepts (1 ms per period).
const MIN_CPU_QUOTA_MICROS: i64 = 1_000;
/// How long a container gets to stop after SIGTERM before it is killed.
const STOP_GRACE_SECS: i32 = 2;
/// How long (polls × step) `liveness` waits for a dying container to be reported dead.
const EXIT_CONFIRM_POLLS: u32 = 40;
const EXIT_CONFIRM_STEP: Duration = Duration::from_millis(25);
/// Pause between readiness probes of a starting container.
const READY_STEP: Duration = Duration::from_millis(5);

/// The CPU quota (µs per [`CPU_PERIOD_MICROS`]) of a container with `memory_bytes` of
/// memory at `cpus_per_gib` vCPU per GiB.
pub fn cpu_quota_micros(memory_bytes: u64, cpus_per_gib: f64) -> i64 {
    let cpus = memory_bytes as f64 / faas_common::units::GIB as f64 * cpus_per_gib;
    ((cpus * CPU_PERIOD_MICROS as f64).round() as i64).max(MIN_CPU_QUOTA_MICROS)
}

/// How function containers are made.
#[derive(Clone, Debug)]
pub struct DockerOptions {
    /// The container-service image.
    pub image: String,
    /// The user-defined bridge network containers join (created if missing).
    pub network: String,
    /// The platform instance label.
    pub instance: String,
    /// The node these containers belong to.
    pub node_id: String,
    /// vCPU per GiB of memory.
    pub cpus_per_gib: f64,
    /// The pids limit of each container.
    pub pids_limit: i64,
    /// `uid:gid` the container service runs as (never root).
    pub user: String,
    /// The port the container service listens on inside its container.
    pub port: u16,
    /// How long a new container may take to listen.
    pub ready_timeout: Duration,
    /// The static container-service binary on the Docker host, mounted into image
    /// functions' containers (`None`: image functions are refused).
    pub watchdog_bin: Option<std::path::PathBuf>,
}

/// Why a started container is not listening.
enum NotListening {
    /// It exited (the message says how, and why if its logs tell).
    Exited(String),
    /// It runs but did not listen in time.
    Silent(String),
}

#[derive(Debug)]
struct DockerContainer {
    docker_id: String,
    memory_limit: AtomicU64,
    /// The last (container CPU ns, system CPU ns) sample, for `docker stats`' CPU percent.
    cpu: Mutex<Option<(u64, u64)>>,
}

/// Containers as Docker containers.
#[derive(Debug)]
pub struct DockerRuntime {
    docker: Docker,
    options: DockerOptions,
    containers: Mutex<HashMap<String, Arc<DockerContainer>>>,
    closed: AtomicBool,
    /// The network's id: containers join it by id (a name Docker may hold twice is
    /// ambiguous).
    network_id: String,
    created_network: bool,
}

fn unavailable(what: &str, e: DockerError) -> RuntimeError {
    RuntimeError::Unavailable(format!("docker: {what}: {e}"))
}

/// Percent of one core between two samples, as `docker stats` computes it.
pub fn cpu_percent(prev: (u64, u64), now: (u64, u64), online_cpus: u32) -> f64 {
    let used = now.0.saturating_sub(prev.0) as f64;
    let system = now.1.saturating_sub(prev.1) as f64;
    if system <= 0.0 {
        return 0.0;
    }
    used / system * f64::from(online_cpus.max(1)) * 100.0
}

#[async_trait]
impl Runtime for DockerRuntime {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn create(
        &self,
        spec: &ContainerSpec,
        bundle: Option<&Bundle>,
    ) -> Result<ContainerHandle, RuntimeError> {
        let image = match bundle {
            Some(bundle) => Some(
                docker_bundle::prepare(&self.docker, bundle, self.options.watchdog_bin.as_deref())
                    .await?,
            ),
            None => None,
        };
        let ready = match bundle {
            Some(bundle) => bundle.ready_within(self.options.ready_timeout),
            None => self.options.ready_timeout,
        };
        let id = uuid::Uuid::new_v4().to_string();
        let name = self.name(&spec.function_name, &id);
        let body = self.body(&id, Some(spec), image.as_ref());
        self.launch(
            id,
            name,
            body,
            &spec.function_name,
            spec.memory_bytes,
            ready,
        )
        .await
    }

    async fn start_unbound(&self) -> Result<ContainerHandle, RuntimeError> {
        let id = uuid::Uuid::new_v4().to_string();
        let name = self.name("pool", &id);
        let body = self.body(&id, None, None);
        let ready = self.options.ready_timeout;
        self.launch(id, name, body, "(warm pool)", UNBOUND_MEMORY_BYTES, ready)
            .await
    }

    async fn assign(&self, id: &str, spec: &ContainerSpec) -> Result<(), RuntimeError> {
        let container = self
            .get(id)
            .ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
        // Memory and swap go together: Docker refuses a memory limit above the swap limit
        // already set.
        self.docker
            .update_container(&container.docker_id, self.limits(spec.memory_bytes))
            .await
            .map_err(|e| RuntimeError::StartFailed {
                function: spec.function_name.clone(),
                message: format!("docker update of the warm pool container's limits: {e}"),
            })?;
        container
            .memory_limit
            .store(spec.memory_bytes, Ordering::Relaxed);
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let container = self
            .table()
            .remove(id)
            .ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
        self.stop_and_remove(&container.docker_id).await;
        tracing::debug!(container = %id, docker = %container.docker_id, "container removed");
        Ok(())
    }

    async fn stats(&self) -> Result<Vec<ContainerUsage>, RuntimeError> {
        if self.closed.load(Ordering::Acquire) {
            // The table was emptied by the shutdown: an empty list would read as "all gone".
            return Err(RuntimeError::Unavailable(
                "the node service is shutting down".into(),
            ));
        }
        let all: Vec<(String, Arc<DockerContainer>)> = self
            .table()
            .iter()
            .map(|(id, c)| (id.clone(), c.clone()))
            .collect();
        futures::future::join_all(all.into_iter().map(|(id, c)| self.sample(id, c)))
            .await
            .into_iter()
            .collect()
    }

    async fn liveness(&self, id: &str) -> Liveness {
        let Some(c) = self.get(id) else {
            return Liveness::Unknown;
        };
        // Asked because a call failed: the connection breaks as the kernel kills the
        // process, a moment before Docker records the container as exited.
        for _ in 0..EXIT_CONFIRM_POLLS {
            match self.probe_state(&c.docker_id).await {
                Liveness::Running => tokio::time::sleep(EXIT_CONFIRM_STEP).await,
                other => return other,
            }
        }
        Liveness::Running
    }

    async fn shutdown(&self) {
        self.closed.store(true, Ordering::Release);
        let all: Vec<Arc<DockerContainer>> = self.table().drain().map(|(_, c)| c).collect();
        if !all.is_empty() {
            tracing::info!(containers = all.len(), "removing containers");
        }
        futures::future::join_all(all.iter().map(|c| self.stop_and_remove(&c.docker_id))).await;
        // Whatever a failed create left behind.
        remove_labelled(&self.docker, &Self::own_filters(&self.options)).await;
        if self.created_network {
            remove_network_if_unused(&self.docker, &self.network_id).await;
        }
    }
}

#[cfg(test)]
mod tests;
