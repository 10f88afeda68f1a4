//! The routing engine: one tenant's routing state and the single place its decisions are taken.
//!
//! [`Engine`] is a sans-IO state machine in the shape of quinn-proto: feed it an [`Input`] with
//! the current time ([`Engine::handle`]), drain the decisions as [`Output`]s
//! ([`Engine::poll_output`]), and when [`Engine::poll_timeout`] comes due call
//! [`Engine::handle_timeout`]. It does no I/O, spawns nothing and reads no clock, so the same
//! inputs at the same instants always give the same outputs.
//!
//! Reading order: this file (the API and the dispatch), then `routing.rs` (matching agents and
//! interactions, the indexes), `lifecycle.rs` (offer → connected → wrap-up → done, transfer,
//! abandon, presence), `moves.rs` (supervisors moving waiting work), `escalation.rs`
//! (waiting-time rules and SLA), `admin.rs` (live configuration) and `stats.rs` (queries). The
//! state lives in dense tables (`table.rs`) whose rows the indexes (`idle.rs`, `waiting.rs`)
//! and the records themselves use as handles.

use std::collections::{BTreeSet, VecDeque};
use std::time::Instant;

use rustc_hash::FxHashMap;

use crate::agent::{Agent, AgentView};
use crate::capacity::Channel;
use crate::config::EngineConfig;
use crate::error::Error;
use crate::ids::{AgentId, InteractionId, QueueId, SkillId};
use crate::input::Input;
use crate::interaction::{Interaction, InteractionView};
use crate::output::Output;
use crate::queue::Queue;
use crate::skill::{effective_needs, Relaxation};
use crate::table::Table;
use crate::timer::{Timer, Timers};

/// One tenant's routing engine.
///
/// Cost model: an interaction arriving walks the idle index of its queue (and overflow queues)
/// until the first agent that meets its needs; an agent freeing up walks the heads of the waiting
/// lists of the queues it serves until the first interaction it meets. Neither is proportional to
/// the number of agents × queues. Reserving an agent touches no index (its entries turn stale
/// and are dropped lazily, see `idle.rs`); listing it again costs one insert per queue it serves.
#[derive(Clone, Debug)]
pub struct Engine {
    pub(crate) config: EngineConfig,
    /// By row (`Agent::slot`), which idle-index entries hold.
    pub(crate) agents: Table<AgentId, Agent>,
    /// By row, which an interaction holds of its queue (`Interaction::home`) and an agent of
    /// the queues it serves (`Agent::served`).
    pub(crate) queues: Table<QueueId, Queue>,
    /// Agents serving each queue id, whether or not the queue exists (yet).
    pub(crate) members: FxHashMap<QueueId, BTreeSet<AgentId>>,
    /// By row, which a queue holds of the interactions homed in it (`Queue::homed`).
    pub(crate) interactions: Table<InteractionId, Interaction>,
    pub(crate) timers: Timers,
    pub(crate) outbox: VecDeque<Output>,
    /// The next enqueue order to hand out.
    pub(crate) next_order: u64,
    /// Activity clock: bumped on every routing activity of an agent (longest-idle ranks by it).
    pub(crate) clock: u64,
    /// The current listing id of each agent row (0: not listed); idle-index entries made by an
    /// older listing are stale. Parallel to the rows of `agents`, so that a walk tells stale
    /// entries without touching the agents.
    pub(crate) listings: Vec<u64>,
    /// The last listing id handed out.
    pub(crate) last_listing: u64,
    /// Queued interactions per kind, so that a freed agent skips looking for work that is not
    /// there.
    pub(crate) waiting: [usize; 3],
}

impl Engine {
    /// An engine with no agents, queues or interactions.
    pub fn new(config: EngineConfig) -> Engine {
        Engine {
            config,
            agents: Table::default(),
            queues: Table::default(),
            members: FxHashMap::default(),
            interactions: Table::default(),
            timers: Timers::default(),
            outbox: VecDeque::new(),
            next_order: 0,
            clock: 0,
            listings: Vec::new(),
            last_listing: 0,
            waiting: [0; 3],
        }
    }

