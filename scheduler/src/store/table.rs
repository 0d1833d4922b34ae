//! A slab of rows addressed by small typed keys (index + generation).
//!
//! Hot paths follow keys instead of hashing string ids again; the generation makes a key of a
//! removed row miss instead of silently reaching whatever row reused its slot.

use std::fmt;
use std::marker::PhantomData;

/// The key of one row of a [`Table<T>`].
pub struct Key<T> {
    index: u32,
    generation: u32,
    _row: PhantomData<fn() -> T>,
}

impl<T> Key<T> {
    /// The slot index (stable while the row lives; reused afterwards).
    pub fn index(self) -> u32 {
        self.index
    }

    /// A key of slot `index`, first generation, made without a table (unit tests only).
    #[cfg(test)]
    pub(crate) fn for_test(index: u32) -> Key<T> {
        Key {
            index,
            generation: 0,
            _row: PhantomData,
        }
    }
}

impl<T> Clone for Key<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Key<T> {}
impl<T> PartialEq for Key<T> {
    fn eq(&self, other: &Self) -> bool {
        self.index == other.index && self.generation == other.generation
    }
}
impl<T> Eq for Key<T> {}
/// Keys order by slot index, then generation: the order the table iterates its rows in
/// (the tie-break of the store's LRU indexes).
impl<T> PartialOrd for Key<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Key<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.index, self.generation).cmp(&(other.index, other.generation))
    }
}
/// One word hashed, not two: keys are the tables' hottest hash keys.
impl<T> std::hash::Hash for Key<T> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(u64::from(self.index) << 32 | u64::from(self.generation));
    }
}
impl<T> fmt::Debug for Key<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}v{}", self.index, self.generation)
    }
}

struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

/// Rows of `T` with O(1) insert, lookup and remove by [`Key`].
pub struct Table<T> {
    slots: Vec<Slot<T>>,
    vacant: Vec<u32>,
    len: usize,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table {
            slots: Vec::new(),
            vacant: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Table<T> {
    /// Stores a row and returns its key.
    pub fn insert(&mut self, value: T) -> Key<T> {
        self.len += 1;
        if let Some(index) = self.vacant.pop() {
            let slot = &mut self.slots[index as usize];
            slot.value = Some(value);
            return Key {
                index,
                generation: slot.generation,
                _row: PhantomData,
            };
        }
        let index = u32::try_from(self.slots.len()).expect("more than 4 billion rows");
        self.slots.push(Slot {
            generation: 0,
            value: Some(value),
        });
        Key {
            index,
            generation: 0,
            _row: PhantomData,
        }
    }

    /// The row of `key`, if it still exists.
    pub fn get(&self, key: Key<T>) -> Option<&T> {
        let slot = self.slots.get(key.index as usize)?;
        if slot.generation != key.generation {
            return None;
        }
        slot.value.as_ref()
    }

    /// The row of `key`, mutably, if it still exists.
    pub fn get_mut(&mut self, key: Key<T>) -> Option<&mut T> {
        let slot = self.slots.get_mut(key.index as usize)?;
        if slot.generation != key.generation {
            return None;
        }
        slot.value.as_mut()
    }

    /// Removes and returns the row of `key`, if it still exists.
    pub fn remove(&mut self, key: Key<T>) -> Option<T> {
        let slot = self.slots.get_mut(key.index as usize)?;
        if slot.generation != key.generation {
            return None;
        }
        let value = slot.value.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.vacant.push(key.index);
        self.len -= 1;
        Some(value)
    }

    /// Rows stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no row is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every row with its key, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (Key<T>, &T)> {
        self.slots.iter().enumerate().filter_map(|(i, slot)| {
            slot.value.as_ref().map(|v| {
                (
                    Key {
                        index: i as u32,
                        generation: slot.generation,
                        _row: PhantomData,
                    },
                    v,
                )
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_keys_miss_after_slot_reuse() {
        let mut t: Table<&str> = Table::default();
        let a = t.insert("a");
        let b = t.insert("b");
        assert_eq!(t.remove(a), Some("a"));
        let c = t.insert("c");
        assert_eq!(c.index(), a.index());
        assert_eq!(t.get(a), None);
        assert_eq!(t.remove(a), None);
        assert_eq!(t.get(c), Some(&"c"));
        assert_eq!(t.get(b), Some(&"b"));
        assert_eq!(t.len(), 2);
        let rows: Vec<_> = t.iter().map(|(_, v)| *v).collect();
        assert_eq!(rows, vec!["c", "b"]);
    }
}
