//! Nodes: first-fit placement by free memory, asking for a release, and the release done.

use super::State;
use crate::core::Decision;
use crate::core::reasons::ReasonKind;
use crate::model::{ContainerState, NodeState};
use crate::store::{ContainerKey, NodeKey};

impl State {
    /// The first node (in reserve order) that is active, not suspect (see `health`) and
    /// has `memory_bytes` free: O(log n), from the store's first-fit tree.
    pub fn first_fit(&self, memory_bytes: u64) -> Option<NodeKey> {
        self.store.first_fit(memory_bytes)
    }

    /// Asks for a node's release (no new containers go there).
    pub fn release_node(&mut self, key: NodeKey, out: &mut Vec<Decision>) -> bool {
        let Some(mut n) = self.store.node_mut(key) else {
            return false;
        };
        if n.state == NodeState::Releasing {
            return false;
        }
        n.state = NodeState::Releasing;
        out.push(Decision::ReleaseNode {
            node_id: n.id.clone(),
        });
        drop(n);
        self.reasons
            .explain(Some(ReasonKind::Release), out.len() - 1, || {
                "released: the policy has no more use for the node".to_string()
            });
        true
    }

    /// Applies a released node: it and its containers are forgotten.
    pub fn node_released(&mut self, node_id: &str) {
        let Some(key) = self.store.node_by_id(node_id) else {
            return;
        };
        if let Some(n) = self.store.node(key) {
            self.released_node_ms += self.latest.saturating_sub(n.reserved_at);
        }
        self.suspects.remove(&key);
        let gone: Vec<ContainerKey> = self.store.containers_on(key).collect();
        for c in gone {
            let in_flight = self
                .store
                .update_container(c, |c| {
                    c.state = ContainerState::Dead;
                    c.in_flight
                })
                .unwrap_or(0);
            if in_flight == 0 {
                self.store.remove_container(c);
            } else {
                self.removal_done.insert(c);
            }
        }
        self.store.remove_node(key);
    }
}
