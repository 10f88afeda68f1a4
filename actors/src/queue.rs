//! Queues: their configuration ([`QueueConfig`]) and the two ordered indexes routing runs on.
//!
//! Per queue and per [`WorkKind`] the engine keeps
//! - `waiting`: queued interactions ordered by [`WaitKey`] — effective priority (highest first),
//!   then enqueue order. Interactions that overflowed here from another queue are listed too,
//!   with the same key, so an agent compares all its queues' heads on one scale
//!   ([`WaitingList`]);
//! - `idle` (one per queue, all kinds): agents that serve the queue and could take one more
//!   interaction of some kind right now, ordered by the queue's [`Strategy`]
//!   ([`IdleIndex`]). The kind is checked while walking it; one index instead of one per kind
//!   makes listing an agent a third as costly, which is what an agent freeing up mostly pays.
//!
//! An arriving interaction walks `idle` of its queues; a freed agent walks the heads of `waiting`
//! of its queues. Neither looks at agents or queues it has nothing to do with.

use std::cmp::Reverse;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::capacity::WorkKind;
use crate::idle::IdleIndex;
use crate::ids::{AgentId, InteractionId, QueueId, SkillId};
use crate::skill::{effective_needs, Need, Needs, Relaxation, SkillRequirement};
use crate::strategy::Strategy;
use crate::waiting::WaitingList;

/// A service-level target such as "80 % answered within 20 s".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct ServiceLevel {
    /// Waiting longer than this breaches the target ([`Output::SlaBreached`](crate::Output)).
    pub target: Duration,
    /// Share of interactions meant to be answered within `target`, for reports (0–100).
    pub percent: u8,
}

/// What an escalation step does to an interaction that has waited long enough.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum EscalationAction {
    /// Lower every required skill level by `by` (never below 1; the language stays required).
    LowerSkillLevels {
        /// Levels to subtract.
        by: u8,
    },
    /// Require no skills any more except the interaction's language.
    DropSkills,
    /// Let the agents of these queues take the interaction too (they must still meet its needs).
    AddOverflowQueues {
        /// Overflow queues, tried after the interaction's own queue in this order.
        queues: Vec<QueueId>,
    },
    /// Raise the interaction's priority.
    RaisePriority {
        /// Added to its priority.
        by: i32,
    },
}

/// One escalation rule: after the interaction has waited `after`, do `action`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct EscalationStep {
    /// Waiting time (since enqueue) at which the step applies.
    pub after: Duration,
    /// What it does.
    pub action: EscalationAction,
}

/// A queue's configuration; upserted live.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct QueueConfig {
    /// The queue.
    pub id: QueueId,
    /// Higher is served first when an agent serves several queues.
    #[serde(default)]
    pub priority: i32,
    /// How an agent is chosen.
    #[serde(default)]
    pub strategy: Strategy,
    /// Skills every interaction of this queue needs.
    #[serde(default)]
    pub required_skills: Vec<SkillRequirement>,
    /// Service-level target, if any.
    #[serde(default)]
    pub sla: Option<ServiceLevel>,
    /// Escalation steps, in order of `after`.
    #[serde(default)]
    pub escalation: Vec<EscalationStep>,
    /// How long an agent has to accept an offer.
    pub offer_timeout: Duration,
    /// After-work time once an interaction ends (zero: the agent is free at once).
    pub wrap_up: Duration,
}

impl QueueConfig {
    /// A queue with priority 0, longest-idle, no requirements, no SLA, no escalation, a 20 s offer
    /// timeout and no wrap-up.
    pub fn new(id: QueueId) -> QueueConfig {
        QueueConfig {
            id,
            priority: 0,
            strategy: Strategy::LongestIdle,
            required_skills: Vec::new(),
            sla: None,
            escalation: Vec::new(),
            offer_timeout: Duration::from_secs(20),
            wrap_up: Duration::ZERO,
        }
    }

