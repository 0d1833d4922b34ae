//! Recovery after a restart of the manager: what it persists, and the rules that turn what
//! a restarted manager finds back into its pool. Pure: reading the state file, asking the
//! provider and probing the nodes are the api layer's; these functions only decide.
//!
//! With a state directory, the manager persists a [`SavedState`] after every change of its
//! pool ([`crate::core::Pool::snapshot`], through a `StateStore`, a port of
//! [`crate::service::ports`]): every ready,
//! reserved and failed node with its address, [`crate::model::NodeHandle`] (pid or
//! container, live id), owner and reserve time, the released nodes' usage records, and the
//! next generation. Node processes and containers outlive the manager, so a restarted one
//! takes them back:
//!
//! 1. [`merge_found`]: the saved nodes, plus the nodes the provider finds by itself (the
//!    docker provider lists its node containers by label) that the file lacks, as ready
//!    candidates whose node service will say whether it is reserved.
//! 2. Every ready or reserved candidate is *sighted* ([`SavedState::to_sight`]): its provider
//!    takes its process or container back, or says it is gone ([`Sighting::Gone`]); then its
//!    node service is asked who it is ([`NodeIdentity`]) until it answers or the time a node
//!    may stay silent has passed ([`Sighting::Silent`]).
//! 3. [`settle`] applies the rules:
//!    - a node that answers as itself (same node id, and the live id it had: a node service
//!      restarted at the same address is another life, whose containers are gone) is taken
//!      back with its id, address, handle and state. The node knows *whether* it was handed
//!      over (a reserve whose hand-over never reached it is ready again; a hand-over the file
//!      missed makes it reserved, with the node's owner and reserve time); the file knows by
//!      whom and *when* (the manager's own reserve time, so node time stays correct);
//!    - a ready node that is gone, silent or another life is forgotten (and killed: the
//!      provider kills only what it verified is that node's process or container); a
//!      reserved one becomes `Failed`, still its account's until the account releases it,
//!      exactly as if it had failed while the manager ran;
//!    - failed nodes and released records are kept as they are.
//! 4. [`crate::core::Pool::restore`] takes the settled nodes and refills the pool to
//!    `ready_nodes` as usual. Generations continue after the largest ever used.

use std::collections::HashMap;

use crate::core::pool::{Action, FailedNode};
use crate::model::{Failure, FailureReason, Node, NodeEndpoint, NodeHandle, NodeState};

/// What a restarted manager needs: the nodes that survive a restart and the next generation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SavedState {
    /// The generation (id number) the next started node gets; ids are never reused.
    pub next_generation: u64,
    /// Reserved, failed and released nodes in reservation order, then ready ones.
    pub nodes: Vec<Node>,
}

/// A node the provider found by itself, without the state file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundNode {
    pub node_id: String,
    /// Where it listens, if it runs.
    pub endpoint: Option<NodeEndpoint>,
    pub handle: NodeHandle,
}

/// What a node service says about itself (`DescribeNode`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeIdentity {
    pub node_id: String,
    pub live_id: String,
    /// The account of its latest `Reserve`, if it got one.
    pub owner_account: Option<String>,
    /// When that `Reserve` came (the node's clock).
    pub reserved_at_ms: Option<i64>,
}

/// What a restarted manager saw of a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sighting {
    /// Its node service answered.
    Alive(NodeIdentity),
    /// Its process or container is gone (or is no longer the one started).
    Gone(String),
    /// It is there but did not answer in time.
    Silent(String),
}

/// The outcome of [`settle`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settled {
    /// The nodes to restore: the live ones, failed ones and released records.
    pub nodes: Vec<Node>,
    /// The ready and reserved nodes that did not survive, failed as if the manager had run
    /// all along: a ready one is forgotten, a reserved one is in `nodes` as `Failed`. Each
    /// says to kill what is left of it (its provider kills only what it took back).
    pub lost: Vec<FailedNode>,
    pub next_generation: u64,
}

/// The generation in an id `{prefix}-{n}`, if it has that form.
fn generation_of(id: &str, prefix: &str) -> Option<u64> {
    id.strip_prefix(prefix)?.strip_prefix('-')?.parse().ok()
}

impl SavedState {
    /// The ready and reserved nodes, to be sighted: (id, address, handle).
    pub fn to_sight(&self) -> Vec<(String, Option<NodeEndpoint>, NodeHandle)> {
        self.nodes
            .iter()
            .filter(|n| matches!(n.state, NodeState::Ready | NodeState::Reserved))
            .map(|n| (n.id.clone(), n.endpoint.clone(), n.handle.clone()))
            .collect()
    }
}

