//! The `docker` node provider: each node is a container of the node-service image, running
//! the node service's `docker` runtime, so function containers are sibling containers on the
//! same Docker daemon.
//!
//! Nodes join the platform's user-defined bridge network (created if missing, removed at
//! shutdown if this instance created it and nothing else uses it); a node's address is its IP
//! there. A node is up once its `grpc.health.v1` answers SERVING. Every container carries the
//! labels `minifaas.role` (`node`), `minifaas.instance` and `minifaas.node`; function
//! containers made by the node carry the same instance and node labels.
//!
//! At start the provider removes every container of its instance left by an earlier run,
//! unless it keeps them for recovery (`keep_nodes`, with a state directory): then the
//! manager takes back the node containers that still run ([`NodeProvider::discover`] lists
//! them by label, [`NodeProvider::adopt`] takes one by container id if it still runs as
//! that node), and [`NodeProvider::adoption_done`] removes every other container of the
//! instance (node containers not taken back, and the function containers of their nodes);
//! such nodes also get `--orphan-timeout-ms`, so the nodes of a manager that never comes
//! back exit by themselves.
//!
//! Stopping a node stops its container (the node service then removes its own function
//! containers, warm pool ones included) and removes whatever function containers of that node
//! remain (they all carry the node's instance and node labels); killing a failed node does
//! the same without a grace period; shutdown does that for every node (taken back or not),
//! then sweeps the instance's labels once more. Detaching (a simulated crash) lets go of the
//! nodes without touching a container.
//!
//! A node gets the users' code as a local node does (`--bundles-dir`,
//! `--docker-watchdog-bin`): the bundles directory is mounted read-only into its container
//! at the same path, because the node hands `DIR/<sha256>` to the Docker daemon as the
//! source of a bind mount, which the daemon resolves on the host.
//!
//! A ready node is gone when its container is missing or no longer running (one listing of
//! the instance's node containers per check, see [`NodeProvider::gone_nodes`]); its container
//! and its function containers are removed as it is reported. A paused container counts as
//! running: it fails by not answering its health probes.
//!
//! Files: this one (the provider), `containers.rs` (node container bodies, listing and
//! removing containers by label); `swarm.rs` and `swarm_spec.rs` are the `swarm` provider,
//! nodes as Docker Swarm services, made of the same parts.

mod containers;
mod swarm;
mod swarm_spec;
mod swarm_sweep;

pub use swarm::{SwarmOptions, SwarmProvider};

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::api::{node_client, register_adopted, take_gone};
use crate::config::NodeCode;
use crate::core::FoundNode;
use crate::model::{NodeEndpoint, NodeHandle, StartedNode};
use crate::service::{GoneNode, NodeProvider, ProviderError, StartFailure};
use bollard::Docker;
use bollard::models::{ContainerCreateBody, EndpointSettings, NetworkCreateRequest};
use bollard::query_parameters::{CreateContainerOptionsBuilder, StopContainerOptionsBuilder};
use containers::{DockerNode, gone_because, node_body, remove_labelled, remove_labelled_except};
/// The labels the platform puts on its containers and networks (shared with the node
/// service's docker runtime).
pub use faas_common::docker::labels;
use faas_common::docker::{force_remove, is_not_found, list_labelled, name_part};

/// Where the Docker socket is mounted inside node containers.
const SOCKET_IN_NODE: &str = "/var/run/docker.sock";
/// Pause between health probes of a starting node.
const READY_STEP: Duration = Duration::from_millis(20);
/// The longest single health probe of a starting node.
const READY_PROBE: Duration = Duration::from_secs(2);