    /// The engine's configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Applies one input at `now`. Timers due at `now` fire first (so an accept after the offer
    /// timeout finds no pending offer), and again after the input (so that overdue escalation of
    /// a restored interaction applies at once).
    ///
    /// On error nothing changed because of the input; the error says why it made no sense.
    pub fn handle(&mut self, input: Input, now: Instant) -> Result<(), Error> {
        self.handle_timeout(now);
        let result = match input {
            Input::Configure { config } => {
                self.config = config;
                Ok(())
            }
            Input::UpsertAgent { agent } => self.upsert_agent(agent, now),
            Input::RemoveAgent { agent } => self.remove_agent(agent, now),
            Input::UpsertQueue { queue } => self.upsert_queue(queue, now),
            Input::RemoveQueue { queue } => self.remove_queue(queue, now),
            Input::SetStatus { agent, status } => self.set_status(agent, status, now),
            Input::Enqueue { interaction } => self.enqueue(interaction, now),
            Input::Resume { held } => self.resume(held, now),
            Input::Place { interaction, agent } => self.place(interaction, agent, now),
            Input::Accept { agent, interaction } => self.accept(agent, interaction, now),
            Input::Reject { agent, interaction } => self.reject(agent, interaction, now),
            Input::Abandon { interaction } => self.abandon(interaction, now),
            Input::Close { interaction, agent } => self.close(interaction, agent, now),
            Input::End { interaction } => self.end(interaction, now),
            Input::WrapUpDone { agent, interaction } => self.wrap_up_done(agent, interaction, now),
            Input::Transfer { interaction, to } => self.transfer(interaction, to, now),
            Input::Move { interaction, to } => self.move_waiting(interaction, to, now),
        };
        self.handle_timeout(now);
        result
    }

    /// The next decision, in the order taken; `None` when all were taken.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outbox.pop_front()
    }

    /// All pending decisions, in the order taken.
    pub fn drain_outputs(&mut self) -> impl Iterator<Item = Output> + '_ {
        self.outbox.drain(..)
    }

    /// When [`Engine::handle_timeout`] must be called next (an offer expires, a wrap-up ends, an
    /// escalation step or SLA target comes due); `None` if nothing is scheduled.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// Fires every timer due at or before `now`, in deadline order.
    #[inline]
    pub fn handle_timeout(&mut self, now: Instant) {
        // Checked here, inlined into every input, so that the usual case costs no call.
        if self.timers.next_deadline().is_some_and(|due| due <= now) {
            self.fire_timers(now);
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::Wait(interaction) => self.wait_timer_fired(interaction, now),
                Timer::Offer(interaction) => self.offer_timed_out(interaction, now),
                Timer::WrapUp(agent, interaction) => self.finish_wrap_up(agent, interaction, now),
            }
        }
    }

    /// An agent's status, presence and work; `None` if unknown.
    pub fn agent(&self, agent: AgentId) -> Option<AgentView> {
        self.agents.get(&agent).map(Agent::view)
    }

    /// A live interaction; `None` if unknown, done or abandoned.
    pub fn interaction(&self, interaction: InteractionId) -> Option<InteractionView> {
        let inter = self.interactions.get(&interaction)?;
        let queue_priority = self.queue_of(inter).config.priority;
        Some(inter.view(queue_priority))
    }

    /// Number of live interactions (queued, offered, connected or in wrap-up).
    pub fn live_interactions(&self) -> usize {
        self.interactions.len()
    }

    /// Whether an agent serving `queue` could be offered a new `channel` interaction in
    /// `language` right now: ready inbound, with free capacity, meeting the queue's skills and
    /// the language. Chat widgets ask before they offer a chat. `false` for an unknown queue.
    pub fn can_serve(&self, queue: QueueId, channel: Channel, language: Option<SkillId>) -> bool {
        let Some(q) = self.queues.get(&queue) else {
            return false;
        };
        let needs = effective_needs(
            &q.config.required_skills,
            &[],
            language,
            Relaxation::default(),
        );
        self.agents.values().any(|agent| {
            agent.queues.binary_search(&queue).is_ok()
                && agent.free_kinds().contains(channel.kind())
                && agent.skills.meets(&needs)
        })
    }

    /// The queue `inter` is homed in.
    pub(crate) fn queue_of(&self, inter: &Interaction) -> &Queue {
        self.queues
            .at(inter.home)
            .expect("a queue with live interactions cannot be removed")
    }

    pub(crate) fn push(&mut self, output: Output) {
        self.outbox.push_back(output);
    }

    /// Advances the activity clock.
    pub(crate) fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    pub(crate) fn take_order(&mut self) -> u64 {
        let order = self.next_order;
        self.next_order += 1;
        order
    }
}

#[cfg(test)]
mod tests {
    //! Property tests: random configurations and input sequences, checked against a model built
    //! only from the outputs, plus the internal consistency check after every step.

    use std::collections::{BTreeMap, BTreeSet};
    use std::time::{Duration, Instant};

    use proptest::prelude::*;
    use proptest::strategy::Strategy as Gen;

