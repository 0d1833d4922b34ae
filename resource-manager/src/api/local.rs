//! The `local` node provider: one node-service child process per node on this machine.
//!
//! A node is started with `--host 127.0.0.1 --port 0 --node-id ID --memory-bytes N --runtime R`
//! (and `--warm-pool N` when set). It is up once it has printed its readiness line *and*
//! answers its `grpc.health.v1` check: a node service announces its port before it binds its
//! metrics port, so one whose metrics port is taken announces and then exits. Such a node is
//! a start failure ([`StartFailure::Exited`]), never a ready node.
//!
//! Stopping sends SIGTERM (the node service then stops its own container children), waits
//! out the grace period, kills, and always reaps; killing (a failed node) skips the grace.
//! Children die with the manager even if it is killed (see `faas_common::launch`).
//!
//! No zombies: a child that exits on its own (SIGKILL, a crash) is reaped as soon as it is
//! noticed. [`NodeProvider::node_may_have_exited`] returns on every SIGCHLD this process
//! gets, and [`NodeProvider::gone_nodes`] then reaps every exited child (`try_wait`) and
//! reports it with how it ended, read from `/proc/<pid>/stat` while it is still a zombie.
//! The health watch (`api/health.rs`) runs that on each SIGCHLD and on each probe round.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use faas_common::launch::{Child, LaunchError, Launcher};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::time::Instant;

use crate::api::node_client;
use crate::model::NodeEndpoint;
use crate::service::{GoneNode, NodeProvider, ProviderError, StartFailure};

/// The longest single health check while a started node is confirmed.
const CONFIRM_STEP: Duration = Duration::from_millis(500);
/// The pause between two health checks of a starting node.
const CONFIRM_PAUSE: Duration = Duration::from_millis(20);

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
}

type Shared<T> = Arc<tokio::sync::Mutex<T>>;

/// The SIGCHLD stream, made on first use (it needs a runtime).
#[derive(Debug)]
enum ChildSignal {
    NotYet,
    Listening(Signal),
    Unavailable,
}

/// Starts node-service processes.
#[derive(Debug)]
pub struct LocalProvider {
    launcher: Launcher,
    options: LocalOptions,
    /// Running nodes by id. A child's own lock is held while it stops, so `shutdown` waits
    /// for stops already under way (and `gone_nodes` leaves it to the stop to reap it).
    children: Mutex<HashMap<String, Shared<Child>>>,
    closed: AtomicBool,
    sigchld: tokio::sync::Mutex<ChildSignal>,
}

impl LocalProvider {
    /// A provider running `launcher` (the node-service binary).
    pub fn new(launcher: Launcher, options: LocalOptions) -> LocalProvider {
        LocalProvider {
            launcher,
            options,
            children: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            sigchld: tokio::sync::Mutex::new(ChildSignal::NotYet),
        }
    }

    fn children(&self) -> std::sync::MutexGuard<'_, HashMap<String, Shared<Child>>> {
        self.children.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn child(&self, node_id: &str) -> Option<Shared<Child>> {
        self.children().get(node_id).cloned()
    }

    /// Stops (or with `grace` zero, kills) a node and forgets it.
    async fn end(&self, node_id: &str, grace: Duration) {
        let Some(child) = self.child(node_id) else {
            return;
        };
        let mut child = child.lock().await;
        if grace.is_zero() {
            child.kill().await;
        } else {
            child.stop(grace).await;
        }
        // Forgotten while its lock is held, so `gone_nodes` never sees it reaped but known.
        self.children().remove(node_id);
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

/// How a process ended, from the `/proc/<pid>/stat` line of its zombie (field 52, the wait
/// status; Linux 3.5+). `None` if the line is not a zombie's or has no such field.
fn zombie_exit(stat: &str) -> Option<String> {
    // pid (comm) state ...: comm may hold spaces and parentheses, so split at the last ')'.
    let (_, rest) = stat.rsplit_once(") ")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() != Some(&"Z") {
        return None;
    }
    // `rest` starts at field 3 (state), so field 52 is at index 49.
    let status: i32 = fields.get(49)?.parse().ok()?;
    let signal = status & 0x7f;
    Some(if signal == 0 {
        format!("exited with code {}", (status >> 8) & 0xff)
    } else {
        format!("was killed by signal {signal}")
    })
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
    ) -> Result<NodeEndpoint, ProviderError> {
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
        let (mut child, addr) = Child::spawn_ready(cmd, self.options.start_timeout)
            .await
            .map_err(|e| failed(launch_failure(&e), e.to_string()))?;
        let endpoint = endpoint_of(addr);
        if let Err((kind, message)) =
            confirm_serving(&mut child, &endpoint.to_string(), deadline).await
        {
            child.kill().await;
            return Err(failed(kind, message));
        }
        {
            let mut children = self.children();
            if !self.closed.load(Ordering::Acquire) {
                children.insert(
                    node_id.to_string(),
                    Arc::new(tokio::sync::Mutex::new(child)),
                );
                return Ok(endpoint);
            }
        }
        child.stop(self.options.stop_grace).await;
        Err(ProviderError::Closed)
    }

    async fn stop_node(&self, node_id: &str) {
        self.end(node_id, self.options.stop_grace).await;
    }

    async fn kill_node(&self, node_id: &str) {
        self.end(node_id, Duration::ZERO).await;
    }

    async fn gone_nodes(&self) -> Vec<GoneNode> {
        let children: Vec<(String, Shared<Child>)> = self
            .children()
            .iter()
            .map(|(id, child)| (id.clone(), child.clone()))
            .collect();
        let mut gone = Vec::new();
        for (node_id, child) in children {
            // Locked: it is being stopped, and the stop reaps it.
            let Ok(mut child) = child.try_lock() else {
                continue;
            };
            if let Some(how) = reap_if_exited(&mut child) {
                self.children().remove(&node_id);
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
        let all: Vec<(String, Shared<Child>)> = self.children().drain().collect();
        if !all.is_empty() {
            tracing::info!(nodes = all.len(), "stopping local nodes");
        }
        let grace = self.options.stop_grace;
        futures::future::join_all(all.into_iter().map(|(_, child)| async move {
            child.lock().await.stop(grace).await;
        }))
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A zombie's stat line with `status` as field 52 (fields 4..51 are zeros).
    fn zombie_stat(status: i32) -> String {
        let middle = vec!["0"; 48].join(" ");
        format!("42 (node (x) svc) Z {middle} {status}")
    }

    #[test]
    fn zombie_exit_reads_the_wait_status() {
        assert_eq!(
            zombie_exit(&zombie_stat(9)).as_deref(),
            Some("was killed by signal 9")
        );
        assert_eq!(
            zombie_exit(&zombie_stat(3 << 8)).as_deref(),
            Some("exited with code 3")
        );
        let running = zombie_stat(0).replace(") Z ", ") S ");
        assert_eq!(zombie_exit(&running), None, "not a zombie");
        assert_eq!(zombie_exit("42 (short) Z 1 2"), None, "no field 52");
        assert_eq!(zombie_exit("garbage"), None);
    }

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
}
