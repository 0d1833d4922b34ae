//! The resource manager with the real `local` provider: real node-service processes.
//!
//! The node-service binary is found like the manager finds it (`Launcher::find`); if it is
//! not built yet, it is built once (with container-service, which it starts) into this
//! test's own target directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use faas_common::launch::Launcher;
use faas_common::shutdown::Trigger;
use faas_proto::nodeservoceproto::GetStatsRequest;
use faas_proto::nodeservoceproto::node_service_client::NodeServiceClient;
use faas_proto::resourcemanagerproto::resource_manager_client::ResourceManagerClient;
use faas_proto::resourcemanagerproto::{
    GetNodesUsageRequest, NodeDesc, ReleaseNodeRequest, ReserveNodeRequest,
};
use faas_resource_manager::{Config, Error};
use tokio::task::JoinHandle;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Makes sure `Launcher::find("node-service")` works from this test executable.
fn ensure_node_service() {
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
    if let Err(e) = found {
        panic!("node-service is needed: {e}");
    }
}

/// Node-service children of this test process whose node id starts with `prefix`: (pid, node id).
fn node_processes(prefix: &str) -> Vec<(u32, String)> {
    let me = std::process::id();
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
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some(after_comm) = stat.rsplit_once(") ").map(|(_, rest)| rest) else {
            continue;
        };
        let mut fields = after_comm.split_whitespace();
        let state = fields.next().unwrap_or("");
        let ppid: u32 = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if ppid != me || state == "Z" {
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

struct Manager {
    addr: SocketAddr,
    trigger: Trigger,
    task: JoinHandle<Result<(), Error>>,
    prefix: String,
}

impl Manager {
    async fn start(prefix: &str, ready_nodes: usize, max_nodes: usize) -> Manager {
        Manager::start_with(prefix, ready_nodes, max_nodes, Config::default()).await
    }

    /// Starts a manager with `base`'s settings besides the port, pool sizes and prefix.
    async fn start_with(
        prefix: &str,
        ready_nodes: usize,
        max_nodes: usize,
        base: Config,
    ) -> Manager {
        ensure_node_service();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = Config {
            port: 0,
            ready_nodes,
            max_nodes,
            // Long enough that no refill happens during a test: the tests see only the
            // initial nodes.
            refill_delay_ms: 3_600_000,
            node_id_prefix: prefix.to_string(),
            ..base
        };
        let (trigger, shutdown) = faas_common::shutdown::channel();
        let task = tokio::spawn(faas_resource_manager::run(listener, config, shutdown));
        Manager {
            addr,
            trigger,
            task,
            prefix: prefix.to_string(),
        }
    }

    async fn client(&self) -> ResourceManagerClient<Channel> {
        let channel = faas_common::serve::connect(&self.addr.to_string())
            .await
            .unwrap();
        ResourceManagerClient::new(channel)
    }

    /// Waits (through the health service's watch stream) until the initial nodes are up.
    async fn wait_serving(&self) {
        let channel = faas_common::serve::connect(&self.addr.to_string())
            .await
            .unwrap();
        let mut health = HealthClient::new(channel);
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

    /// Stops the manager and checks that it stopped every node it started.
    async fn stop(self) {
        self.trigger.trigger();
        self.task.await.unwrap().unwrap();
        let left = node_processes(&self.prefix);
        assert!(
            left.is_empty(),
            "node-service processes left behind: {left:?}"
        );
    }
}

async fn reserve(
    client: &mut ResourceManagerClient<Channel>,
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

async fn release(
    client: &mut ResourceManagerClient<Channel>,
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

#[tokio::test]
async fn reserve_hands_over_a_live_node_and_release_stops_it() {
    let rm = Manager::start("handover", 2, 3).await;
    let mut client = rm.client().await;

    let err = reserve(&mut client, "").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), "account ID cannot be empty");

    let before = faas_common::clock::now_ms();
    let node = reserve(&mut client, "acct-1").await.unwrap();
    assert!(node.id.starts_with("handover-"), "{node:?}");
    assert_eq!(node.memory_in_bytes, 3_221_225_472);
    assert!(node.reserved_time_timestamp_ms >= before, "{node:?}");
    assert_eq!(node.released_time_timestamp_ms, 0);
    assert!(node.node_service_port > 0);

    // The node answers and knows its owner.
    let node_addr = format!("{}:{}", node.address, node.node_service_port);
    let channel = faas_common::serve::connect(&node_addr).await.unwrap();
    let stats = NodeServiceClient::new(channel)
        .get_stats(GetStatsRequest {
            request_id: "stats-1".to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.owner_account_id, "acct-1");

    let processes = node_processes("handover");
    assert_eq!(
        processes.len(),
        2,
        "the two initial nodes run: {processes:?}"
    );
    let pid = processes
        .iter()
        .find(|(_, id)| *id == node.id)
        .map(|(pid, _)| *pid)
        .expect("the reserved node's process");

    let usage = client
        .get_nodes_usage(GetNodesUsageRequest::default())
        .await
        .unwrap()
        .into_inner()
        .nodes;
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0].id, node.id);
    assert_eq!(usage[0].released_time_timestamp_ms, 0);

    release(&mut client, &node.id).await.unwrap();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "node-service {pid} still exists after release"
    );
    assert!(
        tokio::net::TcpStream::connect(&node_addr).await.is_err(),
        "the released node's port still accepts connections"
    );

    let usage = client
        .get_nodes_usage(GetNodesUsageRequest::default())
        .await
        .unwrap()
        .into_inner()
        .nodes;
    assert_eq!(usage.len(), 1, "released nodes keep their usage record");
    assert!(usage[0].released_time_timestamp_ms >= usage[0].reserved_time_timestamp_ms);

    let err = release(&mut client, &node.id).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(err.message(), format!("node {} is not reserved", node.id));
    let err = release(&mut client, "no-such-node").await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.message(), "node no-such-node not found");
    let err = release(&mut client, "").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    rm.stop().await;
}

