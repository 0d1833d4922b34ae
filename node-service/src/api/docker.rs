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
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, ContainerStatsResponse, ContainerUpdateBody, EndpointSettings, HostConfig,
    Network, NetworkCreateRequest, NetworkingConfig,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, ListNetworksOptionsBuilder,
    RemoveContainerOptionsBuilder, StatsOptionsBuilder, StopContainerOptionsBuilder,
};
use futures::StreamExt;

use super::docker_bundle::{self, ImageRun};
use crate::model::bundle::Bundle;
use crate::model::{ContainerHandle, ContainerSpec, ContainerUsage, Liveness};
use crate::service::{Runtime, RuntimeError};

/// The labels the platform puts on every container and network it creates.
pub mod labels {
    /// `function` (a function container) or `node` (a node-service container).
    pub const ROLE: &str = "minifaas.role";
    /// The platform instance (one deployment or test run); orphan clean-up is per instance.
    pub const INSTANCE: &str = "minifaas.instance";
    /// The node a container belongs to.
    pub const NODE: &str = "minifaas.node";
    /// The function a container runs.
    pub const FUNCTION: &str = "minifaas.function";
    /// The platform's id of a function container (what the node service calls it).
    pub const CONTAINER: &str = "minifaas.container";
    /// On a network: the platform created it.
    pub const NETWORK: &str = "minifaas.network";
    /// `true` on a container started unbound for the warm pool (it has no
    /// [`FUNCTION`] label, even once bound).
    pub const POOL: &str = "minifaas.pool";
    /// The role of a function container.
    pub const ROLE_FUNCTION: &str = "function";
    /// The role of a node-service container.
    pub const ROLE_NODE: &str = "node";
}

/// The CPU period the quota is expressed in (Docker's default, 100 ms).
pub const CPU_PERIOD_MICROS: i64 = 100_000;
/// The memory limit of a warm pool container until it is assigned a function (an idle
/// container service holds a few MiB).
pub const UNBOUND_MEMORY_BYTES: u64 = 64 << 20;
/// The smallest quota Docker accepts (1 ms per period).
const MIN_CPU_QUOTA_MICROS: i64 = 1_000;
const GIB: f64 = 1_073_741_824.0;
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
    let cpus = memory_bytes as f64 / GIB * cpus_per_gib;
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

fn is_not_found(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Keeps `[a-zA-Z0-9_.-]` (what Docker allows in names), replacing anything else with `-`.
pub fn name_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect()
}

/// Makes sure the bridge network `name` exists; returns the id of the one to use and whether
/// this call created a network.
///
/// Docker does not keep network names unique, and nodes starting together each find the
/// name missing and create one. So after creating, every node [`settle_network`]s: all
/// keep the oldest network of that name and remove the others, and containers join it by
/// its id.
pub async fn ensure_network(
    docker: &Docker,
    name: &str,
    instance: &str,
) -> Result<(String, bool), DockerError> {
    let created = match docker.inspect_network(name, None).await {
        Ok(_) => false,
        Err(e) if is_not_found(&e) => {
            let request = NetworkCreateRequest {
                name: name.to_string(),
                driver: Some("bridge".into()),
                labels: Some(HashMap::from([
                    (labels::NETWORK.to_string(), "true".to_string()),
                    (labels::INSTANCE.to_string(), instance.to_string()),
                ])),
                ..Default::default()
            };
            docker.create_network(request).await?;
            true
        }
        Err(e) => return Err(e),
    };
    Ok((settle_network(docker, name).await?, created))
}

/// The oldest network named exactly `name` (the id); the other networks of that name are
/// removed where no container uses them (another node may be removing them too: errors
/// are ignored). Every node sees the oldest one, and none removes it, so all agree.
pub async fn settle_network(docker: &Docker, name: &str) -> Result<String, DockerError> {
    let options = ListNetworksOptionsBuilder::new()
        .filters(&HashMap::from([("name", vec![name])]))
        .build();
    let mut same: Vec<Network> = docker
        .list_networks(Some(options))
        .await?
        .into_iter()
        // The filter matches parts of names.
        .filter(|n| n.name.as_deref() == Some(name) && n.id.is_some())
        .collect();
    same.sort_by_cached_key(|n| (created_key(n.created.as_deref()), n.id.clone()));
    let mut same = same.into_iter();
    let Some(kept) = same.next().and_then(|n| n.id) else {
        // Removed between the create and the list (a node that stopped): inspect says.
        let n = docker.inspect_network(name, None).await?;
        return Ok(n.id.unwrap_or_else(|| name.to_string()));
    };
    // Docker refuses to remove a network a container uses.
    for id in same.filter_map(|n| n.id) {
        if let Err(e) = docker.remove_network(&id).await {
            tracing::debug!(network = name, id, error = %e, "duplicate network not removed");
        }
    }
    Ok(kept)
}