    use crate::capacity::{self, Load, WorkKind};
    use crate::harness::{assert_consistent, interaction};
    use crate::skill::Relaxation;
    use crate::Strategy;
    use crate::*;

    const AGENTS: u64 = 4;
    const QUEUES: u64 = 3;
    const LANGUAGES: [u32; 2] = [100, 101];

    fn skill_level() -> impl Gen<Value = SkillLevel> {
        (1u8..=10).prop_map(|n| SkillLevel::new(n).expect("within 1-10"))
    }

    fn agent_config(id: u64) -> impl Gen<Value = AgentConfig> {
        (
            proptest::collection::btree_map(
                prop_oneof![3 => Just(1u32), 3 => Just(2), 2 => Just(100), 1 => Just(101)],
                skill_level(),
                1..5,
            ),
            proptest::collection::vec(1..=QUEUES, 1..3),
            proptest::option::of((0u8..=1, 0u8..=3, 0u8..=3)),
            proptest::option::of(prop_oneof![
                Just(Blending::CallBlocksOthers),
                Just(Blending::Exclusive),
                Just(Blending::Independent)
            ]),
        )
            .prop_map(move |(skills, queues, capacity, blending)| AgentConfig {
                id: AgentId(id),
                skills: skills
                    .into_iter()
                    .map(|(skill, level)| AgentSkill {
                        skill: SkillId(skill),
                        level,
                    })
                    .collect(),
                queues: queues.into_iter().map(QueueId).collect(),
                capacity: capacity.map(|(calls, chats, tickets)| Capacity {
                    calls,
                    chats,
                    tickets,
                }),
                blending,
            })
    }

    fn escalation_action() -> impl Gen<Value = EscalationAction> {
        prop_oneof![
            (1u8..4).prop_map(|by| EscalationAction::LowerSkillLevels { by }),
            Just(EscalationAction::DropSkills),
            proptest::collection::vec(1..=QUEUES + 1, 1..3).prop_map(|qs| {
                EscalationAction::AddOverflowQueues {
                    queues: qs.into_iter().map(QueueId).collect(),
                }
            }),
            (1i32..5).prop_map(|by| EscalationAction::RaisePriority { by }),
        ]
    }

    fn queue_config(id: u64) -> impl Gen<Value = QueueConfig> {
        (
            -2i32..3,
            prop_oneof![
                Just(Strategy::LongestIdle),
                Just(Strategy::LeastOccupied),
                Just(Strategy::BestSkill),
                Just(Strategy::RoundRobin),
                Just(Strategy::RingAll)
            ],
            proptest::option::of((1u8..=6).prop_map(|n| SkillLevel::new(n).expect("within 1-10"))),
            proptest::option::of(5u64..40),
            proptest::collection::vec((1u64..60, escalation_action()), 0..3),
            1u64..30,
            0u64..20,
        )
            .prop_map(
                move |(priority, strategy, skill, sla, steps, offer, wrap)| {
                    let mut steps: Vec<EscalationStep> = steps
                        .into_iter()
                        .map(|(after, action)| {
                            let action = match action {
                                EscalationAction::AddOverflowQueues { queues } => {
                                    let queues: Vec<QueueId> =
                                        queues.into_iter().filter(|q| q.0 != id).collect();
                                    if queues.is_empty() {
                                        EscalationAction::DropSkills
                                    } else {
                                        EscalationAction::AddOverflowQueues { queues }
                                    }
                                }
                                other => other,
                            };
                            EscalationStep {
                                after: Duration::from_secs(after),
                                action,
                            }
                        })
                        .collect();
                    steps.sort_by_key(|s| s.after);
                    QueueConfig {
                        id: QueueId(id),
                        priority,
                        strategy,
                        required_skills: skill
                            .map(|level| SkillRequirement {
                                skill: SkillId(1),
                                level,
                            })
                            .into_iter()
                            .collect(),
                        sla: sla.map(|s| ServiceLevel {
                            target: Duration::from_secs(s),
                            percent: 80,
                        }),
                        escalation: steps,
                        offer_timeout: Duration::from_secs(offer),
                        wrap_up: Duration::from_secs(wrap),
                    }
                },
            )
    }

