//! Interactions: what the caller enqueues ([`NewInteraction`]), where one stands
//! ([`InteractionState`]), and what escalation has done to it so far.
//!
//! A live interaction is exactly one of queued, offered, connected or wrap-up; once done or
//! abandoned the engine forgets it (the event log remembers). Its rank in waiting lists is fixed
//! by its enqueue `order` (kept across missed offers and restarts) and its effective priority.

use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::capacity::{Channel, WorkKind};
use crate::ids::{AgentId, InteractionId, QueueId, SkillId};
use crate::queue::WaitKey;
use crate::skill::{Needs, Relaxation, SkillRequirement};
use crate::timer::TimerId;

/// An interaction to route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct NewInteraction {
    /// Its id (assigned by the caller, unique among live interactions).
    pub id: InteractionId,
    /// The channel it came in on.
    pub channel: Channel,
    /// The queue classification chose.
    pub queue: QueueId,
    /// The customer's language; agents must have it (at any level).
    #[serde(default)]
    pub language: Option<SkillId>,
    /// Skills needed on top of the queue's.
    #[serde(default)]
    pub skills: Vec<SkillRequirement>,
    /// Added to the queue's priority (higher is served first).
    #[serde(default)]
    pub priority: i32,
    /// Set when re-queueing after a restart, from the event log.
    #[serde(default)]
    pub restored: Option<Restored>,
}

/// What a re-queued interaction had before a restart, so that it keeps its place.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct Restored {
    /// Its original enqueue order (from [`Output::Queued`](crate::Output::Queued)).
    pub order: u64,
    /// How long it had waited by the `now` of the enqueue input.
    pub waited: Duration,
    /// Escalation steps already applied (and logged) before the restart; re-applied silently.
    #[serde(default)]
    pub escalations_applied: usize,
    /// Whether its SLA breach was already logged.
    #[serde(default)]
    pub sla_breached: bool,
}

/// Work an agent held when its tenant's routing stopped: given back to it at the next start
/// ([`Input::Resume`](crate::Input::Resume)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct Held {
    /// The interaction (its `restored` keeps its enqueue order).
    pub interaction: NewInteraction,
    /// The agent connected to it.
    pub agent: AgentId,
    /// Whether it had ended and the agent was wrapping it up.
    #[serde(default)]
    pub wrap_up: bool,
}

/// Where a live interaction stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InteractionState {
    /// Waiting for an agent.
    Queued,
    /// Offered to one agent (several under ring-all), not yet accepted.
    Offered,
    /// Connected to an agent.
    Connected,
    /// Ended; its agent is in wrap-up.
    WrapUp,
}

impl fmt::Display for InteractionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InteractionState::Queued => "queued",
            InteractionState::Offered => "offered",
            InteractionState::Connected => "connected",
            InteractionState::WrapUp => "in wrap-up",
        })
    }
}

/// A live interaction as seen from outside ([`Engine::interaction`](crate::Engine::interaction)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct InteractionView {
    /// The interaction.
    pub id: InteractionId,
    /// Its channel.
    pub channel: Channel,
    /// Its queue.
    pub queue: QueueId,
    /// Where it stands.
    pub state: InteractionState,
    /// Agents it is offered to, connected to, or wrapped up by.
    pub agents: Vec<AgentId>,
    /// Its enqueue order.
    pub order: u64,
    /// Effective priority: queue + own + escalation.
    pub priority: i64,
    /// Overflow queues escalation added.
    pub overflow: Vec<QueueId>,
    /// Whether it breached its queue's SLA target.
    pub sla_breached: bool,
}

/// The agents an interaction is offered to: one, except under ring-all.
pub(crate) type OfferedTo = SmallVec<[AgentId; 1]>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    Queued,
    Offered {
        agents: OfferedTo,
        timer: Option<TimerId>,
        /// Offered straight to its one agent (a transfer or move to the agent), not routed: the
        /// agent need not serve its queue nor meet its needs.
        direct: bool,
    },
    Connected {
        agent: AgentId,
    },
    WrapUp {
        agent: AgentId,
    },
}

/// What escalation has applied so far (accumulated, reset by a transfer).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Escalation {
    /// Index of the next step of the queue's list to apply.
    pub(crate) next_step: usize,
    pub(crate) relaxation: Relaxation,
    /// Overflow queues, in the order they were added.
    pub(crate) overflow: Vec<QueueId>,
    pub(crate) raise: i64,
}

#[derive(Clone, Debug)]
pub(crate) struct Interaction {
    pub(crate) id: InteractionId,
    pub(crate) channel: Channel,
    pub(crate) kind: WorkKind,
    pub(crate) queue: QueueId,
    pub(crate) language: Option<SkillId>,
    pub(crate) skills: Vec<SkillRequirement>,
    pub(crate) priority: i32,
    pub(crate) order: u64,
    pub(crate) enqueued_at: Instant,
    pub(crate) escalation: Escalation,
    /// Effective requirements (queue + own, relaxed, + language), sorted by skill.
    pub(crate) needs: Needs,
    pub(crate) stage: Stage,
    /// Its key in the waiting lists, while it is in them (queued).
    pub(crate) wait_key: Option<WaitKey>,
    /// Next escalation step or SLA deadline, while queued or offered.
    pub(crate) wait_timer: Option<TimerId>,
    pub(crate) sla_breached: bool,
    /// The row of `queue` in the engine's queue table (its home).
    pub(crate) home: u32,
    /// Its place in the homed list of its queue (`Queue::homed`).
    pub(crate) homed_at: usize,
}

impl Interaction {
    pub(crate) fn state(&self) -> InteractionState {
        match self.stage {
            Stage::Queued => InteractionState::Queued,
            Stage::Offered { .. } => InteractionState::Offered,
            Stage::Connected { .. } => InteractionState::Connected,
            Stage::WrapUp { .. } => InteractionState::WrapUp,
        }
    }

    pub(crate) fn effective_priority(&self, queue_priority: i32) -> i64 {
        i64::from(queue_priority) + i64::from(self.priority) + self.escalation.raise
    }

    /// The queues whose agents may take it: its own, then overflow queues.
    pub(crate) fn visible_in(&self) -> impl Iterator<Item = QueueId> + '_ {
        std::iter::once(self.queue).chain(self.escalation.overflow.iter().copied())
    }

    pub(crate) fn agents(&self) -> Vec<AgentId> {
        match &self.stage {
            Stage::Queued => Vec::new(),
            Stage::Offered { agents, .. } => agents.to_vec(),
            Stage::Connected { agent } | Stage::WrapUp { agent } => vec![*agent],
        }
    }

    pub(crate) fn view(&self, queue_priority: i32) -> InteractionView {
        InteractionView {
            id: self.id,
            channel: self.channel,
            queue: self.queue,
            state: self.state(),
            agents: self.agents(),
            order: self.order,
            priority: self.effective_priority(queue_priority),
            overflow: self.escalation.overflow.clone(),
            sla_breached: self.sla_breached,
        }
    }
}