    /// Why this configuration makes no sense, if it does not.
    pub(crate) fn problem(&self) -> Option<&'static str> {
        if self.offer_timeout.is_zero() {
            return Some("offer timeout must be positive");
        }
        let mut skills: Vec<_> = self.required_skills.iter().map(|r| r.skill).collect();
        skills.sort_unstable();
        if skills.windows(2).any(|w| w[0] == w[1]) {
            return Some("a required skill is listed twice");
        }
        if self.sla.is_some_and(|sla| sla.percent > 100) {
            return Some("service-level percent must be within 0-100");
        }
        if self.escalation.windows(2).any(|w| w[0].after > w[1].after) {
            return Some("escalation steps must be in order of waiting time");
        }
        for step in &self.escalation {
            match &step.action {
                EscalationAction::LowerSkillLevels { by: 0 } => {
                    return Some("lowering skill levels by 0 does nothing")
                }
                EscalationAction::RaisePriority { by: 0 } => {
                    return Some("raising priority by 0 does nothing")
                }
                EscalationAction::AddOverflowQueues { queues } if queues.is_empty() => {
                    return Some("an overflow step needs at least one queue")
                }
                EscalationAction::AddOverflowQueues { queues } if queues.contains(&self.id) => {
                    return Some("a queue cannot overflow into itself")
                }
                _ => {}
            }
        }
        None
    }
}

/// A queued interaction's place in a waiting list; the smallest key is served first.
///
/// It also carries a copy of the interaction's needs — their summary, and the list itself when it
/// is short, as it usually is (a queue skill and a language) — after the interaction id, so that
/// it never decides the order. An agent walking the heads of its waiting lists then tells which
/// interactions it meets without looking them up. Needs change only while an interaction is out
/// of the waiting lists, so the copy stays exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct WaitKey {
    priority: Reverse<i64>,
    order: u64,
    pub(crate) interaction: InteractionId,
    /// The interaction's needs summary (see `skill::summary_bit`); 0 when not given.
    pub(crate) needs: u64,
    /// The interaction's needs when there are at most [`INLINE_NEEDS`]; `None` when there are
    /// more or they were not given (then they must be looked up).
    inline: Option<InlineNeeds>,
}

/// How many needs a [`WaitKey`] carries inline.
const INLINE_NEEDS: usize = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct InlineNeeds {
    len: u8,
    list: [Need; INLINE_NEEDS],
}

impl WaitKey {
    pub(crate) fn new(priority: i64, order: u64, interaction: InteractionId) -> WaitKey {
        WaitKey {
            priority: Reverse(priority),
            order,
            interaction,
            needs: 0,
            inline: None,
        }
    }

    /// The key with a copy of the interaction's needs.
    pub(crate) fn needing(self, needs: &Needs) -> WaitKey {
        let inline = (needs.list.len() <= INLINE_NEEDS).then(|| {
            let mut list = [Need {
                skill: SkillId(0),
                level: 0,
            }; INLINE_NEEDS];
            list[..needs.list.len()].copy_from_slice(&needs.list);
            InlineNeeds {
                len: u8::try_from(needs.list.len()).unwrap_or(u8::MAX),
                list,
            }
        });
        WaitKey {
            needs: needs.summary(),
            inline,
            ..self
        }
    }

    /// False if an agent whose skills have `summary` certainly cannot meet the interaction.
    pub(crate) fn may_be_met_by(&self, summary: u64) -> bool {
        summary & self.needs == self.needs
    }

    /// The interaction's needs, if the key carries them.
    pub(crate) fn inline_needs(&self) -> Option<&[Need]> {
        self.inline
            .as_ref()
            .map(|inline| &inline.list[..usize::from(inline.len)])
    }
}

/// A queue's runtime state.
#[derive(Clone, Debug)]
pub(crate) struct Queue {
    pub(crate) config: QueueConfig,
    /// The needs of its required skills alone (no own skills, language or relaxation), so that
    /// an arriving interaction that adds nothing but a language need not sort them again.
    base_needs: Needs,
    /// Available agents, in strategy order (with stale entries, see `idle.rs`).
    pub(crate) idle: IdleIndex,
    /// Queued interactions per kind (own and overflowed-in), in service order.
    pub(crate) waiting: [WaitingList; 3],
    /// Rows (in the engine's interaction table) of the live interactions whose queue this is:
    /// queued, offered, connected or in wrap-up. Unordered — each interaction knows its place
    /// (`Interaction::homed_at`), so it leaves with a swap — and the rare walks over it (queue
    /// reconfiguration, statistics) sort it or do not depend on its order.
    pub(crate) homed: Vec<u32>,
    /// Number of agents serving it (members of the engine's `members`), which bounds how many
    /// entries its idle index may hold.
    pub(crate) members: usize,
    /// The agent round-robin chose last.
    pub(crate) rr_cursor: Option<AgentId>,
    /// Moving average of handle time (connect to end of wrap-up), for wait estimates.
    pub(crate) handle_time: Duration,
}

