//! A queue's index of available agents ([`IdleIndex`]), in the order its strategy offers them.
//!
//! Agents leave the index lazily: when an agent becomes unavailable (reserved, busy, not ready)
//! its entries stay where they are and turn stale — an entry counts only while the listing that
//! made it is still its agent's current one, which a dense table in the engine tells without
//! touching the agent. Routing drops stale entries as its walks meet them. That way reserving an
//! agent touches no index at all, instead of one per queue it serves.
//!
//! A relisted agent (new rank) gets a new entry; its old one is stale too. Stale entries are
//! removed when a walk meets them or overwritten by a new entry that sorts next to them, and an
//! index is compacted when it grows past twice the queue's membership, so it never holds more
//! than that.
//!
//! One shape for every strategy: a deque sorted by [`RankKey`]. A queue's index holds a few
//! hundred entries at most (its members, twice over with stale ones), so a binary search over one
//! contiguous buffer and a short shift beat a B-tree's pointer chase and node allocations. Under
//! longest-idle and ring-all the keys only grow, so a newly listed agent goes to the back (an
//! append); the agent taken is usually near the front, where a deque shifts little.

use std::collections::VecDeque;

use crate::ids::AgentId;
use crate::strategy::{RankKey, Strategy};

/// Available agents of one queue, in offer order: sorted, unique keys.
#[derive(Clone, Debug, Default)]
pub(crate) struct IdleIndex(VecDeque<RankKey>);

impl IdleIndex {
    pub(crate) fn new(_strategy: Strategy) -> IdleIndex {
        IdleIndex::default()
    }

    pub(crate) fn insert(&mut self, key: RankKey) {
        let deque = &mut self.0;
        match deque.back() {
            Some(back) if *back >= key => {
                let at = deque.partition_point(|k| *k < key);
                if deque.get(at) != Some(&key) {
                    deque.insert(at, key);
                }
            }
            _ => deque.push_back(key),
        }
    }

    /// Inserts `key` like [`IdleIndex::insert`], but where a neighbour of its place is not
    /// `current` (a stale entry), overwrites that instead of shifting the entries after it: the
    /// order holds either way, and a stale entry is dropped for free.
    pub(crate) fn insert_over_stale(
        &mut self,
        key: RankKey,
        mut current: impl FnMut(&RankKey) -> bool,
    ) {
        let deque = &mut self.0;
        match deque.back() {
            Some(back) if *back >= key => {
                let at = deque.partition_point(|k| *k < key);
                if deque.get(at) == Some(&key) {
                    return;
                }
                if let Some(before) = at.checked_sub(1).and_then(|b| deque.get_mut(b)) {
                    if !current(before) {
                        *before = key;
                        return;
                    }
                }
                match deque.get_mut(at) {
                    Some(after) if !current(after) => *after = key,
                    _ => deque.insert(at, key),
                }
            }
            _ => deque.push_back(key),
        }
    }

    pub(crate) fn remove(&mut self, key: &RankKey) {
        if let Ok(at) = self.0.binary_search(key) {
            self.0.remove(at);
        }
    }

    #[cfg(test)]
    pub(crate) fn contains(&self, key: &RankKey) -> bool {
        self.0.binary_search(key).is_ok()
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = &RankKey> + '_ {
        self.0.iter()
    }

    /// Keeps only the entries for which `valid` holds.
    pub(crate) fn compact(&mut self, mut valid: impl FnMut(&RankKey) -> bool) {
        self.0.retain(|k| valid(k));
    }

    /// The first current entry (in `strategy` order) for which `eligible` holds; entries that
    /// are not `current` are dropped where the walk meets them, which spares a search for each.
    /// Round-robin starts after `cursor` and wraps around.
    pub(crate) fn select_pruning(
        &mut self,
        strategy: Strategy,
        cursor: Option<AgentId>,
        mut current: impl FnMut(&RankKey) -> bool,
        mut eligible: impl FnMut(&RankKey) -> bool,
    ) -> Option<RankKey> {
        let deque = &mut self.0;
        let split = match (strategy, cursor) {
            (Strategy::RoundRobin, Some(last)) => {
                let pivot = RankKey::round_robin_pivot(last);
                deque.partition_point(|k| *k <= pivot)
            }
            _ => 0,
        };
        // The walk: [split, len) then [0, split). The first part's pruning only moves entries at
        // or after `split`, so the second part's bounds still hold.
        let end = deque.len();
        if let Some(agent) = walk_pruning(deque, split, end, &mut current, &mut eligible) {
            return Some(agent);
        }
        walk_pruning(deque, 0, split, &mut current, &mut eligible)
    }