/// How node containers are made.
#[derive(Clone, Debug)]
pub struct DockerOptions {
    /// The node-service image.
    pub node_image: String,
    /// The container-service image the nodes run functions in.
    pub container_image: String,
    /// The bridge network nodes and function containers join.
    pub network: String,
    /// The platform instance label (orphan clean-up is per instance).
    pub instance: String,
    /// The Docker socket on the host, mounted into each node.
    pub socket: String,
    /// vCPU per GiB of function memory, passed to each node.
    pub cpus_per_gib: String,
    /// `--warm-pool` of each node (`None`: the node service's default).
    pub warm_pool: Option<u32>,
    /// The port the node service listens on inside its container.
    pub node_port: u16,
    /// How long a node may take to answer its health check.
    pub start_timeout: Duration,
    /// How long a stopping node may take before it is killed.
    pub stop_grace: Duration,
    /// Keep the containers of an earlier run at start, for recovery (see the module docs).
    pub keep_nodes: bool,
    /// `--orphan-timeout-ms` of each node (`None`: not passed).
    pub orphan_timeout: Option<Duration>,
    /// Where the users' code is (`--bundles-dir`, mounted at the same path;
    /// `--docker-watchdog-bin`).
    pub code: NodeCode,
    /// The machine each node says it runs on (`FAAS_MACHINE`; "" = the node's own host
    /// name). Filled at connect: the Docker daemon's name, or under Swarm the template
    /// `{{.Node.Hostname}}` that Swarm expands on the machine it places the node on.
    pub machine: String,
}

/// Starts node-service containers.
#[derive(Debug)]
pub struct DockerProvider {
    docker: Docker,
    options: DockerOptions,
    /// The socket's group, added to node containers so a non-root node service can use it.
    socket_gid: Option<u32>,
    /// Running nodes by id.
    nodes: Mutex<HashMap<String, DockerNode>>,
    closed: AtomicBool,
    /// Whether this instance made the network (this run or an earlier one): removed at
    /// shutdown once unused.
    created_network: bool,
}

impl DockerProvider {
    /// Connects to the Docker daemon, makes sure the network exists and removes every
    /// container of this instance left by an earlier run.
    pub async fn connect(mut options: DockerOptions) -> Result<DockerProvider, String> {
        let docker = Docker::connect_with_local_defaults()
            .map_err(|e| format!("cannot reach the Docker daemon: {e}"))?;
        let info = docker.info().await.map_err(|e| {
            format!("the Docker daemon does not answer (is the socket mounted?): {e}")
        })?;
        // Every node of this provider runs on the daemon's machine.
        options.machine = info.name.unwrap_or_default();
        let created_network = match docker.inspect_network(&options.network, None).await {
            // A network an earlier run of this instance created is this run's to remove.
            Ok(network) => network
                .labels
                .is_some_and(|l| l.get(labels::INSTANCE) == Some(&options.instance)),
            Err(e) if is_not_found(&e) => {
                let request = NetworkCreateRequest {
                    name: options.network.clone(),
                    driver: Some("bridge".into()),
                    labels: Some(HashMap::from([
                        (labels::NETWORK.to_string(), "true".to_string()),
                        (labels::INSTANCE.to_string(), options.instance.clone()),
                    ])),
                    ..Default::default()
                };
                docker.create_network(request).await.map_err(|e| {
                    format!("cannot create Docker network {}: {e}", options.network)
                })?;
                tracing::info!(network = %options.network, "created Docker network");
                true
            }
            Err(e) => return Err(format!("cannot inspect network {}: {e}", options.network)),
        };
        let orphans = if options.keep_nodes {
            0
        } else {
            remove_labelled(
                &docker,
                vec![format!("{}={}", labels::INSTANCE, options.instance)],
            )
            .await
        };
        if orphans > 0 {
            tracing::warn!(
                orphans,
                instance = %options.instance,
                "removed platform containers left by an earlier run"
            );
        }
        let socket_gid = std::fs::metadata(&options.socket).ok().map(|m| m.gid());
        Ok(DockerProvider {
            docker,
            options,
            socket_gid,
            nodes: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            created_network,
        })
    }

    fn body(&self, node_id: &str, memory_bytes: u64) -> ContainerCreateBody {
        node_body(&self.options, self.socket_gid, node_id, memory_bytes)
    }

