//! Test harness for the engine (tests only): a fake clock, shorthand for inputs, and
//! [`assert_consistent`], which checks every internal index against the state it indexes after
//! each step.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::agent::SlotState;
use crate::capacity::{free_kinds, WorkKind};
use crate::interaction::Stage;
use crate::queue::WaitKey;
use crate::routing::eligible;
use crate::skill::effective_needs;
use crate::*;

/// An engine driven by a fake clock, checking consistency after every step.
pub(crate) struct Harness {
    pub(crate) engine: Engine,
    pub(crate) now: Instant,
}

pub(crate) fn level(n: u8) -> SkillLevel {
    SkillLevel::new(n).expect("test levels are within 1-10")
}

pub(crate) fn req(skill: u32, n: u8) -> SkillRequirement {
    SkillRequirement {
        skill: SkillId(skill),
        level: level(n),
    }
}

pub(crate) fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub(crate) fn interaction(id: u64, channel: Channel, queue: u64) -> NewInteraction {
    NewInteraction {
        id: InteractionId(id),
        channel,
        queue: QueueId(queue),
        language: None,
        skills: Vec::new(),
        priority: 0,
        restored: None,
    }
}

pub(crate) fn ready() -> AgentStatus {
    AgentStatus::Ready {
        mode: ReadyMode::Inbound,
    }
}

pub(crate) fn not_ready(reason: &str) -> AgentStatus {
    AgentStatus::NotReady {
        reason: reason.to_owned(),
    }
}

impl Harness {
    pub(crate) fn new() -> Harness {
        Harness::with_config(EngineConfig::default())
    }

    pub(crate) fn with_config(config: EngineConfig) -> Harness {
        Harness {
            engine: Engine::new(config),
            now: Instant::now(),
        }
    }

    /// Whether an accept by `agent` of `interaction` is refused because no such offer is
    /// pending (refused inputs change nothing, see [`Harness::try_input`]).
    pub(crate) fn offer_is_gone(&mut self, agent: u64, interaction: u64) -> bool {
        let (agent, interaction) = (AgentId(agent), InteractionId(interaction));
        self.try_input(Input::Accept { agent, interaction })
            == Err(Error::OfferNotPending { interaction, agent })
    }

    /// Applies an input; returns its outputs or its error (checking that an error changed
    /// nothing).
    pub(crate) fn try_input(&mut self, input: Input) -> Result<Vec<Output>, Error> {
        self.engine.handle_timeout(self.now);
        let before = format!("{:?}", self.engine);
        let result = self.engine.handle(input, self.now);
        if result.is_err() {
            assert_eq!(
                before,
                format!("{:?}", self.engine),
                "a refused input changed state"
            );
        }
        assert_consistent(&self.engine);
        result.map(|()| self.engine.drain_outputs().collect())
    }

    pub(crate) fn input(&mut self, input: Input) -> Vec<Output> {
        let described = format!("{input:?}");
        match self.try_input(input) {
            Ok(outputs) => outputs,
            Err(error) => panic!("{described} refused: {error}"),
        }
    }

    /// Moves the fake clock forward and fires due timers.
    pub(crate) fn advance(&mut self, by: Duration) -> Vec<Output> {
        self.now += by;
        self.engine.handle_timeout(self.now);
        assert_consistent(&self.engine);
        self.engine.drain_outputs().collect()
    }

    pub(crate) fn queue(&mut self, config: QueueConfig) {
        self.input(Input::UpsertQueue { queue: config });
    }

    pub(crate) fn simple_queue(&mut self, id: u64) {
        self.queue(QueueConfig::new(QueueId(id)));
    }

    /// Creates an agent serving `queues` with `skills` (id, level).
    pub(crate) fn agent(&mut self, id: u64, queues: &[u64], skills: &[(u32, u8)]) {
        let mut config = AgentConfig::new(AgentId(id));
        config.queues = queues.iter().map(|&q| QueueId(q)).collect();
        config.skills = skills
            .iter()
            .map(|&(skill, n)| AgentSkill {
                skill: SkillId(skill),
                level: level(n),
            })
            .collect();
        self.input(Input::UpsertAgent { agent: config });
    }

    pub(crate) fn status(&mut self, agent: u64, status: AgentStatus) -> Vec<Output> {
        self.input(Input::SetStatus {
            agent: AgentId(agent),
            status,
        })
    }

    pub(crate) fn ready_agent(&mut self, id: u64, queues: &[u64], skills: &[(u32, u8)]) {
        self.agent(id, queues, skills);
        self.status(id, ready());
    }

    pub(crate) fn enqueue(&mut self, new: NewInteraction) -> Vec<Output> {
        self.input(Input::Enqueue { interaction: new })
    }

    pub(crate) fn call(&mut self, id: u64, queue: u64) -> Vec<Output> {
        self.enqueue(interaction(id, Channel::Call, queue))
    }