/// Adds what the provider `found` to `saved`: a node the file lacks becomes a ready candidate
/// (numbered from its id when it has the form `{prefix}-{n}`, so the next generation passes
/// it); a node the file has gets the address and handle fields the file lacks.
pub fn merge_found(
    mut saved: SavedState,
    found: Vec<FoundNode>,
    prefix: &str,
    memory_bytes: u64,
    now_ms: i64,
) -> SavedState {
    for f in found {
        if let Some(node) = saved.nodes.iter_mut().find(|n| n.id == f.node_id) {
            if node.endpoint.is_none() {
                node.endpoint = f.endpoint;
            }
            let h = &mut node.handle;
            h.container_id = h.container_id.take().or(f.handle.container_id);
            h.pid = h.pid.or(f.handle.pid);
            h.process_start = h.process_start.or(f.handle.process_start);
            h.live_id = h.live_id.take().or(f.handle.live_id);
            continue;
        }
        let generation = generation_of(&f.node_id, prefix).unwrap_or(0);
        let mut node = Node::starting(f.node_id, generation, memory_bytes, now_ms);
        node.state = NodeState::Ready;
        node.endpoint = f.endpoint;
        node.handle = f.handle;
        saved.nodes.push(node);
    }
    saved
}

/// Whether `identity` is the life `node` knew.
fn same_life(node: &Node, identity: &NodeIdentity) -> Result<(), String> {
    if identity.node_id != node.id {
        return Err(format!(
            "node {} answers at its address, not {}",
            faas_common::text::clip(&identity.node_id),
            node.id
        ));
    }
    match &node.handle.live_id {
        Some(live) if *live != identity.live_id => Err(format!(
            "its node service restarted (live id {}, was {live}): its containers are gone",
            faas_common::text::clip(&identity.live_id)
        )),
        _ => Ok(()),
    }
}