    async fn wait_healthy(
        &self,
        docker_id: &str,
        addr: &str,
    ) -> Result<(), (StartFailure, String)> {
        let deadline = faas_common::clock::instant() + self.options.start_timeout;
        let mut polls = 0u32;
        loop {
            if node_client::healthy(addr, READY_PROBE).await {
                return Ok(());
            }
            polls += 1;
            if polls.is_multiple_of(10)
                && let Ok(inspect) = self.docker.inspect_container(docker_id, None).await
                && let Some(state) = inspect.state
                && state.running == Some(false)
            {
                return Err((
                    StartFailure::Exited,
                    format!(
                        "the node container exited with code {} (see `docker logs {docker_id}`)",
                        state.exit_code.unwrap_or(-1)
                    ),
                ));
            }
            if faas_common::clock::instant() >= deadline {
                return Err((
                    StartFailure::Timeout,
                    format!(
                        "its node service did not answer on {addr} within {} ms",
                        self.options.start_timeout.as_millis()
                    ),
                ));
            }
            tokio::time::sleep(READY_STEP).await;
        }
    }

    /// Removes the network if this provider created it and nothing uses it any more.
    async fn remove_network_if_unused(&self) {
        if self.created_network
            && let Ok(n) = self
                .docker
                .inspect_network(&self.options.network, None)
                .await
            && n.containers.as_ref().is_none_or(|c| c.is_empty())
            && let Err(e) = self.docker.remove_network(&self.options.network).await
        {
            tracing::debug!(network = %self.options.network, error = %e, "network not removed");
        }
    }

    /// The filters of this instance's node containers.
    fn node_filters(&self) -> Vec<String> {
        vec![
            format!("{}={}", labels::INSTANCE, self.options.instance),
            format!("{}={}", labels::ROLE, labels::ROLE_NODE),
        ]
    }

    /// A node container's address on the platform's network, if it has one.
    fn address_of(&self, networks: Option<&HashMap<String, EndpointSettings>>) -> Option<String> {
        networks?
            .get(&self.options.network)?
            .ip_address
            .clone()
            .filter(|ip| !ip.is_empty())
    }

    fn nodes(&self) -> std::sync::MutexGuard<'_, HashMap<String, DockerNode>> {
        self.nodes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets a node and stops its container (killing it at once if `kill`).
    async fn end(&self, node_id: &str, kill: bool) {
        let removed = self.nodes().remove(node_id);
        if let Some(node) = removed {
            self.stop_container(node_id, &node.container, kill).await;
        }
    }

    /// Stops a node's container (with the grace period unless `kill`), then removes it and
    /// every function container of the node.
    async fn stop_container(&self, node_id: &str, docker_id: &str, kill: bool) {
        let grace = if kill {
            0
        } else {
            i32::try_from(self.options.stop_grace.as_secs().max(1)).unwrap_or(i32::MAX)
        };
        let options = StopContainerOptionsBuilder::new().t(grace).build();
        if let Err(e) = self.docker.stop_container(docker_id, Some(options)).await
            && !is_not_found(&e)
        {
            tracing::debug!(node = node_id, error = %e, "stop failed; removing by force");
        }
        force_remove(&self.docker, docker_id).await;
        let leftovers = remove_labelled(
            &self.docker,
            vec![
                format!("{}={}", labels::INSTANCE, self.options.instance),
                format!("{}={}", labels::NODE, node_id),
            ],
        )
        .await;
        if leftovers > 0 {
            tracing::warn!(
                node = node_id,
                leftovers,
                "removed function containers the node left"
            );
        }
    }
}

/// A provider's record of one of its nodes (a container, or a Swarm service).
trait NodeRecord {
    /// The node's container or service id.
    fn id(&self) -> &str;
    /// Its start completed (only then can it be gone).
    fn set_ready(&mut self);
}

impl NodeRecord for DockerNode {
    fn id(&self) -> &str {
        &self.container
    }

    fn set_ready(&mut self) {
        self.ready = true;
    }
}

