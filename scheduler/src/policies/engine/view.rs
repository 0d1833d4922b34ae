//! The placement view, kept between rounds: each active, not suspect node with what its
//! containers and the creates in flight leave free, in reserve order and in the orders
//! placement and eviction ask for, so that a round costs O(log n) per question plus the
//! nodes that changed since the last round, never a pass over the fleet.
//!
//! A round takes the view out of the engine ([`Engine::view`]), which first catches up: it
//! recomputes the nodes the store reports changed (their row or load, see
//! [`crate::store::Store::take_changed_nodes`]), the nodes whose functions' charges changed
//! (`Engine::note_charge`), the nodes with creates in flight now or at the last round, and
//! those placement changed during the last round. The round hands it back
//! ([`Engine::put_view`]); a view not handed back is rebuilt from scratch next time. Debug
//! builds compare every caught-up view with one built from scratch.
//!
//! | order | holds | answers |
//! |---|---|---|
//! | `nodes` | every node of the view by reserve position | eviction's walk, in reserve order |
//! | `by_free` | `(free, position)` | best fit by memory |
//! | `under_cap`, `over_cap` | `(free, CPU-heavy, position)`, split at [`HEAVY_PER_NODE`] | best fit of a CPU-heavy container |
//! | `by_room` | `(free + removing, position)` | room once removals complete |

use std::collections::{BTreeMap, BTreeSet};

use super::{Engine, HEAVY_PER_NODE, NodeView, Placement};
use crate::model::NodeState;
use crate::store::{FunctionKey, Map, NodeKey, Set};

/// See the module documentation.
#[derive(Clone, Debug, Default)]
pub(super) struct View {
    nodes: BTreeMap<u64, NodeView>,
    position: Map<NodeKey, u64>,
    by_free: BTreeSet<(u64, u64)>,
    under_cap: BTreeSet<(u64, u32, u64)>,
    over_cap: BTreeSet<(u64, u32, u64)>,
    by_room: BTreeSet<(u64, u64)>,
    total_free: u64,
    /// Containers (ready, removing, creating) per node and function
    /// ([`Placement::SpreadByFunction`] only), and what each node added to it.
    pub(super) per_function: Map<(NodeKey, FunctionKey), u32>,
    fn_on_node: Map<NodeKey, Vec<(FunctionKey, u32)>>,
    /// Nodes placement changed since the view caught up.
    touched: Set<NodeKey>,
    /// Nodes with creates in flight when the view caught up.
    create_nodes: Vec<NodeKey>,
    built: bool,
}

impl View {
    fn file(&mut self, v: &NodeView) {
        let seq = v.seq;
        self.by_free.insert((v.free, seq));
        if v.heavy < HEAVY_PER_NODE {
            self.under_cap.insert((v.free, v.heavy, seq));
        } else {
            self.over_cap.insert((v.free, v.heavy, seq));
        }
        self.by_room.insert((v.free + v.removing, seq));
        self.total_free += v.free;
    }

    fn unfile(&mut self, v: &NodeView) {
        let seq = v.seq;
        self.by_free.remove(&(v.free, seq));
        self.under_cap.remove(&(v.free, v.heavy, seq));
        self.over_cap.remove(&(v.free, v.heavy, seq));
        self.by_room.remove(&(v.free + v.removing, seq));
        self.total_free -= v.free;
    }

    fn insert(&mut self, v: NodeView) {
        self.file(&v);
        self.position.insert(v.key, v.seq);
        self.nodes.insert(v.seq, v);
    }

    /// Takes node `key` out of the view (and its per-function counts).
    pub(super) fn remove(&mut self, key: NodeKey) {
        if let Some(seq) = self.position.remove(&key)
            && let Some(v) = self.nodes.remove(&seq)
        {
            self.unfile(&v);
        }
        for (f, n) in self.fn_on_node.remove(&key).unwrap_or_default() {
            if let Some(c) = self.per_function.get_mut(&(key, f)) {
                *c -= n;
                if *c == 0 {
                    self.per_function.remove(&(key, f));
                }
            }
        }
    }

