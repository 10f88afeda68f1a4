//! The engine's dense tables of agents and interactions ([`Table`]): records in the rows of one
//! vector, found by id through a small index, or by row number straight from the indexes that
//! already hold it.
//!
//! Routing looks agents and interactions up several times per decision. In a hash map keyed by
//! id the records (200–340 bytes) would live in the map's buckets: every insert moves one into
//! the map, and every rehash — also the in-place ones that clear the tombstones removals leave —
//! moves them all again. Here the index only maps an id to a row (16-byte buckets), a record is
//! written into its row once and stays there until it is removed, and freed rows are reused
//! (last freed, first reused, so the same inputs give the same rows). A row number is therefore
//! a stable handle for as long as its record lives: an idle-index entry holds its agent's row
//! (`Agent::slot`), a queue holds the rows of the interactions homed in it, and both reach
//! their record without hashing.

use std::hash::Hash;

use rustc_hash::FxHashMap;

/// Records of type `V` by id `K`, in reusable rows.
#[derive(Clone, Debug)]
pub(crate) struct Table<K, V> {
    rows: Vec<Option<V>>,
    index: FxHashMap<K, u32>,
    /// Empty rows, the last freed at the end.
    free: Vec<u32>,
}

impl<K, V> Default for Table<K, V> {
    fn default() -> Self {
        Table {
            rows: Vec::new(),
            index: FxHashMap::default(),
            free: Vec::new(),
        }
    }
}

impl<K: Copy + Eq + Hash, V> Table<K, V> {
    /// Number of records.
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    /// Number of rows, used or not: every row number handed out is below it.
    pub(crate) fn rows(&self) -> usize {
        self.rows.len()
    }

    pub(crate) fn contains_key(&self, id: &K) -> bool {
        self.index.contains_key(id)
    }

    /// The row of `id`.
    pub(crate) fn slot(&self, id: &K) -> Option<u32> {
        self.index.get(id).copied()
    }

    pub(crate) fn get(&self, id: &K) -> Option<&V> {
        self.at(self.slot(id)?)
    }

    pub(crate) fn get_mut(&mut self, id: &K) -> Option<&mut V> {
        self.at_mut(self.slot(id)?)
    }

    /// The record in row `slot`, if the row is in use.
    pub(crate) fn at(&self, slot: u32) -> Option<&V> {
        self.rows.get(slot as usize)?.as_ref()
    }

    pub(crate) fn at_mut(&mut self, slot: u32) -> Option<&mut V> {
        self.rows.get_mut(slot as usize)?.as_mut()
    }

    /// Adds the record `make(row)` under `id`, which must be new; returns its row.
    pub(crate) fn insert_with(&mut self, id: K, make: impl FnOnce(u32) -> V) -> u32 {
        debug_assert!(!self.index.contains_key(&id), "inserting a known id");
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.rows.push(None);
                u32::try_from(self.rows.len() - 1).expect("fewer than 2^32 records per tenant")
            }
        };
        self.rows[slot as usize] = Some(make(slot));
        self.index.insert(id, slot);
        slot
    }

    /// Takes the record of `id` out; its row is reused by a later insert.
    pub(crate) fn remove(&mut self, id: &K) -> Option<V> {
        let slot = self.index.remove(id)?;
        self.free.push(slot);
        self.rows[slot as usize].take()
    }

    /// Every record, in row order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.rows.iter().flatten()
    }
}

#[cfg(test)]
impl<K: Copy + Eq + Hash, V> std::ops::Index<&K> for Table<K, V> {
    type Output = V;

    fn index(&self, id: &K) -> &V {
        self.get(id).expect("a known id")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_stable_and_reused_last_freed_first() {
        let mut table: Table<u64, &str> = Table::default();
        let a = table.insert_with(10, |_| "a");
        let b = table.insert_with(11, |_| "b");
        let c = table.insert_with(12, |_| "c");
        assert_eq!((a, b, c), (0, 1, 2));
        assert_eq!(table.remove(&11), Some("b"));
        assert_eq!(table.remove(&10), Some("a"));
        assert_eq!(table.remove(&10), None);
        assert_eq!(
            table.insert_with(13, |row| if row == 0 { "d" } else { "?" }),
            0
        );
        assert_eq!(table.insert_with(14, |_| "e"), 1);
        assert_eq!((table.get(&12), table.at(2)), (Some(&"c"), Some(&"c")));
        assert_eq!(table.values().copied().collect::<Vec<_>>(), ["d", "e", "c"]);
        assert_eq!(
            (table.len(), table.rows(), table.slot(&14)),
            (3, 3, Some(1))
        );
    }
}