    pub(crate) fn accept(&mut self, agent: u64, id: u64) -> Vec<Output> {
        self.input(Input::Accept {
            agent: AgentId(agent),
            interaction: InteractionId(id),
        })
    }

    pub(crate) fn reject(&mut self, agent: u64, id: u64) -> Vec<Output> {
        self.input(Input::Reject {
            agent: AgentId(agent),
            interaction: InteractionId(id),
        })
    }

    pub(crate) fn end(&mut self, id: u64) -> Vec<Output> {
        self.input(Input::End {
            interaction: InteractionId(id),
        })
    }

    pub(crate) fn state(&self, id: u64) -> Option<InteractionState> {
        self.engine.interaction(InteractionId(id)).map(|i| i.state)
    }

    pub(crate) fn presence(&self, agent: u64) -> Presence {
        self.engine
            .agent(AgentId(agent))
            .expect("test agents exist")
            .presence
    }
}

/// The (interaction, agent) pairs offered in `outputs`, in order.
pub(crate) fn offers(outputs: &[Output]) -> Vec<(u64, u64)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Offered {
                interaction, agent, ..
            } => Some((interaction.0, agent.0)),
            _ => None,
        })
        .collect()
}

/// The (interaction, agent, reason) triples revoked in `outputs`, in order.
pub(crate) fn revokes(outputs: &[Output]) -> Vec<(u64, u64, RevokeReason)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::OfferRevoked {
                interaction,
                agent,
                reason,
            } => Some((interaction.0, agent.0, *reason)),
            _ => None,
        })
        .collect()
}

