//! Agents: their configuration ([`AgentConfig`]), the work they hold, and the public view of
//! both ([`AgentView`]).
//!
//! An agent holds [`Slot`]s: one per interaction it was offered, is connected to, or is wrapping
//! up. The slots are its load; with capacity, blending and presence they decide which kinds of work
//! it can take now ([`Agent::free_kinds`]). While it can take any, the engine lists it in the idle
//! index of every queue it serves, and remembers the keys of its current listing
//! (`Agent::listed_keys`) so that it can remove them exactly when its queues change or it goes.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::capacity::{self, Blending, Capacity, KindSet, Load, WorkKind};
use crate::ids::{AgentId, InteractionId, QueueId};
use crate::presence::{AgentStatus, Holding, Presence};
use crate::skill::{AgentSkill, SkillSet};
use crate::strategy::{RankInputs, RankKey};
use crate::timer::TimerId;

/// An agent's routing configuration; upserted live.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct AgentConfig {
    /// The agent.
    pub id: AgentId,
    /// Skills and languages with levels.
    #[serde(default)]
    pub skills: Vec<AgentSkill>,
    /// Queues the agent serves.
    #[serde(default)]
    pub queues: Vec<QueueId>,
    /// Own capacity; the engine default if `None`.
    #[serde(default)]
    pub capacity: Option<Capacity>,
    /// Own blending rule; the engine default if `None`.
    #[serde(default)]
    pub blending: Option<Blending>,
}

impl AgentConfig {
    /// An agent without skills or queues, with the engine's default capacity and blending.
    pub fn new(id: AgentId) -> AgentConfig {
        AgentConfig {
            id,
            skills: Vec::new(),
            queues: Vec::new(),
            capacity: None,
            blending: None,
        }
    }
}

/// Where one piece of an agent's work stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkState {
    /// Offered, not yet accepted.
    Offered,
    /// Connected.
    Connected,
    /// Ended (or transferred away), in after-work.
    WrapUp,
}

/// One piece of an agent's work, as seen from outside.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct WorkItem {
    /// The interaction.
    pub interaction: InteractionId,
    /// Its kind.
    pub kind: WorkKind,
    /// Where it stands.
    pub state: WorkState,
}

/// An agent as seen from outside ([`Engine::agent`](crate::Engine::agent)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct AgentView {
    /// The agent.
    pub id: AgentId,
    /// The status it chose.
    pub status: AgentStatus,
    /// Its presence.
    pub presence: Presence,
    /// What it holds, in the order it got it.
    pub work: Vec<WorkItem>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SlotState {
    Offered,
    Connected {
        since: Instant,
        queue: QueueId,
    },
    WrapUp {
        since: Instant,
        queue: QueueId,
        timer: Option<TimerId>,
    },
}

/// One interaction an agent holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) interaction: InteractionId,
    pub(crate) kind: WorkKind,
    pub(crate) state: SlotState,
}

#[derive(Clone, Debug)]
pub(crate) struct Agent {
    pub(crate) id: AgentId,
    /// Its row in the engine's listing table.
    pub(crate) slot: u32,
    pub(crate) skills: SkillSet,
    /// Served queues, sorted, unique.
    pub(crate) queues: Vec<QueueId>,
    /// Rows (in the engine's queue table) of those of `queues` that exist, so that listing the
    /// agent and its looking for work reach them without hashing. The engine refreshes them
    /// when the agent's queues change or one of them is created or removed. Ordered by queue
    /// priority, highest first: the agent looking for work then usually finds the best
    /// waiting interaction in the first lists it walks, and every later list stops at its
    /// head. (Only the cost depends on that order, not the choice, so a queue whose priority
    /// changes later does not reorder its members.)
    pub(crate) served: Vec<u32>,
    pub(crate) capacity: Capacity,
    pub(crate) blending: Blending,
    pub(crate) status: AgentStatus,
    /// The presence last reported.
    pub(crate) presence: Presence,
    pub(crate) slots: Vec<Slot>,
    pub(crate) load: Load,
    /// Engine activity clock at the last routing activity (longest-idle ranks by it).
    pub(crate) last_activity: u64,
    /// What its idle-index keys were computed from, while it is listed.
    pub(crate) listed: Option<RankInputs>,
    /// Its key in the idle index of each queue of its last listing. While `listed` is `None`
    /// these entries are stale (some may already be gone); a new listing forgets them.
    pub(crate) listed_keys: Vec<(QueueId, RankKey)>,
}