/// A network's creation time, comparable as text: Docker writes RFC 3339 with as few
/// fraction digits as it needs (`…:01.12Z` is after `…:01.1Z`), so the fraction is padded.
fn created_key(created: Option<&str>) -> String {
    let Some(created) = created else {
        return String::new();
    };
    let (seconds, rest) = created.split_once('.').unwrap_or((created, ""));
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    format!("{seconds}.{digits:0<9}")
}

/// Removes network `name` (a name or an id) if nothing uses it any more (errors are logged,
/// not returned).
pub async fn remove_network_if_unused(docker: &Docker, name: &str) {
    match docker.inspect_network(name, None).await {
        Ok(n) if n.containers.as_ref().is_none_or(|c| c.is_empty()) => {
            if let Err(e) = docker.remove_network(name).await {
                tracing::debug!(network = name, error = %e, "network not removed");
            }
        }
        _ => {}
    }
}

/// Force-removes every container (running or not) carrying all of `filters` (`key=value`
/// labels); returns how many were removed.
pub async fn remove_labelled(docker: &Docker, filters: &[String]) -> usize {
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&HashMap::from([("label", filters.to_vec())]))
        .build();
    let Ok(list) = docker.list_containers(Some(options)).await else {
        return 0;
    };
    let ids: Vec<String> = list.into_iter().filter_map(|c| c.id).collect();
    let removed = futures::future::join_all(ids.iter().map(|id| force_remove(docker, id))).await;
    removed.into_iter().filter(|ok| *ok).count()
}

/// Force-removes a container (and its anonymous volumes); true if it is gone.
pub async fn force_remove(docker: &Docker, id: &str) -> bool {
    let options = RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    match docker.remove_container(id, Some(options)).await {
        Ok(()) => true,
        Err(e) if is_not_found(&e) => true,
        Err(e) => {
            tracing::warn!(container = id, error = %e, "cannot remove container");
            false
        }
    }
}

/// The container's IP on `network`, from an inspect.
pub async fn container_ip(docker: &Docker, id: &str, network: &str) -> Option<String> {
    let inspect = docker.inspect_container(id, None).await.ok()?;
    inspect
        .network_settings?
        .networks?
        .get(network)?
        .ip_address
        .clone()
        .filter(|ip| !ip.is_empty())
}

/// `docker stats`' memory figure: usage minus the inactive page cache.
fn memory_used(stats: &ContainerStatsResponse) -> Option<u64> {
    let mem = stats.memory_stats.as_ref()?;
    let usage = mem.usage?;
    let cache = mem
        .stats
        .as_ref()
        .and_then(|s| {
            s.get("total_inactive_file")
                .or_else(|| s.get("inactive_file"))
        })
        .copied()
        .unwrap_or(0);
    Some(usage.saturating_sub(cache))
}