    #[derive(Clone, Debug)]
    enum Op {
        Status(u64, u8),
        Enqueue {
            id: u64,
            channel: Channel,
            queue: u64,
            language: Option<u32>,
            skill: Option<SkillLevel>,
            priority: i32,
            restored: Option<(u64, u64, usize)>,
        },
        Accept(usize),
        Reject(usize),
        AcceptRaw(u64, u64),
        Abandon(u64),
        Close(u64, u64),
        End(usize),
        WrapUpDone(usize),
        TransferToQueue(usize, u64),
        TransferToAgent(usize, u64),
        MoveToQueue(u64, u64),
        MoveToAgent(u64, u64),
        Advance(u64),
        /// The agent's own outbound work.
        Place {
            id: u64,
            channel: Channel,
            queue: u64,
            agent: u64,
        },
        /// Work held before a restart, given back to an agent.
        Resume {
            id: u64,
            channel: Channel,
            queue: u64,
            agent: u64,
            wrap_up: bool,
        },
        UpsertAgent(AgentConfig),
        RemoveAgent(u64),
        UpsertQueue(QueueConfig),
        RemoveQueue(u64),
    }

    fn op() -> impl Gen<Value = Op> {
        let agent = 1..=AGENTS;
        prop_oneof![
            3 => (agent.clone(), 0u8..5).prop_map(|(a, s)| Op::Status(a, s)),
            6 => (
                1u64..16,
                prop_oneof![Just(Channel::Call), Just(Channel::Chat), Just(Channel::Email)],
                1..=QUEUES + 1,
                prop_oneof![
                    2 => Just(None),
                    2 => Just(Some(LANGUAGES[0])),
                    1 => Just(Some(LANGUAGES[1]))
                ],
                proptest::option::of((1u8..=4).prop_map(|n| SkillLevel::new(n).expect("within 1-10"))),
                -1i32..2,
                prop_oneof![4 => Just(None), 1 => (0u64..20, 0u64..90, 0usize..3).prop_map(Some)],
            )
                .prop_map(|(id, channel, queue, language, skill, priority, restored)| {
                    Op::Enqueue {
                        id,
                        channel,
                        queue,
                        language,
                        skill,
                        priority,
                        restored,
                    }
                }),
            5 => any::<usize>().prop_map(Op::Accept),
            2 => any::<usize>().prop_map(Op::Reject),
            1 => (agent.clone(), 1u64..16).prop_map(|(a, i)| Op::AcceptRaw(a, i)),
            2 => (1u64..16).prop_map(Op::Abandon),
            1 => (1u64..16, agent.clone()).prop_map(|(i, a)| Op::Close(i, a)),
            4 => any::<usize>().prop_map(Op::End),
            2 => any::<usize>().prop_map(Op::WrapUpDone),
            2 => (any::<usize>(), 1..=QUEUES).prop_map(|(p, q)| Op::TransferToQueue(p, q)),
            2 => (any::<usize>(), agent.clone()).prop_map(|(p, a)| Op::TransferToAgent(p, a)),
            2 => (1u64..16, 1..=QUEUES + 1).prop_map(|(i, q)| Op::MoveToQueue(i, q)),
            2 => (1u64..16, agent.clone()).prop_map(|(i, a)| Op::MoveToAgent(i, a)),
            4 => (0u64..25).prop_map(Op::Advance),
            1 => (
                1u64..16,
                prop_oneof![Just(Channel::Call), Just(Channel::Chat), Just(Channel::Email)],
                1..=QUEUES + 1,
                agent.clone(),
                any::<bool>(),
            )
                .prop_map(|(id, channel, queue, agent, wrap_up)| Op::Resume {
                    id,
                    channel,
                    queue,
                    agent,
                    wrap_up,
                }),
            2 => (
                1u64..16,
                prop_oneof![Just(Channel::Call), Just(Channel::Chat), Just(Channel::Email)],
                1..=QUEUES + 1,
                agent.clone(),
            )
                .prop_map(|(id, channel, queue, agent)| Op::Place {
                    id,
                    channel,
                    queue,
                    agent,
                }),
            1 => (agent.clone()).prop_flat_map(agent_config).prop_map(Op::UpsertAgent),
            1 => agent.prop_map(Op::RemoveAgent),
            1 => (1..=QUEUES + 1).prop_flat_map(queue_config).prop_map(Op::UpsertQueue),
            1 => (1..=QUEUES + 1).prop_map(Op::RemoveQueue),
        ]
    }

    fn setup() -> impl Gen<Value = (Vec<QueueConfig>, Vec<AgentConfig>)> {
        (
            (1..=QUEUES).map(queue_config).collect::<Vec<_>>(),
            (1..=AGENTS).map(agent_config).collect::<Vec<_>>(),
        )
    }

