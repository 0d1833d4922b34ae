//! Shared by the resource manager's integration tests: a manager served in-process through
//! `run` with the real `local` provider (real node-service child processes of this test
//! process), its gRPC client and Prometheus figures, and looks at the process tree through
//! `/proc`.
//!
//! The node-service binary is found like the manager finds it (`Launcher::find`); if it is
//! not built yet, it is built once (with container-service, which it starts) into this
//! test's own target directory. Each test names its nodes with its own prefix, so the
//! processes of concurrent tests never mix.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use faas_common::launch::Launcher;
use faas_common::shutdown::Trigger;
use faas_common::token::{AuthChannel, ClusterAuth};
use faas_proto::resourcemanagerproto::resource_manager_client::ResourceManagerClient;
use faas_proto::resourcemanagerproto::{
    GetNodesUsageRequest, NodeDesc, ReleaseNodeRequest, ReserveNodeRequest,
};
use faas_resource_manager::{Config, Error};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// The node-service binary, built if needed; `Launcher::find("node-service")` finds it from
/// this test executable afterwards.
pub fn node_service_bin() -> PathBuf {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = FOUND.get_or_init(|| {
        // The dedicated binary, not a multi-call `faas` found by chance (it may be stale);
        // a `faas` named explicitly with FAAS_BIN is taken as given.
        let explicit_faas = std::env::var_os("FAAS_BIN").is_some_and(|v| !v.is_empty());
        let dedicated =
            |l: Launcher| (explicit_faas || l.prefix_args.is_empty()).then_some(l.program);
        if let Some(program) = Launcher::find("node-service").ok().and_then(dedicated) {
            return Ok(program);
        }
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        // target/<profile>/deps/<test>
        let profile_dir = exe.parent().and_then(Path::parent).ok_or("odd test path")?;
        let target_dir = profile_dir.parent().ok_or("odd test path")?;
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let mut cmd = std::process::Command::new(cargo);
        cmd.arg("build")
            .arg("--manifest-path")
            .arg(&manifest)
            .arg("--target-dir")
            .arg(target_dir)
            .args(["-p", "faas-node-service", "--bin", "node-service"])
            .args(["-p", "faas-container-service", "--bin", "container-service"]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().map_err(|e| format!("cannot run cargo: {e}"))?;
        if !status.success() {
            return Err(format!("building node-service failed: {status}"));
        }
        Launcher::find("node-service")
            .ok()
            .and_then(dedicated)
            .ok_or_else(|| "node-service is still not found after building it".to_string())
    });
    match found {
        Ok(path) => path.clone(),
        Err(e) => panic!("node-service is needed: {e}"),
    }
}

/// One process's `/proc/<pid>/stat` fields from the state on: (state, ppid).
fn state_and_parent(pid: u32) -> Option<(String, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid ...
    let (_, rest) = stat.rsplit_once(") ")?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.to_string();
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// The process state letter of `pid` (`S`, `T`, `Z`, ...), `None` once it is gone (reaped).
pub fn process_state(pid: u32) -> Option<String> {
    state_and_parent(pid).map(|(state, _)| state)
}

/// Whether `pid` is a live (not zombie) child of this test process.
fn is_my_live_child(pid: u32) -> bool {
    state_and_parent(pid).is_some_and(|(state, ppid)| ppid == std::process::id() && state != "Z")
}

/// Live node-service children of this test process whose node id starts with `prefix-`:
/// (pid, node id).
pub fn node_processes(prefix: &str) -> Vec<(u32, String)> {
    node_processes_where(prefix, is_my_live_child)
}

/// Live (not zombie) node-service processes whose node id starts with `prefix-`, whoever
/// their parent is (nodes of a killed resource manager binary have a new one): (pid, node id).
pub fn all_node_processes(prefix: &str) -> Vec<(u32, String)> {
    node_processes_where(prefix, |pid| {
        process_state(pid).is_some_and(|state| state != "Z")
    })
}

fn node_processes_where(prefix: &str, keep: impl Fn(u32) -> bool) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if !keep(pid) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if let Some(pos) = args.iter().position(|a| a == "--node-id")
            && let Some(id) = args.get(pos + 1)
            && id.starts_with(&format!("{prefix}-"))
        {
            found.push((pid, id.clone()));
        }
    }
    found
}

/// The pid of node `node_id`'s process.
pub fn pid_of(prefix: &str, node_id: &str) -> u32 {
    let processes = node_processes(prefix);
    processes
        .iter()
        .find(|(_, id)| id == node_id)
        .map(|(pid, _)| *pid)
        .unwrap_or_else(|| panic!("no process for node {node_id}: {processes:?}"))
}

/// Sends `signal` (`KILL`, `STOP`, `CONT`) to `pid` with kill(1).
pub fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("kill(1) runs");
    assert!(status.success(), "kill -{signal} {pid}: {status}");
}

/// Continues and kills node `.1`'s process `.0` when dropped if it is still running, so a
/// test that stopped a process never leaves it behind, whatever happens.
pub struct Stopped(pub u32, pub String);

