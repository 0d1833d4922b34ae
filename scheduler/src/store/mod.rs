//! The scheduler's tables and the indexes its queries need.
//!
//! - nodes by key and by id, plus the reserve order (first-fit walks it);
//! - functions by key and by name, each with the stack of its containers that have a free slot,
//!   so a warm acquire is a hash lookup and a pop, never a scan over containers;
//! - containers by key and by id, and by node (stats and node loss look at one node's);
//! - leases by request id;
//! - a bounded memory of recently returned request ids, to tell "already returned" from
//!   "never leased", and one of leases reclaimed when they expired.
//!
//! The store keeps its indexes consistent (a container's place in its function's free stack
//! follows its state and in-flight count); business rules such as memory accounting live in
//! [`crate::core`].

pub mod table;

use std::collections::VecDeque;

/// The hash map of the scheduler's tables: foldhash (seeded per map) is several times faster
/// than SipHash on the short string ids of the hot path; ids come from the platform's own
/// components, so the weaker DoS resistance is acceptable.
pub type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// The hash set companion of [`Map`].
pub type Set<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

use crate::model::{
    Container, ContainerState, FunctionProfile, FunctionSpec, Lease, Millis, Node, Text,
};
pub use table::{Key, Table};

/// Key of a node row.
pub type NodeKey = Key<Node>;
/// Key of a function row.
pub type FunctionKey = Key<FunctionRow>;
/// Key of a container row.
pub type ContainerKey = Key<ContainerRow>;

/// A function and what the store indexes about it.
#[derive(Debug)]
pub struct FunctionRow {
    /// The latest spec seen in an acquire.
    pub spec: FunctionSpec,
    /// What the scheduler learned about it.
    pub profile: FunctionProfile,
    /// Containers of the function in the containers table (ready, removing or dead).
    pub containers: u32,
    /// Containers of the function being created (maintained by the core).
    pub creating: u32,
    /// Containers with a free slot; the top is the most recently freed.
    free: Vec<ContainerKey>,
}

impl FunctionRow {
    /// How many containers of the function can take a request now.
    pub fn free_containers(&self) -> usize {
        self.free.len()
    }
}

/// A container and its links to the other tables.
#[derive(Debug)]
pub struct ContainerRow {
    /// The container.
    pub container: Container,
    /// Its node.
    pub node: NodeKey,
    /// Its function.
    pub function: FunctionKey,
    free_pos: Option<u32>,
}

/// A lease and the key of its container.
#[derive(Debug, Clone)]
pub struct LeaseRow {
    /// The lease.
    pub lease: Lease,
    /// Its container.
    pub container: ContainerKey,
}

/// An insert that collides with an existing id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate(pub Text);

/// Bounded memory of returned request ids (oldest forgotten first).
#[derive(Debug)]
struct RecentReturns {
    capacity: usize,
    order: VecDeque<Text>,
    container_of: Map<Text, Text>,
}

impl RecentReturns {
    fn new(capacity: usize) -> Self {
        RecentReturns {
            capacity,
            order: VecDeque::with_capacity(capacity.min(1 << 16)),
            container_of: Map::with_capacity_and_hasher(capacity.min(1 << 16), Default::default()),
        }
    }

    fn remember(&mut self, request_id: Text, container_id: Text) {
        if self.capacity == 0 {
            return;
        }
        if self.order.len() == self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.container_of.remove(&old);
        }
        if self
            .container_of
            .insert(request_id.clone(), container_id)
            .is_none()
        {
            self.order.push_back(request_id);
        }
    }

    fn forget(&mut self, request_id: &str) {
        // Rare (a reused request id): the ring keeps the stale entry until it ages out, and
        // `remember` tolerates ring entries that the map no longer holds.
        self.container_of.remove(request_id);
    }
}

/// All tables of the scheduler.
#[derive(Debug)]
pub struct Store {
    nodes: Table<Node>,
    node_ids: Map<Text, NodeKey>,
    node_order: Vec<NodeKey>,
    functions: Table<FunctionRow>,
    function_names: Map<Text, FunctionKey>,
    containers: Table<ContainerRow>,
    container_ids: Map<Text, ContainerKey>,
    node_containers: Map<NodeKey, Set<ContainerKey>>,
    leases: Map<Text, LeaseRow>,
    returned: RecentReturns,
    expired: RecentReturns,
}

impl<T> std::fmt::Debug for Table<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Table({} rows)", self.len())
    }
}