    /// What the outputs say about one interaction.
    #[derive(Clone, Debug, Default)]
    struct Seen {
        queue: Option<QueueId>,
        offered: BTreeSet<AgentId>,
        connected: Option<AgentId>,
        wrap_up: bool,
        finished: bool,
        /// What escalation has relaxed: skill levels, never the language.
        relaxed: Relaxation,
        overflow: BTreeSet<QueueId>,
        directed_to: Option<AgentId>,
        own_skills: Vec<SkillRequirement>,
        language: Option<SkillId>,
    }

    impl Seen {
        /// What an escalation step does to the interaction's requirements, as the action is
        /// documented: levels lowered (never below 1) or skills dropped — the language stays.
        fn escalate(&mut self, action: &EscalationAction) {
            match action {
                EscalationAction::LowerSkillLevels { by } => {
                    self.relaxed.lower_by = self.relaxed.lower_by.saturating_add(*by)
                }
                EscalationAction::DropSkills => self.relaxed.drop_skills = true,
                EscalationAction::AddOverflowQueues { queues } => {
                    self.overflow.extend(queues.iter().copied())
                }
                EscalationAction::RaisePriority { .. } => {}
            }
        }

        fn state(&self) -> Option<InteractionState> {
            if self.finished {
                None
            } else if self.wrap_up {
                Some(InteractionState::WrapUp)
            } else if self.connected.is_some() {
                Some(InteractionState::Connected)
            } else if !self.offered.is_empty() {
                Some(InteractionState::Offered)
            } else {
                Some(InteractionState::Queued)
            }
        }
    }

    /// A model of the tenant built only from configurations and outputs.
    #[derive(Default)]
    struct Model {
        engine_config: EngineConfig,
        queues: BTreeMap<QueueId, QueueConfig>,
        agents: BTreeMap<AgentId, AgentConfig>,
        seen: BTreeMap<InteractionId, Seen>,
        /// What each agent holds, by the outputs: offered until revoked, then until wrap-up ends.
        held: BTreeMap<(AgentId, InteractionId), WorkKind>,
    }

    impl Model {
        fn observe(&mut self, output: &Output) {
            match output {
                Output::Queued {
                    interaction, queue, ..
                } => {
                    let seen = self.seen.entry(*interaction).or_default();
                    seen.queue = Some(*queue);
                }
                Output::Offered {
                    interaction,
                    agent,
                    channel,
                    ..
                } => self.offered(*interaction, *agent, *channel),
                Output::OfferRevoked {
                    interaction, agent, ..
                } => {
                    let seen = self
                        .seen
                        .get_mut(interaction)
                        .expect("revoked after offered");
                    assert!(seen.offered.remove(agent), "revoked an offer never made");
                    assert!(self.held.remove(&(*agent, *interaction)).is_some());
                }
                Output::Connected {
                    interaction, agent, ..
                } => {
                    let seen = self
                        .seen
                        .get_mut(interaction)
                        .expect("connected after offered");
                    assert!(seen.offered.remove(agent), "connected without an offer");
                    seen.connected = Some(*agent);
                }
                Output::Placed {
                    interaction,
                    agent,
                    queue,
                    channel,
                    ..
                } => {
                    self.take(*interaction, *agent, *channel);
                    let seen = Seen {
                        queue: Some(*queue),
                        connected: Some(*agent),
                        ..Seen::default()
                    };
                    assert!(
                        self.seen
                            .insert(*interaction, seen)
                            .is_none_or(|s| s.finished),
                        "placed {interaction} while it was live"
                    );
                }
                Output::Ended { interaction, .. } => {
                    let seen = self
                        .seen
                        .get_mut(interaction)
                        .expect("ended after connected");
                    assert!(seen.connected.is_some());
                    seen.wrap_up = true;
                }
                Output::WrapUpEnded { interaction, agent } => {
                    assert!(self.held.remove(&(*agent, *interaction)).is_some());
                }
                Output::Done { interaction } => {
                    let seen = self.seen.get_mut(interaction).expect("done after ended");
                    assert!(seen.wrap_up && seen.offered.is_empty());
                    seen.finished = true;
                }
                Output::Abandoned { interaction, .. } | Output::Closed { interaction, .. } => {
                    let seen = self
                        .seen
                        .get_mut(interaction)
                        .expect("abandoned or closed after queued");
                    assert!(seen.connected.is_none() && seen.offered.is_empty());
                    seen.finished = true;
                }
                Output::Transferred {
                    interaction, to, ..
                } => {
                    let seen = self
                        .seen
                        .get_mut(interaction)
                        .expect("transferred after connected");
                    assert!(seen.connected.is_some());
                    seen.connected = None;
                    seen.relaxed = Relaxation::default();
                    seen.overflow.clear();
                    if let TransferTarget::Agent { agent } = to {
                        seen.directed_to = Some(*agent);
                    }
                }
                Output::Moved {
                    interaction,
                    queue,
                    to,
                    ..
                } => {
                    let seen = self.seen.get_mut(interaction).expect("moved after queued");
                    assert!(
                        seen.connected.is_none() && !seen.wrap_up,
                        "moved {interaction} while connected"
                    );
                    seen.queue = Some(*queue);
                    match to {
                        TransferTarget::Queue { .. } => {
                            seen.relaxed = Relaxation::default();
                            seen.overflow.clear();
                        }
                        TransferTarget::Agent { agent } => seen.directed_to = Some(*agent),
                    }
                }
                Output::Escalated {
                    interaction,
                    action,
                    ..
                } => {
                    let seen = self
                        .seen
                        .get_mut(interaction)
                        .expect("escalated after queued");
                    seen.escalate(action);
                }
                Output::SlaBreached { .. } | Output::PresenceChanged { .. } => {}
            }
        }