/// Checks every index of the engine against the state it indexes, and the routing invariant
/// (no queued interaction has an eligible agent idle in a queue it waits in).
pub(crate) fn assert_consistent(engine: &Engine) {
    let mut expected_waiting: BTreeMap<(QueueId, WorkKind), BTreeSet<WaitKey>> = BTreeMap::new();
    for inter in engine.interactions.values() {
        let id = &inter.id;
        assert_eq!(*id, inter.id);
        let queue = engine.queues.get(&inter.queue).expect("home queue exists");
        assert_eq!(
            engine.queues.slot(&inter.queue),
            Some(inter.home),
            "{id}'s home row"
        );
        assert_eq!(
            queue.homed.get(inter.homed_at).copied(),
            engine.interactions.slot(id),
            "{id} not homed in its queue"
        );
        assert_eq!(
            inter.needs,
            effective_needs(
                &queue.config.required_skills,
                &inter.skills,
                inter.language,
                inter.escalation.relaxation
            ),
            "stale needs of {id}"
        );
        match &inter.stage {
            Stage::Queued => {
                let key = inter.wait_key.expect("queued interactions are listed");
                assert_eq!(
                    key.needs,
                    inter.needs.summary(),
                    "stale needs in {id}'s key"
                );
                if let Some(needs) = key.inline_needs() {
                    assert_eq!(
                        needs,
                        inter.needs.list.as_slice(),
                        "stale needs in {id}'s key"
                    );
                }
                for q in inter.visible_in() {
                    assert!(
                        engine.queues.contains_key(&q),
                        "{id} visible in missing queue"
                    );
                    expected_waiting
                        .entry((q, inter.kind))
                        .or_default()
                        .insert(key);
                }
            }
            Stage::Offered {
                agents,
                timer,
                direct,
            } => {
                assert!(inter.wait_key.is_none());
                assert!(
                    inter.visible_in().all(|q| engine.queues.contains_key(&q)),
                    "{id} visible in missing queue"
                );
                assert!(!agents.is_empty(), "{id} offered to nobody");
                assert!(
                    !direct || agents.len() == 1,
                    "{id} offered directly to many"
                );
                assert!(timer.is_some(), "{id} offered without a timeout");
                for agent in agents {
                    let agent = &engine.agents[agent];
                    let slot = agent.slot(*id).expect("offer has a slot");
                    assert_eq!(slot.state, SlotState::Offered);
                    if *direct {
                        continue;
                    }
                    // A routed offer stays one its agent may be given: configuration changed
                    // since it was made withdraws it otherwise.
                    assert!(
                        inter
                            .visible_in()
                            .any(|q| agent.queues.contains(&q) && engine.queues.contains_key(&q)),
                        "{id} offered to {} serving none of its queues",
                        agent.id
                    );
                    assert!(
                        agent.skills.meets(&inter.needs),
                        "{id} offered to {} lacking its needs",
                        agent.id
                    );
                }
            }
            Stage::Connected { agent } => {
                assert!(inter.wait_key.is_none() && inter.wait_timer.is_none());
                let slot = engine.agents[agent]
                    .slot(*id)
                    .expect("connected has a slot");
                assert!(matches!(slot.state, SlotState::Connected { .. }));
            }
            Stage::WrapUp { agent } => {
                assert!(inter.wait_key.is_none() && inter.wait_timer.is_none());
                let slot = engine.agents[agent].slot(*id).expect("wrap-up has a slot");
                assert!(matches!(slot.state, SlotState::WrapUp { .. }));
            }
        }
    }
    for queue in engine.queues.values() {
        let q = &queue.config.id;
        assert_eq!(*q, queue.config.id);
        for kind in WorkKind::ALL {
            let expected = expected_waiting.remove(&(*q, kind)).unwrap_or_default();
            let listed: Vec<WaitKey> = queue.waiting(kind).iter().copied().collect();
            let expected: Vec<WaitKey> = expected.into_iter().collect();
            assert_eq!(listed, expected, "waiting list of {q} {kind:?}");
        }
        assert_eq!(
            queue.members,
            engine.members.get(q).map_or(0, |m| m.len()),
            "members of {q}"
        );
        let keys: Vec<_> = queue.idle.iter().copied().collect();
        assert!(
            keys.windows(2).all(|w| w[0] < w[1]),
            "idle index of {q} out of order"
        );
        for &row in &queue.homed {
            assert_eq!(engine.interactions.at(row).map(|i| i.queue), Some(*q));
        }
    }
    assert!(expected_waiting.is_empty(), "waiting lists missing");
    for kind in WorkKind::ALL {
        let queued = engine
            .interactions
            .values()
            .filter(|i| i.kind == kind && i.wait_key.is_some())
            .count();
        assert_eq!(
            engine.waiting[kind.index()],
            queued,
            "queued {kind:?} count"
        );
    }
    for agent in engine.agents.values() {
        let id = &agent.id;
        let mut served: Vec<u32> = agent
            .queues
            .iter()
            .filter_map(|q| engine.queues.slot(q))
            .collect();
        served.sort_unstable();
        let mut listed = agent.served.clone();
        listed.sort_unstable();
        assert_eq!(listed, served, "rows of {id}'s queues");
        let mut load = crate::capacity::Load::default();
        for slot in &agent.slots {
            match slot.state {
                SlotState::Offered => {
                    let inter = &engine.interactions[&slot.interaction];
                    assert!(
                        matches!(&inter.stage, Stage::Offered { agents, .. } if agents.contains(id))
                    );
                    // Every offer, direct or not, fits the agent's capacity and blending on top
                    // of the work it got before it (connected work may exceed a lowered limit).
                    assert!(
                        free_kinds(&agent.capacity, agent.blending, &load).contains(slot.kind),
                        "{id} offered {} beyond {:?} {:?} holding {load:?}",
                        slot.interaction,
                        agent.capacity,
                        agent.blending
                    );
                }
                SlotState::Connected { .. } => {
                    let inter = &engine.interactions[&slot.interaction];
                    assert_eq!(inter.stage, Stage::Connected { agent: *id });
                }
                SlotState::WrapUp { .. } => {}
            }
            load.add(slot.kind);
        }
        assert_eq!(load, agent.load, "load of {id}");
        assert_eq!(agent.presence, agent.current_presence(), "presence of {id}");
        assert_eq!(agent.listed, agent.wanted_listing(), "listing of {id}");
        let row = engine.listings[agent.slot as usize];
        assert_eq!(row != 0, agent.listed.is_some(), "listing row of {id}");
        if agent.listed.is_some() {
            assert!(agent.listed_keys.iter().all(|(_, key)| key.listing == row));
            let mut listed_in: Vec<QueueId> = agent.listed_keys.iter().map(|(q, _)| *q).collect();
            listed_in.sort_unstable();
            let expected: Vec<QueueId> = agent
                .queues
                .iter()
                .copied()
                .filter(|q| engine.queues.contains_key(q))
                .collect();
            assert_eq!(listed_in, expected, "listed queues of {id}");
            for (q, key) in &agent.listed_keys {
                assert!(engine.queues[q].idle.contains(key), "{id} missing in {q}");
            }
        }
        for q in &agent.queues {
            assert!(engine.members[q].contains(id), "membership of {id} in {q}");
        }
    }
    for inter in engine.interactions.values() {
        let id = &inter.id;
        if inter.stage != Stage::Queued {
            continue;
        }
        for queue in inter.visible_in().filter_map(|q| engine.queues.get(&q)) {
            for key in queue.idle.iter() {
                if engine.listings.get(key.slot as usize) != Some(&key.listing) {
                    continue; // a stale entry, ignored by routing
                }
                let agent = &engine.agents[&key.agent];
                assert!(agent.listed.is_some(), "current entry of an unlisted agent");
                assert!(
                    !eligible(agent, inter),
                    "{id} waits while agent {} is idle and eligible",
                    key.agent
                );
            }
        }
    }
}
