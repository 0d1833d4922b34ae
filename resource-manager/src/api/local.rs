//! The `local` node provider: one node-service child process per node on this machine.
//!
//! A node is started with `--host 127.0.0.1 --port 0 --node-id ID --memory-bytes N --runtime R`
//! (and `--warm-pool N`, `--orphan-timeout-ms T`, `--bundles-dir D`,
//! `--docker-watchdog-bin W` and `--metrics-port P` when set; every node its own P, see
//! `api/node_metrics.rs`). It is up once it has printed
//! its readiness line *and* answers its `grpc.health.v1` check: a node service that
//! announces its port and then exits (an older one whose metrics port is taken did) is a
//! start failure ([`StartFailure::Exited`]), never a ready node.
//!
//! Stopping sends SIGTERM (the node service then stops its own container children), waits
//! out the grace period, kills, and always reaps; killing (a failed node) skips the grace.
//!
//! How long a node lives ([`LocalOptions::lifetime`]): without a state directory, nodes are
//! guarded children that die with the manager even if it is killed (see
//! `faas_common::launch`). With one, they are detached: they outlive a crashed manager, so a
//! restarted one can take them back ([`NodeProvider::adopt`], by pid and process start
//! time, see `api/processes.rs`), and each gets `--orphan-timeout-ms`, so the nodes of a
//! manager that never comes back exit by themselves once nobody has called them for that
//! long (the health probes are calls). A clean stop still stops every node, adopted or not.
//!
//! No zombies: a child that exits on its own (SIGKILL, a crash) is reaped as soon as it is
//! noticed. [`NodeProvider::node_may_have_exited`] returns on every SIGCHLD this process
//! gets, and [`NodeProvider::gone_nodes`] then reaps every exited child (`try_wait`) and
//! reports it with how it ended, read from `/proc/<pid>/stat` while it is still a zombie.
//! An adopted node is not necessarily a child (its parent died): it is reported gone once
//! its process no longer runs (reaping it is its new parent's business). The health watch
//! (`api/health.rs`) runs that on each SIGCHLD and on each probe round.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use faas_common::launch::{Child, LaunchError, Launcher, Lifetime, Signal};
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::Instant;

use crate::api::node_metrics::NodeMetricsPorts;
use crate::api::processes::{ProcessRef, ProcessTable, SystemProcesses, zombie_exit};
use crate::api::{node_client, register_adopted};
use crate::config::NodeCode;
use crate::model::{NodeEndpoint, NodeHandle, StartedNode};
use crate::service::{GoneNode, NodeProvider, ProviderError, StartFailure};

/// The longest single health check while a started node is confirmed.
const CONFIRM_STEP: Duration = Duration::from_millis(500);
/// The pause between two health checks of a starting node.
const CONFIRM_PAUSE: Duration = Duration::from_millis(20);
/// The pause between two looks at a stopping adopted process (it cannot be waited for).
const EXIT_POLL: Duration = Duration::from_millis(10);
/// How long a killed adopted process may take to disappear before the stop gives up on it.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// How local nodes are run.
#[derive(Clone, Debug)]
pub struct LocalOptions {
    /// `--runtime` of each node service.
    pub runtime: String,
    /// `--warm-pool` of each node service (`None`: the node's default or its environment).
    pub warm_pool: Option<u32>,
    /// How long a node may take to print its readiness line and answer its health check.
    pub start_timeout: Duration,
    /// How long a stopping node may take before it is killed.
    pub stop_grace: Duration,
    /// Guarded nodes die with the manager; detached ones outlive it (with a state directory).
    pub lifetime: Lifetime,
    /// `--orphan-timeout-ms` of each node service (`None`: not passed).
    pub orphan_timeout: Option<Duration>,
    /// Where the users' code is (`--bundles-dir`, `--docker-watchdog-bin`).
    pub code: NodeCode,
    /// Nodes serve metrics on the lowest free port from this one, one each (`None`: off).
    pub metrics_port_base: Option<u16>,
}

type Shared<T> = Arc<tokio::sync::Mutex<T>>;

/// The SIGCHLD stream, made on first use (it needs a runtime).
#[derive(Debug)]
enum ChildSignal {
    NotYet,
    Listening(tokio::signal::unix::Signal),
    Unavailable,
}

/// A node's node-service process.
#[derive(Debug)]
enum NodeProcess {
    /// Started by this provider: a child it reaps.
    Child(Box<Child>),
    /// Started by an earlier run and taken back: watched and signalled by pid.
    Adopted(ProcessRef),
}