/// The end of a node's start (shared by the `docker` and `swarm` providers), once the node
/// answered on its address or failed (`started`). A node still in `nodes` (not ended while it
/// started), of a provider not `closed`, is marked ready and started on `address:port`, known
/// by its record's id. Any other is forgotten and `undo` (killing its container or service)
/// runs; the start fails with its own failure, or as [`ProviderError::Closed`] when the node
/// answered too late.
async fn finish_start<N: NodeRecord>(
    nodes: &Mutex<HashMap<String, N>>,
    closed: &AtomicBool,
    node_id: &str,
    port: u16,
    started: Result<String, (StartFailure, String)>,
    undo: impl Future<Output = ()>,
) -> Result<StartedNode, ProviderError> {
    let lock = || nodes.lock().unwrap_or_else(PoisonError::into_inner);
    if let Ok(address) = &started {
        let mut kept = lock();
        if let Some(node) = kept.get_mut(node_id)
            && !closed.load(Ordering::Acquire)
        {
            node.set_ready();
            return Ok(StartedNode {
                endpoint: NodeEndpoint {
                    address: address.clone(),
                    port,
                },
                handle: NodeHandle {
                    container_id: Some(node.id().to_string()),
                    ..NodeHandle::default()
                },
            });
        }
    }
    lock().remove(node_id);
    undo.await;
    Err(match started {
        Err((kind, message)) => ProviderError::Start {
            node_id: node_id.to_string(),
            kind,
            message,
        },
        Ok(_) => ProviderError::Closed,
    })
}

