//! The node's container table: containers by id, with the committed memory kept current.
//!
//! Entries are `Arc`s so that the invoke path takes the read lock only to clone a pointer;
//! a state change replaces the entry. What changes on every call (the calls in flight, the
//! last use) is not in the table's lock at all: it lives in the record's shared
//! [`Calls`](crate::model::Calls) atomics, which the replacement keeps.
//!
//! Admission: a create first [`ContainerTable::reserve`]s its memory against the node's
//! limit, under the same lock that keeps the committed sum, so two creates racing for the
//! last gigabyte cannot both pass the check. The [`Reservation`] counts as committed for
//! later checks until the container is inserted through it (it then counts as the
//! container's) or it is dropped (a failed start gives the memory back).

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::model::{Container, ContainerState};

#[derive(Debug, Default)]
struct Tables {
    by_id: HashMap<String, Arc<Container>>,
    committed_bytes: u64,
    /// Memory of creates under way (reserved, not yet inserted).
    reserved_bytes: u64,
}

/// A reservation that would pass the node's limit: what is committed and reserved already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverLimit {
    /// Memory of the running containers.
    pub committed_bytes: u64,
    /// Memory of the creates under way.
    pub reserved_bytes: u64,
}

/// Memory held for one create until its container is inserted (or given back on drop).
#[derive(Debug)]
#[must_use = "a reservation is given back when dropped"]
pub struct Reservation<'a> {
    table: &'a ContainerTable,
    bytes: u64,
}

impl Reservation<'_> {
    /// Inserts the created container; its memory now counts as the container's.
    pub fn insert(self, container: Container) {
        let (table, bytes) = (self.table, self.bytes);
        // The memory moves to the container below: dropping `self` must not give it back.
        std::mem::forget(self);
        let mut t = table.write();
        t.reserved_bytes -= bytes;
        t.insert(container);
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.table.write().reserved_bytes -= self.bytes;
    }
}

impl Tables {
    fn insert(&mut self, container: Container) {
        self.committed_bytes += running_bytes(&container);
        if let Some(old) = self.by_id.insert(container.id.clone(), Arc::new(container)) {
            self.committed_bytes -= running_bytes(&old);
        }
    }
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

    /// Adds (or replaces) a container, whatever the limit.
    pub fn insert(&self, container: Container) {
        self.write().insert(container);
    }

    /// Reserves `bytes` for a create if the running containers' memory, the creates under
    /// way and `bytes` stay within `limit`; else says what is taken.
    pub fn reserve(&self, bytes: u64, limit: u64) -> Result<Reservation<'_>, OverLimit> {
        let mut t = self.write();
        let taken = t.committed_bytes.saturating_add(t.reserved_bytes);
        if taken.saturating_add(bytes) > limit {
            return Err(OverLimit {
                committed_bytes: t.committed_bytes,
                reserved_bytes: t.reserved_bytes,
            });
        }
        t.reserved_bytes += bytes;
        Ok(Reservation { table: self, bytes })
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
    use crate::model::{Calls, ContainerSpec};

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
            created_at_ms: 0,
            calls: Arc::new(Calls::new(0)),
        }
    }

    #[test]
    fn committed_memory_follows_inserts_deaths_and_removals() {
        let t = ContainerTable::default();
        t.insert(container("a", 100));
        t.insert(container("b", 50));
        assert_eq!(t.committed_bytes(), 150);
        let calls = t.get("a").unwrap().calls.clone();
        calls.begin(5);
        assert!(t.mark_dead("a", "exited"));
        calls.end(7);
        assert!(
            Arc::ptr_eq(&t.get("a").unwrap().calls, &calls),
            "the dead record counts the calls begun on the running one"
        );
        assert_eq!(t.get("a").unwrap().calls.in_flight(), 0);
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

    #[test]
    fn reservations_count_against_the_limit_until_inserted_or_dropped() {
        let t = ContainerTable::default();
        t.insert(container("a", 100));
        let r1 = t.reserve(150, 300).unwrap();
        assert_eq!(
            t.reserve(51, 300).unwrap_err(),
            OverLimit {
                committed_bytes: 100,
                reserved_bytes: 150
            }
        );
        let r2 = t.reserve(50, 300).unwrap();
        drop(r2);
        let r3 = t.reserve(50, 300).unwrap();
        r1.insert(container("b", 150));
        assert_eq!(t.committed_bytes(), 250);
        assert!(t.reserve(1, 300).is_err(), "b and r3 fill the limit");
        drop(r3);
        assert!(t.reserve(50, 300).is_ok(), "the limit itself is allowed");
        assert!(t.reserve(51, 300).is_err());
        t.mark_dead("a", "gone");
        assert!(
            t.reserve(150, 300).is_ok(),
            "a dead container holds nothing"
        );
        assert!(
            t.reserve(u64::MAX, 1000).is_err(),
            "no overflow past the limit"
        );
    }
}
