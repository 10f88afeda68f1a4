//! A queue's waiting list of one kind of work ([`WaitingList`]): queued interactions in service
//! order (smallest [`WaitKey`] first).
//!
//! An agent freeing up walks the heads of the waiting lists of every queue it serves (5 queues
//! × 3 kinds is common), and the interaction it takes leaves every list it is in. Both are what
//! a sorted deque in one contiguous buffer does cheaply: a walk is a slice iteration instead of
//! a B-tree descent and pointer chase per list, and taking an entry near the head — the usual
//! case — shifts only the few entries before it. A new interaction sorts after every waiting one
//! of its priority, so an enqueue is usually an append. The price is a shift of the entries on
//! the shorter side when an entry in the middle of a long list goes (an abandon, a priority
//! raise): a memory move, not a rebalancing, for the hundreds to few thousands a queue holds.

use std::collections::VecDeque;

use crate::queue::WaitKey;

/// How many keys at the head [`WaitingList::remove`] compares before it searches.
const HEAD_PROBE: usize = 4;

/// Queued interactions of one kind in one queue: sorted, unique keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct WaitingList(VecDeque<WaitKey>);

impl WaitingList {
    /// Adds `key` at its place (nothing if it is already there).
    pub(crate) fn insert(&mut self, key: WaitKey) {
        let list = &mut self.0;
        match list.back() {
            Some(back) if *back >= key => {
                let at = list.partition_point(|k| *k < key);
                if list.get(at) != Some(&key) {
                    list.insert(at, key);
                }
            }
            _ => list.push_back(key),
        }
    }

    /// Takes `key` out (nothing if it is not there). The key taken is usually among the first
    /// few (an agent takes the first one it meets), so those are looked at before searching.
    pub(crate) fn remove(&mut self, key: &WaitKey) {
        // An interaction has one key, so its id tells its entry.
        let near_head =
            (self.0.iter().take(HEAD_PROBE)).position(|k| k.interaction == key.interaction);
        match near_head.or_else(|| self.0.binary_search(key).ok()) {
            Some(0) => {
                self.0.pop_front();
            }
            Some(at) => {
                self.0.remove(at);
            }
            None => {}
        }
    }

    /// Number of keys that are served before `key`.
    pub(crate) fn ahead_of(&self, key: &WaitKey) -> usize {
        self.0.partition_point(|k| k < key)
    }

    /// The keys in service order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &WaitKey> + '_ {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::InteractionId;

    fn served(list: &WaitingList) -> Vec<u64> {
        list.iter().map(|k| k.interaction.0).collect()
    }

    #[test]
    fn keeps_service_order_whatever_the_insert_order() {
        let mut list = WaitingList::default();
        let keys = [
            WaitKey::new(0, 1, InteractionId(10)),
            WaitKey::new(5, 9, InteractionId(11)),
            WaitKey::new(0, 0, InteractionId(12)),
            WaitKey::new(0, 2, InteractionId(13)),
        ];
        for key in keys {
            list.insert(key);
        }
        list.insert(keys[0]);
        assert_eq!(served(&list), vec![11, 12, 10, 13]);
        assert_eq!(list.ahead_of(&keys[0]), 2);
        list.remove(&keys[2]);
        list.remove(&keys[2]);
        assert_eq!(served(&list), vec![11, 10, 13]);
        assert_eq!(list.ahead_of(&keys[0]), 1);
    }
}