        /// The agent takes `interaction` (offered or placed): within its capacity.
        fn take(&mut self, interaction: InteractionId, agent: AgentId, channel: Channel) {
            let config = &self.agents[&agent];
            let capacity = config.capacity.unwrap_or(self.engine_config.capacity);
            let blending = config.blending.unwrap_or(self.engine_config.blending);
            let mut load = Load::default();
            for (_, kind) in self
                .held
                .range((agent, InteractionId(0))..=(agent, InteractionId(u64::MAX)))
            {
                load.add(*kind);
            }
            assert!(
                capacity::free_kinds(&capacity, blending, &load).contains(channel.kind()),
                "{agent} offered {interaction} beyond capacity {capacity:?} {blending:?} {load:?}"
            );
            assert!(self
                .held
                .insert((agent, interaction), channel.kind())
                .is_none());
        }

        fn offered(&mut self, interaction: InteractionId, agent: AgentId, channel: Channel) {
            self.take(interaction, agent, channel);
            let config = self
                .agents
                .get(&agent)
                .expect("offered to a known agent")
                .clone();
            let seen = self
                .seen
                .get_mut(&interaction)
                .expect("offered after queued");
            let queue = seen.queue.expect("queued before offered");
            if !seen.offered.is_empty() {
                assert_eq!(
                    self.queues[&queue].strategy,
                    Strategy::RingAll,
                    "{interaction} offered to two agents at once"
                );
            }
            assert!(seen.offered.insert(agent));
            if seen.directed_to.take() == Some(agent) {
                return;
            }
            let serves = config
                .queues
                .iter()
                .any(|q| *q == queue || seen.overflow.contains(q));
            assert!(serves, "{agent} does not serve the queues of {interaction}");
            // Checked from the agent's configuration directly, not with the engine's matching.
            let level = |skill: SkillId| {
                config
                    .skills
                    .iter()
                    .find(|s| s.skill == skill)
                    .map(|s| s.level.get())
            };
            if let Some(language) = seen.language {
                assert!(
                    level(language).is_some(),
                    "{agent} does not speak the language of {interaction}"
                );
            }
            if !seen.relaxed.drop_skills {
                for need in self.queues[&queue]
                    .required_skills
                    .iter()
                    .chain(&seen.own_skills)
                {
                    let required = need
                        .level
                        .get()
                        .saturating_sub(seen.relaxed.lower_by)
                        .max(1);
                    assert!(
                        level(need.skill).is_some_and(|l| l >= required),
                        "{agent} lacks {:?} at {required} for {interaction} (relaxed: {:?})",
                        need.skill,
                        seen.relaxed
                    );
                }
            }
        }

        /// Checks the engine agrees with the outputs about every interaction ever seen.
        fn agrees_with(&self, engine: &Engine) {
            for (id, seen) in &self.seen {
                let view = engine.interaction(*id);
                assert_eq!(
                    view.as_ref().map(|v| v.state),
                    seen.state(),
                    "state of {id}"
                );
                if let Some(view) = view {
                    assert_eq!(Some(view.queue), seen.queue);
                    if view.state == InteractionState::Offered {
                        let agents: BTreeSet<AgentId> = view.agents.iter().copied().collect();
                        assert_eq!(agents, seen.offered, "offers of {id}");
                    }
                }
            }
            assert_eq!(
                engine.live_interactions(),
                self.seen.values().filter(|s| !s.finished).count(),
                "an interaction is live that no output announced"
            );
        }
    }