/// (container CPU ns, system CPU ns, online CPUs) of one sample.
fn cpu_sample(stats: &ContainerStatsResponse) -> Option<(u64, u64, u32)> {
    let cpu = stats.cpu_stats.as_ref()?;
    let total = cpu.cpu_usage.as_ref()?.total_usage?;
    let system = cpu.system_cpu_usage?;
    let online = cpu
        .online_cpus
        .filter(|n| *n > 0)
        .or_else(|| {
            cpu.cpu_usage
                .as_ref()?
                .percpu_usage
                .as_ref()
                .map(|v| v.len() as u32)
        })
        .unwrap_or(1);
    Some((total, system, online))
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

impl DockerRuntime {
    /// Connects to the local Docker daemon, makes sure the network exists and removes this
    /// node's containers left by an earlier run.
    pub async fn connect(options: DockerOptions) -> Result<DockerRuntime, RuntimeError> {
        let docker = Docker::connect_with_local_defaults()
            .map_err(|e| unavailable("cannot reach the daemon", e))?;
        docker
            .ping()
            .await
            .map_err(|e| unavailable("the daemon does not answer", e))?;
        let (network_id, created_network) =
            ensure_network(&docker, &options.network, &options.instance)
                .await
                .map_err(|e| {
                    unavailable(&format!("cannot create network {}", options.network), e)
                })?;
        let orphans = remove_labelled(&docker, &Self::own_filters(&options)).await;
        if orphans > 0 {
            tracing::warn!(
                orphans,
                node = %options.node_id,
                "removed function containers left by an earlier run"
            );
        }
        tracing::info!(image = %options.image, network = %options.network, "docker runtime ready");
        Ok(DockerRuntime {
            docker,
            options,
            containers: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            network_id,
            created_network,
        })
    }

    fn own_filters(options: &DockerOptions) -> Vec<String> {
        vec![
            format!("{}={}", labels::ROLE, labels::ROLE_FUNCTION),
            format!("{}={}", labels::INSTANCE, options.instance),
            format!("{}={}", labels::NODE, options.node_id),
        ]
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<DockerContainer>>> {
        self.containers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, id: &str) -> Option<Arc<DockerContainer>> {
        self.table().get(id).cloned()
    }

    /// The Docker id of a container (for diagnostics and tests).
    pub fn docker_id(&self, id: &str) -> Option<String> {
        Some(self.get(id)?.docker_id.clone())
    }

    /// The memory, swap, CPU and pids limits of a container with `memory_bytes` of memory:
    /// swap equal to the memory (no swap, a hard limit), the CPU quota proportional to it.
    fn limits(&self, memory_bytes: u64) -> ContainerUpdateBody {
        let memory = i64::try_from(memory_bytes).unwrap_or(i64::MAX);
        ContainerUpdateBody {
            memory: Some(memory),
            memory_swap: Some(memory),
            cpu_period: Some(CPU_PERIOD_MICROS),
            cpu_quota: Some(cpu_quota_micros(memory_bytes, self.options.cpus_per_gib)),
            pids_limit: Some(self.options.pids_limit),
            ..Default::default()
        }
    }

    /// The container to create: for `spec`'s function (of an image function when `image`
    /// is given), or unbound (a warm pool container) when `None`.
    fn body(
        &self,
        id: &str,
        spec: Option<&ContainerSpec>,
        image: Option<&ImageRun>,
    ) -> ContainerCreateBody {
        let o = &self.options;
        let mut cmd = vec![
            "--host".to_string(),
            "0.0.0.0".to_string(),
            "--port".to_string(),
            o.port.to_string(),
        ];
        let mut labels = HashMap::from([
            (labels::ROLE.to_string(), labels::ROLE_FUNCTION.to_string()),
            (labels::INSTANCE.to_string(), o.instance.clone()),
            (labels::NODE.to_string(), o.node_id.clone()),
            (labels::CONTAINER.to_string(), id.to_string()),
        ]);
        let memory_bytes = match spec {
            Some(spec) => {
                let (what, runs) = match image {
                    Some(_) => ("--bundle", docker_bundle::BUNDLE.to_string()),
                    None => ("--handler", spec.handler.clone()),
                };
                cmd.extend([
                    "--function-name".to_string(),
                    spec.function_name.clone(),
                    what.to_string(),
                    runs,
                    "--memory-bytes".to_string(),
                    spec.memory_bytes.to_string(),
                ]);
                if spec.timeout_ms > 0 {
                    cmd.push("--timeout-ms".to_string());
                    cmd.push(spec.timeout_ms.to_string());
                }
                labels.insert(labels::FUNCTION.to_string(), spec.function_name.clone());
                spec.memory_bytes
            }
            None => {
                cmd.push("--unbound".to_string());
                labels.insert(labels::POOL.to_string(), "true".to_string());
                UNBOUND_MEMORY_BYTES
            }
        };
        // The cgroup limit and the kernel's OOM killer act here, not the emulation.
        cmd.extend(["--emulate-memory-limit".to_string(), "false".to_string()]);
        let limits = self.limits(memory_bytes);
        let mut body = ContainerCreateBody {
            image: Some(o.image.clone()),
            cmd: Some(cmd),
            user: Some(o.user.clone()),
            labels: Some(labels),
            host_config: Some(HostConfig {
                memory: limits.memory,
                memory_swap: limits.memory_swap,
                cpu_period: limits.cpu_period,
                cpu_quota: limits.cpu_quota,
                pids_limit: limits.pids_limit,
                readonly_rootfs: Some(true),
                security_opt: Some(vec!["no-new-privileges".to_string()]),
                cap_drop: Some(vec!["ALL".to_string()]),
                network_mode: Some(self.network_id.clone()),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    self.network_id.clone(),
                    EndpointSettings::default(),
                )])),
            }),
            ..Default::default()
        };
        if let Some(image) = image {
            image.apply(&mut body);
        }
        body
    }

    /// Creates and starts the container `body` under `name`, waits up to `ready` until it
    /// listens and records it as `id`; `function` names it in errors and logs.
    async fn launch(
        &self,
        id: String,
        name: String,
        body: ContainerCreateBody,
        function: &str,
        memory_limit: u64,
        ready: Duration,
    ) -> Result<ContainerHandle, RuntimeError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(RuntimeError::Unavailable(
                "the node service is shutting down".into(),
            ));
        }
        let image = body.image.clone().unwrap_or_default();
        let start_failed = |message: String| RuntimeError::StartFailed {
            function: function.to_string(),
            message,
        };
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptionsBuilder::new().name(&name).build()),
                body,
            )
            .await
            .map_err(|e| match e {
                e if is_not_found(&e) && image == self.options.image => {
                    RuntimeError::Unavailable(format!(
                        "docker: image {image} not found: build it with deploy/build-images.sh \
                         ({e})"
                    ))
                }
                e => start_failed(format!("docker create: {e}")),
            })?;
        let docker_id = created.id;
        if let Err(e) = self.docker.start_container(&docker_id, None).await {
            force_remove(&self.docker, &docker_id).await;
            return Err(start_failed(format!("docker start: {e}")));
        }
        let Some(ip) = container_ip(&self.docker, &docker_id, &self.options.network).await else {
            force_remove(&self.docker, &docker_id).await;
            return Err(start_failed(format!(
                "the container has no address on network {}",
                self.options.network
            )));
        };
        let address = format!("{ip}:{}", self.options.port);
        if let Err(not_listening) = self.wait_listening(&docker_id, &address, ready).await {
            let error = match not_listening {
                NotListening::Exited(message) => start_failed(message),
                NotListening::Silent(message) => RuntimeError::NotReady {
                    function: function.to_string(),
                    message,
                },
            };
            force_remove(&self.docker, &docker_id).await;
            return Err(error);
        }
        let container = Arc::new(DockerContainer {
            docker_id: docker_id.clone(),
            memory_limit: AtomicU64::new(memory_limit),
            cpu: Mutex::new(None),
        });
        self.table().insert(id.clone(), container);
        if self.closed.load(Ordering::Acquire) {
            // Shutdown may have drained the table before this insert.
            self.table().remove(&id);
            force_remove(&self.docker, &docker_id).await;
            return Err(RuntimeError::Unavailable(
                "the node service is shutting down".into(),
            ));
        }
        tracing::debug!(container = %id, docker = %docker_id, %address, %function, "container started");
        Ok(ContainerHandle { id, address })
    }

    /// A container name: the instance, the node, `what` (the function or `pool`) and the
    /// start of the id.
    fn name(&self, what: &str, id: &str) -> String {
        format!(
            "minifaas-{}-{}-{}-{}",
            name_part(&self.options.instance),
            name_part(&self.options.node_id),
            name_part(what),
            &id[..8]
        )
    }

    /// Waits up to `ready` until the container's service accepts connections, or the
    /// container stops (then says why, from its logs).
    async fn wait_listening(
        &self,
        docker_id: &str,
        addr: &str,
        ready: Duration,
    ) -> Result<(), NotListening> {
        let deadline = Instant::now() + ready;
        let mut polls = 0u32;
        loop {
            let attempt = tokio::time::timeout(
                Duration::from_millis(200),
                tokio::net::TcpStream::connect(addr),
            )
            .await;
            if let Ok(Ok(_)) = attempt {
                return Ok(());
            }
            polls += 1;
            if polls.is_multiple_of(20) {
                let state = self
                    .docker
                    .inspect_container(docker_id, None)
                    .await
                    .ok()
                    .and_then(|i| i.state);
                if let Some(state) = state
                    && state.running == Some(false)
                {
                    let reason = match state.error.filter(|e| !e.is_empty()) {
                        Some(error) => Some(error),
                        None => docker_bundle::exit_reason(&self.docker, docker_id).await,
                    };
                    return Err(NotListening::Exited(format!(
                        "the container exited with code {} before listening: {}",
                        state.exit_code.unwrap_or(-1),
                        reason
                            .as_deref()
                            .unwrap_or("it logged no reason (see `docker logs`)")
                    )));
                }
            }
            if Instant::now() >= deadline {
                return Err(NotListening::Silent(format!(
                    "nothing listened on {addr} within {} ms",
                    ready.as_millis()
                )));
            }
            tokio::time::sleep(READY_STEP).await;
        }
    }

    /// One container's figures. A running container whose figures cannot be read is
    /// reported alive with what is known (zero usage), never left out; when neither the
    /// stats nor an inspect answer, the daemon cannot say whether it runs: an error.
    async fn sample(
        &self,
        id: String,
        c: Arc<DockerContainer>,
    ) -> Result<ContainerUsage, RuntimeError> {
        let options = StatsOptionsBuilder::new()
            .stream(false)
            .one_shot(true)
            .build();
        let stats = self
            .docker
            .stats(&c.docker_id, Some(options))
            .next()
            .await
            .and_then(Result::ok);
        let memory = stats.as_ref().and_then(memory_used);
        let alive = match memory {
            Some(_) => true,
            // A stopped container has no figures: ask whether it still runs.
            None => match self.inspect_state(&c.docker_id).await {
                Ok(state) => !matches!(
                    state,
                    Liveness::Exited | Liveness::OutOfMemory | Liveness::Unknown
                ),
                Err(e) => {
                    return Err(unavailable(
                        &format!("cannot tell whether container {id} runs"),
                        e,
                    ));
                }
            },
        };
        let cpu_pct = match stats.as_ref().and_then(cpu_sample) {
            Some((total, system, online)) => {
                let mut last = c.cpu.lock().unwrap_or_else(|e| e.into_inner());
                let pct = last
                    .map(|prev| cpu_percent(prev, (total, system), online))
                    .unwrap_or(0.0);
                *last = Some((total, system));
                pct
            }
            None => 0.0,
        };
        Ok(ContainerUsage {
            id,
            memory_bytes: memory.unwrap_or(0),
            cpu_pct,
            memory_limit_bytes: c.memory_limit.load(Ordering::Relaxed),
            alive,
        })
    }

    /// One inspect: running, exited, killed for memory, or gone; an error when the daemon
    /// does not answer.
    async fn inspect_state(&self, docker_id: &str) -> Result<Liveness, DockerError> {
        match self.docker.inspect_container(docker_id, None).await {
            Ok(inspect) => {
                let Some(state) = inspect.state else {
                    return Ok(Liveness::Unknown);
                };
                Ok(if state.running == Some(true) {
                    Liveness::Running
                } else if state.oom_killed == Some(true) || state.exit_code == Some(137) {
                    Liveness::OutOfMemory
                } else {
                    Liveness::Exited
                })
            }
            Err(e) if is_not_found(&e) => Ok(Liveness::Unknown),
            Err(e) => Err(e),
        }
    }

    /// [`Self::inspect_state`], saying nothing worse than what is known when the daemon does
    /// not answer (running).
    async fn probe_state(&self, docker_id: &str) -> Liveness {
        self.inspect_state(docker_id)
            .await
            .unwrap_or(Liveness::Running)
    }

    async fn stop_and_remove(&self, docker_id: &str) {
        let options = StopContainerOptionsBuilder::new()
            .t(STOP_GRACE_SECS)
            .build();
        if let Err(e) = self.docker.stop_container(docker_id, Some(options)).await
            && !is_not_found(&e)
        {
            tracing::debug!(container = docker_id, error = %e, "stop failed; removing by force");
        }
        force_remove(&self.docker, docker_id).await;
    }
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
mod tests {
    use super::*;

    #[test]
    fn the_cpu_quota_follows_the_memory() {
        let gib = 1u64 << 30;
        assert_eq!(cpu_quota_micros(gib, 0.67), 67_000);
        assert_eq!(cpu_quota_micros(3 * gib, 0.67), 201_000);
        assert_eq!(cpu_quota_micros(128 << 20, 0.67), 8_375);
        assert_eq!(cpu_quota_micros(1, 0.67), MIN_CPU_QUOTA_MICROS);
    }

    #[test]
    fn cpu_percent_is_of_one_core() {
        // 2 of 4 cores busy for the whole interval: 200 %.
        assert_eq!(cpu_percent((0, 0), (2_000, 4_000), 4), 200.0);
        assert_eq!(cpu_percent((5, 5), (5, 5), 4), 0.0);
    }

    #[test]
    fn names_keep_only_what_docker_allows() {
        assert_eq!(name_part("node-1"), "node-1");
        assert_eq!(name_part("a b/c:d"), "a-b-c-d");
    }
}
