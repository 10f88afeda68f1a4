//! A queue's index of available agents ([`IdleIndex`]), in the order its strategy offers them.
//!
//! Agents leave the index lazily: when an agent becomes unavailable (reserved, busy, not ready)
//! its entries stay where they are and turn stale — an entry counts only while the listing that
//! made it is still its agent's current one, which a dense table in the engine tells without
//! touching the agent. Routing drops stale entries as its walks meet them. That way reserving an
//! agent touches no index at all, instead of one per queue it serves.
//!
//! A relisted agent (new rank) gets a new entry; its old one is stale too. Stale entries are
//! removed when a walk meets them, and an index is compacted when it grows past twice the queue's
//! membership, so it never holds more than that.
//!
//! Two shapes, chosen by strategy:
//! - longest-idle and ring-all rank by the engine's activity clock, which only grows, so a newly
//!   listed agent almost always goes to the back: an append to a sorted deque;
//! - the other strategies keep an ordered set.

use std::collections::{btree_set, vec_deque, BTreeSet, VecDeque};
use std::ops::Bound;

use crate::ids::AgentId;
use crate::strategy::{RankKey, Strategy};

/// Available agents of one queue, in offer order.
#[derive(Clone, Debug)]
pub(crate) enum IdleIndex {
    /// Sorted deque, appended to; for strategies whose keys only grow.
    Appended(VecDeque<RankKey>),
    /// Ordered set; for strategies whose keys move both ways.
    Ordered(BTreeSet<RankKey>),
}

/// Iterator over an [`IdleIndex`] in offer order.
pub(crate) enum Iter<'a> {
    Appended(vec_deque::Iter<'a, RankKey>),
    Ordered(btree_set::Iter<'a, RankKey>),
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a RankKey;

    fn next(&mut self) -> Option<&'a RankKey> {
        match self {
            Iter::Appended(iter) => iter.next(),
            Iter::Ordered(iter) => iter.next(),
        }
    }
}

impl IdleIndex {
    pub(crate) fn new(strategy: Strategy) -> IdleIndex {
        match strategy {
            Strategy::LongestIdle | Strategy::RingAll => IdleIndex::Appended(VecDeque::new()),
            Strategy::LeastOccupied | Strategy::BestSkill | Strategy::RoundRobin => {
                IdleIndex::Ordered(BTreeSet::new())
            }
        }
    }

    pub(crate) fn insert(&mut self, key: RankKey) {
        match self {
            IdleIndex::Appended(deque) => match deque.back() {
                Some(back) if *back >= key => {
                    let at = deque.partition_point(|k| *k < key);
                    if deque.get(at) != Some(&key) {
                        deque.insert(at, key);
                    }
                }
                _ => deque.push_back(key),
            },
            IdleIndex::Ordered(set) => {
                set.insert(key);
            }
        }
    }

    pub(crate) fn remove(&mut self, key: &RankKey) {
        match self {
            IdleIndex::Appended(deque) => {
                if let Ok(at) = deque.binary_search(key) {
                    deque.remove(at);
                }
            }
            IdleIndex::Ordered(set) => {
                set.remove(key);
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn contains(&self, key: &RankKey) -> bool {
        match self {
            IdleIndex::Appended(deque) => deque.binary_search(key).is_ok(),
            IdleIndex::Ordered(set) => set.contains(key),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            IdleIndex::Appended(deque) => deque.len(),
            IdleIndex::Ordered(set) => set.len(),
        }
    }

    pub(crate) fn iter(&self) -> Iter<'_> {
        match self {
            IdleIndex::Appended(deque) => Iter::Appended(deque.iter()),
            IdleIndex::Ordered(set) => Iter::Ordered(set.iter()),
        }
    }

    /// Keeps only the entries for which `valid` holds.
    pub(crate) fn compact(&mut self, mut valid: impl FnMut(&RankKey) -> bool) {
        match self {
            IdleIndex::Appended(deque) => deque.retain(|k| valid(k)),
            IdleIndex::Ordered(set) => set.retain(|k| valid(k)),
        }
    }

    /// The first entry (in `strategy` order) for which `eligible` holds. Round-robin starts
    /// after `cursor` and wraps around.
    pub(crate) fn select(
        &self,
        strategy: Strategy,
        cursor: Option<AgentId>,
        mut eligible: impl FnMut(&RankKey) -> bool,
    ) -> Option<AgentId> {
        let found = match (self, strategy, cursor) {
            (IdleIndex::Ordered(set), Strategy::RoundRobin, Some(last)) => {
                let pivot = RankKey::round_robin_pivot(last);
                set.range((Bound::Excluded(pivot), Bound::Unbounded))
                    .chain(set.range(..=pivot))
                    .find(|key| eligible(key))
            }
            _ => self.iter().find(|key| eligible(key)),
        };
        found.map(|key| key.agent)
    }
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