impl Store {
    /// An empty store that remembers the last `remembered_returns` returned request ids.
    pub fn new(remembered_returns: usize) -> Store {
        Store {
            nodes: Table::default(),
            node_ids: Map::default(),
            node_order: Vec::new(),
            functions: Table::default(),
            function_names: Map::default(),
            containers: Table::default(),
            container_ids: Map::default(),
            node_containers: Map::default(),
            leases: Map::default(),
            returned: RecentReturns::new(remembered_returns),
            expired: RecentReturns::new(remembered_returns.min(10_000)),
        }
    }

    // ---- nodes ----

    /// Adds a node at the end of the reserve order.
    pub fn insert_node(&mut self, node: Node) -> Result<NodeKey, Duplicate> {
        if self.node_ids.contains_key(&node.id) {
            return Err(Duplicate(node.id));
        }
        let id = node.id.clone();
        let key = self.nodes.insert(node);
        self.node_ids.insert(id, key);
        self.node_order.push(key);
        Ok(key)
    }

    /// The node of `key`.
    pub fn node(&self, key: NodeKey) -> Option<&Node> {
        self.nodes.get(key)
    }

    /// The node of `key`, mutably.
    pub fn node_mut(&mut self, key: NodeKey) -> Option<&mut Node> {
        self.nodes.get_mut(key)
    }

    /// The key of the node with this id.
    pub fn node_by_id(&self, id: &str) -> Option<NodeKey> {
        self.node_ids.get(id).copied()
    }

    /// Node keys in the order the nodes were reserved.
    pub fn node_order(&self) -> &[NodeKey] {
        &self.node_order
    }

    /// Every node, in reserve order.
    pub fn nodes(&self) -> impl Iterator<Item = (NodeKey, &Node)> {
        self.node_order
            .iter()
            .filter_map(|k| self.nodes.get(*k).map(|n| (*k, n)))
    }

    /// Nodes held.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Forgets a node (its containers must be gone already).
    pub fn remove_node(&mut self, key: NodeKey) -> Option<Node> {
        let node = self.nodes.remove(key)?;
        self.node_ids.remove(&node.id);
        self.node_order.retain(|k| *k != key);
        Some(node)
    }

    // ---- functions ----

    /// The function named `spec.name`, created on first sight; a changed spec replaces the
    /// stored one (containers already created keep their own memory).
    pub fn upsert_function(&mut self, spec: &FunctionSpec) -> FunctionKey {
        if let Some(key) = self.function_names.get(&*spec.name).copied() {
            if let Some(row) = self.functions.get_mut(key)
                && row.spec != *spec
            {
                row.spec = spec.clone();
            }
            return key;
        }
        let key = self.functions.insert(FunctionRow {
            spec: spec.clone(),
            profile: FunctionProfile::default(),
            containers: 0,
            creating: 0,
            free: Vec::new(),
        });
        self.function_names.insert(spec.name.clone(), key);
        key
    }

    /// The function of `key`.
    pub fn function(&self, key: FunctionKey) -> Option<&FunctionRow> {
        self.functions.get(key)
    }

    /// The function of `key`, mutably (its free stack stays private to the store).
    pub fn function_mut(&mut self, key: FunctionKey) -> Option<&mut FunctionRow> {
        self.functions.get_mut(key)
    }

    /// The key of the function with this name.
    pub fn function_by_name(&self, name: &str) -> Option<FunctionKey> {
        self.function_names.get(name).copied()
    }

    /// Every function.
    pub fn functions(&self) -> impl Iterator<Item = (FunctionKey, &FunctionRow)> {
        self.functions.iter()
    }

    // ---- containers ----

    /// Adds a container (indexed as free if it has a free slot).
    pub fn insert_container(
        &mut self,
        container: Container,
        node: NodeKey,
        function: FunctionKey,
    ) -> Result<ContainerKey, Duplicate> {
        if self.container_ids.contains_key(&container.id) {
            return Err(Duplicate(container.id));
        }
        let id = container.id.clone();
        let key = self.containers.insert(ContainerRow {
            container,
            node,
            function,
            free_pos: None,
        });
        self.container_ids.insert(id, key);
        self.node_containers.entry(node).or_default().insert(key);
        if let Some(f) = self.functions.get_mut(function) {
            f.containers += 1;
        }
        self.sync_free(key);
        Ok(key)
    }

