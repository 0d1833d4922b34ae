//! The `swarm` node provider: each node is a Docker Swarm service of one task running the
//! node-service image with its `docker` runtime, so nodes land on whatever machine of the
//! swarm has room, and each runs its functions in sibling containers on its own machine.
//!
//! A node's service (built in `swarm_spec.rs`) reserves and limits the node's memory (so
//! Swarm places it only on a machine with that much free), mounts its machine's Docker
//! socket, carries the labels `minifaas.role` (`node`), `minifaas.instance`,
//! `minifaas.node` and `minifaas.memory` (its task's container the first three), spreads
//! over machines (`node.id`), joins the attachable overlay network `--docker-network`
//! (function containers join it too) and is never restarted. Its name resolves on that
//! network to its task's address (endpoint mode `dnsrr`): the manager must run on the
//! overlay network too (`deploy/stack.yml`).
//!
//! Starting a node: create the service, wait for Swarm to place its task; a task not placed
//! within `--swarm-placement-timeout-ms` is a start failure ("no machine has 3072 MiB
//! free", [`StartFailure::NoCapacity`]) and its service is removed. Then the task runs, its
//! name resolves and its `grpc.health.v1` answers SERVING (within `--node-start-timeout-ms`).
//!
//! A ready node is gone when its service is missing or has no running task (one listing of
//! the instance's node services per check); Swarm does not restart it: the manager's
//! self-healing rules replace it under a new id. Stopping a node removes its service (Swarm
//! stops the task with the stop grace period; the node service removes its own function
//! containers), waits until its container is gone from this machine, then removes whatever
//! function containers of the node remain on this machine (they carry the instance and node
//! labels). A node that is gone or killed cannot clean up after itself, and its function
//! containers may run on another machine: its service is removed and a sweep job runs on
//! the machine its task ran on (`swarm_sweep.rs`).
//!
//! Each node says which machine it runs on: its environment carries
//! `FAAS_MACHINE={{.Node.Hostname}}`, which Swarm expands on the machine it places the task
//! on (`faas nodes` shows it).
//!
//! With `--swarm-stack NAME` node services also carry the stack label
//! `com.docker.stack.namespace=NAME`, so `docker stack rm NAME` removes them with the
//! control plane.
//!
//! After a restart (`--state-dir`), [`NodeProvider::discover`] finds the instance's node
//! services by label and [`NodeProvider::adopt`] takes one back by service id if its task
//! still runs; [`NodeProvider::adoption_done`] removes every other node service of the
//! instance and the containers of the nodes not taken back.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bollard::Docker;
use bollard::models::{LocalNodeState, NetworkCreateRequest, Service, ServiceSpec, Task};
use bollard::query_parameters::{ListServicesOptionsBuilder, ListTasksOptionsBuilder};
use faas_common::docker::{is_not_found, list_labelled};

use super::containers::{remove_labelled, remove_labelled_except};
use super::swarm_spec::{
    MACHINE_TEMPLATE, TaskPhase, node_service, service_gone_because, service_name, sweep_job,
    task_phase, unplaced_message,
};
use super::swarm_sweep::{remove_sweep_jobs, run_sweep};
use super::{DockerOptions, NodeRecord, finish_start, labels};
use crate::api::{node_client, register_adopted, take_gone};
use crate::core::FoundNode;
use crate::model::{NodeEndpoint, NodeHandle, StartedNode};
use crate::service::{GoneNode, NodeProvider, ProviderError, StartFailure};

/// The label `docker stack` finds a stack's services by.
const STACK_LABEL: &str = "com.docker.stack.namespace";
/// Pause between two looks at a starting node.
const START_STEP: Duration = Duration::from_millis(100);
/// The longest single health probe of a starting node.
const READY_PROBE: Duration = Duration::from_secs(2);

/// How node services are made: the docker provider's options, and how long Swarm may take
/// to place a node's task.
#[derive(Clone, Debug)]
pub struct SwarmOptions {
    /// Image, overlay network (`network`), instance, socket, ports, timeouts, code.
    pub docker: DockerOptions,
    /// A task not placed within this is a start failure, and its service is removed.
    pub placement_timeout: Duration,
    /// The stack whose namespace label node services carry (`docker stack rm` removes them).
    pub stack: Option<String>,
}

/// One node's service.
#[derive(Debug)]
struct SwarmNode {
    /// The Swarm service id.
    service: String,
    /// Whether its start completed (only then can it be gone).
    ready: bool,
}

