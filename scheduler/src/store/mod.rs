//! The scheduler's tables and the indexes its queries need.
//!
//! - nodes by key and by id, plus the reserve order, and a max-tree over it of what each
//!   node can still take: first fit is O(log n) ([`fit`]; a node changes only through
//!   [`NodeMut`], which keeps its leaf current);
//! - functions by key and by name, each with the stack of its containers that have a free slot,
//!   so a warm acquire is a hash lookup and a pop, never a scan over containers;
//! - containers by key and by id, and by node (stats and node loss look at one node's);
//! - the container indexes of [`index`], kept in step with every change of a container:
//!   idle containers in LRU order (overall, per node), ready containers per function in LRU
//!   order (its count and its most recently used one), every container per function, busy
//!   containers per node, ready and removing memory per node and function (the engine's
//!   placement view), containers per state (metrics);
//! - the largest node capacity held (what a new node is expected to offer);
//! - leases by request id;
//! - a bounded memory of recently returned request ids, to tell "already returned" from
//!   "never leased", and one of leases reclaimed when they expired.
//!
//! The store keeps its indexes consistent (a container's place in its function's free stack
//! and in every index of [`index`] follows its state, in-flight count and last use); each
//! change of a container costs O(1) index work when it is filed at the present time (the LRU
//! lists of the `lru` module; O(k) past k newer entries otherwise) and O(log n) for first
//! fit, so no question a policy asks on an acquire, a return, a placement or an eviction
//! needs a scan over the platform's containers. Business rules such as memory accounting live in [`crate::core`].

pub mod fit;
pub mod index;
mod lru;
mod nodes;
mod returns;
pub mod table;
mod usage;

use std::collections::BTreeMap;

/// The hash map of the scheduler's tables: foldhash (seeded per map) is several times faster
/// than SipHash on the short string ids of the hot path; ids come from the platform's own
/// components, so the weaker DoS resistance is acceptable.
pub type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// The hash set companion of [`Map`].
pub type Set<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

use crate::model::{
    Container, ContainerState, FunctionProfile, FunctionSpec, Lease, Millis, Node, Text,
};
use fit::FirstFit;
pub use fit::NodeMut;
use index::{Filed, Indexes};
pub use index::{Load, LruEntry};
use nodes::NodeSets;
use returns::RecentReturns;
pub use table::{Key, Table};
pub use usage::Noted;

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
    filed: Filed,
    /// The stats round that last listed it (see [`Store::note_usage`]).
    listed_in: u64,
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