    /// The containers on `node` (any state), in no particular order.
    pub fn containers_on(&self, node: NodeKey) -> impl Iterator<Item = ContainerKey> + '_ {
        self.node_containers
            .get(&node)
            .into_iter()
            .flatten()
            .copied()
    }

    /// The container of `key`.
    pub fn container(&self, key: ContainerKey) -> Option<&ContainerRow> {
        self.containers.get(key)
    }

    /// The key of the container with this id.
    pub fn container_by_id(&self, id: &str) -> Option<ContainerKey> {
        self.container_ids.get(id).copied()
    }

    /// Every container.
    pub fn containers(&self) -> impl Iterator<Item = (ContainerKey, &ContainerRow)> {
        self.containers.iter()
    }

    /// Containers held (ready, removing or dead).
    pub fn container_count(&self) -> usize {
        self.containers.len()
    }

    /// Changes a container through `f`, then re-indexes it (free stack membership).
    pub fn update_container<R>(
        &mut self,
        key: ContainerKey,
        f: impl FnOnce(&mut Container) -> R,
    ) -> Option<R> {
        let row = self.containers.get_mut(key)?;
        let r = f(&mut row.container);
        self.sync_free(key);
        Some(r)
    }

    /// The most recently freed container of `function` with a free slot.
    pub fn free_container(&self, function: FunctionKey) -> Option<ContainerKey> {
        self.functions.get(function)?.free.last().copied()
    }

    /// Takes one slot of a container for a request at `now`.
    pub fn take_slot(&mut self, key: ContainerKey, now: Millis) -> bool {
        self.update_container(key, |c| {
            if c.has_free_slot() {
                c.in_flight += 1;
                c.served += 1;
                c.last_used_at = now;
                true
            } else {
                false
            }
        })
        .unwrap_or(false)
    }

    /// Gives back one slot of a container at `now`.
    pub fn release_slot(&mut self, key: ContainerKey, now: Millis) {
        self.update_container(key, |c| {
            c.in_flight = c.in_flight.saturating_sub(1);
            c.last_used_at = now;
        });
    }

    /// Forgets a container.
    pub fn remove_container(&mut self, key: ContainerKey) -> Option<ContainerRow> {
        self.unlist_free(key);
        let row = self.containers.remove(key)?;
        self.container_ids.remove(&row.container.id);
        if let Some(on_node) = self.node_containers.get_mut(&row.node) {
            on_node.remove(&key);
            if on_node.is_empty() {
                self.node_containers.remove(&row.node);
            }
        }
        if let Some(f) = self.functions.get_mut(row.function) {
            f.containers = f.containers.saturating_sub(1);
        }
        Some(row)
    }

    fn sync_free(&mut self, key: ContainerKey) {
        let Some(row) = self.containers.get(key) else {
            return;
        };
        let want = row.container.has_free_slot();
        match (want, row.free_pos.is_some()) {
            (true, false) => {
                let function = row.function;
                if let Some(f) = self.functions.get_mut(function) {
                    let pos = f.free.len() as u32;
                    f.free.push(key);
                    if let Some(row) = self.containers.get_mut(key) {
                        row.free_pos = Some(pos);
                    }
                }
            }
            (false, true) => self.unlist_free(key),
            _ => {}
        }
    }

    fn unlist_free(&mut self, key: ContainerKey) {
        let Some(row) = self.containers.get_mut(key) else {
            return;
        };
        let Some(pos) = row.free_pos.take() else {
            return;
        };
        let function = row.function;
        let Some(f) = self.functions.get_mut(function) else {
            return;
        };
        let pos = pos as usize;
        if pos < f.free.len() {
            f.free.swap_remove(pos);
            if let Some(&moved) = f.free.get(pos)
                && let Some(m) = self.containers.get_mut(moved)
            {
                m.free_pos = Some(pos as u32);
            }
        }
    }

    // ---- leases ----

    /// Records a lease; fails if the request already holds one.
    pub fn insert_lease(&mut self, row: LeaseRow) -> Result<(), Duplicate> {
        use std::collections::hash_map::Entry;
        match self.leases.entry(row.lease.request_id.clone()) {
            Entry::Occupied(_) => Err(Duplicate(row.lease.request_id)),
            Entry::Vacant(v) => {
                self.returned.forget(&row.lease.request_id);
                self.expired.forget(&row.lease.request_id);
                v.insert(row);
                Ok(())
            }
        }
    }

    /// The lease of a request.
    pub fn lease(&self, request_id: &str) -> Option<&LeaseRow> {
        self.leases.get(request_id)
    }

    /// Removes the lease of a request (without remembering it as returned).
    pub fn remove_lease(&mut self, request_id: &str) -> Option<LeaseRow> {
        self.leases.remove(request_id)
    }

    /// Leases held.
    pub fn lease_count(&self) -> usize {
        self.leases.len()
    }

    /// Remembers that `request_id` returned `container_id`.
    pub fn remember_return(&mut self, request_id: Text, container_id: Text) {
        self.returned.remember(request_id, container_id);
    }

    /// Remembers that the lease of `request_id` on `container_id` expired and was reclaimed.
    pub fn remember_expired(&mut self, request_id: Text, container_id: Text) {
        self.expired.remember(request_id, container_id);
    }

    /// Whether `request_id`'s lease expired recently (and was reclaimed).
    pub fn lease_expired(&self, request_id: &str) -> bool {
        self.expired.container_of.contains_key(request_id)
    }

    /// The container a recently returned request had, if the request is remembered.
    pub fn returned_container(&self, request_id: &str) -> Option<&Text> {
        self.returned.container_of.get(request_id)
    }
}