impl NodeRecord for SwarmNode {
    fn id(&self) -> &str {
        &self.service
    }

    fn set_ready(&mut self) {
        self.ready = true;
    }
}

/// Starts node services on a Docker Swarm.
#[derive(Debug)]
pub struct SwarmProvider {
    docker: Docker,
    options: SwarmOptions,
    /// The socket's group on this machine, added to node tasks so a non-root node service
    /// can use it (the same group id on every machine of the swarm is assumed).
    socket_gid: Option<u32>,
    nodes: Mutex<HashMap<String, SwarmNode>>,
    closed: AtomicBool,
    /// Whether this provider made the overlay network (removed at shutdown once unused).
    created_network: bool,
}

impl SwarmProvider {
    /// Connects to the Docker daemon, which must be a Swarm manager, makes sure the overlay
    /// network exists, and removes what an earlier run of this instance left (unless it
    /// keeps its nodes for recovery).
    pub async fn connect(mut options: SwarmOptions) -> Result<SwarmProvider, String> {
        options.docker.machine = MACHINE_TEMPLATE.to_string();
        let o = &options.docker;
        let docker = Docker::connect_with_local_defaults()
            .map_err(|e| format!("cannot reach the Docker daemon: {e}"))?;
        let info = docker.info().await.map_err(|e| {
            format!("the Docker daemon does not answer (is the socket mounted?): {e}")
        })?;
        let swarm = info.swarm.unwrap_or_default();
        if swarm.local_node_state != Some(LocalNodeState::ACTIVE)
            || swarm.control_available != Some(true)
        {
            return Err(format!(
                "--provider swarm needs a Docker Swarm manager, and this daemon is not one \
                 (swarm state {:?}): run `docker swarm init` (or run the resource manager on \
                 a manager machine)",
                swarm
                    .local_node_state
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            ));
        }
        let created_network = match docker.inspect_network(&o.network, None).await {
            Ok(n) => {
                if n.scope.as_deref() != Some("swarm") || n.attachable != Some(true) {
                    return Err(format!(
                        "network {} must be an attachable overlay network (scope {:?}, \
                         attachable {:?}): nodes and their function containers join it",
                        o.network, n.scope, n.attachable
                    ));
                }
                n.labels
                    .is_some_and(|l| l.get(labels::INSTANCE) == Some(&o.instance))
            }
            Err(e) if is_not_found(&e) => {
                let request = NetworkCreateRequest {
                    name: o.network.clone(),
                    driver: Some("overlay".into()),
                    attachable: Some(true),
                    labels: Some(HashMap::from([
                        (labels::NETWORK.to_string(), "true".to_string()),
                        (labels::INSTANCE.to_string(), o.instance.clone()),
                    ])),
                    ..Default::default()
                };
                docker
                    .create_network(request)
                    .await
                    .map_err(|e| format!("cannot create overlay network {}: {e}", o.network))?;
                tracing::info!(network = %o.network, "created overlay network");
                true
            }
            Err(e) => return Err(format!("cannot inspect network {}: {e}", o.network)),
        };
        let socket_gid = std::fs::metadata(&o.socket).ok().map(|m| m.gid());
        let provider = SwarmProvider {
            docker,
            options,
            socket_gid,
            nodes: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            created_network,
        };
        if !provider.options.docker.keep_nodes {
            let left = provider.remove_services_except(&[]).await
                + remove_sweep_jobs(&provider.docker, &provider.options.docker.instance).await;
            let containers = remove_labelled(&provider.docker, provider.instance_filter()).await;
            if left + containers > 0 {
                tracing::warn!(
                    services = left,
                    containers,
                    "removed node services and containers left by an earlier run"
                );
            }
        }
        Ok(provider)
    }

    fn instance_filter(&self) -> Vec<String> {
        vec![format!(
            "{}={}",
            labels::INSTANCE,
            self.options.docker.instance
        )]
    }

    fn node_filters(&self) -> Vec<String> {
        let mut f = self.instance_filter();
        f.push(format!("{}={}", labels::ROLE, labels::ROLE_NODE));
        f
    }

    fn nodes(&self) -> std::sync::MutexGuard<'_, HashMap<String, SwarmNode>> {
        self.nodes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// This instance's node services, with their task counts.
    async fn list_services(&self) -> Result<Vec<Service>, bollard::errors::Error> {
        let options = ListServicesOptionsBuilder::new()
            .filters(&HashMap::from([("label", self.node_filters())]))
            .status(true)
            .build();
        self.docker.list_services(Some(options)).await
    }

