//! Containers leaving: marked dead, asked to be removed, removal confirmed, and forgotten once
//! no request holds them.

use super::State;
use crate::core::Decision;
use crate::core::reasons::ReasonKind;
use crate::model::{ContainerState, Node};
use crate::store::ContainerKey;

impl State {
    /// Marks a container dead: never granted again, its memory freed on its node, its removal
    /// asked for. Returns false if it was not live.
    pub fn mark_dead(&mut self, key: ContainerKey, out: &mut Vec<Decision>) -> bool {
        let Some(row) = self.store.container(key) else {
            return false;
        };
        let was = row.container.state;
        if !matches!(was, ContainerState::Ready | ContainerState::Removing) {
            return false;
        }
        let (node_key, function, memory, id) = (
            row.node,
            row.function,
            row.container.memory_bytes,
            row.container.id.clone(),
        );
        self.store
            .update_container(key, |c| c.state = ContainerState::Dead);
        self.counters.deaths += 1;
        if let Some(f) = self.store.function_mut(function) {
            f.profile.deaths += 1;
        }
        let addr = self.store.node_mut(node_key).map(|mut n| {
            n.used_bytes = n.used_bytes.saturating_sub(memory);
            n.containers = n.containers.saturating_sub(1);
            n.addr()
        });
        if was == ContainerState::Ready
            && let Some(node) = addr
        {
            out.push(Decision::RemoveContainer {
                node,
                container_id: id,
            });
            self.reasons.explain(None, out.len() - 1, || {
                "removed: the container is dead".to_string()
            });
        }
        true
    }

    /// Asks for a container's removal (it is never granted again; its memory stays placed
    /// until the removal completes). Returns false if it was not ready.
    pub fn remove_container(&mut self, key: ContainerKey, out: &mut Vec<Decision>) -> bool {
        let Some(row) = self.store.container(key) else {
            return false;
        };
        if row.container.state != ContainerState::Ready {
            return false;
        }
        let id = row.container.id.clone();
        let Some(node) = self.store.node(row.node).map(Node::addr) else {
            return false;
        };
        self.store
            .update_container(key, |c| c.state = ContainerState::Removing);
        out.push(Decision::RemoveContainer {
            node,
            container_id: id,
        });
        self.reasons
            .explain(Some(ReasonKind::Remove), out.len() - 1, || {
                "removed by the policy".to_string()
            });
        true
    }

    /// Applies a completed removal: frees the memory if still placed, forgets the container
    /// once no request holds it. Unknown ids are ignored (already forgotten).
    pub fn container_removed(&mut self, container_id: &str) {
        let Some(key) = self.store.container_by_id(container_id) else {
            return;
        };
        let Some(row) = self.store.container(key) else {
            return;
        };
        if crate::store::occupies_memory(row.container.state) {
            let (node_key, memory) = (row.node, row.container.memory_bytes);
            if let Some(mut n) = self.store.node_mut(node_key) {
                n.used_bytes = n.used_bytes.saturating_sub(memory);
                n.containers = n.containers.saturating_sub(1);
            }
            self.store
                .update_container(key, |c| c.state = ContainerState::Dead);
        }
        self.removal_done.insert(key);
        self.forget_if_gone(key);
    }

    pub(super) fn forget_if_gone(&mut self, key: ContainerKey) {
        if !self.removal_done.contains(&key) {
            return;
        }
        let idle = self
            .store
            .container(key)
            .is_none_or(|r| r.container.in_flight == 0);
        if idle {
            self.removal_done.remove(&key);
            self.store.remove_container(key);
        }
    }
}
