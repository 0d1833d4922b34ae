//! `faas nodes` and `faas ps [NAME]`: what runs where, as the API server reads it from every
//! node the scheduler holds (`faas.admin.v1.Admin/ListNodes`; each node describes its
//! containers and measures their memory, within 2 s).
//!
//! `faas nodes` prints a node per line: its id, address, state (`ready`, or `unreachable`
//! with why on stderr), containers, memory (used as measured / committed to its running
//! containers' limits / offered, MiB) and the account it is reserved for. `faas ps` prints a
//! container per line: its function (`NAME` or `NAME:N`), node, id (8 characters), state,
//! calls in flight, how long it has been idle (`3s`, `2m10s`; 0s while a call runs) and its
//! memory (used / limit, MiB); `faas ps NAME` only the containers of NAME and its versions
//! (`NAME:N`: one version's). With `-o json` both print one array ([`NodeJson`],
//! [`ContainerJson`]; sizes in bytes, times in ms, full ids).

use std::time::Duration;

use faas_cli::client::Api;
use faas_cli::exit::call_failed;
use faas_proto::admin::{ContainerStatus, ListNodesReply, ListNodesRequest, NodeStatus};
use serde::Serialize;

use crate::output::{OutputArgs, ago, mib, print_json};

/// The flags of `faas nodes`.
#[derive(clap::Args, Clone, Debug)]
pub struct NodesArgs {
    #[command(flatten)]
    pub output: OutputArgs,
}

