//! The container indexes of the [`Store`]: what a container is filed under,
//! and the sets and aggregates that answer the policies' questions without a scan over the
//! platform's containers.
//!
//! Every change of a container goes through the store (insert, `update_container`, slot take
//! and release, removal); after each, the store compares what the container is filed under
//! now (`Filed`) with what it was filed under, and moves it between the indexes: each move
//! is a few list and hash operations (the LRU lists of the `lru` module are O(1) for a
//! container taken or given back now).
//!
//! | index | holds | answers |
//! |---|---|---|
//! | `idle` | ready containers with no call, by `(last_used_at, key)` | the keep-alive sweep's LRU walk |
//! | `idle_on_node` | the same, per node | eviction: a node's least recently used victims |
//! | `ready_of_function` | ready containers (busy or not) per function, by `(last_used_at, key)` | a function's ready count and its most recently used container |
//! | `of_function` | every container of a function | a new concurrency limit, a retired definition, a hold |
//! | `busy_on_node` | containers with calls in flight, per node | whether a node may be released |
//! | `load` | ready and removing containers per node and function, and their memory | the engine's placement view |
//! | `by_state` | containers per [`ContainerState`] | metrics |
//!
//! Ties in the LRU orders go to the lower key (slot index, then generation): the order a
//! scan over the containers table followed by a stable sort would give.

use super::lru::LruLists;
use super::{ContainerKey, FunctionKey, Map, NodeKey, Set, Store};
use crate::model::{Container, ContainerState, Millis};

/// An entry of an LRU index: when the container was last used, and its key.
pub type LruEntry = (Millis, ContainerKey);

/// What one container is filed under, as of its last re-index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Filed {
    pub(super) node: NodeKey,
    pub(super) function: FunctionKey,
    pub(super) last_used: Millis,
    pub(super) state: ContainerState,
    pub(super) in_flight: bool,
    pub(super) memory: u64,
}

impl Filed {
    pub(super) fn of(node: NodeKey, function: FunctionKey, c: &Container) -> Filed {
        Filed {
            node,
            function,
            last_used: c.last_used_at,
            state: c.state,
            in_flight: c.in_flight > 0,
            memory: c.memory_bytes,
        }
    }

    /// What the per-node load index counts of it (function, state, memory), if anything.
    pub(super) fn load_part(&self) -> Option<(FunctionKey, ContainerState, u64)> {
        matches!(self.state, ContainerState::Ready | ContainerState::Removing).then_some((
            self.function,
            self.state,
            self.memory,
        ))
    }

    fn idle(&self) -> bool {
        self.state == ContainerState::Ready && !self.in_flight
    }
}

/// Ready and removing containers of one function on one node, and their memory (the
/// containers' own limits), bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Load {
    /// Ready containers.
    pub ready: u32,
    /// Their memory, bytes.
    pub ready_bytes: u64,
    /// Containers being removed.
    pub removing: u32,
    /// Their memory, bytes.
    pub removing_bytes: u64,
}

impl Load {
    fn is_empty(&self) -> bool {
        self.ready == 0 && self.removing == 0
    }

    /// The count and memory of containers in `state` (ready, else removing).
    fn part(&mut self, state: ContainerState) -> (&mut u32, &mut u64) {
        if state == ContainerState::Ready {
            (&mut self.ready, &mut self.ready_bytes)
        } else {
            (&mut self.removing, &mut self.removing_bytes)
        }
    }
}

fn state_index(s: ContainerState) -> usize {
    match s {
        ContainerState::Creating => 0,
        ContainerState::Ready => 1,
        ContainerState::Removing => 2,
        ContainerState::Dead => 3,
    }
}

/// The indexes; see the module documentation.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Indexes {
    pub(super) idle: LruLists<()>,
    pub(super) idle_on_node: LruLists<NodeKey>,
    pub(super) ready_of_function: LruLists<FunctionKey>,
    pub(super) of_function: Map<FunctionKey, Set<ContainerKey>>,
    pub(super) busy_on_node: Map<NodeKey, u32>,
    pub(super) load: Map<NodeKey, Map<FunctionKey, Load>>,
    pub(super) by_state: [usize; 4],
}

impl Indexes {
    /// Files container `key` under `f`.
    pub(super) fn add(&mut self, key: ContainerKey, f: &Filed) {
        let entry = (f.last_used, key);
        if f.idle() {
            self.idle.insert((), entry);
            self.idle_on_node.insert(f.node, entry);
        }
        if f.state == ContainerState::Ready {
            self.ready_of_function.insert(f.function, entry);
        }
        self.add_rest(key, f);
    }

    /// Files `key` in the indexes that do not order by last use.
    fn add_rest(&mut self, key: ContainerKey, f: &Filed) {
        self.of_function.entry(f.function).or_default().insert(key);
        if f.in_flight {
            *self.busy_on_node.entry(f.node).or_default() += 1;
        }
        if let Some((function, state, memory)) = f.load_part() {
            let l = self
                .load
                .entry(f.node)
                .or_default()
                .entry(function)
                .or_default();
            let (count, bytes) = l.part(state);
            *count += 1;
            *bytes += memory;
        }
        self.by_state[state_index(f.state)] += 1;
    }

    /// Takes container `key`, filed under `f`, out of every index.
    pub(super) fn remove(&mut self, key: ContainerKey, f: &Filed) {
        let entry = (f.last_used, key);
        if f.idle() {
            self.idle.remove((), entry);
            self.idle_on_node.remove(f.node, entry);
        }
        if f.state == ContainerState::Ready {
            self.ready_of_function.remove(f.function, entry);
        }
        self.remove_rest(key, f);
    }