    /// Pending (agent, interaction) offers, connected interactions and wrap-ups, sorted.
    fn work(engine: &Engine, state: WorkState) -> Vec<(AgentId, InteractionId)> {
        let mut all = Vec::new();
        for agent in 1..=AGENTS {
            if let Some(view) = engine.agent(AgentId(agent)) {
                for item in view.work.iter().filter(|w| w.state == state) {
                    all.push((view.id, item.interaction));
                }
            }
        }
        all
    }

    fn pick<T: Copy>(list: &[T], index: usize) -> Option<T> {
        (!list.is_empty()).then(|| list[index % list.len()])
    }

    fn to_input(engine: &Engine, op: &Op) -> Option<Input> {
        let offers = work(engine, WorkState::Offered);
        let connected = work(engine, WorkState::Connected);
        let wrap_ups = work(engine, WorkState::WrapUp);
        Some(match op {
            Op::Status(agent, choice) => Input::SetStatus {
                agent: AgentId(*agent),
                status: match choice {
                    0 | 1 => AgentStatus::Ready {
                        mode: ReadyMode::Inbound,
                    },
                    2 => AgentStatus::Ready {
                        mode: ReadyMode::Outbound,
                    },
                    3 => AgentStatus::NotReady {
                        reason: "break".into(),
                    },
                    _ => AgentStatus::Offline,
                },
            },
            Op::Enqueue {
                id,
                channel,
                queue,
                language,
                skill,
                priority,
                restored,
            } => Input::Enqueue {
                interaction: NewInteraction {
                    id: InteractionId(*id),
                    channel: *channel,
                    queue: QueueId(*queue),
                    language: language.map(SkillId),
                    skills: skill
                        .map(|level| SkillRequirement {
                            skill: SkillId(2),
                            level,
                        })
                        .into_iter()
                        .collect(),
                    priority: *priority,
                    restored: restored.map(|(order, waited, escalations_applied)| Restored {
                        order,
                        waited: Duration::from_secs(waited),
                        escalations_applied,
                        sla_breached: false,
                    }),
                },
            },
            Op::Accept(i) | Op::Reject(i) => {
                let (agent, interaction) = pick(&offers, *i)?;
                if matches!(op, Op::Accept(_)) {
                    Input::Accept { agent, interaction }
                } else {
                    Input::Reject { agent, interaction }
                }
            }
            Op::Resume {
                id,
                channel,
                queue,
                agent,
                wrap_up,
            } => Input::Resume {
                held: Held {
                    interaction: interaction(*id, *channel, *queue),
                    agent: AgentId(*agent),
                    wrap_up: *wrap_up,
                },
            },
            Op::Place {
                id,
                channel,
                queue,
                agent,
            } => Input::Place {
                interaction: interaction(*id, *channel, *queue),
                agent: AgentId(*agent),
            },
            Op::AcceptRaw(agent, interaction) => Input::Accept {
                agent: AgentId(*agent),
                interaction: InteractionId(*interaction),
            },
            Op::Abandon(id) => Input::Abandon {
                interaction: InteractionId(*id),
            },
            Op::Close(id, agent) => Input::Close {
                interaction: InteractionId(*id),
                agent: AgentId(*agent),
            },
            Op::End(i) => Input::End {
                interaction: pick(&connected, *i)?.1,
            },
            Op::WrapUpDone(i) => {
                let (agent, interaction) = pick(&wrap_ups, *i)?;
                Input::WrapUpDone { agent, interaction }
            }
            Op::TransferToQueue(i, queue) => Input::Transfer {
                interaction: pick(&connected, *i)?.1,
                to: TransferTarget::Queue {
                    queue: QueueId(*queue),
                },
            },
            Op::TransferToAgent(i, agent) => Input::Transfer {
                interaction: pick(&connected, *i)?.1,
                to: TransferTarget::Agent {
                    agent: AgentId(*agent),
                },
            },
            Op::MoveToQueue(id, queue) => Input::Move {
                interaction: InteractionId(*id),
                to: TransferTarget::Queue {
                    queue: QueueId(*queue),
                },
            },
            Op::MoveToAgent(id, agent) => Input::Move {
                interaction: InteractionId(*id),
                to: TransferTarget::Agent {
                    agent: AgentId(*agent),
                },
            },
            Op::Advance(_) => return None,
            Op::UpsertAgent(config) => Input::UpsertAgent {
                agent: config.clone(),
            },
            Op::RemoveAgent(agent) => Input::RemoveAgent {
                agent: AgentId(*agent),
            },
            Op::UpsertQueue(config) => Input::UpsertQueue {
                queue: config.clone(),
            },
            Op::RemoveQueue(queue) => Input::RemoveQueue {
                queue: QueueId(*queue),
            },
        })
    }