    /// Changes node `key` through `change`, keeping the orders (placement marks it touched).
    pub(super) fn update(&mut self, key: NodeKey, change: impl FnOnce(&mut NodeView)) {
        let Some(&seq) = self.position.get(&key) else {
            return;
        };
        let Some(mut v) = self.nodes.remove(&seq) else {
            return;
        };
        self.unfile(&v);
        change(&mut v);
        self.file(&v);
        self.nodes.insert(seq, v);
        self.touched.insert(key);
    }

    /// Counts one more container of `f` on `node` (spread placement).
    pub(super) fn count(&mut self, node: NodeKey, f: FunctionKey) {
        *self.per_function.entry((node, f)).or_default() += 1;
        self.fn_on_node.entry(node).or_default().push((f, 1));
        self.touched.insert(node);
    }

    /// The nodes in reserve order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &NodeView> + '_ {
        self.nodes.values()
    }

    /// Node `key`, if in the view.
    pub(super) fn get(&self, key: NodeKey) -> Option<&NodeView> {
        self.nodes.get(self.position.get(&key)?)
    }

    /// Nodes in the view.
    pub(super) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Free memory of every node together.
    pub(super) fn total_free(&self) -> u64 {
        self.total_free
    }

    /// Best fit: the node with the least free memory of at least `charge` whose limits take
    /// `limit` (the first in reserve order on a tie).
    pub(super) fn best_fit(&self, charge: u64, limit: u64) -> Option<NodeKey> {
        self.by_free
            .range((charge, 0)..)
            .map(|(_, seq)| &self.nodes[seq])
            .find(|v| v.free_limit >= limit)
            .map(|v| v.key)
    }

    /// Best fit of a CPU-heavy container: among the nodes under [`HEAVY_PER_NODE`] CPU-heavy
    /// containers if one fits, else among the rest; by free memory, then CPU-heavy count,
    /// then reserve order.
    pub(super) fn best_fit_heavy(&self, charge: u64, limit: u64) -> Option<NodeKey> {
        let first = |set: &BTreeSet<(u64, u32, u64)>| {
            set.range((charge, 0, 0)..)
                .map(|(_, _, seq)| &self.nodes[seq])
                .find(|v| v.free_limit >= limit)
                .map(|v| v.key)
        };
        first(&self.under_cap).or_else(|| first(&self.over_cap))
    }

    /// The most memory a node will have once removals in flight complete.
    pub(super) fn max_room(&self) -> u64 {
        self.by_room.last().map_or(0, |(room, _)| *room)
    }

    /// The first node in reserve order with `memory` free once removals complete.
    pub(super) fn first_with_room(&self, memory: u64) -> Option<NodeKey> {
        let seq = self
            .by_room
            .range((memory, 0)..)
            .map(|(_, seq)| *seq)
            .min()?;
        self.nodes.get(&seq).map(|v| v.key)
    }

    /// Whether two views hold the same nodes and (non-zero) per-function counts.
    #[cfg(debug_assertions)]
    fn same(&self, other: &View) -> bool {
        let nodes = |v: &View| {
            v.nodes
                .values()
                .map(|n| (n.key, n.seq, n.free, n.free_limit, n.removing, n.heavy))
                .collect::<Vec<_>>()
        };
        let counts = |v: &View| {
            let mut c: Vec<_> = v
                .per_function
                .iter()
                .filter(|((n, _), c)| **c > 0 && v.position.contains_key(n))
                .map(|(k, c)| (*k, *c))
                .collect();
            c.sort_unstable();
            c
        };
        nodes(self) == nodes(other)
            && counts(self) == counts(other)
            && self.total_free == other.total_free
    }
}