    /// Takes `key` out of the indexes that do not order by last use.
    fn remove_rest(&mut self, key: ContainerKey, f: &Filed) {
        if let Some(set) = self.of_function.get_mut(&f.function) {
            set.remove(&key);
            if set.is_empty() {
                self.of_function.remove(&f.function);
            }
        }
        if f.in_flight {
            self.unbusy(f.node);
        }
        if matches!(f.state, ContainerState::Ready | ContainerState::Removing)
            && let Some(per_node) = self.load.get_mut(&f.node)
        {
            if let Some(l) = per_node.get_mut(&f.function) {
                let (count, bytes) = l.part(f.state);
                *count -= 1;
                *bytes -= f.memory;
                if l.is_empty() {
                    per_node.remove(&f.function);
                }
            }
            if per_node.is_empty() {
                self.load.remove(&f.node);
            }
        }
        self.by_state[state_index(f.state)] -= 1;
    }

    /// Moves container `key` from what it was filed under (`was`) to `now`, touching only
    /// the indexes whose part of the filing changed: the same indexes as [`Indexes::remove`]
    /// then [`Indexes::add`], for a slot taken or given back at a few set operations instead
    /// of all of them.
    pub(super) fn refile(&mut self, key: ContainerKey, was: &Filed, now: &Filed) {
        let (old, new) = ((was.last_used, key), (now.last_used, key));
        let same_entry = was.last_used == now.last_used;
        if (was.idle(), was.node) != (now.idle(), now.node) || (now.idle() && !same_entry) {
            if was.idle() {
                self.idle.remove((), old);
                self.idle_on_node.remove(was.node, old);
            }
            if now.idle() {
                self.idle.insert((), new);
                self.idle_on_node.insert(now.node, new);
            }
        }
        let ready = |f: &Filed| f.state == ContainerState::Ready;
        if (ready(was), was.function) != (ready(now), now.function) || (ready(now) && !same_entry) {
            if ready(was) {
                self.ready_of_function.remove(was.function, old);
            }
            if ready(now) {
                self.ready_of_function.insert(now.function, new);
            }
        }
        if (was.in_flight, was.node) != (now.in_flight, now.node) {
            if was.in_flight {
                self.unbusy(was.node);
            }
            if now.in_flight {
                *self.busy_on_node.entry(now.node).or_default() += 1;
            }
        }
        let rest = |f: &Filed| (f.node, f.function, f.load_part(), f.state);
        if rest(was) != rest(now) {
            // A state change (rare): the other indexes the whole way, the busy count kept.
            let quiet = |f: &Filed| Filed {
                in_flight: false,
                ..*f
            };
            self.remove_rest(key, &quiet(was));
            self.add_rest(key, &quiet(now));
        }
    }

    fn unbusy(&mut self, node: NodeKey) {
        if let Some(n) = self.busy_on_node.get_mut(&node) {
            *n -= 1;
            if *n == 0 {
                self.busy_on_node.remove(&node);
            }
        }
    }

    /// Containers in `state`.
    pub(super) fn count_in(&self, state: ContainerState) -> usize {
        self.by_state[state_index(state)]
    }
}

/// The questions the indexes answer.
impl Store {
    /// Ready containers serving no call, least recently used first (ties: lower key first).
    pub fn idle_lru(&self) -> impl Iterator<Item = LruEntry> + '_ {
        self.index.idle.iter(())
    }

    /// Ready containers on `node` serving no call, least recently used first.
    pub fn idle_lru_on(&self, node: NodeKey) -> impl Iterator<Item = LruEntry> + '_ {
        self.index.idle_on_node.iter(node)
    }

    /// Ready containers of `function` (busy or not), least recently used first.
    pub fn ready_lru_of(&self, function: FunctionKey) -> impl Iterator<Item = LruEntry> + '_ {
        self.index.ready_of_function.iter(function)
    }

    /// How many ready containers (busy or not) `function` has.
    pub fn ready_count(&self, function: FunctionKey) -> usize {
        self.index.ready_of_function.len(function)
    }

    /// When the most recently used ready container of `function` was last used.
    pub fn newest_ready_use(&self, function: FunctionKey) -> Option<Millis> {
        self.index.ready_of_function.last(function).map(|(t, _)| t)
    }

    /// Every container of `function` (any state), in key order.
    pub fn containers_of(&self, function: FunctionKey) -> Vec<ContainerKey> {
        let mut keys: Vec<ContainerKey> = self
            .index
            .of_function
            .get(&function)
            .into_iter()
            .flatten()
            .copied()
            .collect();
        keys.sort_unstable();
        keys
    }

    /// Every container of `function` (any state), in no particular order.
    pub fn container_keys_of(
        &self,
        function: FunctionKey,
    ) -> impl Iterator<Item = ContainerKey> + '_ {
        self.index
            .of_function
            .get(&function)
            .into_iter()
            .flatten()
            .copied()
    }

    /// How many containers on `node` have calls in flight (any state).
    pub fn busy_containers_on(&self, node: NodeKey) -> u32 {
        self.index.busy_on_node.get(&node).copied().unwrap_or(0)
    }

    /// Ready and removing containers on `node`, per function.
    pub fn load_on(&self, node: NodeKey) -> impl Iterator<Item = (FunctionKey, &Load)> + '_ {
        self.index
            .load
            .get(&node)
            .into_iter()
            .flatten()
            .map(|(f, l)| (*f, l))
    }

    /// Marks `node`'s load changed (see [`Store::take_changed_nodes`]).
    pub(super) fn touch_load(&mut self, node: NodeKey) {
        self.node_sets.changed.insert(node);
    }

    /// Containers in `state`.
    pub fn count_in_state(&self, state: ContainerState) -> usize {
        self.index.count_in(state)
    }
}
