//! `faas.admin.v1.Admin/ListNodes` (`faas nodes`, `faas ps`): every node the scheduler
//! holds, with its containers, as the nodes themselves describe them.
//!
//! The API server keeps no view of the cluster. A call goes:
//!
//! 1. the scheduler is asked which nodes it holds (`SchedulerAdmin/ListNodes`, shared with
//!    `faas logs`: [`crate::api::logs::scheduler_nodes`]);
//! 2. every node is asked at once ([`crate::api::logs::ask_every_node`], each within
//!    [`NODE_TIMEOUT`], with the cluster token) for two things over one channel:
//!    `faas.node.v1.NodeAdmin/DescribeNode` (its containers with their definitions, calls in
//!    flight and last use; its owner; the memory it offers) and the contest's
//!    `nodeservoceproto.NodeService/GetStats` (the memory it measures per container and in
//!    all);
//! 3. [`node_status`] joins the two per node. A node whose description cannot be read is
//!    listed with state `unreachable` and why, never left out; one whose stats alone cannot
//!    be read is listed `ready` with its measured memory 0 and `error` saying why.
//!
//! Containers are filtered by function when the request names one (`NAME`: the function's
//! and its versions'; `NAME:N`: that version's), and nodes come ordered by id.

use std::collections::HashMap;
use std::time::Duration;

use faas_common::token::{AuthChannel, ClusterAuth};
use faas_proto::admin::{ContainerStatus, ListNodesReply, ListNodesRequest, NodeStatus};
use faas_proto::node_admin::{DescribeNodeReply, DescribeNodeRequest};
use faas_proto::nodeservoceproto::node_service_client::NodeServiceClient;
use faas_proto::nodeservoceproto::{GetStatsReply, GetStatsRequest};
use faas_proto::scheduler_admin::NodeEntry;
use faas_proto::scheduler_admin::scheduler_admin_client::SchedulerAdminClient;
use tonic::{Request, Status};

use crate::api::logs::{ask_every_node, call_error, node_admin, of_function, scheduler_nodes};
use crate::model::routing::QUALIFIER_SEPARATOR;

/// How long each node is given to describe itself and report its stats.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(2);

/// A node's state when it described itself.
pub const READY: &str = "ready";
/// A node's state when it could not be read.
pub const UNREACHABLE: &str = "unreachable";

/// What one node answered: its description, and its stats or why they could not be read.
pub type NodeRead = (DescribeNodeReply, Result<GetStatsReply, String>);

/// Answers `request` (see the module's steps); `now_ms` is this server's wall clock.
pub async fn list_nodes(
    scheduler: Option<SchedulerAdminClient<AuthChannel>>,
    auth: &ClusterAuth,
    request: ListNodesRequest,
    now_ms: i64,
) -> Result<ListNodesReply, Status> {
    let nodes = scheduler_nodes(
        scheduler,
        "the nodes and their containers are read from them",
    )
    .await?;
    let answers = ask_every_node(nodes, auth, NODE_TIMEOUT, |channel, timeout| {
        let mut admin = node_admin(channel.clone());
        let mut stats = NodeServiceClient::new(channel).max_decoding_message_size(usize::MAX);
        async move {
            let mut describe = Request::new(DescribeNodeRequest {});
            describe.set_timeout(timeout);
            let mut get_stats = Request::new(GetStatsRequest {
                request_id: format!("list-nodes-{}", uuid::Uuid::new_v4()),
            });
            get_stats.set_timeout(timeout);
            let (described, stats) =
                tokio::join!(admin.describe_node(describe), stats.get_stats(get_stats));
            let stats = stats
                .map(tonic::Response::into_inner)
                .map_err(|s| call_error(&s, timeout));
            Ok((described?.into_inner(), stats))
        }
    })
    .await;
    let mut nodes: Vec<NodeStatus> = answers
        .into_iter()
        .map(|(entry, read)| node_status(entry, read, &request.function_name, now_ms))
        .collect();
    nodes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    Ok(ListNodesReply { nodes })
}

/// Whether a container serving `function_name` is asked for by `wanted` ("" for all;
/// `NAME` for the function and its versions; `NAME:N` for that version).
fn wanted(wanted: &str, function_name: &str) -> bool {
    if wanted.is_empty() {
        true
    } else if wanted.contains(QUALIFIER_SEPARATOR) {
        wanted == function_name
    } else {
        of_function(wanted, function_name)
    }
}