    /// Removes this instance's node services but those of the nodes in `keep`; how many.
    async fn remove_services_except(&self, keep: &[String]) -> usize {
        let Ok(list) = self.list_services().await else {
            return 0;
        };
        let ids: Vec<String> = list
            .into_iter()
            .filter(|s| {
                let node = s
                    .spec
                    .as_ref()
                    .and_then(|s| s.labels.as_ref())
                    .and_then(|l| l.get(labels::NODE));
                !node.is_some_and(|n| keep.contains(n))
            })
            .filter_map(|s| s.id)
            .collect();
        futures::future::join_all(ids.iter().map(|id| self.remove_service(id))).await;
        ids.len()
    }

    async fn remove_service(&self, id: &str) {
        if let Err(e) = self.docker.delete_service(id).await
            && !is_not_found(&e)
        {
            tracing::warn!(service = id, error = %e, "cannot remove node service");
        }
    }

    /// Where node `node_id`'s task listens, once its name resolves on the overlay network.
    async fn resolve(&self, node_id: &str) -> Option<String> {
        let name = service_name(&self.options.docker.instance, node_id);
        let port = self.options.docker.node_port;
        let mut addrs = tokio::net::lookup_host((name.as_str(), port)).await.ok()?;
        addrs.next().map(|a| a.ip().to_string())
    }

    /// Service `service`'s newest task, if it has one.
    async fn newest_task(&self, service: &str) -> Result<Option<Task>, String> {
        let options = ListTasksOptionsBuilder::new()
            .filters(&HashMap::from([("service", vec![service.to_string()])]))
            .build();
        let tasks = self
            .docker
            .list_tasks(Some(options))
            .await
            .map_err(|e| format!("cannot list its tasks: {e}"))?;
        Ok(tasks
            .into_iter()
            .max_by_key(|t| t.created_at.as_ref().map(|d| d.to_string())))
    }

    /// The state of service `service`'s newest task.
    async fn task_phase(&self, service: &str) -> Result<TaskPhase, String> {
        let Some(task) = self.newest_task(service).await? else {
            return Ok(task_phase(None, "", ""));
        };
        let status = task.status.unwrap_or_default();
        Ok(task_phase(
            status.state.as_ref(),
            status.message.as_deref().unwrap_or(""),
            status.err.as_deref().unwrap_or(""),
        ))
    }

    /// Waits until node `node_id` of service `service` is placed, runs and answers its
    /// health check; returns its address.
    async fn wait_ready(
        &self,
        node_id: &str,
        service: &str,
        memory_bytes: u64,
    ) -> Result<String, (StartFailure, String)> {
        let o = &self.options;
        let since = faas_common::clock::instant();
        let deadline = since + o.docker.start_timeout;
        let placement_deadline = since + o.placement_timeout;
        let mut placed = false;
        loop {
            let now = faas_common::clock::instant();
            match self.task_phase(service).await {
                Ok(TaskPhase::Unplaced(said)) if !placed && now >= placement_deadline => {
                    return Err((
                        StartFailure::NoCapacity,
                        unplaced_message(memory_bytes, o.placement_timeout, &said),
                    ));
                }
                Ok(TaskPhase::Unplaced(_)) => {}
                Ok(TaskPhase::Starting) => placed = true,
                Ok(TaskPhase::Running) => {
                    placed = true;
                    if let Some(ip) = self.resolve(node_id).await {
                        let addr = format!("{ip}:{}", o.docker.node_port);
                        if node_client::healthy(&addr, READY_PROBE).await {
                            return Ok(ip);
                        }
                    }
                }
                Ok(TaskPhase::Ended(why)) => {
                    return Err((
                        StartFailure::Exited,
                        format!("{why} (see `docker service ps --no-trunc {service}`)"),
                    ));
                }
                Err(e) => tracing::debug!(node = node_id, error = %e, "task not listed"),
            }
            if faas_common::clock::instant() >= deadline {
                return Err((
                    StartFailure::Timeout,
                    format!(
                        "its node service did not answer within {} ms",
                        o.docker.start_timeout.as_millis()
                    ),
                ));
            }
            tokio::time::sleep(START_STEP).await;
        }
    }