    /// The first entry (in `strategy` order) for which `eligible` holds, leaving the index as it
    /// is. Round-robin starts after `cursor` and wraps around.
    #[cfg(test)]
    pub(crate) fn select(
        &self,
        strategy: Strategy,
        cursor: Option<AgentId>,
        mut eligible: impl FnMut(&RankKey) -> bool,
    ) -> Option<AgentId> {
        let found = match (strategy, cursor) {
            (Strategy::RoundRobin, Some(last)) => {
                let pivot = RankKey::round_robin_pivot(last);
                let split = self.0.partition_point(|k| *k <= pivot);
                self.0
                    .range(split..)
                    .chain(self.0.range(..split))
                    .find(|key| eligible(key))
            }
            _ => self.0.iter().find(|key| eligible(key)),
        };
        found.map(|key| key.agent)
    }
}

/// Walks `deque[start..end)` for the first current entry for which `eligible` holds, dropping the
/// stale entries it passes: once one was passed, the current entries after it slide down over
/// the gap as the walk goes, and the gap left behind is closed with one shift when the walk stops
/// (instead of one per stale entry).
fn walk_pruning(
    deque: &mut VecDeque<RankKey>,
    start: usize,
    end: usize,
    current: &mut impl FnMut(&RankKey) -> bool,
    eligible: &mut impl FnMut(&RankKey) -> bool,
) -> Option<RankKey> {
    let mut stale = 0;
    let mut at = start;
    let mut found = None;
    while at < end {
        let key = deque[at];
        if !current(&key) {
            stale += 1;
        } else if eligible(&key) {
            found = Some(key);
            break;
        } else if stale > 0 {
            deque[at - stale] = key;
        }
        at += 1;
    }
    if stale > 0 {
        deque.drain(at - stale..at);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::RankInputs;

    fn key(strategy: Strategy, agent: u64, activity: u64) -> RankKey {
        let inputs = RankInputs {
            last_activity: activity,
            occupancy: 0,
        };
        strategy.rank_key(crate::strategy::tests::entrant(agent), inputs, || 0)
    }

    fn agents(index: &IdleIndex) -> Vec<u64> {
        index.iter().map(|k| k.agent.0).collect()
    }

    #[test]
    fn appended_index_stays_sorted_and_unique() {
        let s = Strategy::LongestIdle;
        let mut index = IdleIndex::new(s);
        for (agent, activity) in [(1, 5), (2, 9), (3, 7), (2, 9)] {
            index.insert(key(s, agent, activity));
        }
        assert_eq!(agents(&index), vec![1, 3, 2]);
        index.remove(&key(s, 3, 7));
        assert_eq!(agents(&index), vec![1, 2]);
        index.compact(|k| k.agent != AgentId(1));
        assert_eq!(agents(&index), vec![2]);
    }

    #[test]
    fn round_robin_continues_after_cursor_and_wraps() {
        let rr = Strategy::RoundRobin;
        let mut index = IdleIndex::new(rr);
        for agent in [3, 1, 2] {
            index.insert(key(rr, agent, agent));
        }
        assert_eq!(index.select(rr, None, |_| true), Some(AgentId(1)));
        assert_eq!(
            index.select(rr, Some(AgentId(1)), |_| true),
            Some(AgentId(2))
        );
        assert_eq!(
            index.select(rr, Some(AgentId(3)), |_| true),
            Some(AgentId(1))
        );
        assert_eq!(
            index.select(rr, Some(AgentId(1)), |k| k.agent != AgentId(2)),
            Some(AgentId(3))
        );
        assert_eq!(
            index.select(rr, Some(AgentId(2)), |k| k.agent == AgentId(2)),
            Some(AgentId(2))
        );
        assert_eq!(index.select(rr, Some(AgentId(2)), |_| false), None);
    }
}
