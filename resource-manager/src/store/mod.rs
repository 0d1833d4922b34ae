//! The node table: every node life the manager started, with the indexes the pool's rules
//! need (ready nodes oldest first, the reservation history, counts by state). All changes go
//! through [`NodeTable::update`] so the indexes can never drift from the rows.

use std::collections::{HashMap, VecDeque};

use crate::model::{Node, NodeState};

/// How many nodes are in each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateCounts {
    pub starting: usize,
    pub ready: usize,
    pub reserved: usize,
    pub failed: usize,
    pub released: usize,
}

impl StateCounts {
    /// The count for one state.
    pub fn get(&self, state: NodeState) -> usize {
        match state {
            NodeState::Starting => self.starting,
            NodeState::Ready => self.ready,
            NodeState::Reserved => self.reserved,
            NodeState::Failed => self.failed,
            NodeState::Released => self.released,
        }
    }

    fn slot(&mut self, state: NodeState) -> &mut usize {
        match state {
            NodeState::Starting => &mut self.starting,
            NodeState::Ready => &mut self.ready,
            NodeState::Reserved => &mut self.reserved,
            NodeState::Failed => &mut self.failed,
            NodeState::Released => &mut self.released,
        }
    }

    /// Nodes that hold a slot by themselves: starting, ready, reserved or failed.
    pub fn holding_slots(&self) -> usize {
        self.starting + self.ready + self.reserved + self.failed
    }

    /// Nodes an account holds (reserved, or failed and not released yet): the ones billed.
    pub fn owned(&self) -> usize {
        self.reserved + self.failed
    }
}

/// Every node life, by id.
#[derive(Debug, Default)]
pub struct NodeTable {
    nodes: HashMap<String, Node>,
    /// Ids of ready nodes, the longest-ready first.
    ready: VecDeque<String>,
    /// Ids of every node ever reserved, in reservation order (the usage records).
    reserved_history: Vec<String>,
    counts: StateCounts,
}

impl NodeTable {
    /// An empty table.
    pub fn new() -> NodeTable {
        NodeTable::default()
    }

    /// Adds a node. Returns false (and changes nothing) if its id is already taken.
    pub fn insert(&mut self, node: Node) -> bool {
        if self.nodes.contains_key(&node.id) {
            return false;
        }
        let id = node.id.clone();
        self.index_added(&node);
        self.nodes.insert(id, node);
        true
    }

    /// The node with this id.
    pub fn get(&self, id: &str) -> Option<&Node> {
        self.nodes.get(id)
    }

    /// Changes one node with `f` and keeps the indexes in step with whatever `f` did.
    /// Returns `None` if there is no such node.
    pub fn update<R>(&mut self, id: &str, f: impl FnOnce(&mut Node) -> R) -> Option<R> {
        let node = self.nodes.get_mut(id)?;
        let before_state = node.state;
        let before_reserved = node.reserved_at_ms.is_some();
        let out = f(node);
        let after_state = node.state;
        let after_reserved = node.reserved_at_ms.is_some();
        if before_state != after_state {
            *self.counts.slot(before_state) -= 1;
            *self.counts.slot(after_state) += 1;
            if before_state == NodeState::Ready {
                self.unindex_ready(id);
            }
            if after_state == NodeState::Ready {
                self.ready.push_back(id.to_string());
            }
        }
        match (before_reserved, after_reserved) {
            (false, true) => self.reserved_history.push(id.to_string()),
            (true, false) => self.reserved_history.retain(|r| r != id),
            _ => {}
        }
        Some(out)
    }

    /// Removes a node altogether (a life that never counted: failed to start or to be handed over).
    pub fn remove(&mut self, id: &str) -> Option<Node> {
        let node = self.nodes.remove(id)?;
        *self.counts.slot(node.state) -= 1;
        if node.state == NodeState::Ready {
            self.unindex_ready(id);
        }
        if node.reserved_at_ms.is_some() {
            self.reserved_history.retain(|r| r != id);
        }
        Some(node)
    }

    /// The id of the node that has been ready the longest.
    pub fn oldest_ready(&self) -> Option<&str> {
        self.ready.front().map(String::as_str)
    }

    /// Counts by state.
    pub fn counts(&self) -> StateCounts {
        self.counts
    }

    /// Every node ever reserved, in reservation order.
    pub fn reserved_history(&self) -> impl Iterator<Item = &Node> {
        self.reserved_history
            .iter()
            .filter_map(|id| self.nodes.get(id))
    }

    /// Every node that holds a slot (starting, ready, reserved or failed).
    pub fn holding_slots(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values().filter(|n| n.state.holds_slot())
    }

    fn index_added(&mut self, node: &Node) {
        *self.counts.slot(node.state) += 1;
        if node.state == NodeState::Ready {
            self.ready.push_back(node.id.clone());
        }
        if node.reserved_at_ms.is_some() {
            self.reserved_history.push(node.id.clone());
        }
    }

    fn unindex_ready(&mut self, id: &str) {
        if self.ready.front().is_some_and(|f| f == id) {
            self.ready.pop_front();
        } else if let Some(pos) = self.ready.iter().position(|r| r == id) {
            self.ready.remove(pos);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NodeEndpoint;

    fn ready(table: &mut NodeTable, id: &str) {
        table.insert(Node::starting(id.into(), 0, 1, 0));
        table.update(id, |n| {
            n.state = NodeState::Ready;
            n.endpoint = Some(NodeEndpoint {
                address: "h".into(),
                port: 1,
            });
        });
    }

    #[test]
    fn indexes_follow_every_change() {
        let mut t = NodeTable::new();
        ready(&mut t, "a");
        ready(&mut t, "b");
        assert!(
            !t.insert(Node::starting("a".into(), 0, 1, 0)),
            "ids are unique"
        );
        t.insert(Node::starting("c".into(), 0, 1, 0));
        assert_eq!(t.oldest_ready(), Some("a"));
        assert_eq!(
            t.counts(),
            StateCounts {
                starting: 1,
                ready: 2,
                reserved: 0,
                failed: 0,
                released: 0
            }
        );

        t.update("a", |n| {
            n.state = NodeState::Reserved;
            n.reserved_at_ms = Some(5);
        });
        assert_eq!(t.oldest_ready(), Some("b"));
        assert_eq!(t.counts().reserved, 1);
        assert_eq!(t.reserved_history().count(), 1);

        t.update("a", |n| n.state = NodeState::Failed);
        assert_eq!(t.counts().failed, 1);
        assert_eq!(t.counts().owned(), 1);
        assert_eq!(
            t.counts().holding_slots(),
            3,
            "a failed node keeps its slot"
        );
        t.update("a", |n| n.state = NodeState::Released);
        assert_eq!(t.counts().holding_slots(), 2);
        assert_eq!(t.counts().released, 1);
        assert_eq!(t.reserved_history().next().unwrap().id, "a");

        assert!(t.remove("b").is_some());
        assert_eq!(t.oldest_ready(), None);
        assert_eq!(t.counts().ready, 0);
        assert!(t.update("nope", |_| ()).is_none());
        assert_eq!(t.holding_slots().count(), 1);
    }
}