/// Starts node-service processes.
#[derive(Debug)]
pub struct LocalProvider {
    launcher: Launcher,
    options: LocalOptions,
    /// Running nodes by id. A node's own lock is held while it stops, so `shutdown` waits
    /// for stops already under way (and `gone_nodes` leaves it to the stop to reap it).
    nodes: Mutex<HashMap<String, Shared<NodeProcess>>>,
    processes: Arc<dyn ProcessTable>,
    closed: AtomicBool,
    sigchld: tokio::sync::Mutex<ChildSignal>,
    metrics_ports: Option<NodeMetricsPorts>,
}

impl LocalProvider {
    /// A provider running `launcher` (the node-service binary).
    pub fn new(launcher: Launcher, options: LocalOptions) -> LocalProvider {
        LocalProvider {
            launcher,
            nodes: Mutex::new(HashMap::new()),
            processes: Arc::new(SystemProcesses),
            closed: AtomicBool::new(false),
            sigchld: tokio::sync::Mutex::new(ChildSignal::NotYet),
            metrics_ports: options.metrics_port_base.map(NodeMetricsPorts::from),
            options,
        }
    }

    /// The same provider, finding and signalling adopted nodes through `processes`.
    pub fn with_processes(mut self, processes: Arc<dyn ProcessTable>) -> LocalProvider {
        self.processes = processes;
        self
    }

    fn nodes(&self) -> std::sync::MutexGuard<'_, HashMap<String, Shared<NodeProcess>>> {
        self.nodes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn node(&self, node_id: &str) -> Option<Shared<NodeProcess>> {
        self.nodes().get(node_id).cloned()
    }

    /// Stops (or with `grace` zero, kills) a node and forgets it.
    async fn end(&self, node_id: &str, grace: Duration) {
        let Some(process) = self.node(node_id) else {
            return;
        };
        let mut process = process.lock().await;
        self.stop_process(&mut process, grace).await;
        // Forgotten while its lock is held, so `gone_nodes` never sees it reaped but known.
        self.nodes().remove(node_id);
        self.release_metrics_port(node_id);
    }

    fn release_metrics_port(&self, node_id: &str) {
        if let Some(ports) = &self.metrics_ports {
            ports.release(node_id);
        }
    }

    /// Starts the node's process and waits until it serves, with `--metrics-port` when
    /// `metrics` says; a process that did not is killed and reaped.
    async fn spawn(
        &self,
        node_id: &str,
        memory_bytes: u64,
        metrics: Option<u16>,
        deadline: Instant,
    ) -> Result<(Child, NodeEndpoint), (StartFailure, String)> {
        let mut cmd = self.launcher.command();
        cmd.args(["--host", "127.0.0.1", "--port", "0", "--node-id", node_id])
            .arg("--memory-bytes")
            .arg(memory_bytes.to_string())
            .arg("--runtime")
            .arg(&self.options.runtime)
            // One node's setting: inherited by every node, all but one would die.
            .env_remove(crate::config::NODE_METRICS_PORT_ENV);
        if let Some(n) = self.options.warm_pool {
            cmd.arg("--warm-pool").arg(n.to_string());
        }
        if let Some(timeout) = self.options.orphan_timeout {
            cmd.arg("--orphan-timeout-ms")
                .arg(timeout.as_millis().to_string());
        }
        if let Some(port) = metrics {
            cmd.arg("--metrics-port").arg(port.to_string());
        }
        cmd.args(self.options.code.args())
            .envs(self.options.code.env());
        let left = deadline.saturating_duration_since(faas_common::clock::tokio_instant());
        let (mut child, addr) = Child::spawn_ready_with(cmd, left, self.options.lifetime)
            .await
            .map_err(|e| (launch_failure(&e), e.to_string()))?;
        let endpoint = endpoint_of(addr);
        if let Err(failed) = confirm_serving(&mut child, &endpoint.to_string(), deadline).await {
            child.kill().await;
            return Err(failed);
        }
        Ok((child, endpoint))
    }

    /// SIGTERM, up to `grace` to exit, then SIGKILL (at once if `grace` is zero).
    async fn stop_process(&self, process: &mut NodeProcess, grace: Duration) {
        match process {
            NodeProcess::Child(child) if grace.is_zero() => child.kill().await,
            NodeProcess::Child(child) => child.stop(grace).await,
            NodeProcess::Adopted(p) => {
                let p = *p;
                if !grace.is_zero()
                    && self.processes.signal_if_running(p, Signal::Terminate)
                    && self.exited_within(p, grace).await
                {
                    return;
                }
                if self.processes.signal_if_running(p, Signal::Kill)
                    && !self.exited_within(p, KILL_WAIT).await
                {
                    tracing::warn!(
                        pid = p.pid,
                        "an adopted node-service process survived SIGKILL"
                    );
                }
            }
        }
    }

