//! Distribution strategies: in which order a queue offers work to its available agents.
//!
//! Each queue keeps its available agents in an index ordered by [`RankKey`]
//! ([`IdleIndex`](crate::idle::IdleIndex)); the strategy decides the key, so picking an agent is
//! walking the index from the front until one meets the interaction's needs. Ties are always broken by
//! agent id, never by hash order, so the same state gives the same choice.
//!
//! - longest-idle: least recent routing activity first (became ready, was offered something, or
//!   finished a wrap-up);
//! - least-occupied: lowest share of capacity in use first, then longest idle;
//! - best skill: highest sum of levels in the queue's required skills first, then longest idle;
//! - round-robin: agent ids in a circle, starting after the agent chosen last in this queue;
//! - ring-all: every eligible agent at once (the engine does that); the index is longest-idle.

use serde::{Deserialize, Serialize};

use crate::ids::AgentId;

/// How a queue chooses among eligible agents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The agent idle the longest gets it.
    #[default]
    LongestIdle,
    /// The agent using the smallest share of its capacity gets it (useful for chats).
    LeastOccupied,
    /// The agent with the highest levels in the queue's required skills gets it.
    BestSkill,
    /// Agents take turns in id order.
    RoundRobin,
    /// Every eligible agent is offered it at once; the first to accept wins, the other offers
    /// are revoked.
    RingAll,
}

/// What a strategy needs to know about an agent to rank it, captured when it is listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RankInputs {
    /// Engine activity clock at the agent's last routing activity (lower = idle longer).
    pub(crate) last_activity: u64,
    /// Share of capacity in use, in thousandths.
    pub(crate) occupancy: u64,
}

/// Who an idle-index entry stands for, and which listing of that agent made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entrant {
    pub(crate) agent: AgentId,
    /// The agent's skill summary (see `skill::summary_bit`).
    pub(crate) skills: u64,
    /// The agent's row in the engine's listing table.
    pub(crate) slot: u32,
    /// Engine-unique id of the listing that made the entry; the entry is current while the
    /// agent's row still holds it.
    pub(crate) listing: u64,
}

/// An available agent's place in a queue's index; the smallest key is offered first.
///
/// Besides the rank it carries what a walk needs to skip an entry without looking the agent up:
/// whether the entry is still current (slot and listing) and the agent's skill summary. Those
/// fields come after the agent id, so they never decide the order (agent ids are unique).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct RankKey {
    primary: u64,
    secondary: u64,
    pub(crate) agent: AgentId,
    pub(crate) skills: u64,
    pub(crate) slot: u32,
    pub(crate) listing: u64,
}

impl Strategy {
    /// The key of `agent` in a queue with this strategy; `skill_score` is the agent's level sum in
    /// the queue's required skills (only best-skill asks for it).
    pub(crate) fn rank_key(
        self,
        entrant: Entrant,
        inputs: RankInputs,
        skill_score: impl FnOnce() -> u64,
    ) -> RankKey {
        let (primary, secondary) = match self {
            Strategy::LongestIdle | Strategy::RingAll => (inputs.last_activity, 0),
            Strategy::LeastOccupied => (inputs.occupancy, inputs.last_activity),
            Strategy::BestSkill => (u64::MAX - skill_score(), inputs.last_activity),
            Strategy::RoundRobin => (0, 0),
        };
        RankKey {
            primary,
            secondary,
            agent: entrant.agent,
            skills: entrant.skills,
            slot: entrant.slot,
            listing: entrant.listing,
        }
    }
}

impl RankKey {
    /// Under round-robin keys sort by agent id: every key of `agent` sorts at or before this.
    pub(crate) fn round_robin_pivot(agent: AgentId) -> RankKey {
        RankKey {
            primary: 0,
            secondary: 0,
            agent,
            skills: u64::MAX,
            slot: u32::MAX,
            listing: u64::MAX,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn inputs(last_activity: u64, occupancy: u64) -> RankInputs {
        RankInputs {
            last_activity,
            occupancy,
        }
    }

    pub(crate) fn entrant(agent: u64) -> Entrant {
        Entrant {
            agent: AgentId(agent),
            skills: 0,
            slot: 0,
            listing: 0,
        }
    }

    fn index(strategy: Strategy, agents: &[(u64, RankInputs, u64)]) -> BTreeSet<RankKey> {
        agents
            .iter()
            .map(|&(id, inp, score)| strategy.rank_key(entrant(id), inp, || score))
            .collect()
    }

    fn order(set: &BTreeSet<RankKey>) -> Vec<u64> {
        set.iter().map(|k| k.agent.0).collect()
    }

    #[test]
    fn longest_idle_orders_by_activity_then_id() {
        let set = index(
            Strategy::LongestIdle,
            &[
                (1, inputs(9, 0), 0),
                (2, inputs(3, 0), 0),
                (3, inputs(3, 0), 0),
            ],
        );
        assert_eq!(order(&set), vec![2, 3, 1]);
    }

    #[test]
    fn least_occupied_then_longest_idle() {
        let set = index(
            Strategy::LeastOccupied,
            &[
                (1, inputs(1, 500), 0),
                (2, inputs(7, 0), 0),
                (3, inputs(5, 0), 0),
            ],
        );
        assert_eq!(order(&set), vec![3, 2, 1]);
    }

    #[test]
    fn best_skill_highest_score_first() {
        let set = index(
            Strategy::BestSkill,
            &[
                (1, inputs(1, 0), 4),
                (2, inputs(2, 0), 9),
                (3, inputs(0, 0), 4),
            ],
        );
        assert_eq!(order(&set), vec![2, 3, 1]);
    }
}