impl Drop for Stopped {
    fn drop(&mut self) {
        let Some(prefix) = self.1.rsplit_once('-').map(|(p, _)| p) else {
            return;
        };
        // Only that node's process: never a later process that got the same pid.
        if node_processes(prefix).contains(&(self.0, self.1.clone())) {
            for s in ["CONT", "KILL"] {
                let _ = std::process::Command::new("kill")
                    .arg(format!("-{s}"))
                    .arg(self.0.to_string())
                    .status();
            }
        }
    }
}

/// Polls `check` every 20 ms until it returns `Some`, and returns that; panics with `what`
/// and the last `None`'s description after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = faas_common::clock::tokio_instant() + timeout;
    loop {
        let last = match check().await {
            Ok(value) => return value,
            Err(last) => last,
        };
        assert!(
            faas_common::clock::tokio_instant() < deadline,
            "{what}: not within {timeout:?}; last seen: {last}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `pid` is gone from the process table: exited *and reaped* (a zombie, state
/// `Z`, does not count).
pub async fn wait_reaped(pid: u32, timeout: Duration) {
    eventually(&format!("process {pid} reaped"), timeout, || async move {
        match process_state(pid) {
            None => Ok(()),
            Some(state) => Err(format!("state {state}")),
        }
    })
    .await
}

/// A free loopback port (for the metrics endpoint, which takes a port number).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A configuration for tests: nodes named `prefix-N`, no warm pool containers (fewer
/// processes), a refill delay long enough that no refill happens unless a test shortens it,
/// and a metrics endpoint.
pub fn test_config(prefix: &str, ready_nodes: usize, max_nodes: usize) -> Config {
    Config {
        port: 0,
        ready_nodes,
        max_nodes,
        refill_delay_ms: 3_600_000,
        node_id_prefix: prefix.to_string(),
        node_warm_pool: Some(0),
        metrics_port: Some(free_port()),
        ..Config::default()
    }
}

/// Kills every node-service process of `.0` (a prefix) when dropped, whoever its parent:
/// nodes started detached (with a state dir) outlive this test process otherwise, whatever
/// happens to the test.
pub struct KillNodesOnDrop(pub String);

impl Drop for KillNodesOnDrop {
    fn drop(&mut self) {
        for (pid, _) in all_node_processes(&self.0) {
            let _ = faas_common::launch::send_signal(pid, faas_common::launch::Signal::Kill);
        }
    }
}

/// A fresh state directory under the system's temp dir, removed when dropped.
pub struct StateDir(pub PathBuf);

impl StateDir {
    pub fn new(name: &str) -> StateDir {
        StateDir(std::env::temp_dir().join(format!(
            "faas-rm-test-{name}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        )))
    }

    /// The state file's path.
    pub fn file(&self) -> PathBuf {
        self.0.join("resource-manager.json")
    }

    /// The state file, parsed.
    pub fn read(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.file()).expect("the state file exists");
        serde_json::from_str(&text).expect("the state file is JSON")
    }

    /// The ids of the nodes the state file lists.
    pub fn node_ids(&self) -> Vec<String> {
        self.read()["nodes"]
            .as_array()
            .expect("a node list")
            .iter()
            .map(|n| n["id"].as_str().expect("an id").to_string())
            .collect()
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A resource manager served in-process.
pub struct Manager {
    pub addr: SocketAddr,
    trigger: Trigger,
    detach: Trigger,
    task: JoinHandle<Result<(), Error>>,
    prefix: String,
    metrics_port: Option<u16>,
    /// The manager's cluster token (none configured: no token is sent).
    auth: ClusterAuth,
}

impl Manager {
    /// Serves a manager with [`test_config`] (with the default warm pool and no metrics).
    pub async fn start(prefix: &str, ready_nodes: usize, max_nodes: usize) -> Manager {
        let config = Config {
            node_warm_pool: None,
            metrics_port: None,
            ..test_config(prefix, ready_nodes, max_nodes)
        };
        Manager::start_with(config).await
    }

    /// Serves a manager with `config` on 127.0.0.1:0.
    pub async fn start_with(config: Config) -> Manager {
        if config.node_service_bin.is_none() {
            node_service_bin();
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let prefix = config.node_id_prefix.clone();
        let metrics_port = config.metrics_port;
        let auth = config.cluster.auth();
        let (trigger, shutdown) = faas_common::shutdown::channel();
        let (detach, detached) = faas_common::shutdown::channel();
        let task = tokio::spawn(faas_resource_manager::run_with(
            listener, config, shutdown, detached,
        ));
        if let Some(port) = metrics_port {
            let deadline = faas_common::clock::tokio_instant() + Duration::from_secs(30);
            while tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
            {
                if task.is_finished() {
                    // It will never answer: say why it stopped.
                    panic!(
                        "the resource manager stopped as it started: {:?}",
                        task.await
                    );
                }
                assert!(
                    faas_common::clock::tokio_instant() < deadline,
                    "no metrics endpoint on {port} in 30 s"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        // The gRPC server runs only once the provider is set up (a Docker provider pings the
        // daemon and looks for its network first); a manager that fails before then drops its
        // listener, and a caller would see only "connection reset". Wait until the server
        // answers health (SERVING or not), or say why it stopped.
        let deadline = faas_common::clock::tokio_instant() + Duration::from_secs(60);
        loop {
            if task.is_finished() {
                panic!(
                    "the resource manager stopped as it started: {:?}",
                    task.await
                );
            }
            if let Ok(channel) = faas_common::serve::connect(&addr.to_string()).await {
                let mut health = HealthClient::new(channel);
                let check = health.check(HealthCheckRequest {
                    service: String::new(),
                });
                if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(5), check).await {
                    break;
                }
            }
            assert!(
                faas_common::clock::tokio_instant() < deadline,
                "the resource manager on {addr} did not answer health in 60 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Manager {
            addr,
            trigger,
            detach,
            task,
            prefix,
            metrics_port,
            auth,
        }
    }

    /// A client with the manager's cluster token, if it has one.
    pub async fn client(&self) -> ResourceManagerClient<AuthChannel> {
        ResourceManagerClient::new(self.auth.channel(self.channel().await))
    }

    pub async fn channel(&self) -> Channel {
        faas_common::serve::connect(&self.addr.to_string())
            .await
            .unwrap()
    }

    /// Waits (through the health service's watch stream) until the initial nodes are up.
    pub async fn wait_serving(&self) {
        let mut health = HealthClient::new(self.channel().await);
        let mut stream = health
            .watch(HealthCheckRequest {
                service: "resourcemanagerproto.ResourceManager".to_string(),
            })
            .await
            .unwrap()
            .into_inner();
        while let Some(reply) = stream.message().await.unwrap() {
            if reply.status == ServingStatus::Serving as i32 {
                return;
            }
        }
        panic!("health stream ended before SERVING");
    }

    /// The Prometheus text of the metrics endpoint.
    pub async fn metrics(&self) -> String {
        scrape(self.metrics_port.expect("a metrics port in the config")).await
    }

    /// The value of one sample, e.g. `faas_resource_manager_nodes{state="ready"}`; 0 if absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// Waits until `sample` reads `value`.
    pub async fn wait_metric(&self, sample: &str, value: f64, timeout: Duration) {
        eventually(&format!("{sample} = {value}"), timeout, || async {
            match self.metric(sample).await {
                v if v == value => Ok(()),
                v => Err(v.to_string()),
            }
        })
        .await
    }

    /// Stops the manager as a crash would (`run_with`'s detach): it stops serving, and its
    /// nodes and state file are left as they are.
    pub async fn crash(self) {
        self.detach.trigger();
        self.task.await.unwrap().unwrap();
    }

    /// Stops the manager and checks that it stopped every node it started.
    pub async fn stop(self) {
        self.trigger.trigger();
        self.task.await.unwrap().unwrap();
        let left = node_processes(&self.prefix);
        assert!(
            left.is_empty(),
            "node-service processes left behind: {left:?}"
        );
    }
}

pub async fn reserve(
    client: &mut ResourceManagerClient<AuthChannel>,
    account: &str,
) -> Result<NodeDesc, tonic::Status> {
    let reply = client
        .reserve_node(ReserveNodeRequest {
            request_id: "req-1".to_string(),
            account_id: account.to_string(),
        })
        .await?;
    Ok(reply.into_inner().node.expect("a reserved node"))
}

pub async fn release(
    client: &mut ResourceManagerClient<AuthChannel>,
    id: &str,
) -> Result<(), tonic::Status> {
    client
        .release_node(ReleaseNodeRequest {
            request_id: "req-2".to_string(),
            id: id.to_string(),
        })
        .await
        .map(|_| ())
}

pub async fn usage(client: &mut ResourceManagerClient<AuthChannel>) -> Vec<NodeDesc> {
    client
        .get_nodes_usage(GetNodesUsageRequest::default())
        .await
        .unwrap()
        .into_inner()
        .nodes
}

/// The Prometheus text served on 127.0.0.1:`port` (`GET /metrics`, status line and headers
/// included).
pub async fn scrape(port: u16) -> String {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| panic!("nothing serves metrics on {port}: {e}"));
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    reply
}

/// Gives this test process `NODE_METRICS_PORT=port`, as `NODE_METRICS_PORT=P faas up` would:
/// the manager reads it from its own environment (it is the variable under test, so it
/// cannot be passed another way to a manager run in-process). Call it only from a test
/// binary with one test, before any other thread starts.
#[allow(clippy::disallowed_methods)]
pub fn inherit_node_metrics_port(port: u16) {
    // SAFETY: the caller's test is the only one of its process, and no other thread runs yet.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var(
            faas_resource_manager::config::NODE_METRICS_PORT_ENV,
            port.to_string(),
        )
    };
}