/// Applies the recovery rules (see the module docs) to `saved` and what was seen of its
/// ready and reserved nodes (a node with no sighting counts as gone).
pub fn settle(saved: SavedState, seen: &HashMap<String, Sighting>, now_ms: i64) -> Settled {
    let mut next_generation = saved.next_generation.max(1);
    let mut nodes = Vec::with_capacity(saved.nodes.len());
    let mut lost = Vec::new();
    for mut node in saved.nodes {
        next_generation = next_generation.max(node.generation + 1);
        if !matches!(node.state, NodeState::Ready | NodeState::Reserved) {
            if node.state != NodeState::Starting {
                nodes.push(node);
            }
            continue;
        }
        let verdict = match seen.get(&node.id) {
            Some(Sighting::Alive(identity)) => same_life(&node, identity)
                .map(|()| identity)
                .map_err(|why| (FailureReason::Exited, why)),
            Some(Sighting::Gone(why)) => Err((FailureReason::Exited, why.clone())),
            Some(Sighting::Silent(why)) => Err((FailureReason::Unresponsive, why.clone())),
            None => Err((FailureReason::Exited, "it was not found".to_string())),
        };
        match verdict {
            Ok(identity) => {
                node.handle.live_id = Some(identity.live_id.clone());
                match (&identity.owner_account, node.state) {
                    (Some(owner), NodeState::Ready) => {
                        node.state = NodeState::Reserved;
                        node.owner_account = Some(owner.clone());
                        node.reserved_at_ms = Some(identity.reserved_at_ms.unwrap_or(now_ms));
                    }
                    (None, NodeState::Reserved) => {
                        node.state = NodeState::Ready;
                        node.owner_account = None;
                        node.reserved_at_ms = None;
                    }
                    _ => {}
                }
                nodes.push(node);
            }
            Err((reason, detail)) => {
                let failure = Failure {
                    reason,
                    detail: format!("at the resource manager's restart: {detail}"),
                    at_ms: now_ms,
                };
                lost.push(FailedNode {
                    node_id: node.id.clone(),
                    was: node.state,
                    failure: failure.clone(),
                    actions: vec![Action::KillNode {
                        node_id: node.id.clone(),
                    }],
                });
                if node.state == NodeState::Reserved {
                    node.state = NodeState::Failed;
                    node.failure = Some(failure);
                    nodes.push(node);
                }
            }
        }
    }
    Settled {
        nodes,
        lost,
        next_generation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(port: u16) -> NodeEndpoint {
        NodeEndpoint {
            address: "127.0.0.1".into(),
            port,
        }
    }

    fn node(generation: u64, state: NodeState) -> Node {
        let mut n = Node::starting(format!("node-{generation}"), generation, 64, 100);
        n.state = state;
        n.endpoint = Some(endpoint(7000 + generation as u16));
        n.handle = NodeHandle {
            pid: Some(40 + generation as u32),
            process_start: Some(9),
            container_id: None,
            live_id: Some(format!("live-{generation}")),
        };
        if state.is_owned() || state == NodeState::Released {
            n.owner_account = Some("acct".into());
            n.reserved_at_ms = Some(1_000);
        }
        if state == NodeState::Released {
            n.released_at_ms = Some(2_000);
        }
        n
    }

    fn alive(generation: u64, owner: Option<&str>) -> Sighting {
        Sighting::Alive(NodeIdentity {
            node_id: format!("node-{generation}"),
            live_id: format!("live-{generation}"),
            owner_account: owner.map(str::to_string),
            reserved_at_ms: owner.map(|_| 1_234),
        })
    }

    fn seen(list: Vec<(u64, Sighting)>) -> HashMap<String, Sighting> {
        list.into_iter()
            .map(|(g, s)| (format!("node-{g}"), s))
            .collect()
    }

    fn by_id<'a>(settled: &'a Settled, id: &str) -> Option<&'a Node> {
        settled.nodes.iter().find(|n| n.id == id)
    }

    #[test]
    fn live_nodes_keep_their_ids_addresses_owners_and_reserve_times() {
        let saved = SavedState {
            next_generation: 5,
            nodes: vec![node(1, NodeState::Reserved), node(2, NodeState::Ready)],
        };
        assert_eq!(saved.to_sight().len(), 2);
        let settled = settle(
            saved.clone(),
            &seen(vec![(1, alive(1, Some("acct"))), (2, alive(2, None))]),
            50_000,
        );
        assert!(settled.lost.is_empty(), "{:?}", settled.lost);
        assert_eq!(settled.nodes, saved.nodes, "taken back exactly as saved");
        assert_eq!(
            by_id(&settled, "node-1").unwrap().reserved_at_ms,
            Some(1_000),
            "the manager's own reserve time, not the node's"
        );
        assert_eq!(settled.next_generation, 5);
    }

    #[test]
    fn a_dead_ready_node_is_forgotten_and_a_dead_reserved_one_fails_but_stays_its_owners() {
        let saved = SavedState {
            next_generation: 3,
            nodes: vec![node(1, NodeState::Reserved), node(2, NodeState::Ready)],
        };
        let settled = settle(
            saved,
            &seen(vec![
                (1, Sighting::Gone("process 41 is gone".into())),
                (2, Sighting::Silent("no answer within 1000 ms".into())),
            ]),
            9_000,
        );
        assert!(by_id(&settled, "node-2").is_none(), "forgotten");
        let failed = by_id(&settled, "node-1").expect("kept for its owner");
        assert_eq!(failed.state, NodeState::Failed);
        assert_eq!(failed.owner_account.as_deref(), Some("acct"));
        assert_eq!(failed.reserved_at_ms, Some(1_000));
        let failure = failed.failure.as_ref().unwrap();
        assert_eq!(failure.reason, FailureReason::Exited);
        assert_eq!(
            failure.detail,
            "at the resource manager's restart: process 41 is gone"
        );
        assert_eq!(failure.at_ms, 9_000);
        let lost: Vec<_> = settled
            .lost
            .iter()
            .map(|l| (l.node_id.as_str(), l.was, l.failure.reason))
            .collect();
        assert_eq!(
            lost,
            vec![
                ("node-1", NodeState::Reserved, FailureReason::Exited),
                ("node-2", NodeState::Ready, FailureReason::Unresponsive),
            ]
        );
    }

    #[test]
    fn another_life_at_the_same_address_is_not_the_node() {
        let saved = SavedState {
            next_generation: 3,
            nodes: vec![node(1, NodeState::Reserved), node(2, NodeState::Ready)],
        };
        let restarted = Sighting::Alive(NodeIdentity {
            node_id: "node-1".into(),
            live_id: "live-new".into(),
            owner_account: None,
            reserved_at_ms: None,
        });
        let stranger = Sighting::Alive(NodeIdentity {
            node_id: "other-7".into(),
            live_id: "live-2".into(),
            owner_account: None,
            reserved_at_ms: None,
        });
        let settled = settle(saved, &seen(vec![(1, restarted), (2, stranger)]), 0);
        assert_eq!(by_id(&settled, "node-1").unwrap().state, NodeState::Failed);
        assert!(by_id(&settled, "node-2").is_none());
        let details: Vec<&str> = settled
            .lost
            .iter()
            .map(|l| l.failure.detail.as_str())
            .collect();
        assert_eq!(
            details,
            vec![
                "at the resource manager's restart: its node service restarted (live id live-new, was live-1): its containers are gone",
                "at the resource manager's restart: node other-7 answers at its address, not node-2",
            ]
        );
    }

    #[test]
    fn the_node_says_whether_it_was_handed_over_and_the_file_says_when() {
        let saved = SavedState {
            next_generation: 3,
            nodes: vec![node(1, NodeState::Reserved), node(2, NodeState::Ready)],
        };
        // node-1's hand-over never reached it (the manager died in between); node-2's did,
        // but the manager died before writing it.
        let settled = settle(
            saved,
            &seen(vec![(1, alive(1, None)), (2, alive(2, Some("late")))]),
            0,
        );
        let one = by_id(&settled, "node-1").unwrap();
        assert_eq!(
            (one.state, one.owner_account.as_deref(), one.reserved_at_ms),
            (NodeState::Ready, None, None)
        );
        let two = by_id(&settled, "node-2").unwrap();
        assert_eq!(
            (two.state, two.owner_account.as_deref(), two.reserved_at_ms),
            (NodeState::Reserved, Some("late"), Some(1_234))
        );
    }

    #[test]
    fn records_are_kept_unsighted_and_a_node_never_sighted_counts_as_gone() {
        let saved = SavedState {
            next_generation: 2,
            nodes: vec![
                node(1, NodeState::Failed),
                node(2, NodeState::Released),
                node(7, NodeState::Ready),
            ],
        };
        let sighted: Vec<String> = saved.to_sight().into_iter().map(|(id, ..)| id).collect();
        assert_eq!(sighted, vec!["node-7".to_string()]);
        let settled = settle(saved, &HashMap::new(), 0);
        assert_eq!(
            crate::model::ids_and_states(&settled.nodes),
            vec![
                ("node-1", NodeState::Failed),
                ("node-2", NodeState::Released)
            ]
        );
        assert_eq!(settled.lost.len(), 1);
        assert_eq!(
            settled.next_generation, 8,
            "past every id ever used, even a forgotten one"
        );
    }

    #[test]
    fn found_nodes_the_file_lacks_become_candidates_and_fill_in_what_it_lacks() {
        let mut saved_one = node(1, NodeState::Reserved);
        saved_one.handle.container_id = None;
        let saved = SavedState {
            next_generation: 2,
            nodes: vec![saved_one],
        };
        let container = |id: &str| NodeHandle {
            container_id: Some(id.into()),
            ..NodeHandle::default()
        };
        let merged = merge_found(
            saved,
            vec![
                FoundNode {
                    node_id: "node-1".into(),
                    endpoint: Some(endpoint(1)),
                    handle: container("c1"),
                },
                FoundNode {
                    node_id: "node-12".into(),
                    endpoint: Some(endpoint(12)),
                    handle: container("c12"),
                },
                FoundNode {
                    node_id: "custom".into(),
                    endpoint: None,
                    handle: container("cx"),
                },
            ],
            "node",
            64,
            500,
        );
        let one = &merged.nodes[0];
        assert_eq!(
            one.endpoint,
            Some(endpoint(7001)),
            "the file's address wins"
        );
        assert_eq!(one.handle.container_id.as_deref(), Some("c1"));
        let twelve = &merged.nodes[1];
        assert_eq!(
            (twelve.state, twelve.generation, twelve.started_at_ms),
            (NodeState::Ready, 12, 500)
        );
        assert_eq!(merged.nodes[2].generation, 0, "not of this prefix");
        assert_eq!(merged.to_sight().len(), 3);

        // node-12 says it is reserved: it is, with the node's reserve time.
        let found_reserved = Sighting::Alive(NodeIdentity {
            node_id: "node-12".into(),
            live_id: "l12".into(),
            owner_account: Some("acct-b".into()),
            reserved_at_ms: Some(777),
        });
        let settled = settle(
            merged,
            &HashMap::from([("node-12".to_string(), found_reserved)]),
            1_000,
        );
        let twelve = by_id(&settled, "node-12").unwrap();
        assert_eq!(twelve.state, NodeState::Reserved);
        assert_eq!(twelve.reserved_at_ms, Some(777));
        assert_eq!(twelve.handle.live_id.as_deref(), Some("l12"));
        assert_eq!(settled.next_generation, 13);
    }
}
