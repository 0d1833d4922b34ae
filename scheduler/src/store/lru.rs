//! Lists of containers in LRU order, one per group (a node, a function, or the whole platform),
//! linked through their rows' slots: what the store's `idle`, `idle_on_node` and
//! `ready_of_function` indexes are.
//!
//! The order is the one a `BTreeSet<(last_used, key)>` would give (ties: the lower key first),
//! but an entry is filed by walking back from its group's tail past the entries that sort
//! after it. Time only moves forward on the scheduler's clock, so a container taken or given
//! back `now` sorts last: the walk stops at once and a move is O(1), where a balanced tree
//! paid O(log n) and an allocation on every take and every return (a tenth of a simulated
//! day). An entry filed with an older time walks past the k newer ones: O(k). Removal is
//! O(1) through the row's links.
//!
//! A container is in at most one list of each index, so each index keeps one link per
//! container slot.

use std::hash::Hash;

use super::{ContainerKey, LruEntry, Map};

/// No slot.
const NIL: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
struct Link {
    prev: u32,
    next: u32,
    entry: LruEntry,
}

/// The first and last slots of one group's list, and its length.
#[derive(Clone, Copy, Debug)]
struct Ends {
    head: u32,
    tail: u32,
    len: usize,
}

/// One index: a list per group `G`, in LRU order. Empty groups are dropped.
#[derive(Clone, Debug)]
pub(super) struct LruLists<G> {
    links: Vec<Option<Link>>,
    ends: Map<G, Ends>,
}

impl<G> Default for LruLists<G> {
    fn default() -> Self {
        LruLists {
            links: Vec::new(),
            ends: Map::default(),
        }
    }
}

fn slot(key: ContainerKey) -> usize {
    key.index() as usize
}

impl<G: Hash + Eq + Copy> LruLists<G> {
    /// Files `entry` in `group`'s list at its place in the order.
    pub(super) fn insert(&mut self, group: G, entry: LruEntry) {
        let at = slot(entry.1);
        if self.links.len() <= at {
            self.links.resize(at + 1, None);
        }
        let ends = self.ends.entry(group).or_insert(Ends {
            head: NIL,
            tail: NIL,
            len: 0,
        });
        // The last entry that sorts before `entry` (NIL: it goes first).
        let mut before = ends.tail;
        while before != NIL {
            let link = self.links[before as usize].as_ref().expect("a linked slot");
            if link.entry < entry {
                break;
            }
            before = link.prev;
        }
        let after = if before == NIL {
            ends.head
        } else {
            self.links[before as usize].as_ref().map_or(NIL, |l| l.next)
        };
        self.links[at] = Some(Link {
            prev: before,
            next: after,
            entry,
        });
        let at = at as u32;
        match self.links.get_mut(before as usize).and_then(Option::as_mut) {
            Some(l) => l.next = at,
            None => ends.head = at,
        }
        match self.links.get_mut(after as usize).and_then(Option::as_mut) {
            Some(l) => l.prev = at,
            None => ends.tail = at,
        }
        ends.len += 1;
    }

    /// Takes `entry` out of `group`'s list; nothing if it is not there.
    pub(super) fn remove(&mut self, group: G, entry: LruEntry) {
        let at = slot(entry.1);
        let Some(link) = self.links.get(at).copied().flatten() else {
            return;
        };
        if link.entry != entry {
            return;
        }
        let Some(ends) = self.ends.get_mut(&group) else {
            return;
        };
        self.links[at] = None;
        match self
            .links
            .get_mut(link.prev as usize)
            .and_then(Option::as_mut)
        {
            Some(l) => l.next = link.next,
            None => ends.head = link.next,
        }
        match self
            .links
            .get_mut(link.next as usize)
            .and_then(Option::as_mut)
        {
            Some(l) => l.prev = link.prev,
            None => ends.tail = link.prev,
        }
        ends.len -= 1;
        if ends.len == 0 {
            self.ends.remove(&group);
        }
    }

    /// `group`'s entries, least recently used first.
    pub(super) fn iter(&self, group: G) -> impl Iterator<Item = LruEntry> + '_ {
        let mut at = self.ends.get(&group).map_or(NIL, |e| e.head);
        std::iter::from_fn(move || {
            let link = self.links.get(at as usize).copied().flatten()?;
            at = link.next;
            Some(link.entry)
        })
    }

    /// How many entries `group` has.
    pub(super) fn len(&self, group: G) -> usize {
        self.ends.get(&group).map_or(0, |e| e.len)
    }

    /// `group`'s most recently used entry.
    pub(super) fn last(&self, group: G) -> Option<LruEntry> {
        let tail = self.ends.get(&group)?.tail;
        self.links
            .get(tail as usize)
            .copied()
            .flatten()
            .map(|l| l.entry)
    }
}

/// Two indexes are equal when they hold the same groups with the same entries in the same
/// order (how the slots are linked is not compared).
impl<G: Hash + Eq + Copy> PartialEq for LruLists<G> {
    fn eq(&self, other: &Self) -> bool {
        self.ends.len() == other.ends.len()
            && self
                .ends
                .keys()
                .all(|&g| other.ends.contains_key(&g) && self.iter(g).eq(other.iter(g)))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::store::table::Key;

    fn keys(n: u32) -> Vec<ContainerKey> {
        (0..n).map(Key::for_test).collect()
    }

    #[test]
    fn random_inserts_and_removals_keep_the_order_of_a_sorted_set() {
        let keys = keys(40);
        let mut lists: LruLists<u8> = LruLists::default();
        let mut sets: [BTreeSet<LruEntry>; 3] = Default::default();
        // Where each key is filed now, if anywhere: (group, entry).
        let mut filed: Vec<Option<(u8, LruEntry)>> = vec![None; keys.len()];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut now = 0;
        for _ in 0..20_000 {
            let i = next(keys.len() as u64) as usize;
            match filed[i] {
                Some((g, e)) => {
                    lists.remove(g, e);
                    sets[g as usize].remove(&e);
                    filed[i] = None;
                }
                None => {
                    now += next(3);
                    // Mostly now (the tail), sometimes an older time (a walk).
                    let t = if next(5) == 0 {
                        now - now.min(next(20))
                    } else {
                        now
                    };
                    let g = next(3) as u8;
                    let e = (t, keys[i]);
                    lists.insert(g, e);
                    sets[g as usize].insert(e);
                    filed[i] = Some((g, e));
                }
            }
            for g in 0..3u8 {
                let set = &sets[g as usize];
                assert_eq!(lists.len(g), set.len());
                assert_eq!(lists.last(g), set.last().copied());
                assert!(lists.iter(g).eq(set.iter().copied()));
            }
        }
        // A removal of an entry not filed (or filed with another time) changes nothing.
        let before = lists.clone();
        lists.remove(0, (u64::MAX, keys[0]));
        assert!(lists == before);
    }
}