/// All tables of the scheduler.
#[derive(Debug)]
pub struct Store {
    nodes: Table<Node>,
    node_ids: Map<Text, NodeKey>,
    node_order: Vec<NodeKey>,
    fit: FirstFit,
    /// Each node's slot in `fit`, and the node of each slot.
    fit_slot: Map<NodeKey, usize>,
    fit_nodes: Vec<Option<NodeKey>>,
    functions: Table<FunctionRow>,
    function_names: Map<Text, FunctionKey>,
    containers: Table<ContainerRow>,
    container_ids: Map<Text, ContainerKey>,
    node_containers: Map<NodeKey, Set<ContainerKey>>,
    index: Indexes,
    /// Per node, its place in the reserve order (see [`Store::node_seq`]).
    node_seqs: Map<NodeKey, u64>,
    next_node_seq: u64,
    node_sets: NodeSets,
    /// Node capacities held, with how many nodes have each.
    capacities: BTreeMap<u64, u32>,
    leases: Map<Text, LeaseRow>,
    returned: RecentReturns,
    expired: RecentReturns,
    /// The latest stats round begun (see [`Store::begin_listing`]).
    listing: u64,
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
            fit: FirstFit::default(),
            fit_slot: Map::default(),
            fit_nodes: Vec::new(),
            functions: Table::default(),
            function_names: Map::default(),
            containers: Table::default(),
            container_ids: Map::default(),
            node_containers: Map::default(),
            index: Indexes::default(),
            node_seqs: Map::default(),
            next_node_seq: 0,
            node_sets: NodeSets::default(),
            capacities: BTreeMap::new(),
            leases: Map::default(),
            returned: RecentReturns::new(remembered_returns),
            expired: RecentReturns::new(remembered_returns.min(10_000)),
            listing: 0,
        }
    }

    // ---- nodes ----

    /// Adds a node at the end of the reserve order.
    pub fn insert_node(&mut self, node: Node) -> Result<NodeKey, Duplicate> {
        if self.node_ids.contains_key(&node.id) {
            return Err(Duplicate(node.id));
        }
        let id = node.id.clone();
        *self.capacities.entry(node.capacity_bytes).or_default() += 1;
        let value = FirstFit::value(&node);
        let key = self.nodes.insert(node);
        self.node_ids.insert(id, key);
        self.node_order.push(key);
        let seq = self.next_node_seq;
        self.next_node_seq += 1;
        self.node_seqs.insert(key, seq);
        if let Some(n) = self.nodes.get(key) {
            self.node_sets.file(seq, key, n);
        }
        self.node_sets.changed.insert(key);
        if self.fit.full() {
            self.rebuild_fit();
        }
        let slot = self.fit.push(value);
        self.fit_slot.insert(key, slot);
        self.fit_nodes.push(Some(key));
        Ok(key)
    }

    /// Lays the held nodes (but the newest, not yet in it) out again in the first-fit tree,
    /// in reserve order, with room for as many again.
    fn rebuild_fit(&mut self) {
        let held: Vec<NodeKey> = self
            .node_order
            .iter()
            .copied()
            .filter(|k| self.fit_slot.contains_key(k))
            .collect();
        self.fit = FirstFit::with_room(2 * held.len() + 2);
        self.fit_slot.clear();
        self.fit_nodes.clear();
        for key in held {
            let value = self.nodes.get(key).map_or(0, FirstFit::value);
            let slot = self.fit.push(value);
            self.fit_slot.insert(key, slot);
            self.fit_nodes.push(Some(key));
        }
    }

    /// The first node in reserve order that takes new containers (active, not suspect) and
    /// has `memory_bytes` free: O(log n).
    pub fn first_fit(&self, memory_bytes: u64) -> Option<NodeKey> {
        let slot = self.fit.first_at_least(memory_bytes.saturating_add(1))?;
        self.fit_nodes.get(slot).copied().flatten()
    }

    /// The node of `key`.
    pub fn node(&self, key: NodeKey) -> Option<&Node> {
        self.nodes.get(key)
    }

    /// The node of `key`, mutably (its first-fit leaf and node sets follow when the guard
    /// drops; the node counts as changed, see [`Store::take_changed_nodes`]).
    pub fn node_mut(&mut self, key: NodeKey) -> Option<NodeMut<'_>> {
        let slot = *self.fit_slot.get(&key)?;
        let seq = *self.node_seqs.get(&key)?;
        let node = self.nodes.get_mut(key)?;
        self.node_sets.changed.insert(key);
        Some(NodeMut {
            node,
            fit: &mut self.fit,
            slot,
            sets: &mut self.node_sets,
            key,
            seq,
        })
    }

    /// `key`'s place in the reserve order: a later reserved node has a larger number.
    pub fn node_seq(&self, key: NodeKey) -> Option<u64> {
        self.node_seqs.get(&key).copied()
    }

    /// The nodes whose row or load (see [`Store::load_on`]) changed, or that came or went,
    /// since the last call; the engine's placement view catches up on these.
    pub fn take_changed_nodes(&mut self) -> Set<NodeKey> {
        std::mem::take(&mut self.node_sets.changed)
    }

    /// Nodes holding no container (any state), in reserve order.
    pub fn empty_nodes(&self) -> impl Iterator<Item = NodeKey> + '_ {
        self.node_sets.empty.iter().map(|(_, k)| *k)
    }

    /// The first draining node in reserve order, if any.
    pub fn first_draining(&self) -> Option<NodeKey> {
        self.node_sets.draining.first().map(|(_, k)| *k)
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

    /// The largest capacity of the nodes held, bytes.
    pub fn max_node_capacity(&self) -> Option<u64> {
        self.capacities.last_key_value().map(|(c, _)| *c)
    }

    /// Forgets a node (its containers must be gone already).
    pub fn remove_node(&mut self, key: NodeKey) -> Option<Node> {
        let node = self.nodes.remove(key)?;
        self.node_ids.remove(&node.id);
        if let Some(n) = self.capacities.get_mut(&node.capacity_bytes) {
            *n -= 1;
            if *n == 0 {
                self.capacities.remove(&node.capacity_bytes);
            }
        }
        self.node_order.retain(|k| *k != key);
        if let Some(seq) = self.node_seqs.remove(&key) {
            self.node_sets.unfile(seq, key);
        }
        if let Some(slot) = self.fit_slot.remove(&key) {
            self.fit.set(slot, 0);
            self.fit_nodes[slot] = None;
        }
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
        let filed = Filed::of(node, function, &container);
        let key = self.containers.insert(ContainerRow {
            container,
            node,
            function,
            free_pos: None,
            filed,
            listed_in: 0,
        });
        self.index.add(key, &filed);
        if filed.load_part().is_some() {
            self.touch_load(node);
        }
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

    /// How many containers `node` holds (any state).
    pub fn container_count_on(&self, node: NodeKey) -> usize {
        self.node_containers.get(&node).map_or(0, |s| s.len())
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
        let now = Filed::of(row.node, row.function, &row.container);
        if now != row.filed {
            let was = std::mem::replace(&mut row.filed, now);
            self.index.refile(key, &was, &now);
            if was.load_part() != now.load_part() {
                self.touch_load(now.node);
            }
        }
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
        self.index.remove(key, &row.filed);
        if row.filed.load_part().is_some() {
            self.touch_load(row.node);
        }
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

    // (the queries of the container indexes are in [`index`])

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
        self.expired.container(request_id).is_some()
    }

    /// The container a recently returned request had, if the request is remembered.
    pub fn returned_container(&self, request_id: &str) -> Option<&Text> {
        self.returned.container(request_id)
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
mod tests;