impl Agent {
    pub(crate) fn new(
        id: AgentId,
        slot: u32,
        skills: SkillSet,
        queues: Vec<QueueId>,
        capacity: Capacity,
        blending: Blending,
    ) -> Agent {
        Agent {
            id,
            slot,
            skills,
            queues,
            served: Vec::new(),
            capacity,
            blending,
            status: AgentStatus::Offline,
            presence: Presence::Offline,
            slots: Vec::new(),
            load: Load::default(),
            last_activity: 0,
            listed: None,
            listed_keys: Vec::new(),
        }
    }

    /// The kinds this agent may be offered one more of right now (none unless ready inbound).
    pub(crate) fn free_kinds(&self) -> KindSet {
        if !self.status.takes_inbound() {
            return KindSet::default();
        }
        self.room()
    }

    /// The kinds its capacity has room for one more of, whatever its status.
    pub(crate) fn room(&self) -> KindSet {
        capacity::free_kinds(&self.capacity, self.blending, &self.load)
    }

    /// How the agent should be listed in the idle indexes now: not at all when it can take no
    /// more work, else ranked by these inputs.
    pub(crate) fn wanted_listing(&self) -> Option<RankInputs> {
        (!self.free_kinds().is_empty()).then(|| RankInputs {
            last_activity: self.last_activity,
            occupancy: capacity::occupancy_permille(&self.capacity, &self.load),
        })
    }

    pub(crate) fn holds(&self, interaction: InteractionId) -> bool {
        self.slots.iter().any(|s| s.interaction == interaction)
    }

    pub(crate) fn slot(&self, interaction: InteractionId) -> Option<&Slot> {
        self.slots.iter().find(|s| s.interaction == interaction)
    }

    pub(crate) fn slot_mut(&mut self, interaction: InteractionId) -> Option<&mut Slot> {
        self.slots.iter_mut().find(|s| s.interaction == interaction)
    }

    pub(crate) fn add_slot(&mut self, interaction: InteractionId, kind: WorkKind) {
        self.slots.push(Slot {
            interaction,
            kind,
            state: SlotState::Offered,
        });
        self.load.add(kind);
    }

    pub(crate) fn take_slot(&mut self, interaction: InteractionId) -> Option<Slot> {
        let at = self
            .slots
            .iter()
            .position(|s| s.interaction == interaction)?;
        let slot = self.slots.remove(at);
        self.load.remove(slot.kind);
        Some(slot)
    }

    /// Whether it holds connected or wrap-up work (which going offline would strand).
    pub(crate) fn has_work(&self) -> bool {
        self.slots
            .iter()
            .any(|s| !matches!(s.state, SlotState::Offered))
    }

    pub(crate) fn offered(&self) -> Vec<InteractionId> {
        self.slots
            .iter()
            .filter(|s| matches!(s.state, SlotState::Offered))
            .map(|s| s.interaction)
            .collect()
    }

    pub(crate) fn current_presence(&self) -> Presence {
        let mut holding = Holding::default();
        for slot in &self.slots {
            match slot.state {
                SlotState::Offered => holding.offered = true,
                SlotState::Connected { .. } => holding.connected = true,
                SlotState::WrapUp { .. } => holding.wrap_up = true,
            }
        }
        Presence::derive(&self.status, holding)
    }

    pub(crate) fn view(&self) -> AgentView {
        AgentView {
            id: self.id,
            status: self.status.clone(),
            presence: self.presence.clone(),
            work: self
                .slots
                .iter()
                .map(|s| WorkItem {
                    interaction: s.interaction,
                    kind: s.kind,
                    state: match s.state {
                        SlotState::Offered => WorkState::Offered,
                        SlotState::Connected { .. } => WorkState::Connected,
                        SlotState::WrapUp { .. } => WorkState::WrapUp,
                    },
                })
                .collect(),
        }
    }
}
