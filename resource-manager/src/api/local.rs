//! The `local` node provider: one node-service child process per node on this machine.
//!
//! A node is started with `--host 127.0.0.1 --port 0 --node-id ID --memory-bytes N --runtime R`
//! (and `--warm-pool N`, `--orphan-timeout-ms T`, `--bundles-dir D` and
//! `--docker-watchdog-bin W` when set). It is up once it has printed
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
}

impl LocalProvider {
    /// A provider running `launcher` (the node-service binary).
    pub fn new(launcher: Launcher, options: LocalOptions) -> LocalProvider {
        LocalProvider {
            launcher,
            options,
            nodes: Mutex::new(HashMap::new()),
            processes: Arc::new(SystemProcesses),
            closed: AtomicBool::new(false),
            sigchld: tokio::sync::Mutex::new(ChildSignal::NotYet),
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
        let deadline = Instant::now() + within;
        loop {
            if !self.processes.is_running(process) {
                return true;
            }
            if Instant::now() >= deadline {
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
        let left = deadline.saturating_duration_since(Instant::now());
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
        let deadline = Instant::now() + self.options.start_timeout;
        let mut cmd = self.launcher.command();
        cmd.args(["--host", "127.0.0.1", "--port", "0", "--node-id", node_id])
            .arg("--memory-bytes")
            .arg(memory_bytes.to_string())
            .arg("--runtime")
            .arg(&self.options.runtime);
        if let Some(n) = self.options.warm_pool {
            cmd.arg("--warm-pool").arg(n.to_string());
        }
        if let Some(timeout) = self.options.orphan_timeout {
            cmd.arg("--orphan-timeout-ms")
                .arg(timeout.as_millis().to_string());
        }
        cmd.args(self.options.code.args())
            .envs(self.options.code.env());
        let (mut child, addr) =
            Child::spawn_ready_with(cmd, self.options.start_timeout, self.options.lifetime)
                .await
                .map_err(|e| failed(launch_failure(&e), e.to_string()))?;
        let endpoint = endpoint_of(addr);
        if let Err((kind, message)) =
            confirm_serving(&mut child, &endpoint.to_string(), deadline).await
        {
            child.kill().await;
            return Err(failed(kind, message));
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
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_exited_child_is_reaped_and_described() {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c")
            .arg("echo 'FAAS_LISTENING 127.0.0.1:1'; exit 7");
        let (mut child, _) = Child::spawn_ready(cmd, Duration::from_secs(10))
            .await
            .unwrap();
        let pid = child.id().unwrap();
        // Wait (by polling the process table, not a timer) until it is a zombie.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            if zombie_exit(&stat).is_some() {
                break;
            }
            assert!(Instant::now() < deadline, "never exited: {stat}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            reap_if_exited(&mut child).as_deref(),
            Some(format!("process {pid} exited with code 7").as_str())
        );
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "reaped: no zombie left"
        );
    }

    use crate::api::processes_fake::FakeProcesses;

    fn provider(processes: Arc<FakeProcesses>) -> LocalProvider {
        let options = LocalOptions {
            runtime: "process".into(),
            warm_pool: None,
            start_timeout: Duration::from_secs(5),
            stop_grace: Duration::from_secs(2),
            lifetime: Lifetime::Detached,
            orphan_timeout: None,
            code: NodeCode::default(),
        };
        LocalProvider::new(Launcher::new("false", vec![]), options).with_processes(processes)
    }

    fn handle(pid: u32, start: u64) -> NodeHandle {
        NodeHandle {
            pid: Some(pid),
            process_start: Some(start),
            ..NodeHandle::default()
        }
    }

    fn nowhere() -> NodeEndpoint {
        NodeEndpoint {
            address: "127.0.0.1".into(),
            port: 1,
        }
    }

    #[tokio::test]
    async fn only_the_recorded_process_is_taken_back_and_nothing_else_is_signalled() {
        let processes = Arc::new(FakeProcesses::default());
        processes.run(
            ProcessRef {
                pid: 10,
                start: 100,
            },
            false,
        );
        // pid 11 was reused: it now names a process that started later.
        processes.run(
            ProcessRef {
                pid: 11,
                start: 999,
            },
            false,
        );
        let local = provider(processes.clone());
        let adopt = |id: &'static str, h: NodeHandle| {
            let local = &local;
            async move { local.adopt(id, &nowhere(), &h).await }
        };
        assert_eq!(
            adopt("n-0", NodeHandle::default()).await,
            Err("no node-service process was recorded for it".to_string())
        );
        assert_eq!(
            adopt("n-12", handle(12, 100)).await,
            Err("its node-service process 12 is gone".to_string())
        );
        assert_eq!(
            adopt("n-11", handle(11, 110)).await,
            Err(
                "its node-service process 11 is gone (the pid now names another process)"
                    .to_string()
            )
        );
        assert_eq!(adopt("n-10", handle(10, 100)).await, Ok(()));
        assert!(adopt("n-10", handle(10, 100)).await.is_err(), "once");
        // Killing a node that was refused touches nothing.
        local.kill_node("n-11").await;
        assert!(processes.sent().is_empty(), "{:?}", processes.sent());
        assert!(local.gone_nodes().await.is_empty(), "n-10 still runs");
    }

    #[tokio::test(start_paused = true)]
    async fn an_adopted_node_is_stopped_with_term_then_kill_and_reported_gone_once() {
        let processes = Arc::new(FakeProcesses::default());
        let stubborn = ProcessRef { pid: 10, start: 1 };
        let failed = ProcessRef { pid: 20, start: 2 };
        let exits = ProcessRef { pid: 30, start: 3 };
        processes.run(stubborn, true);
        processes.run(failed, false);
        processes.run(exits, false);
        let local = provider(processes.clone());
        for (id, p) in [("n-10", stubborn), ("n-20", failed), ("n-30", exits)] {
            local
                .adopt(id, &nowhere(), &handle(p.pid, p.start))
                .await
                .unwrap();
        }

        let began = Instant::now();
        local.stop_node("n-10").await;
        assert_eq!(
            processes.sent(),
            vec![(10, Signal::Terminate), (10, Signal::Kill)]
        );
        assert!(
            began.elapsed() >= Duration::from_secs(2),
            "the grace was given"
        );

        local.kill_node("n-20").await;
        assert_eq!(processes.sent()[2..], [(20, Signal::Kill)], "no grace");

        processes.exit(30);
        let gone = local.gone_nodes().await;
        assert_eq!(
            gone,
            vec![GoneNode {
                node_id: "n-30".into(),
                detail: "its node-service process 30 (adopted) exited".into()
            }]
        );
        assert!(local.gone_nodes().await.is_empty(), "reported once");
        assert_eq!(processes.sent().len(), 3, "a gone process is not signalled");
    }

    #[tokio::test]
    async fn detach_lets_go_of_adopted_nodes_without_a_signal_and_refuses_more() {
        let processes = Arc::new(FakeProcesses::default());
        processes.run(ProcessRef { pid: 10, start: 1 }, false);
        processes.run(ProcessRef { pid: 11, start: 1 }, false);
        let local = provider(processes.clone());
        local
            .adopt("n-10", &nowhere(), &handle(10, 1))
            .await
            .unwrap();
        local.detach().await;
        assert!(processes.sent().is_empty());
        assert_eq!(processes.start_time(10), Some(1), "still running");
        assert!(
            local
                .adopt("n-11", &nowhere(), &handle(11, 1))
                .await
                .is_err()
        );
        assert_eq!(
            local.start_node("n-12", 1).await,
            Err(ProviderError::Closed)
        );
        local.shutdown().await;
        assert!(
            processes.sent().is_empty(),
            "detached nodes are no longer its own"
        );
    }
}