    /// Waits up to `within` for an adopted process to stop running; returns whether it did.
    async fn exited_within(&self, process: ProcessRef, within: Duration) -> bool {
        let deadline = faas_common::clock::tokio_instant() + within;
        loop {
            if !self.processes.is_running(process) {
                return true;
            }
            if faas_common::clock::tokio_instant() >= deadline {
                return false;
            }
            tokio::time::sleep(EXIT_POLL).await;
        }
    }

    /// If the node's process has exited, says how (a child is reaped); `None` while it runs.
    fn exited(&self, process: &mut NodeProcess) -> Option<String> {
        match process {
            NodeProcess::Child(child) => reap_if_exited(child),
            NodeProcess::Adopted(p) => (!self.processes.is_running(*p))
                .then(|| format!("process {} (adopted) exited", p.pid)),
        }
    }
}

/// The node's address as clients dial it.
fn endpoint_of(addr: SocketAddr) -> NodeEndpoint {
    let ip = match addr.ip() {
        ip if ip.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
        ip => ip,
    };
    NodeEndpoint {
        address: ip.to_string(),
        port: addr.port(),
    }
}

fn launch_failure(e: &LaunchError) -> StartFailure {
    match e {
        LaunchError::NotFound { .. } | LaunchError::Spawn { .. } => StartFailure::Spawn,
        LaunchError::ExitedEarly { .. } => StartFailure::Exited,
        LaunchError::NotReady { .. } => StartFailure::Timeout,
    }
}

/// If the child has exited, reaps it and says how it ended ("process 42 was killed by
/// signal 9"); `None` while it runs.
fn reap_if_exited(child: &mut Child) -> Option<String> {
    let Some(pid) = child.id() else {
        // Already reaped.
        return Some("process exited".to_string());
    };
    // Read before reaping: once reaped, the zombie and its exit status are gone.
    let how = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| zombie_exit(&stat));
    if !child.has_exited() {
        return None;
    }
    Some(format!(
        "process {pid} {}",
        how.unwrap_or_else(|| "exited".to_string())
    ))
}

/// Waits until a node that announced `addr` answers its health check, before `deadline`.
/// A node that exits meanwhile is reaped and reported.
async fn confirm_serving(
    child: &mut Child,
    addr: &str,
    deadline: Instant,
) -> Result<(), (StartFailure, String)> {
    loop {
        if let Some(how) = reap_if_exited(child) {
            return Err((
                StartFailure::Exited,
                format!("it announced {addr}, then its {how} (is its metrics port taken?)"),
            ));
        }
        let left = deadline.saturating_duration_since(faas_common::clock::tokio_instant());
        if left.is_zero() {
            return Err((
                StartFailure::Timeout,
                format!("it announced {addr} but did not answer its health check in time"),
            ));
        }
        if node_client::healthy(addr, left.min(CONFIRM_STEP)).await {
            return Ok(());
        }
        tokio::time::sleep(CONFIRM_PAUSE.min(left)).await;
    }
}

