//! The node's container table: containers by id, with the committed memory kept current.
//!
//! Entries are `Arc`s so that the invoke path takes the read lock only to clone a pointer;
//! a state change replaces the entry.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::model::{Container, ContainerState};

#[derive(Debug, Default)]
struct Tables {
    by_id: HashMap<String, Arc<Container>>,
    committed_bytes: u64,
}

/// The containers of this node.
#[derive(Debug, Default)]
pub struct ContainerTable {
    inner: RwLock<Tables>,
}

fn running_bytes(c: &Container) -> u64 {
    match c.state {
        ContainerState::Running => c.spec.memory_bytes,
        ContainerState::Dead { .. } => 0,
    }
}

impl ContainerTable {
    fn read(&self) -> RwLockReadGuard<'_, Tables> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Tables> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds (or replaces) a container.
    pub fn insert(&self, container: Container) {
        let mut t = self.write();
        t.committed_bytes += running_bytes(&container);
        if let Some(old) = t.by_id.insert(container.id.clone(), Arc::new(container)) {
            t.committed_bytes -= running_bytes(&old);
        }
    }

    /// The container with `id`.
    pub fn get(&self, id: &str) -> Option<Arc<Container>> {
        self.read().by_id.get(id).cloned()
    }

    /// Takes the container with `id` out of the table.
    pub fn remove(&self, id: &str) -> Option<Arc<Container>> {
        let mut t = self.write();
        let old = t.by_id.remove(id)?;
        t.committed_bytes -= running_bytes(&old);
        Some(old)
    }

    /// Marks a running container dead; `false` if it is unknown or already dead.
    pub fn mark_dead(&self, id: &str, reason: &str) -> bool {
        let mut t = self.write();
        let Some(old) = t.by_id.get(id).cloned() else {
            return false;
        };
        if old.state != ContainerState::Running {
            return false;
        }
        let mut dead = (*old).clone();
        dead.state = ContainerState::Dead {
            reason: reason.to_string(),
        };
        t.committed_bytes -= running_bytes(&old);
        t.by_id.insert(id.to_string(), Arc::new(dead));
        true
    }

    /// Sum of the memory limits of the running containers.
    pub fn committed_bytes(&self) -> u64 {
        self.read().committed_bytes
    }

    /// Every container (running and dead).
    pub fn all(&self) -> Vec<Arc<Container>> {
        self.read().by_id.values().cloned().collect()
    }

    /// How many containers are running.
    pub fn running(&self) -> usize {
        self.read()
            .by_id
            .values()
            .filter(|c| c.state == ContainerState::Running)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ContainerSpec;

    fn container(id: &str, memory_bytes: u64) -> Container {
        Container {
            id: id.into(),
            address: "127.0.0.1:1".into(),
            spec: ContainerSpec {
                function_name: "f".into(),
                handler: "hello".into(),
                memory_bytes,
                timeout_ms: 0,
            },
            state: ContainerState::Running,
        }
    }

    #[test]
    fn committed_memory_follows_inserts_deaths_and_removals() {
        let t = ContainerTable::default();
        t.insert(container("a", 100));
        t.insert(container("b", 50));
        assert_eq!(t.committed_bytes(), 150);
        assert!(t.mark_dead("a", "exited"));
        assert!(!t.mark_dead("a", "again"));
        assert!(!t.mark_dead("zz", "unknown"));
        assert_eq!(t.committed_bytes(), 50);
        assert_eq!(t.running(), 1);
        assert_eq!(
            t.get("a").unwrap().state,
            ContainerState::Dead {
                reason: "exited".into()
            }
        );
        assert!(t.remove("a").is_some());
        assert!(t.remove("a").is_none());
        assert_eq!(t.committed_bytes(), 50);
        t.remove("b");
        assert_eq!(t.committed_bytes(), 0);
        assert!(t.all().is_empty());
    }
}