impl Queue {
    pub(crate) fn new(config: QueueConfig, handle_time: Duration) -> Queue {
        let idle = IdleIndex::new(config.strategy);
        Queue {
            base_needs: base_needs(&config),
            config,
            idle,
            waiting: Default::default(),
            homed: Vec::new(),
            members: 0,
            rr_cursor: None,
            handle_time,
        }
    }

    /// Replaces the configuration; returns the old one.
    pub(crate) fn reconfigure(&mut self, config: QueueConfig) -> QueueConfig {
        self.base_needs = base_needs(&config);
        std::mem::replace(&mut self.config, config)
    }

    /// The effective needs of an interaction of this queue (see [`effective_needs`]).
    pub(crate) fn needs_of(
        &self,
        own_skills: &[SkillRequirement],
        language: Option<SkillId>,
        relaxation: Relaxation,
    ) -> Needs {
        if own_skills.is_empty() && relaxation == Relaxation::default() {
            return self.base_needs.with_language(language);
        }
        effective_needs(
            &self.config.required_skills,
            own_skills,
            language,
            relaxation,
        )
    }

    pub(crate) fn waiting(&self, kind: WorkKind) -> &WaitingList {
        &self.waiting[kind.index()]
    }

    pub(crate) fn waiting_mut(&mut self, kind: WorkKind) -> &mut WaitingList {
        &mut self.waiting[kind.index()]
    }

    /// Folds one handle time into the moving average (weight 1/8, like TCP's SRTT).
    pub(crate) fn record_handle_time(&mut self, sample: Duration) {
        let old = self.handle_time.as_nanos() as i128;
        let new = old + (sample.as_nanos() as i128 - old) / 8;
        self.handle_time = Duration::from_nanos(u64::try_from(new.max(0)).unwrap_or(u64::MAX));
    }
}

fn base_needs(config: &QueueConfig) -> Needs {
    effective_needs(&config.required_skills, &[], None, Relaxation::default())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::ids::SkillId;
    use crate::skill::SkillLevel;

    #[test]
    fn higher_priority_then_earlier_order_first() {
        let keys: BTreeSet<WaitKey> = [
            WaitKey::new(0, 1, InteractionId(10)),
            WaitKey::new(5, 9, InteractionId(11)),
            WaitKey::new(0, 0, InteractionId(12)),
        ]
        .into_iter()
        .collect();
        let served: Vec<u64> = keys.iter().map(|k| k.interaction.0).collect();
        assert_eq!(served, vec![11, 12, 10]);
    }

    #[test]
    fn nonsense_configs_are_named() {
        let ok = QueueConfig::new(QueueId(1));
        assert_eq!(ok.problem(), None);
        let zero = QueueConfig {
            offer_timeout: Duration::ZERO,
            ..ok.clone()
        };
        assert!(zero.problem().is_some());
        let req = SkillRequirement {
            skill: SkillId(1),
            level: SkillLevel::MIN,
        };
        let dup = QueueConfig {
            required_skills: vec![req, req],
            ..ok.clone()
        };
        assert!(dup.problem().is_some());
        let step = |secs, action| EscalationStep {
            after: Duration::from_secs(secs),
            action,
        };
        let unordered = QueueConfig {
            escalation: vec![
                step(60, EscalationAction::DropSkills),
                step(30, EscalationAction::DropSkills),
            ],
            ..ok.clone()
        };
        assert!(unordered.problem().is_some());
        let into_itself = QueueConfig {
            escalation: vec![step(
                60,
                EscalationAction::AddOverflowQueues {
                    queues: vec![QueueId(1)],
                },
            )],
            ..ok
        };
        assert!(into_itself.problem().is_some());
    }

    #[test]
    fn handle_time_moves_an_eighth_towards_each_sample() {
        let mut queue = Queue::new(QueueConfig::new(QueueId(1)), Duration::from_secs(80));
        queue.record_handle_time(Duration::from_secs(160));
        assert_eq!(queue.handle_time, Duration::from_secs(90));
        queue.record_handle_time(Duration::from_secs(10));
        assert_eq!(queue.handle_time, Duration::from_secs(80));
    }
}