/// One node as `ListNodes` lists it: what the scheduler said of it (`entry`) and what it
/// answered (`read`), its containers filtered by `function` ("" for all). Memory committed
/// is the sum of its running containers' limits (all of them, whatever the filter).
pub fn node_status(
    entry: NodeEntry,
    read: Result<NodeRead, String>,
    function: &str,
    now_ms: i64,
) -> NodeStatus {
    let (described, stats) = match read {
        Ok(read) => read,
        Err(why) => {
            return NodeStatus {
                node_id: entry.node_id,
                address: entry.address,
                state: UNREACHABLE.into(),
                error: why,
                ..NodeStatus::default()
            };
        }
    };
    let (used, error, measured) = match stats {
        Ok(stats) => {
            let used = stats.node_stats.map_or(0, |n| n.memory_usage_in_bytes);
            let measured: HashMap<String, i64> = stats
                .container_stats_list
                .into_iter()
                .map(|c| (c.container_id, c.memory_usage_in_bytes))
                .collect();
            (used, String::new(), measured)
        }
        Err(why) => (
            0,
            format!("its memory use is unknown: GetStats: {why}"),
            HashMap::new(),
        ),
    };
    let committed = described
        .containers
        .iter()
        .filter(|c| c.state != "dead")
        .map(|c| c.memory_in_bytes)
        .sum();
    let node_id = if described.node_id.is_empty() {
        entry.node_id
    } else {
        described.node_id
    };
    let containers = described
        .containers
        .into_iter()
        .filter(|c| wanted(function, &c.function_name))
        .map(|c| ContainerStatus {
            memory_used_in_bytes: measured.get(&c.container_id).copied().unwrap_or(0),
            idle_for_ms: if c.in_flight > 0 {
                0
            } else {
                now_ms.saturating_sub(c.last_used_at_ms).max(0)
            },
            container_id: c.container_id,
            function_name: c.function_name,
            node_id: node_id.clone(),
            state: c.state,
            in_flight: c.in_flight,
            memory_limit_in_bytes: c.memory_in_bytes,
            created_at_ms: c.created_at_ms,
        })
        .collect();
    NodeStatus {
        node_id,
        address: entry.address,
        state: READY.into(),
        reserved_for: described.owner_account_id,
        total_memory_in_bytes: described.total_memory_in_bytes,
        used_memory_in_bytes: used,
        committed_memory_in_bytes: committed,
        containers,
        error,
        machine: described.machine,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faas_proto::node_admin::ContainerInfo;
    use faas_proto::nodeservoceproto::{ContainerStats, NodeStats};

    fn entry() -> NodeEntry {
        NodeEntry {
            node_id: "n1".into(),
            address: "127.0.0.1:4000".into(),
        }
    }

    fn container(id: &str, function: &str, in_flight: i64, state: &str) -> ContainerInfo {
        ContainerInfo {
            container_id: id.into(),
            function_name: function.into(),
            handler: "hello".into(),
            memory_in_bytes: 128 << 20,
            timeout_in_ms: 1000,
            in_flight,
            state: state.into(),
            created_at_ms: 1_000,
            last_used_at_ms: 4_000,
            address: "127.0.0.1:5000".into(),
        }
    }

    fn described() -> DescribeNodeReply {
        DescribeNodeReply {
            machine: "rack-2".into(),
            node_id: "n1".into(),
            owner_account_id: "acct".into(),
            total_memory_in_bytes: 1 << 30,
            containers: vec![
                container("c1", "hello", 0, "running"),
                container("c2", "hello:2", 1, "running"),
                container("c3", "hello-world", 0, "running"),
                container("c4", "echo", 0, "dead"),
            ],
            ..DescribeNodeReply::default()
        }
    }

    fn stats() -> GetStatsReply {
        GetStatsReply {
            node_stats: Some(NodeStats {
                memory_usage_in_bytes: 300 << 20,
                ..NodeStats::default()
            }),
            container_stats_list: vec![ContainerStats {
                container_id: "c1".into(),
                memory_usage_in_bytes: 20 << 20,
                ..ContainerStats::default()
            }],
            ..GetStatsReply::default()
        }
    }

    fn ids(node: &NodeStatus) -> Vec<&str> {
        node.containers
            .iter()
            .map(|c| c.container_id.as_str())
            .collect()
    }

    #[test]
    fn a_node_joins_its_description_and_its_stats() {
        let node = node_status(entry(), Ok((described(), Ok(stats()))), "", 10_000);
        assert_eq!(node.state, READY);
        assert_eq!(node.reserved_for, "acct");
        assert_eq!(node.machine, "rack-2");
        assert_eq!(node.used_memory_in_bytes, 300 << 20);
        // The dead container commits nothing.
        assert_eq!(node.committed_memory_in_bytes, 3 * (128 << 20));
        assert_eq!(ids(&node), ["c1", "c2", "c3", "c4"]);
        let c1 = &node.containers[0];
        assert_eq!(
            (c1.memory_used_in_bytes, c1.idle_for_ms, c1.node_id.as_str()),
            (20 << 20, 6_000, "n1")
        );
        // Busy: not idle; not measured: 0.
        let c2 = &node.containers[1];
        assert_eq!((c2.idle_for_ms, c2.memory_used_in_bytes), (0, 0));
        assert!(node.error.is_empty());
    }

    #[test]
    fn containers_are_filtered_by_function_or_version() {
        let of = |function: &str| {
            let node = node_status(entry(), Ok((described(), Ok(stats()))), function, 0);
            ids(&node).iter().map(|s| s.to_string()).collect::<Vec<_>>()
        };
        assert_eq!(of("hello"), ["c1", "c2"]);
        assert_eq!(of("hello:2"), ["c2"]);
        assert_eq!(of("echo"), ["c4"]);
        assert!(of("nope").is_empty());
    }

    #[test]
    fn a_node_that_cannot_be_read_is_listed_with_why() {
        let node = node_status(entry(), Err("cannot connect".into()), "", 0);
        assert_eq!(
            (
                node.state.as_str(),
                node.error.as_str(),
                node.node_id.as_str()
            ),
            (UNREACHABLE, "cannot connect", "n1")
        );
        let node = node_status(
            entry(),
            Ok((described(), Err("deadline exceeded".into()))),
            "",
            0,
        );
        assert_eq!(node.state, READY);
        assert_eq!(node.used_memory_in_bytes, 0);
        assert!(
            node.error.contains("GetStats: deadline exceeded"),
            "{}",
            node.error
        );
        assert_eq!(node.containers.len(), 4);
    }
}
