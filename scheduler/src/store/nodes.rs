//! What the store keeps about nodes besides their rows, for the engine's placement view and
//! sweep: each node's place in the reserve order (a sequence number), the nodes changed since
//! the view last looked (load or row), and the empty and draining nodes in reserve order.
//!
//! A node's row changes only through [`super::NodeMut`] and its load only through the
//! container indexes; both mark the node changed and re-file it here, so the engine brings
//! its view up to date in O(changed nodes) and never scans the fleet for empty or draining
//! nodes.

use std::collections::BTreeSet;

use super::{NodeKey, Set};
use crate::model::{Node, NodeState};

/// A node's place in the reserve order, and its key.
pub type Ordered = (u64, NodeKey);

/// See the module documentation.
#[derive(Debug, Default)]
pub(super) struct NodeSets {
    /// Nodes holding no container (any state).
    pub(super) empty: BTreeSet<Ordered>,
    /// Draining nodes.
    pub(super) draining: BTreeSet<Ordered>,
    /// Nodes changed (row or load) since [`super::Store::take_changed_nodes`].
    pub(super) changed: Set<NodeKey>,
}

impl NodeSets {
    /// Files node `key` (reserve position `seq`) as `n` now is.
    pub(super) fn file(&mut self, seq: u64, key: NodeKey, n: &Node) {
        let entry = (seq, key);
        if n.containers == 0 {
            self.empty.insert(entry);
        } else {
            self.empty.remove(&entry);
        }
        if n.state == NodeState::Draining {
            self.draining.insert(entry);
        } else {
            self.draining.remove(&entry);
        }
    }

    /// Forgets node `key`.
    pub(super) fn unfile(&mut self, seq: u64, key: NodeKey) {
        self.empty.remove(&(seq, key));
        self.draining.remove(&(seq, key));
        self.changed.insert(key);
    }
}