    /// Forgets a node and ends its service (see [`SwarmProvider::end_service`]).
    async fn end(&self, node_id: &str, kill: bool) {
        let removed = self.nodes().remove(node_id);
        if let Some(node) = removed {
            self.end_service(node_id, &node.service, kill).await;
        }
    }

    /// Removes node `node_id`'s service; unless `kill`, waits (up to the stop grace and a
    /// little) for its task's container to stop; then removes whatever containers of the
    /// node remain on this machine. When `kill` (the node is gone, or killed: it cannot
    /// clean up after itself) and its task was placed, a sweep job removes them on the
    /// machine it ran on instead.
    async fn end_service(&self, node_id: &str, service: &str, kill: bool) {
        let machine = match kill {
            true => self
                .newest_task(service)
                .await
                .ok()
                .flatten()
                .and_then(|t| t.node_id),
            false => None,
        };
        self.remove_service(service).await;
        if let Some(machine) = machine {
            self.sweep(node_id, machine);
            return;
        }
        let mut filters = self.instance_filter();
        filters.push(format!("{}={}", labels::NODE, node_id));
        if !kill {
            let mut node_filters = filters.clone();
            node_filters.push(format!("{}={}", labels::ROLE, labels::ROLE_NODE));
            let deadline = faas_common::clock::instant()
                + self.options.docker.stop_grace
                + Duration::from_secs(2);
            while faas_common::clock::instant() < deadline {
                match list_labelled(&self.docker, &node_filters).await {
                    Ok(left) if left.is_empty() => break,
                    Ok(_) => tokio::time::sleep(START_STEP).await,
                    Err(_) => break,
                }
            }
        }
        let leftovers = remove_labelled(&self.docker, filters).await;
        if leftovers > 0 {
            tracing::debug!(node = node_id, leftovers, "removed the node's containers");
        }
    }

    /// Starts the job sweeping node `node_id`'s containers from `machine` (a Swarm node id),
    /// in a task of its own (see `swarm_sweep.rs`).
    fn sweep(&self, node_id: &str, machine: String) {
        let mut job = sweep_job(&self.options.docker, self.socket_gid, node_id, &machine);
        self.label_stack(&mut job);
        tokio::spawn(run_sweep(
            self.docker.clone(),
            job,
            node_id.to_string(),
            machine,
        ));
    }

    /// Adds the stack's namespace label (`--swarm-stack`) to a service this provider makes.
    fn label_stack(&self, spec: &mut ServiceSpec) {
        if let (Some(stack), Some(labels)) = (&self.options.stack, spec.labels.as_mut()) {
            labels.insert(STACK_LABEL.to_string(), stack.clone());
        }
    }

    /// Removes the overlay network if this provider created it and nothing uses it.
    async fn remove_network_if_unused(&self) {
        let network = &self.options.docker.network;
        if self.created_network
            && let Ok(n) = self.docker.inspect_network(network, None).await
            && n.containers.as_ref().is_none_or(|c| c.is_empty())
            && let Err(e) = self.docker.remove_network(network).await
        {
            tracing::debug!(network, error = %e, "network not removed");
        }
    }
}

/// The node id label and running task count of a listed service.
fn node_and_running(s: &Service) -> Option<(String, u64)> {
    let node = s.spec.as_ref()?.labels.as_ref()?.get(labels::NODE)?.clone();
    let running = s
        .service_status
        .as_ref()
        .and_then(|st| st.running_tasks)
        .unwrap_or(0);
    Some((node, running))
}