#[tokio::test]
async fn one_node_pool_is_exhausted_after_one_reserve() {
    let rm = Manager::start("exhaust", 1, 1).await;
    let mut client = rm.client().await;
    let node = reserve(&mut client, "acct-2").await.unwrap();
    assert!(node.id.starts_with("exhaust-"));

    let err = reserve(&mut client, "acct-2").await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(err.message(), "no available node can be reserved");

    rm.stop().await;
}

#[tokio::test]
async fn shutdown_stops_every_node_it_started() {
    let rm = Manager::start("shutdown", 3, 5).await;
    rm.wait_serving().await;
    let mut client = rm.client().await;
    reserve(&mut client, "acct-3").await.unwrap();
    let running = node_processes("shutdown");
    assert_eq!(
        running.len(),
        3,
        "ready and reserved nodes run: {running:?}"
    );
    rm.stop().await;
}

#[tokio::test]
async fn parallel_reserves_never_share_a_node() {
    let rm = Manager::start("parallel", 3, 3).await;
    let client = rm.client().await;
    let calls = (0..5).map(|i| {
        let mut client = client.clone();
        async move { reserve(&mut client, &format!("acct-{i}")).await }
    });
    let results = futures::future::join_all(calls).await;
    let mut ids: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().map(|n| n.id.clone()))
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "three distinct nodes: {results:?}");
    let exhausted = results
        .iter()
        .filter(|r| {
            r.as_ref()
                .is_err_and(|e| e.code() == Code::ResourceExhausted)
        })
        .count();
    assert_eq!(exhausted, 2, "{results:?}");
    rm.stop().await;
}

#[tokio::test]
async fn nodes_get_the_warm_pool_size() {
    let base = Config {
        node_warm_pool: Some(1),
        ..Config::default()
    };
    let rm = Manager::start_with("pooled", 1, 1, base).await;
    rm.wait_serving().await;
    let nodes = node_processes("pooled");
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", nodes[0].0)).unwrap();
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    assert!(
        args.windows(2).any(|w| w == ["--warm-pool", "1"]),
        "{args:?}"
    );
    rm.stop().await;
}