    /// Runs a scenario from `start`, checking every invariant after every step; returns all
    /// outputs.
    fn run(
        config: EngineConfig,
        start: Instant,
        queues: &[QueueConfig],
        agents: &[AgentConfig],
        ops: &[Op],
    ) -> Vec<Output> {
        let mut engine = Engine::new(config.clone());
        let mut model = Model {
            engine_config: config,
            ..Model::default()
        };
        let mut log = Vec::new();
        let mut now = start;
        let mut observe = |engine: &mut Engine, model: &mut Model| {
            for output in engine.drain_outputs() {
                model.observe(&output);
                log.push(output);
            }
        };
        for queue in queues {
            engine
                .handle(
                    Input::UpsertQueue {
                        queue: queue.clone(),
                    },
                    now,
                )
                .expect("generated queues are valid");
            model.queues.insert(queue.id, queue.clone());
        }
        for agent in agents {
            engine
                .handle(
                    Input::UpsertAgent {
                        agent: agent.clone(),
                    },
                    now,
                )
                .expect("generated agents are valid");
            model.agents.insert(agent.id, agent.clone());
            let ready = AgentStatus::Ready {
                mode: ReadyMode::Inbound,
            };
            engine
                .handle(
                    Input::SetStatus {
                        agent: agent.id,
                        status: ready,
                    },
                    now,
                )
                .expect("generated agents exist");
            observe(&mut engine, &mut model);
        }
        for op in ops {
            if let Op::Advance(secs) = op {
                now += Duration::from_secs(*secs);
            }
            engine.handle_timeout(now);
            observe(&mut engine, &mut model);
            if let Some(input) = to_input(&engine, op) {
                let before = format!("{engine:?}");
                match engine.handle(input.clone(), now) {
                    Err(_) => assert_eq!(
                        before,
                        format!("{engine:?}"),
                        "refused {input:?} changed state"
                    ),
                    Ok(()) => match &input {
                        Input::UpsertAgent { agent } => {
                            model.agents.insert(agent.id, agent.clone());
                        }
                        Input::UpsertQueue { queue } => {
                            model.queues.insert(queue.id, queue.clone());
                        }
                        Input::RemoveQueue { queue } => {
                            model.queues.remove(queue);
                        }
                        Input::Enqueue { interaction } => {
                            let mut seen = Seen {
                                own_skills: interaction.skills.clone(),
                                language: interaction.language,
                                ..Seen::default()
                            };
                            // Steps applied before a restart were logged then, not again now.
                            let applied = interaction.restored.map_or(0, |r| r.escalations_applied);
                            for step in model.queues[&interaction.queue]
                                .escalation
                                .iter()
                                .take(applied)
                            {
                                seen.escalate(&step.action);
                            }
                            model.seen.insert(interaction.id, seen);
                            assert!(
                                matches!(engine.outbox.front(), Some(Output::Queued { .. })),
                                "an accepted enqueue is announced first"
                            );
                        }
                        Input::Resume { held } => {
                            let id = held.interaction.id;
                            model.seen.insert(
                                id,
                                Seen {
                                    queue: Some(held.interaction.queue),
                                    connected: Some(held.agent),
                                    wrap_up: held.wrap_up,
                                    ..Seen::default()
                                },
                            );
                            model
                                .held
                                .insert((held.agent, id), held.interaction.channel.kind());
                            assert!(
                                engine.outbox.iter().all(|o| o.interaction() != Some(id)
                                    || matches!(
                                        o,
                                        Output::WrapUpEnded { .. } | Output::Done { .. }
                                    )),
                                "resumed work is not announced again"
                            );
                        }
                        _ => {}
                    },
                }
                observe(&mut engine, &mut model);
                if let Input::RemoveAgent { agent } = &input {
                    if engine.agent(*agent).is_none() {
                        model.agents.remove(agent);
                    }
                }
            }
            assert_consistent(&engine);
            model.agrees_with(&engine);
        }
        log
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn routing_invariants_hold_and_runs_are_deterministic(
            (queues, agents) in setup(),
            ops in proptest::collection::vec(op(), 1..120),
            stay_ready in any::<bool>(),
        ) {
            let config = EngineConfig {
                missed_offer: if stay_ready { MissedOffer::StayReady } else { MissedOffer::default() },
                ..EngineConfig::default()
            };
            let start = Instant::now();
            let first = run(config.clone(), start, &queues, &agents, &ops);
            let second = run(config, start, &queues, &agents, &ops);
            prop_assert_eq!(first, second);
        }
    }
}