impl NodeProvider for LocalProvider {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn start_node(
        &self,
        node_id: &str,
        memory_bytes: u64,
    ) -> Result<StartedNode, ProviderError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ProviderError::Closed);
        }
        let failed = |kind: StartFailure, message: String| ProviderError::Start {
            node_id: node_id.to_string(),
            kind,
            message,
        };
        let deadline = faas_common::clock::tokio_instant() + self.options.start_timeout;
        let metrics = self.metrics_ports.as_ref().and_then(|p| p.claim(node_id));
        let started = match self.spawn(node_id, memory_bytes, metrics, deadline).await {
            // Its port was taken after it was found free: the node goes without metrics.
            Err((StartFailure::Exited, why)) if metrics.is_some() => {
                self.release_metrics_port(node_id);
                tracing::warn!(
                    node_id,
                    metrics_port = metrics,
                    %why,
                    "the node exited as it started; starting it again without metrics"
                );
                self.spawn(node_id, memory_bytes, None, deadline).await
            }
            started => started,
        };
        let (mut child, endpoint) = started.map_err(|(kind, message)| {
            self.release_metrics_port(node_id);
            failed(kind, message)
        })?;
        if let Some(port) = self.metrics_ports.as_ref().and_then(|p| p.of(node_id)) {
            tracing::info!(
                node_id,
                %endpoint,
                metrics = %format!("127.0.0.1:{port}"),
                "node serves its metrics"
            );
        }
        let pid = child.id();
        let handle = NodeHandle {
            pid,
            process_start: pid.and_then(|pid| self.processes.start_time(pid)),
            ..NodeHandle::default()
        };
        {
            let mut nodes = self.nodes();
            if !self.closed.load(Ordering::Acquire) {
                nodes.insert(
                    node_id.to_string(),
                    Arc::new(tokio::sync::Mutex::new(NodeProcess::Child(Box::new(child)))),
                );
                return Ok(StartedNode { endpoint, handle });
            }
        }
        child.stop(self.options.stop_grace).await;
        self.release_metrics_port(node_id);
        Err(ProviderError::Closed)
    }

    async fn adopt(
        &self,
        node_id: &str,
        _endpoint: &NodeEndpoint,
        handle: &NodeHandle,
    ) -> Result<(), String> {
        let (Some(pid), Some(start)) = (handle.pid, handle.process_start) else {
            return Err("no node-service process was recorded for it".to_string());
        };
        let process = ProcessRef { pid, start };
        match self.processes.start_time(pid) {
            None => return Err(format!("its node-service process {pid} is gone")),
            Some(now) if now != start => {
                return Err(format!(
                    "its node-service process {pid} is gone (the pid now names another process)"
                ));
            }
            Some(_) => {}
        }
        register_adopted(
            &mut self.nodes(),
            &self.closed,
            node_id,
            Arc::new(tokio::sync::Mutex::new(NodeProcess::Adopted(process))),
        )
    }

    async fn stop_node(&self, node_id: &str) {
        self.end(node_id, self.options.stop_grace).await;
    }

    async fn kill_node(&self, node_id: &str) {
        self.end(node_id, Duration::ZERO).await;
    }

    async fn gone_nodes(&self) -> Vec<GoneNode> {
        let nodes: Vec<(String, Shared<NodeProcess>)> = self
            .nodes()
            .iter()
            .map(|(id, process)| (id.clone(), process.clone()))
            .collect();
        let mut gone = Vec::new();
        for (node_id, process) in nodes {
            // Locked: it is being stopped, and the stop reaps it.
            let Ok(mut process) = process.try_lock() else {
                continue;
            };
            if let Some(how) = self.exited(&mut process) {
                self.nodes().remove(&node_id);
                self.release_metrics_port(&node_id);
                gone.push(GoneNode {
                    node_id,
                    detail: format!("its node-service {how}"),
                });
            }
        }
        gone
    }

    async fn node_may_have_exited(&self) {
        let mut sigchld = self.sigchld.lock().await;
        if matches!(*sigchld, ChildSignal::NotYet) {
            *sigchld = match signal(SignalKind::child()) {
                Ok(s) => ChildSignal::Listening(s),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGCHLD; exited nodes are noticed at the next probe");
                    ChildSignal::Unavailable
                }
            };
        }
        if let ChildSignal::Listening(s) = &mut *sigchld
            && s.recv().await.is_some()
        {
            return;
        }
        drop(sigchld);
        std::future::pending::<()>().await;
    }

    async fn shutdown(&self) {
        self.closed.store(true, Ordering::Release);
        let all: Vec<(String, Shared<NodeProcess>)> = self.nodes().drain().collect();
        if !all.is_empty() {
            tracing::info!(nodes = all.len(), "stopping local nodes");
        }
        let grace = self.options.stop_grace;
        futures::future::join_all(all.into_iter().map(|(_, process)| async move {
            self.stop_process(&mut *process.lock().await, grace).await;
        }))
        .await;
    }

    async fn detach(&self) {
        self.closed.store(true, Ordering::Release);
        let all: Vec<(String, Shared<NodeProcess>)> = self.nodes().drain().collect();
        if self.options.lifetime == Lifetime::Guarded && !all.is_empty() {
            tracing::warn!(
                nodes = all.len(),
                "detaching guarded nodes: they die with their handles (no --state-dir)"
            );
        }
        // Dropped unstopped: a detached child keeps running, and an adopted process was
        // never ours to drop.
        drop(all);
    }
}

#[cfg(test)]
#[path = "local_tests.rs"]
mod tests;
