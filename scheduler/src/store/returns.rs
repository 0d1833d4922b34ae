//! A bounded memory of request ids and the containers they held: returned requests (to tell
//! "already returned" from "never leased") and leases reclaimed when they expired.
//!
//! Entries age out lazily: each new id gets the next number, an entry is remembered while
//! fewer than `capacity` ids were added after it, and the map is purged of aged entries only
//! when it holds twice the capacity. So remembering costs one hash insert (of a key just
//! used) instead of also hashing and removing the oldest id (a cold key in a big table, once
//! the hottest step of a return); memory stays within twice the bound.

use super::Map;
use crate::model::Text;

/// Bounded memory of returned request ids (oldest forgotten first).
#[derive(Debug)]
pub(super) struct RecentReturns {
    capacity: usize,
    /// Ids added so far (the number the next one gets).
    added: u64,
    /// Per id: its number and its container (entries with `number + capacity < added` are
    /// forgotten, whether purged yet or not).
    container_of: Map<Text, (u64, Text)>,
}

impl RecentReturns {
    pub(super) fn new(capacity: usize) -> Self {
        RecentReturns {
            capacity,
            added: 0,
            container_of: Map::with_capacity_and_hasher(capacity.min(1 << 16), Default::default()),
        }
    }

    fn live(&self, number: u64) -> bool {
        number + self.capacity as u64 >= self.added
    }

    pub(super) fn remember(&mut self, request_id: Text, container_id: Text) {
        if self.capacity == 0 {
            return;
        }
        let number = self.added;
        let capacity = self.capacity as u64;
        if self.container_of.len() >= 2 * self.capacity {
            // Purged before the lookup, so the id is hashed once: an aged entry of this id
            // goes too and comes back as new, which is what an aged entry becomes anyway.
            self.container_of.retain(|_, e| e.0 + capacity >= number);
        }
        use std::collections::hash_map::Entry;
        match self.container_of.entry(request_id) {
            // Still remembered: the container changes, the id keeps its age.
            Entry::Occupied(mut e) if e.get().0 + capacity >= number => {
                e.get_mut().1 = container_id
            }
            Entry::Occupied(mut e) => {
                *e.get_mut() = (number, container_id);
                self.added += 1;
            }
            Entry::Vacant(v) => {
                v.insert((number, container_id));
                self.added += 1;
            }
        }
    }

    pub(super) fn forget(&mut self, request_id: &str) {
        // Most of the time nothing is remembered (the memory of expired leases): no hash.
        if !self.container_of.is_empty() {
            self.container_of.remove(request_id);
        }
    }

    /// The container `request_id` held, while it is remembered.
    pub(super) fn container(&self, request_id: &str) -> Option<&Text> {
        self.container_of
            .get(request_id)
            .filter(|e| self.live(e.0))
            .map(|e| &e.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The old ring of ids, in full: what the lazy memory must answer exactly.
    struct Ring {
        capacity: usize,
        order: std::collections::VecDeque<String>,
        map: std::collections::HashMap<String, String>,
    }

    impl Ring {
        fn remember(&mut self, r: &str, c: &str) {
            if self.capacity == 0 {
                return;
            }
            if self.map.contains_key(r) {
                self.map.insert(r.into(), c.into());
                return;
            }
            if self.order.len() == self.capacity
                && let Some(old) = self.order.pop_front()
            {
                self.map.remove(&old);
            }
            self.map.insert(r.into(), c.into());
            self.order.push_back(r.into());
        }
    }

    #[test]
    fn remembers_exactly_the_last_ids_of_a_ring() {
        for capacity in [0, 1, 2, 5, 16] {
            let mut lazy = RecentReturns::new(capacity);
            let mut ring = Ring {
                capacity,
                order: Default::default(),
                map: Default::default(),
            };
            // Ids repeat (a few at once, some long after), as retries and reused ids do.
            let mut x = 7u64;
            for step in 0..2_000u64 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let id = format!("r{}", (x >> 33) % 40);
                let c = format!("c{step}");
                lazy.remember(id.as_str().into(), c.as_str().into());
                ring.remember(&id, &c);
                for k in 0..40 {
                    let id = format!("r{k}");
                    assert_eq!(
                        lazy.container(&id).map(|c| c.to_string()),
                        ring.map.get(&id).cloned(),
                        "capacity {capacity}, step {step}, {id}"
                    );
                }
                assert!(lazy.container_of.len() <= 2 * capacity.max(1));
            }
        }
    }
}
