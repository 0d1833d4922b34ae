//! First fit in O(log n): the nodes in reserve order as the leaves of a max-tree of what each
//! can still take, so "the first node (in reserve order) with this much free memory" is one
//! walk from the root instead of a scan over the nodes.
//!
//! A leaf holds `free + 1` for a node that takes new containers (active, not suspect) and 0
//! for one that does not (or a slot whose node is gone), so a query for `m` bytes looks for
//! the leftmost leaf of at least `m + 1`. The store keeps the leaves current: a node is only
//! changed through [`NodeMut`], which updates its leaf when dropped. Slots of released nodes
//! are reclaimed when the tree is rebuilt (when full; amortized O(1) per node).

use std::ops::{Deref, DerefMut};

use super::NodeKey;
use super::nodes::NodeSets;
use crate::model::{Node, NodeState};

/// The max-tree; see the module documentation.
#[derive(Debug, Default)]
pub(super) struct FirstFit {
    /// `tree[1]` is the root; leaves are `tree[cap..2 * cap]`.
    tree: Vec<u64>,
    cap: usize,
    /// Slots handed out so far.
    next: usize,
}

impl FirstFit {
    /// What a node's leaf holds.
    pub(super) fn value(n: &Node) -> u64 {
        if n.state == NodeState::Active && n.suspect_since.is_none() {
            n.free_bytes().saturating_add(1)
        } else {
            0
        }
    }

    /// Whether every slot is handed out (the store then rebuilds the tree).
    pub(super) fn full(&self) -> bool {
        self.next == self.cap
    }

    /// An empty tree with room for `slots` leaves.
    pub(super) fn with_room(slots: usize) -> FirstFit {
        let cap = slots.max(2).next_power_of_two();
        FirstFit {
            tree: vec![0; 2 * cap],
            cap,
            next: 0,
        }
    }

    /// Hands out the next slot, holding `value`.
    pub(super) fn push(&mut self, value: u64) -> usize {
        debug_assert!(!self.full());
        let slot = self.next;
        self.next += 1;
        self.set(slot, value);
        slot
    }

    /// Sets the leaf of `slot`.
    pub(super) fn set(&mut self, slot: usize, value: u64) {
        let mut i = slot + self.cap;
        self.tree[i] = value;
        while i > 1 {
            i /= 2;
            self.tree[i] = self.tree[2 * i].max(self.tree[2 * i + 1]);
        }
    }

    /// The leftmost slot holding at least `want`.
    pub(super) fn first_at_least(&self, want: u64) -> Option<usize> {
        if self.cap == 0 || self.tree[1] < want {
            return None;
        }
        let mut i = 1;
        while i < self.cap {
            i = if self.tree[2 * i] >= want {
                2 * i
            } else {
                2 * i + 1
            };
        }
        Some(i - self.cap)
    }
}

/// A node borrowed for change from the store; its first-fit leaf and its place in the
/// node sets (empty, draining: see the store's `nodes` module) follow when dropped.
#[derive(Debug)]
pub struct NodeMut<'a> {
    pub(super) node: &'a mut Node,
    pub(super) fit: &'a mut FirstFit,
    pub(super) slot: usize,
    pub(super) sets: &'a mut NodeSets,
    pub(super) key: NodeKey,
    pub(super) seq: u64,
}

impl Deref for NodeMut<'_> {
    type Target = Node;
    fn deref(&self) -> &Node {
        self.node
    }
}

impl DerefMut for NodeMut<'_> {
    fn deref_mut(&mut self) -> &mut Node {
        self.node
    }
}

impl Drop for NodeMut<'_> {
    fn drop(&mut self) {
        self.fit.set(self.slot, FirstFit::value(self.node));
        self.sets.file(self.seq, self.key, self.node);
    }
}
