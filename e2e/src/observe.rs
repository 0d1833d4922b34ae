//! What the running platform says about itself: reserved nodes (resource manager), node and
//! container answers, the scheduler's Prometheus figures, and a poll helper with a deadline.
//! Calls to the resource manager and the nodes carry the platform's cluster token
//! ([`ClusterAuth`]; `LocalPlatform::cluster_auth`).
//!
//! The fault bench (`faas replay --faults`), the `faas-cli` integration tests and
//! `examples/fault_bench.rs` look at the platform with it.

use std::future::Future;
use std::time::Duration;

use faas_common::token::ClusterAuth;
use faas_proto::container::StatusReply;
use faas_proto::container::StatusRequest;
use faas_proto::container::container_service_client::ContainerServiceClient;
use faas_proto::nodeservoceproto::node_service_client::NodeServiceClient;
use faas_proto::nodeservoceproto::{GetStatsReply, GetStatsRequest};
use faas_proto::resourcemanagerproto::resource_manager_client::ResourceManagerClient;
use faas_proto::resourcemanagerproto::{GetNodesUsageRequest, NodeDesc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;

use crate::procs;

/// How long one look at a component may take before it counts as no answer.
pub const LOOK_TIMEOUT: Duration = Duration::from_secs(1);

/// Calls `f` every 50 ms until it gives `Some`, or `None` once `within` has passed.
pub async fn poll<T, F, Fut>(within: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = faas_common::clock::instant() + within;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if faas_common::clock::instant() >= end {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every node the resource manager has reserved and not released.
pub async fn reserved_nodes(
    resource_manager: &str,
    auth: &ClusterAuth,
) -> Result<Vec<NodeDesc>, String> {
    let channel = faas_common::serve::connect(resource_manager)
        .await
        .map_err(|e| e.to_string())?;
    let mut request = tonic::Request::new(GetNodesUsageRequest {
        request_id: "observe".into(),
    });
    request.set_timeout(LOOK_TIMEOUT);
    let nodes = ResourceManagerClient::new(auth.channel(channel))
        .get_nodes_usage(request)
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
        .into_inner()
        .nodes;
    Ok(nodes
        .into_iter()
        .filter(|n| n.released_time_timestamp_ms == 0)
        .collect())
}

/// `host:port` of a node's service.
pub fn node_addr(node: &NodeDesc) -> String {
    format!("{}:{}", node.address, node.node_service_port)
}

/// The reply of `call` on a fresh channel to `addr`, if it connects and answers within
/// [`LOOK_TIMEOUT`].
async fn look<T, F, Fut>(addr: &str, call: F) -> Option<T>
where
    F: FnOnce(Channel) -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let answer = async {
        let channel = faas_common::serve::connect(addr).await.ok()?;
        call(channel).await.ok().map(tonic::Response::into_inner)
    };
    tokio::time::timeout(LOOK_TIMEOUT, answer)
        .await
        .ok()
        .flatten()
}

/// A node's `GetStats`, if it answers within [`LOOK_TIMEOUT`].
pub async fn node_stats(addr: &str, auth: &ClusterAuth) -> Option<GetStatsReply> {
    look(addr, |channel| async move {
        let request = GetStatsRequest {
            request_id: "observe".into(),
        };
        NodeServiceClient::new(auth.channel(channel))
            .get_stats(request)
            .await
    })
    .await
}

/// A container process of this process tree and what its container service says.
#[derive(Clone, Debug)]
pub struct LiveContainer {
    pub pid: u32,
    /// The node service that started it.
    pub node_pid: u32,
    pub node_id: String,
    pub port: u16,
    /// Its `Status` (an unbound warm-pool container has an empty `function_name`).
    pub status: StatusReply,
}

/// A container service's `Status` on a loopback port.
pub async fn container_status(port: u16) -> Option<StatusReply> {
    look(&format!("127.0.0.1:{port}"), |channel| async move {
        ContainerServiceClient::new(channel)
            .status(StatusRequest {})
            .await
    })
    .await
}

/// Every container process under this process that answers `Status` (bound or not).
pub async fn live_containers() -> Vec<LiveContainer> {
    let looks = procs::containers()
        .into_iter()
        .map(|(pid, node_pid)| async move {
            let node_id = procs::flag(node_pid, "--node-id")?;
            for port in procs::listen_ports(pid) {
                if let Some(status) = container_status(port).await {
                    return Some(LiveContainer {
                        pid,
                        node_pid,
                        node_id,
                        port,
                        status,
                    });
                }
            }
            None
        });
    futures::future::join_all(looks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// The live containers bound to `function`.
pub async fn containers_of(function: &str) -> Vec<LiveContainer> {
    let mut all = live_containers().await;
    all.retain(|c| c.status.function_name == function);
    all
}

/// A free loopback port (for `--metrics-port`).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The Prometheus text served on `127.0.0.1:port/metrics`.
pub async fn scrape(port: u16) -> Option<String> {
    let look = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).await.ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.1 200").then(|| body.to_string())
    };
    tokio::time::timeout(LOOK_TIMEOUT, look)
        .await
        .ok()
        .flatten()
}

/// The sum of the samples of metric `name` (any labels) whose labels contain none of `skip`.
pub fn metric(text: &str, name: &str, skip: &[&str]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric_name, labels) = series.split_once('{').unwrap_or((series, ""));
        if metric_name != name || skip.iter().any(|s| labels.contains(s)) {
            continue;
        }
        if let Ok(v) = value.parse::<f64>() {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// The nodes the scheduler holds, from its `faas_scheduler_nodes` gauge (every state but
/// `reserving`, which counts reserves in flight, not nodes).
pub fn scheduler_nodes(text: &str) -> Option<u64> {
    metric(text, "faas_scheduler_nodes", &["state=\"reserving\""]).map(|v| v as u64)
}

/// Reserved nodes (and their containers) against what the scheduler holds.
#[derive(Clone, Debug, Default)]
pub struct NodeLedger {
    /// Ids of the nodes reserved and not released (resource manager).
    pub reserved: Vec<String>,
    /// Of those, the ones whose node service does not answer `GetStats`.
    pub not_answering: Vec<String>,
    /// The nodes the scheduler holds (`None`: its metrics did not answer).
    pub scheduler_nodes: Option<u64>,
    /// The function containers the answering reserved nodes list in `GetStats`.
    pub node_containers: u64,
    /// The containers the scheduler holds, in any state (`None`: its metrics did not
    /// answer).
    pub scheduler_containers: Option<u64>,
}

impl NodeLedger {
    /// Reserved nodes beyond the ones the scheduler knows.
    pub fn unknown_to_scheduler(&self) -> usize {
        let known = self.scheduler_nodes.unwrap_or(0) as usize;
        self.reserved.len().saturating_sub(known)
    }

    /// Containers the nodes hold beyond the ones the scheduler knows (orphans).
    pub fn orphan_containers(&self) -> u64 {
        self.node_containers
            .saturating_sub(self.scheduler_containers.unwrap_or(0))
    }

    /// Every reserved node answers and is known to the scheduler, and no more.
    pub fn consistent(&self) -> bool {
        self.not_answering.is_empty() && self.scheduler_nodes == Some(self.reserved.len() as u64)
    }

    /// [`Self::consistent`], and the scheduler knows every container the nodes hold.
    pub fn settled(&self) -> bool {
        self.consistent() && self.scheduler_containers.is_some() && self.orphan_containers() == 0
    }
}

/// Reserved nodes (whether they answer, their containers) against the scheduler's
/// `faas_scheduler_nodes` and `faas_scheduler_containers` gauges.
pub async fn node_ledger(
    resource_manager: &str,
    scheduler_metrics_port: u16,
    auth: &ClusterAuth,
) -> NodeLedger {
    let reserved = reserved_nodes(resource_manager, auth)
        .await
        .unwrap_or_default();
    let mut ledger = NodeLedger::default();
    for node in reserved {
        match node_stats(&node_addr(&node), auth).await {
            Some(stats) => ledger.node_containers += stats.container_stats_list.len() as u64,
            None => ledger.not_answering.push(node.id.clone()),
        }
        ledger.reserved.push(node.id);
    }
    let text = scrape(scheduler_metrics_port).await;
    ledger.scheduler_nodes = text.as_deref().and_then(scheduler_nodes);
    ledger.scheduler_containers = text
        .as_deref()
        .and_then(|t| metric(t, "faas_scheduler_containers", &[]))
        .map(|v| v as u64);
    ledger
}

/// A node service of this process tree and its function containers.
#[derive(Clone, Debug)]
pub struct BusyNode {
    pub pid: u32,
    pub node_id: String,
    /// Its containers bound to a function, as they answered.
    pub containers: Vec<LiveContainer>,
}

/// The invocations `containers` run now: each asked again, all at once (a container that
/// does not answer counts none).
pub async fn in_flight_now(containers: &[LiveContainer]) -> u64 {
    let asks = containers.iter().map(|c| container_status(c.port));
    futures::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .map(|s| u64::try_from(s.in_flight).unwrap_or(0))
        .sum()
}

/// The node service holding the most function containers (ties: the lowest pid), if any
/// holds one.
pub async fn busiest_node() -> Option<BusyNode> {
    let mut nodes: Vec<BusyNode> = Vec::new();
    for c in live_containers().await {
        if c.status.function_name.is_empty() {
            continue;
        }
        match nodes.iter_mut().find(|n| n.pid == c.node_pid) {
            Some(n) => n.containers.push(c),
            None => nodes.push(BusyNode {
                pid: c.node_pid,
                node_id: c.node_id.clone(),
                containers: vec![c],
            }),
        }
    }
    nodes
        .into_iter()
        .max_by_key(|n| (n.containers.len(), std::cmp::Reverse(n.pid)))
}