impl Engine {
    /// The placement view, caught up with the store (see the module documentation); hand it
    /// back with [`Engine::put_view`] when the round is over.
    pub(super) fn view(&mut self) -> View {
        let mut view = std::mem::take(&mut self.view);
        let changed = self.state.store.take_changed_nodes();
        let charged = std::mem::take(&mut self.charge_changed);
        let creates = self.creates_by_node();
        let dirty: Vec<NodeKey> = if !view.built || self.view_stale {
            view = View {
                built: true,
                ..View::default()
            };
            self.view_stale = false;
            self.state.store.node_order().to_vec()
        } else {
            let mut dirty: Set<NodeKey> = changed;
            dirty.extend(charged);
            dirty.extend(view.touched.drain());
            dirty.extend(view.create_nodes.drain(..));
            dirty.extend(creates.keys().copied());
            dirty.into_iter().collect()
        };
        for k in dirty {
            view.remove(k);
            self.add_node(&mut view, k, creates.get(&k).map_or(&[][..], |c| c));
        }
        view.create_nodes = creates.into_keys().collect();
        view.touched.clear();
        #[cfg(debug_assertions)]
        {
            let mut fresh = View::default();
            let creates = self.creates_by_node();
            for &k in self.state.store.node_order() {
                self.add_node(&mut fresh, k, creates.get(&k).map_or(&[][..], |c| c));
            }
            debug_assert!(
                view.same(&fresh),
                "the placement view fell behind the store"
            );
        }
        view
    }

    /// The creates in flight (function, memory) per node.
    fn creates_by_node(&self) -> Map<NodeKey, Vec<(FunctionKey, u64)>> {
        let mut creates: Map<NodeKey, Vec<(FunctionKey, u64)>> = Map::default();
        for (_, c) in self.state.creates() {
            creates
                .entry(c.node)
                .or_default()
                .push((c.function, c.memory_bytes));
        }
        creates
    }

    /// Hands the view of a round back (see [`Engine::view`]).
    pub(super) fn put_view(&mut self, view: View) {
        self.view = view;
    }

    /// Adds node `k` to `view` as the store has it, with the creates in flight on it
    /// (function, memory), if it takes new containers.
    fn add_node(&self, view: &mut View, k: NodeKey, creates: &[(FunctionKey, u64)]) {
        let Some(n) = self.state.store.node(k) else {
            return;
        };
        // A suspect node takes no new container: it may be gone.
        if n.state != NodeState::Active || n.suspect_since.is_some() {
            return;
        }
        let Some(seq) = self.state.store.node_seq(k) else {
            return;
        };
        let factor = self.knobs.overcommit.map_or(1.0, |o| o.max_factor.max(1.0));
        let overcommit = self.knobs.overcommit.is_some();
        let spread = self.knobs.placement == Placement::SpreadByFunction;
        let mut counts = Vec::new();
        let load = self.node_load(k, spread.then_some(&mut counts));
        let mut v = NodeView {
            key: k,
            seq,
            // Without over-commit charges are limits: the store's free memory.
            free: if overcommit {
                n.capacity_bytes.saturating_sub(load.charged)
            } else {
                n.free_bytes()
            },
            free_limit: ((n.capacity_bytes as f64 * factor) as u64).saturating_sub(n.used_bytes),
            removing: load.removing,
            heavy: load.heavy,
        };
        for &(f, own) in creates {
            if spread {
                counts.push((f, 1));
            }
            if overcommit {
                // A function the engine never saw counts the container's own limit.
                let c = if (f.index() as usize) < self.fns.len() {
                    self.charge(f)
                } else {
                    own
                };
                v.free = v.free.saturating_sub(c);
            }
            v.heavy += self.heavy(f) as u32;
        }
        for &(f, c) in &counts {
            *view.per_function.entry((k, f)).or_default() += c;
        }
        if !counts.is_empty() {
            view.fn_on_node.insert(k, counts);
        }
        view.insert(v);
    }

    /// Whether `f` is classified CPU-heavy.
    pub(super) fn heavy(&self, f: FunctionKey) -> bool {
        self.fns
            .get(f.index() as usize)
            .is_some_and(|d| d.class.cpu_heavy)
    }
}