/// Whether a container state counts as live (placed on its node's memory).
pub fn occupies_memory(state: ContainerState) -> bool {
    matches!(
        state,
        ContainerState::Creating | ContainerState::Ready | ContainerState::Removing
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CONTEST_NODE_BYTES, NodeInfo};

    fn spec(name: &str) -> FunctionSpec {
        FunctionSpec {
            name: name.into(),
            memory_bytes: 512,
            timeout_ms: 1000,
            handler: "h".into(),
        }
    }

    fn container(id: &str, function: &str) -> Container {
        Container {
            id: id.into(),
            node_id: "n1".into(),
            function: function.into(),
            memory_bytes: 512,
            state: ContainerState::Ready,
            in_flight: 0,
            max_concurrency: 1,
            created_at: 0,
            last_used_at: 0,
            served: 0,
            usage: None,
            stale: false,
            missing_samples: 0,
            parked: false,
            orphans: 0,
        }
    }

    fn store_with_node() -> (Store, NodeKey) {
        let mut s = Store::new(2);
        let n = s
            .insert_node(Node::new(
                NodeInfo {
                    id: "n1".into(),
                    address: "a".into(),
                    port: 1,
                    capacity_bytes: CONTEST_NODE_BYTES,
                },
                0,
            ))
            .unwrap();
        (s, n)
    }

    #[test]
    fn free_stack_follows_slots_and_removal() {
        let (mut s, n) = store_with_node();
        let f = s.upsert_function(&spec("f"));
        let a = s.insert_container(container("a", "f"), n, f).unwrap();
        let b = s.insert_container(container("b", "f"), n, f).unwrap();
        let c = s.insert_container(container("c", "f"), n, f).unwrap();
        assert_eq!(s.function(f).unwrap().free_containers(), 3);
        assert_eq!(s.free_container(f), Some(c));
        assert!(s.take_slot(c, 1));
        assert!(!s.take_slot(c, 1), "a full container has no slot");
        assert_eq!(s.free_container(f), Some(b));
        // Removing from the middle keeps the other positions right.
        s.remove_container(a).unwrap();
        assert_eq!(s.free_container(f), Some(b));
        assert!(s.take_slot(b, 2));
        assert_eq!(s.free_container(f), None);
        s.release_slot(c, 3);
        assert_eq!(s.free_container(f), Some(c));
        s.update_container(c, |c| c.state = ContainerState::Dead);
        assert_eq!(s.free_container(f), None);
        assert_eq!(s.function(f).unwrap().containers, 2);
        assert!(s.insert_container(container("b", "f"), n, f).is_err());
    }

    #[test]
    fn returned_memory_is_bounded() {
        let (mut s, _) = store_with_node();
        s.remember_return("r1".into(), "c".into());
        s.remember_return("r2".into(), "c".into());
        s.remember_return("r3".into(), "c".into());
        assert!(s.returned_container("r1").is_none());
        assert_eq!(s.returned_container("r3").map(|c| &**c), Some("c"));
    }

    #[test]
    fn upsert_function_replaces_a_changed_spec() {
        let (mut s, _) = store_with_node();
        let f = s.upsert_function(&spec("f"));
        let mut bigger = spec("f");
        bigger.memory_bytes = 1024;
        assert_eq!(s.upsert_function(&bigger), f);
        assert_eq!(s.function(f).unwrap().spec.memory_bytes, 1024);
        assert_eq!(s.function_by_name("f"), Some(f));
    }
}