/// The flags of `faas ps`.
#[derive(clap::Args, Clone, Debug)]
pub struct PsArgs {
    /// Only the containers of this function and its versions (NAME:N: one version's).
    pub name: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// A node as `faas nodes -o json` prints it.
#[derive(Debug, Serialize)]
pub struct NodeJson {
    pub node_id: String,
    /// The machine the node runs on ("" when it could not be read).
    pub machine: String,
    pub address: String,
    pub state: String,
    pub reserved_for: String,
    pub containers: usize,
    pub memory_total_bytes: i64,
    pub memory_used_bytes: i64,
    pub memory_committed_bytes: i64,
    /// Why the node (or its usage) could not be read; absent when it was.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// A container as `faas ps -o json` prints it.
#[derive(Debug, Serialize)]
pub struct ContainerJson {
    pub function: String,
    pub node_id: String,
    pub container_id: String,
    pub state: String,
    pub in_flight: i64,
    pub idle_for_ms: i64,
    pub memory_used_bytes: i64,
    pub memory_limit_bytes: i64,
    pub created_at_ms: i64,
}

impl From<&NodeStatus> for NodeJson {
    fn from(n: &NodeStatus) -> NodeJson {
        NodeJson {
            node_id: n.node_id.clone(),
            machine: n.machine.clone(),
            address: n.address.clone(),
            state: n.state.clone(),
            reserved_for: n.reserved_for.clone(),
            containers: n.containers.len(),
            memory_total_bytes: n.total_memory_in_bytes,
            memory_used_bytes: n.used_memory_in_bytes,
            memory_committed_bytes: n.committed_memory_in_bytes,
            error: n.error.clone(),
        }
    }
}

impl From<&ContainerStatus> for ContainerJson {
    fn from(c: &ContainerStatus) -> ContainerJson {
        ContainerJson {
            function: c.function_name.clone(),
            node_id: c.node_id.clone(),
            container_id: c.container_id.clone(),
            state: c.state.clone(),
            in_flight: c.in_flight,
            idle_for_ms: c.idle_for_ms,
            memory_used_bytes: c.memory_used_in_bytes,
            memory_limit_bytes: c.memory_limit_in_bytes,
            created_at_ms: c.created_at_ms,
        }
    }
}

async fn list(api: &Api, function: Option<&str>) -> anyhow::Result<ListNodesReply> {
    let mut request = tonic::Request::new(ListNodesRequest {
        function_name: function.unwrap_or_default().to_string(),
    });
    request.set_timeout(Duration::from_secs(10));
    Ok(api
        .admin()
        .list_nodes(request)
        .await
        .map_err(call_failed("list the nodes"))?
        .into_inner())
}

/// Warns on stderr of every node that could not be read (fully or in part).
fn warn_unread(nodes: &[NodeStatus]) {
    for n in nodes.iter().filter(|n| !n.error.is_empty()) {
        eprintln!(
            "warning: node {} ({}) {}: {}",
            n.node_id, n.address, n.state, n.error
        );
    }
}

/// `faas nodes`.
pub async fn nodes(api: &Api, args: &NodesArgs) -> anyhow::Result<()> {
    let reply = list(api, None).await?;
    if args.output.is_json() {
        let nodes: Vec<NodeJson> = reply.nodes.iter().map(NodeJson::from).collect();
        return print_json(&nodes);
    }
    warn_unread(&reply.nodes);
    print!("{}", nodes_table(&reply.nodes));
    Ok(())
}

/// The width of a column of `cells` under `head`.
fn column<'a>(cells: impl Iterator<Item = &'a String>, head: &str) -> usize {
    cells.map(String::len).max().unwrap_or(0).max(head.len())
}

/// The table of `faas nodes`.
pub fn nodes_table(nodes: &[NodeStatus]) -> String {
    if nodes.is_empty() {
        return "no nodes: the scheduler holds none yet\n".into();
    }
    let width = column(nodes.iter().map(|n| &n.node_id), "node");
    let machines = column(nodes.iter().map(|n| &n.machine), "machine");
    let mut out = format!(
        "{:<width$}  {:<machines$}  {:<21}  {:<11}  {:>10}  {:>26}  reserved for\n",
        "node", "machine", "address", "state", "containers", "memory MiB used/comm/total"
    );
    for n in nodes {
        let memory = format!(
            "{}/{}/{}",
            mib(n.used_memory_in_bytes),
            mib(n.committed_memory_in_bytes),
            mib(n.total_memory_in_bytes)
        );
        out.push_str(&format!(
            "{:<width$}  {:<machines$}  {:<21}  {:<11}  {:>10}  {memory:>26}  {}\n",
            n.node_id,
            if n.machine.is_empty() {
                "-"
            } else {
                &n.machine
            },
            n.address,
            n.state,
            n.containers.len(),
            if n.reserved_for.is_empty() {
                "-"
            } else {
                &n.reserved_for
            }
        ));
    }
    out
}

/// `faas ps [NAME]`.
pub async fn ps(api: &Api, args: &PsArgs) -> anyhow::Result<()> {
    let reply = list(api, args.name.as_deref()).await?;
    let mut containers: Vec<&ContainerStatus> =
        reply.nodes.iter().flat_map(|n| &n.containers).collect();
    containers.sort_by(|a, b| {
        (&a.function_name, &a.node_id, &a.container_id).cmp(&(
            &b.function_name,
            &b.node_id,
            &b.container_id,
        ))
    });
    if args.output.is_json() {
        let list: Vec<ContainerJson> = containers.into_iter().map(ContainerJson::from).collect();
        return print_json(&list);
    }
    warn_unread(&reply.nodes);
    print!("{}", ps_table(&containers, args.name.as_deref()));
    Ok(())
}

/// The table of `faas ps` (`name`: the function asked for, for the "none" line).
pub fn ps_table(containers: &[&ContainerStatus], name: Option<&str>) -> String {
    if containers.is_empty() {
        return match name {
            Some(name) => format!("no containers of {name}: its next call starts one\n"),
            None => "no containers: a function's first call starts one\n".into(),
        };
    }
    let fw = column(containers.iter().map(|c| &c.function_name), "function");
    let nw = column(containers.iter().map(|c| &c.node_id), "node");
    let mut out = format!(
        "{:<fw$}  {:<nw$}  {:<9}  {:<7}  {:>9}  {:>8}  {:>20}\n",
        "function", "node", "container", "state", "in flight", "idle for", "memory MiB used/limit"
    );
    for c in containers {
        let short: String = c.container_id.chars().take(8).collect();
        let memory = format!(
            "{}/{}",
            mib(c.memory_used_in_bytes),
            mib(c.memory_limit_in_bytes)
        );
        out.push_str(&format!(
            "{:<fw$}  {:<nw$}  {short:<9}  {:<7}  {:>9}  {:>8}  {memory:>20}\n",
            c.function_name,
            c.node_id,
            c.state,
            c.in_flight,
            ago(c.idle_for_ms)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container() -> ContainerStatus {
        ContainerStatus {
            container_id: "0f1e2d3c-aaaa-bbbb".into(),
            function_name: "hello".into(),
            node_id: "node-1".into(),
            state: "running".into(),
            in_flight: 1,
            idle_for_ms: 130_000,
            memory_limit_in_bytes: 128 << 20,
            memory_used_in_bytes: 20 << 20,
            created_at_ms: 5,
        }
    }

    #[test]
    fn nodes_print_one_line_each() {
        let node = NodeStatus {
            node_id: "node-1".into(),
            address: "127.0.0.1:40000".into(),
            state: "ready".into(),
            reserved_for: "acct".into(),
            total_memory_in_bytes: 4 << 30,
            used_memory_in_bytes: 300 << 20,
            committed_memory_in_bytes: 128 << 20,
            containers: vec![container()],
            error: String::new(),
            machine: "rack-2".into(),
        };
        let table = nodes_table(std::slice::from_ref(&node));
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[1],
            "node-1  rack-2   127.0.0.1:40000        ready                 1                300/128/4096  acct"
        );
        assert!(
            lines[0].starts_with("node    machine  address"),
            "{}",
            lines[0]
        );
        let json = serde_json::to_value(NodeJson::from(&node)).unwrap();
        assert_eq!(json["containers"], 1);
        assert_eq!(json["machine"], "rack-2");
        assert!(json.get("error").is_none());
        assert_eq!(nodes_table(&[]), "no nodes: the scheduler holds none yet\n");
    }

    #[test]
    fn containers_print_with_idle_time_and_memory() {
        let c = container();
        let table = ps_table(&[&c], None);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "function  node    container  state    in flight  idle for  memory MiB used/limit"
        );
        assert_eq!(
            lines[1],
            "hello     node-1  0f1e2d3c   running          1     2m10s                20/128"
        );
        assert!(ps_table(&[], Some("x")).starts_with("no containers of x"));
        let json = serde_json::to_value(ContainerJson::from(&c)).unwrap();
        assert_eq!(json["container_id"], "0f1e2d3c-aaaa-bbbb");
        assert_eq!(json["memory_limit_bytes"], 128 << 20);
    }
}