impl NodeProvider for DockerProvider {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn start_node(
        &self,
        node_id: &str,
        memory_bytes: u64,
    ) -> Result<StartedNode, ProviderError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ProviderError::Closed);
        }
        let failed = |(kind, message): (StartFailure, String)| ProviderError::Start {
            node_id: node_id.to_string(),
            kind,
            message,
        };
        let spawn = |message: String| (StartFailure::Spawn, message);
        let name = format!(
            "minifaas-{}-{}",
            name_part(&self.options.instance),
            name_part(node_id)
        );
        // A container of the same name is a leftover of this instance: replace it.
        force_remove(&self.docker, &name).await;
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptionsBuilder::new().name(&name).build()),
                self.body(node_id, memory_bytes),
            )
            .await
            .map_err(|e| {
                failed(spawn(format!(
                    "docker create from image {} failed (build it with deploy/build-images.sh): {e}",
                    self.options.node_image
                )))
            })?;
        let docker_id = created.id;
        self.nodes().insert(
            node_id.to_string(),
            DockerNode {
                container: docker_id.clone(),
                ready: false,
            },
        );
        let started = async {
            self.docker
                .start_container(&docker_id, None)
                .await
                .map_err(|e| spawn(format!("docker start: {e}")))?;
            let inspect = self
                .docker
                .inspect_container(&docker_id, None)
                .await
                .map_err(|e| spawn(format!("docker inspect: {e}")))?;
            let ip = self
                .address_of(inspect.network_settings.and_then(|n| n.networks).as_ref())
                .ok_or_else(|| spawn(format!("no address on network {}", self.options.network)))?;
            let addr = format!("{ip}:{}", self.options.node_port);
            self.wait_healthy(&docker_id, &addr).await?;
            Ok::<_, (StartFailure, String)>(ip)
        }
        .await;
        let port = self.options.node_port;
        let kill = self.stop_container(node_id, &docker_id, true);
        let node = finish_start(&self.nodes, &self.closed, node_id, port, started, kill).await?;
        let ip = &node.endpoint.address;
        tracing::info!(node = node_id, %ip, container = %name, "docker node ready");
        Ok(node)
    }

    async fn stop_node(&self, node_id: &str) {
        self.end(node_id, false).await;
    }

    async fn kill_node(&self, node_id: &str) {
        self.end(node_id, true).await;
    }

    async fn discover(&self) -> Vec<FoundNode> {
        let listed = match list_labelled(&self.docker, &self.node_filters()).await {
            Ok(listed) => listed,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list node containers of an earlier run");
                return Vec::new();
            }
        };
        listed
            .into_iter()
            .filter_map(|c| {
                let node_id = c.labels.as_ref()?.get(labels::NODE)?.clone();
                let running = gone_because(c.state.as_ref(), "").is_none();
                let address = running
                    .then(|| self.address_of(c.network_settings.and_then(|n| n.networks).as_ref()))
                    .flatten();
                Some(FoundNode {
                    node_id,
                    endpoint: address.map(|address| NodeEndpoint {
                        address,
                        port: self.options.node_port,
                    }),
                    handle: NodeHandle {
                        container_id: c.id,
                        ..NodeHandle::default()
                    },
                })
            })
            .collect()
    }

    async fn adopt(
        &self,
        node_id: &str,
        _endpoint: &NodeEndpoint,
        handle: &NodeHandle,
    ) -> Result<(), String> {
        let Some(container) = handle.container_id.clone() else {
            return Err("no container was recorded for it".to_string());
        };
        let inspect = match self.docker.inspect_container(&container, None).await {
            Ok(inspect) => inspect,
            Err(e) if is_not_found(&e) => return Err("its container is gone".to_string()),
            Err(e) => return Err(format!("cannot inspect its container: {e}")),
        };
        let tags = inspect.config.and_then(|c| c.labels).unwrap_or_default();
        let ours = tags.get(labels::INSTANCE) == Some(&self.options.instance)
            && tags.get(labels::NODE).map(String::as_str) == Some(node_id);
        if !ours {
            return Err(format!(
                "container {container} is not this instance's {node_id}"
            ));
        }
        let state = inspect.state.unwrap_or_default();
        if state.running != Some(true) {
            // What is left of it is removed with the instance's other leftovers.
            return Err(format!(
                "its container is not running ({})",
                state.status.map(|s| s.to_string()).unwrap_or_default()
            ));
        }
        register_adopted(
            &mut self.nodes(),
            &self.closed,
            node_id,
            DockerNode {
                container,
                ready: true,
            },
        )
    }

    async fn adoption_done(&self, adopted: &[String]) {
        let removed = remove_labelled_except(
            &self.docker,
            vec![format!("{}={}", labels::INSTANCE, self.options.instance)],
            adopted,
        )
        .await;
        if removed > 0 {
            tracing::warn!(
                removed,
                instance = %self.options.instance,
                "removed containers of an earlier run that no node taken back owns"
            );
        }
    }

    async fn gone_nodes(&self) -> Vec<GoneNode> {
        let listed = match list_labelled(&self.docker, &self.node_filters()).await {
            Ok(listed) => listed,
            Err(e) => {
                // The daemon did not answer: no verdict (the probes still watch the nodes).
                tracing::debug!(error = %e, "cannot list node containers");
                return Vec::new();
            }
        };
        let by_id: HashMap<String, Option<String>> = listed
            .into_iter()
            .filter_map(|c| {
                let why = gone_because(c.state.as_ref(), c.status.as_deref().unwrap_or(""));
                Some((c.id?, why))
            })
            .collect();
        let gone = take_gone(&mut self.nodes(), |n| {
            if !n.ready {
                return None;
            }
            match by_id.get(&n.container) {
                None => Some("its container is gone".to_string()),
                Some(why) => why.clone(),
            }
        });
        futures::future::join_all(
            gone.iter()
                .map(|(node, n)| self.stop_container(&node.node_id, &n.container, true)),
        )
        .await;
        gone.into_iter().map(|(node, _)| node).collect()
    }

    async fn shutdown(&self) {
        self.closed.store(true, Ordering::Release);
        let all: Vec<(String, DockerNode)> = self.nodes().drain().collect();
        if !all.is_empty() {
            tracing::info!(nodes = all.len(), "stopping docker nodes");
        }
        futures::future::join_all(
            all.iter()
                .map(|(node, docker)| self.stop_container(node, &docker.container, false)),
        )
        .await;
        remove_labelled(
            &self.docker,
            vec![format!("{}={}", labels::INSTANCE, self.options.instance)],
        )
        .await;
        self.remove_network_if_unused().await;
    }

    async fn detach(&self) {
        self.closed.store(true, Ordering::Release);
        let all = std::mem::take(&mut *self.nodes());
        tracing::info!(
            nodes = all.len(),
            "letting go of docker nodes: they keep running"
        );
    }
}