impl NodeProvider for SwarmProvider {
    fn name(&self) -> &'static str {
        "swarm"
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
        let o = &self.options.docker;
        let mut spec = node_service(o, self.socket_gid, node_id, memory_bytes);
        self.label_stack(&mut spec);
        // A service of the same name is a leftover of this instance: replace it.
        let name = service_name(&o.instance, node_id);
        self.remove_service(&name).await;
        let created = self.docker.create_service(spec, None).await.map_err(|e| {
            failed((
                StartFailure::Spawn,
                format!(
                    "docker service create from image {} failed (is it on every machine? \
                     see the README, \"More than one machine\"): {e}",
                    o.node_image
                ),
            ))
        })?;
        let service = created.id.unwrap_or(name.clone());
        self.nodes().insert(
            node_id.to_string(),
            SwarmNode {
                service: service.clone(),
                ready: false,
            },
        );
        let started = self.wait_ready(node_id, &service, memory_bytes).await;
        let port = o.node_port;
        let kill = self.end_service(node_id, &service, true);
        let node = finish_start(&self.nodes, &self.closed, node_id, port, started, kill).await?;
        let ip = &node.endpoint.address;
        tracing::info!(node = node_id, %ip, service = %name, "swarm node ready");
        Ok(node)
    }

    async fn stop_node(&self, node_id: &str) {
        self.end(node_id, false).await;
    }

    async fn kill_node(&self, node_id: &str) {
        self.end(node_id, true).await;
    }

    async fn discover(&self) -> Vec<FoundNode> {
        let listed = match self.list_services().await {
            Ok(listed) => listed,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list node services of an earlier run");
                return Vec::new();
            }
        };
        let mut found = Vec::new();
        for s in listed {
            let Some((node_id, running)) = node_and_running(&s) else {
                continue;
            };
            let endpoint = if running > 0 {
                self.resolve(&node_id).await.map(|address| NodeEndpoint {
                    address,
                    port: self.options.docker.node_port,
                })
            } else {
                None
            };
            found.push(FoundNode {
                node_id,
                endpoint,
                handle: NodeHandle {
                    container_id: s.id,
                    ..NodeHandle::default()
                },
            });
        }
        found
    }

    async fn adopt(
        &self,
        node_id: &str,
        _endpoint: &NodeEndpoint,
        handle: &NodeHandle,
    ) -> Result<(), String> {
        let Some(service) = handle.container_id.clone() else {
            return Err("no Swarm service was recorded for it".to_string());
        };
        let listed = self
            .list_services()
            .await
            .map_err(|e| format!("cannot list node services: {e}"))?;
        let Some(s) = listed
            .iter()
            .find(|s| s.id.as_deref() == Some(service.as_str()))
        else {
            return Err(format!(
                "its Swarm service {service} is gone (or not this instance's)"
            ));
        };
        match node_and_running(s) {
            Some((node, running)) if node == node_id => {
                if let Some(why) = service_gone_because(Some(running)) {
                    return Err(why);
                }
            }
            _ => {
                return Err(format!(
                    "service {service} is not this instance's {node_id}"
                ));
            }
        }
        register_adopted(
            &mut self.nodes(),
            &self.closed,
            node_id,
            SwarmNode {
                service,
                ready: true,
            },
        )
    }

    async fn adoption_done(&self, adopted: &[String]) {
        let services = self.remove_services_except(adopted).await
            + remove_sweep_jobs(&self.docker, &self.options.docker.instance).await;
        let containers =
            remove_labelled_except(&self.docker, self.instance_filter(), adopted).await;
        if services + containers > 0 {
            tracing::warn!(
                services,
                containers,
                "removed node services and containers of an earlier run that no node taken \
                 back owns"
            );
        }
    }

    async fn gone_nodes(&self) -> Vec<GoneNode> {
        let listed = match self.list_services().await {
            Ok(listed) => listed,
            Err(e) => {
                tracing::debug!(error = %e, "cannot list node services");
                return Vec::new();
            }
        };
        let running: HashMap<String, u64> = listed
            .into_iter()
            .filter_map(|s| Some((s.id.clone()?, node_and_running(&s)?.1)))
            .collect();
        let gone = take_gone(&mut self.nodes(), |n| {
            n.ready
                .then(|| service_gone_because(running.get(&n.service).copied()))
                .flatten()
        });
        futures::future::join_all(
            gone.iter()
                .map(|(node, n)| self.end_service(&node.node_id, &n.service, true)),
        )
        .await;
        gone.into_iter().map(|(node, _)| node).collect()
    }

    async fn shutdown(&self) {
        self.closed.store(true, Ordering::Release);
        let all: Vec<(String, SwarmNode)> = self.nodes().drain().collect();
        if !all.is_empty() {
            tracing::info!(nodes = all.len(), "removing swarm node services");
        }
        futures::future::join_all(
            all.iter()
                .map(|(node, s)| self.end_service(node, &s.service, false)),
        )
        .await;
        self.remove_services_except(&[]).await;
        remove_sweep_jobs(&self.docker, &self.options.docker.instance).await;
        remove_labelled(&self.docker, self.instance_filter()).await;
        self.remove_network_if_unused().await;
    }

    async fn detach(&self) {
        self.closed.store(true, Ordering::Release);
        let all = std::mem::take(&mut *self.nodes());
        tracing::info!(
            nodes = all.len(),
            "letting go of swarm nodes: their services keep running"
        );
    }
}
