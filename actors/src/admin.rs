//! Live configuration: agents and queues created, changed and removed while routing runs.
//!
//! A change takes effect at once and re-runs routing for what it touches: a changed agent gives
//! back the offers it may no longer hold — those it no longer qualifies for (not those made
//! straight to it) and those beyond its capacity — and pulls work it may now take; a changed
//! queue re-indexes its agents, re-ranks and re-checks its waiting interactions, takes its
//! offered ones back from agents that no longer qualify for them, and reschedules their
//! escalation (changed steps count from the waiting time of the last step each interaction got). Removal is refused while it would strand work (an agent with connected or wrap-up
//! work, a queue with live interactions).

use std::time::Instant;

use crate::agent::{Agent, AgentConfig, SlotState};
use crate::capacity::{self, Load};
use crate::error::Error;
use crate::ids::{AgentId, InteractionId, QueueId};
use crate::interaction::{Interaction, Stage};
use crate::output::{Output, RevokeReason};
use crate::presence::Presence;
use crate::queue::{EscalationStep, Queue, QueueConfig, WaitKey};
use crate::skill::SkillSet;
use crate::strategy::Strategy;
use crate::table::Table;
use crate::Engine;

impl Engine {
    pub(crate) fn upsert_agent(&mut self, config: AgentConfig, now: Instant) -> Result<(), Error> {
        let id = config.id;
        let skills = SkillSet::new(&config.skills)
            .map_err(|skill| Error::DuplicateSkill { agent: id, skill })?;
        let mut queues = config.queues;
        queues.sort_unstable();
        queues.dedup();
        let capacity = config.capacity.unwrap_or(self.config.capacity);
        let blending = config.blending.unwrap_or(self.config.blending);
        let known = self.agents.get(&id).map(|agent| agent.queues.clone());
        let old_queues = known.as_deref().unwrap_or_default();
        for &q in old_queues.iter().filter(|q| !queues.contains(q)) {
            self.leave(q, id);
        }
        for &q in queues.iter().filter(|q| !old_queues.contains(q)) {
            self.members.entry(q).or_default().insert(id);
            self.count_members(q);
        }
        match known {
            None => {
                let slot = self.agents.insert_with(id, |slot| {
                    Agent::new(id, slot, skills, queues, capacity, blending)
                });
                self.listings.resize(self.agents.rows(), 0);
                self.refresh_served(slot);
            }
            Some(_) => {
                self.unlist(id);
                let agent = self.agents.get_mut(&id).expect("checked it is known above");
                agent.skills = skills;
                agent.queues = queues;
                agent.capacity = capacity;
                agent.blending = blending;
                let slot = agent.slot;
                self.refresh_served(slot);
                self.withdraw_untenable_offers(id, now);
                self.settle_agent(id, now, true);
            }
        }
        Ok(())
    }

    /// Withdraws the offers pending for a reconfigured agent that it may no longer hold (see
    /// [`untenable_offers`]), and puts them back in the queue with their place, so that an agent
    /// that may gets them. The caller settles the agent.
    fn withdraw_untenable_offers(&mut self, id: AgentId, now: Instant) {
        let Some(agent) = self.agents.get(&id) else {
            return;
        };
        let untenable = untenable_offers(agent, &self.interactions);
        self.withdraw(id, untenable, now);
    }

    /// Revokes the offers of interaction `id` made to agents that no longer qualify for it (its
    /// needs changed with its queue), adding those agents to `revoked`. Returns whether nobody
    /// holds it any more: then it is queued again, keeping its order, and the caller lists it.
    fn revoke_unqualified(&mut self, id: InteractionId, revoked: &mut Vec<AgentId>) -> bool {
        let Some(inter) = self.interactions.get(&id) else {
            return false;
        };
        let Stage::Offered {
            agents: offered, ..
        } = &inter.stage
        else {
            return false;
        };
        let agents = &self.agents;
        let unqualified: Vec<AgentId> = offered
            .iter()
            .copied()
            .filter(|a| agents.get(a).is_some_and(|agent| !qualifies(agent, inter)))
            .collect();
        let mut orphaned = false;
        for agent in unqualified {
            orphaned = self.revoke(id, agent, RevokeReason::AgentUnavailable);
            revoked.push(agent);
        }
        if orphaned {
            // As `Engine::requeue` does, but routed by the caller together with the queue's
            // other waiting interactions, in rank order.
            if let Some(inter) = self.interactions.get_mut(&id) {
                inter.stage = Stage::Queued;
            }
        }
        orphaned
    }

    pub(crate) fn remove_agent(&mut self, id: AgentId, now: Instant) -> Result<(), Error> {
        let agent = self.agents.get(&id).ok_or(Error::UnknownAgent(id))?;
        if agent.has_work() {
            return Err(Error::AgentHasWork(id));
        }
        let mut orphans = Vec::new();
        for interaction in agent.offered() {
            if self.revoke(interaction, id, RevokeReason::AgentUnavailable) {
                orphans.push(interaction);
            }
        }
        self.unlist(id);
        let agent = self.agents.remove(&id).expect("checked it is known above");
        for &q in &agent.queues {
            self.leave(q, id);
        }
        if agent.presence != Presence::Offline {
            self.push(Output::PresenceChanged {
                agent: id,
                from: agent.presence,
                to: Presence::Offline,
            });
        }
        for interaction in orphans {
            self.requeue(interaction, now);
        }
        Ok(())
    }

    pub(crate) fn upsert_queue(&mut self, config: QueueConfig, now: Instant) -> Result<(), Error> {
        let id = config.id;
        if let Some(reason) = config.problem() {
            return Err(Error::InvalidQueue { queue: id, reason });
        }
        let Some(queue) = self.queues.get_mut(&id) else {
            let queue = Queue::new(config, self.config.default_handle_time);
            self.queues.insert_with(id, |_| queue);
            self.count_members(id);
            self.refresh_members_served(id);
            self.rebuild_idle(id);
            return Ok(());
        };
        let old = queue.reconfigure(config);
        let interactions = &self.interactions;
        let mut homed: Vec<_> = queue
            .homed
            .iter()
            .filter_map(|&row| interactions.at(row).map(|i| i.id))
            .collect();
        homed.sort_unstable();
        let new = &queue.config;
        let new_steps = (old.escalation != new.escalation).then(|| new.escalation.clone());
        let left_ring_all = old.strategy == Strategy::RingAll && new.strategy != Strategy::RingAll;
        if old.strategy != new.strategy || old.required_skills != new.required_skills {
            queue.rr_cursor = None;
            self.rebuild_idle(id);
        }
        // Needs, ranks and wait timers of its interactions follow the new configuration; an
        // offered one is taken back from the agents its new (possibly relaxed) needs exclude, and
        // waits again with its place if that was every agent it was offered to.
        let mut waiting: Vec<WaitKey> = Vec::new();
        let mut revoked: Vec<AgentId> = Vec::new();
        if let Some(steps) = new_steps {
            for &interaction in &homed {
                if let Some(inter) = self.interactions.get_mut(&interaction) {
                    let next = &mut inter.escalation.next_step;
                    *next = next_step_after_change(&old.escalation, &steps, *next);
                }
            }
        }
        for &interaction in &homed {
            let queued = self
                .interactions
                .get(&interaction)
                .is_some_and(|i| i.stage == Stage::Queued);
            if queued {
                self.unlist_waiting(interaction);
            }
            self.refresh_needs(interaction);
            if left_ring_all {
                self.ring_at_one(interaction, &mut revoked);
            }
            if queued || self.revoke_unqualified(interaction, &mut revoked) {
                self.wait_again(interaction, &mut waiting);
            }
            self.schedule_wait(interaction);
        }
        self.route_again(waiting, revoked, now);
        Ok(())
    }

    /// Takes an interaction offered to several agents (its queue rang everyone) back from all
    /// but the first, adding them to `revoked`: a queue that no longer rings everyone offers
    /// each interaction to one agent at a time.
    fn ring_at_one(&mut self, id: InteractionId, revoked: &mut Vec<AgentId>) {
        let Some(Stage::Offered { agents, .. }) = self.interactions.get(&id).map(|i| &i.stage)
        else {
            return;
        };
        for agent in agents.get(1..).unwrap_or_default().to_vec() {
            self.revoke(id, agent, RevokeReason::QueueChanged);
            revoked.push(agent);
        }
    }

    pub(crate) fn remove_queue(&mut self, id: QueueId, now: Instant) -> Result<(), Error> {
        let queue = self.queues.get(&id).ok_or(Error::UnknownQueue(id))?;
        if !queue.homed.is_empty() {
            return Err(Error::QueueInUse {
                queue: id,
                interactions: queue.homed.len(),
            });
        }
        self.queues.remove(&id).expect("checked it exists above");
        if let Some(members) = self.members.get(&id) {
            for agent in members {
                if let Some(agent) = self.agents.get_mut(agent) {
                    agent.listed_keys.retain(|&(q, _)| q != id);
                }
            }
        }
        // Its row is free for another queue.
        self.refresh_members_served(id);
        // Interactions that overflowed here stop looking at it: the queued ones left its waiting
        // lists with it; an offered one is taken back from the agents it was offered to through
        // it, and waits again with its place if that was every agent it was offered to.
        let mut overflowed: Vec<InteractionId> = self
            .interactions
            .values()
            .filter(|inter| inter.escalation.overflow.contains(&id))
            .map(|inter| inter.id)
            .collect();
        overflowed.sort_unstable();
        let mut waiting: Vec<WaitKey> = Vec::new();
        let mut revoked: Vec<AgentId> = Vec::new();
        for interaction in overflowed {
            if let Some(inter) = self.interactions.get_mut(&interaction) {
                inter.escalation.overflow.retain(|&q| q != id);
            }
            if self.revoke_unqualified(interaction, &mut revoked) {
                self.wait_again(interaction, &mut waiting);
            }
        }
        self.route_again(waiting, revoked, now);
        Ok(())
    }

    /// Lists `interaction` among the waiting again and notes its wait key for
    /// [`Engine::route_again`].
    fn wait_again(&mut self, interaction: InteractionId, waiting: &mut Vec<WaitKey>) {
        self.list_waiting(interaction);
        if let Some(key) = self.interactions.get(&interaction).and_then(|i| i.wait_key) {
            waiting.push(key);
        }
    }

    /// After a queue change: routes the interactions waiting again (`waiting`) in rank order,
    /// then lets the agents that gave offers back (`revoked`; a revoke hides its agent) take
    /// other work.
    fn route_again(&mut self, mut waiting: Vec<WaitKey>, mut revoked: Vec<AgentId>, now: Instant) {
        waiting.sort_unstable();
        for key in waiting {
            if let Some(slot) = self.interactions.slot(&key.interaction) {
                self.route(slot, now);
            }
        }
        revoked.sort_unstable();
        revoked.dedup();
        self.settle_freed(&revoked, now);
    }

    /// Agent `id` stops serving queue `q`.
    fn leave(&mut self, q: QueueId, id: AgentId) {
        if let Some(members) = self.members.get_mut(&q) {
            members.remove(&id);
            if members.is_empty() {
                self.members.remove(&q);
            }
        }
        self.count_members(q);
    }

    /// Copies the number of agents serving `q` into the queue, if it exists.
    fn count_members(&mut self, q: QueueId) {
        let count = self.members.get(&q).map_or(0, |members| members.len());
        if let Some(queue) = self.queues.get_mut(&q) {
            queue.members = count;
        }
    }

    /// Recomputes the rows of the existing queues the agent in row `slot` serves.
    fn refresh_served(&mut self, slot: u32) {
        let queues = &self.queues;
        if let Some(agent) = self.agents.at_mut(slot) {
            agent.served = agent.queues.iter().filter_map(|q| queues.slot(q)).collect();
            // Highest priority first (see `Agent::served`); stable, so ties stay in id order.
            agent.served.sort_by_key(|&row| {
                std::cmp::Reverse(queues.at(row).map_or(0, |queue| queue.config.priority))
            });
        }
    }

    /// [`Engine::refresh_served`] for every agent serving `q` (created or removed).
    fn refresh_members_served(&mut self, q: QueueId) {
        let slots: Vec<u32> = self
            .members
            .get(&q)
            .into_iter()
            .flatten()
            .filter_map(|agent| self.agents.slot(agent))
            .collect();
        for slot in slots {
            self.refresh_served(slot);
        }
    }
}

/// Where an interaction that got the first `next` steps of `old` stands in `new`, a changed list
/// of its queue's escalation steps: every step of `new` at or before the waiting time of the last
/// step it got counts as done (what that step did stays; a step added there is not applied after
/// the fact), and the ones after apply when due — at once if their time has passed. Indexes into
/// the old list mean nothing in the new one: a step inserted in front made the step just applied
/// apply again, a step removed made the next one be skipped.
fn next_step_after_change(old: &[EscalationStep], new: &[EscalationStep], next: usize) -> usize {
    match next.checked_sub(1).and_then(|last| old.get(last)) {
        Some(last) => new.partition_point(|step| step.after <= last.after),
        None => 0,
    }
}

/// Whether `agent` may keep its pending offer of `inter`: it serves a queue the interaction is
/// visible in and meets its needs (skills, levels, language), or the offer was made straight to
/// it, whatever its queues and skills.
fn qualifies(agent: &Agent, inter: &Interaction) -> bool {
    matches!(inter.stage, Stage::Offered { direct: true, .. })
        || (inter
            .visible_in()
            .any(|q| agent.queues.binary_search(&q).is_ok())
            && agent.skills.meets(&inter.needs))
}

/// The offers pending for `agent` that it may no longer hold: those it does not qualify for
/// ([`qualifies`]), and those its capacity and blending no longer leave room for.
///
/// Its work is replayed in the order it got it, each offer kept only if routing could offer it
/// on top of the work kept before it ([`capacity::free_kinds`], the check made when it was
/// offered, direct offers included). Under an unchanged configuration every offer passes again,
/// since work only left since and less work never blocks a kind. Under a lowered capacity or
/// tighter blending the newest offers go first, as the last ones taken on are the ones that no
/// longer fit. Connected and wrap-up work is only counted, never given back.
fn untenable_offers(
    agent: &Agent,
    interactions: &Table<InteractionId, Interaction>,
) -> Vec<InteractionId> {
    let mut kept = Load::default();
    let mut untenable = Vec::new();
    for slot in &agent.slots {
        if slot.state == SlotState::Offered {
            let fits =
                capacity::free_kinds(&agent.capacity, agent.blending, &kept).contains(slot.kind);
            let qualified = interactions
                .get(&slot.interaction)
                .is_none_or(|inter| qualifies(agent, inter));
            if !(fits && qualified) {
                untenable.push(slot.interaction);
                continue;
            }
        }
        kept.add(slot.kind);
    }
    untenable
}

#[cfg(test)]
mod tests {
    use crate::harness::*;
    use crate::*;

    #[test]
    fn a_changed_agent_pulls_work_it_now_qualifies_for() {
        let mut h = Harness::new();
        let mut queue = QueueConfig::new(QueueId(1));
        queue.required_skills = vec![req(1, 5)];
        h.queue(queue);
        h.simple_queue(2);
        h.ready_agent(1, &[2], &[(1, 4)]);
        h.call(10, 1);
        h.agent(1, &[1, 2], &[(1, 4)]);
        assert_eq!(
            h.state(10),
            Some(InteractionState::Queued),
            "serves it, level too low"
        );
        let out = h.input(Input::UpsertAgent {
            agent: AgentConfig {
                id: AgentId(1),
                skills: vec![AgentSkill {
                    skill: SkillId(1),
                    level: level(5),
                }],
                queues: vec![QueueId(1), QueueId(1)],
                capacity: None,
                blending: None,
            },
        });
        assert_eq!(offers(&out), vec![(10, 1)]);
    }

    #[test]
    fn a_changed_queue_reroutes_its_waiting_interactions() {
        let mut h = Harness::new();
        let mut queue = QueueConfig::new(QueueId(1));
        queue.required_skills = vec![req(1, 5)];
        h.queue(queue.clone());
        h.ready_agent(1, &[1], &[(1, 3)]);
        h.call(10, 1);
        queue.required_skills = vec![req(1, 3)];
        queue.strategy = Strategy::BestSkill;
        let out = h.input(Input::UpsertQueue { queue });
        assert_eq!(offers(&out), vec![(10, 1)]);
    }

    /// A queue that stops ringing everyone keeps each call offered to one agent only.
    #[test]
    fn a_queue_leaving_ring_all_keeps_each_offer_at_one_agent() {
        let mut h = Harness::new();
        let mut queue = QueueConfig::new(QueueId(1));
        queue.strategy = Strategy::RingAll;
        h.queue(queue.clone());
        h.ready_agent(1, &[1], &[]);
        h.ready_agent(2, &[1], &[]);
        h.ready_agent(3, &[1], &[]);
        assert_eq!(offers(&h.call(10, 1)), vec![(10, 1), (10, 2), (10, 3)]);
        queue.strategy = Strategy::LongestIdle;
        let out = h.input(Input::UpsertQueue { queue });
        assert_eq!(
            revokes(&out),
            vec![
                (10, 2, RevokeReason::QueueChanged),
                (10, 3, RevokeReason::QueueChanged)
            ]
        );
        assert_eq!(h.state(10), Some(InteractionState::Offered));
        assert_eq!(h.presence(1), Presence::Reserved);
        assert_eq!(
            h.presence(2),
            Presence::Ready {
                mode: ReadyMode::Inbound
            }
        );
    }

    #[test]
    fn queue_priority_changes_rerank_waiting_interactions() {
        let mut h = Harness::new();
        h.simple_queue(1);
        h.simple_queue(2);
        h.agent(1, &[1, 2], &[]);
        h.call(10, 1);
        h.call(11, 2);
        let mut second = QueueConfig::new(QueueId(2));
        second.priority = 1;
        h.queue(second);
        assert_eq!(offers(&h.status(1, ready())), vec![(11, 1)]);
    }

    #[test]
    fn a_queue_with_live_interactions_cannot_be_removed() {
        let mut h = Harness::new();
        h.simple_queue(1);
        h.simple_queue(2);
        h.ready_agent(1, &[1, 2], &[]);
        h.call(10, 1);
        assert_eq!(
            h.try_input(Input::RemoveQueue { queue: QueueId(1) }),
            Err(Error::QueueInUse {
                queue: QueueId(1),
                interactions: 1
            })
        );
        h.input(Input::RemoveQueue { queue: QueueId(2) });
        assert_eq!(
            h.try_input(Input::RemoveQueue { queue: QueueId(2) }),
            Err(Error::UnknownQueue(QueueId(2)))
        );
        // Re-created, the queue finds its agents again.
        h.simple_queue(2);
        h.accept(1, 10);
        h.end(10);
        assert_eq!(offers(&h.call(11, 2)), vec![(11, 1)]);
    }

    #[test]
    fn removing_an_agent_reroutes_its_offers_but_not_its_calls() {
        let mut h = Harness::new();
        h.simple_queue(1);
        h.ready_agent(1, &[1], &[]);
        h.ready_agent(2, &[1], &[]);
        h.call(10, 1);
        h.call(11, 1);
        h.accept(2, 11);
        assert_eq!(
            h.try_input(Input::RemoveAgent { agent: AgentId(2) }),
            Err(Error::AgentHasWork(AgentId(2)))
        );
        let out = h.input(Input::RemoveAgent { agent: AgentId(1) });
        assert_eq!(revokes(&out), vec![(10, 1, RevokeReason::AgentUnavailable)]);
        assert!(out.contains(&Output::PresenceChanged {
            agent: AgentId(1),
            from: Presence::Reserved,
            to: Presence::Offline
        }));
        assert_eq!(h.state(10), Some(InteractionState::Queued));
        assert!(h.engine.agent(AgentId(1)).is_none());
        let out = h.end(11);
        assert_eq!(offers(&out), vec![(10, 2)]);
    }

    #[test]
    fn an_agent_losing_its_skill_and_queue_loses_their_offers() {
        let mut h = Harness::new();
        let mut queue = QueueConfig::new(QueueId(1));
        queue.required_skills = vec![req(5, 5)];
        h.queue(queue);
        h.ready_agent(1, &[1], &[(5, 5)]);
        assert_eq!(offers(&h.call(10, 1)), vec![(10, 1)]);
        h.ready_agent(2, &[1], &[(5, 9)]);
        let out = h.input(Input::UpsertAgent {
            agent: AgentConfig::new(AgentId(1)),
        });
        assert_eq!(revokes(&out), vec![(10, 1, RevokeReason::AgentUnavailable)]);
        assert_eq!(offers(&out), vec![(10, 2)]);
        assert!(h.offer_is_gone(1, 10));
        // Losing only the skill is enough: it still serves the queue.
        h.agent(2, &[1], &[(5, 4)]);
        assert_eq!(h.state(10), Some(InteractionState::Queued));
    }

    #[test]
    fn an_offer_made_straight_to_an_agent_survives_its_queues_changing() {
        let mut h = Harness::new();
        let mut queue = QueueConfig::new(QueueId(1));
        queue.required_skills = vec![req(5, 5)];
        h.queue(queue);
        h.ready_agent(1, &[1], &[(5, 5)]);
        h.ready_agent(2, &[1], &[(5, 5)]);
        h.call(10, 1);
        h.accept(1, 10);
        let out = h.input(Input::Transfer {
            interaction: InteractionId(10),
            to: TransferTarget::Agent { agent: AgentId(2) },
        });
        assert_eq!(offers(&out), vec![(10, 2)]);
        let out = h.input(Input::UpsertAgent {
            agent: AgentConfig::new(AgentId(2)),
        });
        assert!(revokes(&out).is_empty(), "{out:?}");
        let mut queue = QueueConfig::new(QueueId(1));
        queue.required_skills = vec![req(5, 9)];
        let out = h.input(Input::UpsertQueue { queue });
        assert!(revokes(&out).is_empty(), "{out:?}");
        let out = h.accept(2, 10);
        assert!(out.contains(&Output::Connected {
            interaction: InteractionId(10),
            agent: AgentId(2),
            queue: QueueId(1),
            waited: secs(0)
        }));
    }

    #[test]
    fn a_queue_requiring_more_takes_its_offers_back_from_agents_short_of_it() {
        let mut h = Harness::new();
        let mut queue = QueueConfig::new(QueueId(1));
        queue.required_skills = vec![req(5, 5)];
        h.queue(queue.clone());
        h.ready_agent(1, &[1], &[(5, 5)]);
        assert_eq!(offers(&h.call(10, 1)), vec![(10, 1)]);
        h.call(11, 1);
        queue.required_skills = vec![req(5, 7)];
        let out = h.input(Input::UpsertQueue { queue });
        assert_eq!(revokes(&out), vec![(10, 1, RevokeReason::AgentUnavailable)]);
        assert!(offers(&out).is_empty(), "{out:?}");
        assert!(h.offer_is_gone(1, 10));
        // It waits with its place: ahead of 11, which came later.
        h.agent(2, &[1], &[(5, 9)]);
        assert_eq!(offers(&h.status(2, ready())), vec![(10, 2)]);
    }

    #[test]
    fn a_queue_change_checks_offers_against_the_needs_escalation_relaxed() {
        let mut h = Harness::new();
        let mut queue = QueueConfig::new(QueueId(1));
        queue.required_skills = vec![req(5, 6)];
        queue.escalation = vec![EscalationStep {
            after: secs(10),
            action: EscalationAction::LowerSkillLevels { by: 2 },
        }];
        h.queue(queue.clone());
        h.ready_agent(1, &[1], &[(5, 4)]);
        h.call(10, 1);
        assert_eq!(offers(&h.advance(secs(10))), vec![(10, 1)], "6 - 2 = 4");
        queue.required_skills = vec![req(5, 5)];
        let out = h.input(Input::UpsertQueue {
            queue: queue.clone(),
        });
        assert!(revokes(&out).is_empty(), "5 - 2 = 3 <= 4: {out:?}");
        queue.required_skills = vec![req(5, 7)];
        let out = h.input(Input::UpsertQueue { queue });
        assert_eq!(
            revokes(&out),
            vec![(10, 1, RevokeReason::AgentUnavailable)],
            "7 - 2 = 5 > 4"
        );
        assert_eq!(h.state(10), Some(InteractionState::Queued));
    }

    #[test]
    fn a_lowered_capacity_gives_back_the_newest_offers_and_keeps_connected_work() {
        let mut h = Harness::new();
        h.simple_queue(1);
        h.ready_agent(1, &[1], &[]);
        for id in [10, 11, 12] {
            assert_eq!(
                offers(&h.enqueue(interaction(id, Channel::Chat, 1))),
                vec![(id, 1)]
            );
        }
        h.accept(1, 10);
        let with_chats = |chats| {
            let mut agent = AgentConfig::new(AgentId(1));
            agent.queues = vec![QueueId(1)];
            agent.capacity = Some(Capacity {
                calls: 1,
                chats,
                tickets: 5,
            });
            Input::UpsertAgent { agent }
        };
        let out = h.input(with_chats(2));
        assert_eq!(revokes(&out), vec![(12, 1, RevokeReason::AgentUnavailable)]);
        let out = h.input(with_chats(0));
        assert_eq!(revokes(&out), vec![(11, 1, RevokeReason::AgentUnavailable)]);
        assert_eq!(h.state(10), Some(InteractionState::Connected));
        // Both wait with their places.
        h.ready_agent(2, &[1], &[]);
        assert_eq!(h.state(11), Some(InteractionState::Offered));
        assert_eq!(
            h.engine.interaction(InteractionId(11)).map(|i| i.agents),
            Some(vec![AgentId(2)])
        );
    }

    #[test]
    fn tighter_blending_gives_back_the_offers_it_no_longer_allows() {
        let mut h = Harness::new();
        h.simple_queue(1);
        let mut agent = AgentConfig::new(AgentId(1));
        agent.queues = vec![QueueId(1)];
        agent.blending = Some(Blending::Independent);
        h.input(Input::UpsertAgent {
            agent: agent.clone(),
        });
        h.status(1, ready());
        h.enqueue(interaction(10, Channel::Chat, 1));
        assert_eq!(
            offers(&h.enqueue(interaction(11, Channel::Email, 1))),
            vec![(11, 1)]
        );
        agent.blending = Some(Blending::Exclusive);
        let out = h.input(Input::UpsertAgent { agent });
        assert_eq!(revokes(&out), vec![(11, 1, RevokeReason::AgentUnavailable)]);
        assert_eq!(h.state(10), Some(InteractionState::Offered));
    }

    #[test]
    fn nonsense_configuration_is_refused() {
        let mut h = Harness::new();
        let mut queue = QueueConfig::new(QueueId(1));
        queue.offer_timeout = secs(0);
        assert_eq!(
            h.try_input(Input::UpsertQueue { queue }),
            Err(Error::InvalidQueue {
                queue: QueueId(1),
                reason: "offer timeout must be positive"
            })
        );
        let mut agent = AgentConfig::new(AgentId(1));
        agent.skills = vec![
            AgentSkill {
                skill: SkillId(4),
                level: level(1),
            },
            AgentSkill {
                skill: SkillId(4),
                level: level(2),
            },
        ];
        assert_eq!(
            h.try_input(Input::UpsertAgent { agent }),
            Err(Error::DuplicateSkill {
                agent: AgentId(1),
                skill: SkillId(4)
            })
        );
        assert_eq!(
            h.try_input(Input::RemoveAgent { agent: AgentId(1) }),
            Err(Error::UnknownAgent(AgentId(1)))
        );
    }

    #[test]
    fn new_settings_apply_to_the_next_miss_and_the_next_upsert() {
        let mut h = Harness::new();
        h.simple_queue(1);
        h.ready_agent(1, &[1], &[]);
        h.ready_agent(2, &[1], &[]);
        let exclusive = EngineConfig {
            blending: Blending::Exclusive,
            missed_offer: MissedOffer::StayReady,
            ..EngineConfig::default()
        };
        h.input(Input::Configure { config: exclusive });
        h.enqueue(interaction(10, Channel::Chat, 1));
        assert_eq!(offers(&h.reject(1, 10)), vec![(10, 2)]);
        assert_eq!(
            h.presence(1),
            Presence::Ready {
                mode: ReadyMode::Inbound
            }
        );
        h.accept(2, 10);
        h.status(1, not_ready("break"));
        // Upserted again, agent 2 takes the new default: holding a chat, no email for it.
        h.agent(2, &[1], &[]);
        assert!(offers(&h.enqueue(interaction(11, Channel::Email, 1))).is_empty());
        h.input(Input::Configure {
            config: EngineConfig::default(),
        });
        let mut agent = AgentConfig::new(AgentId(2));
        agent.queues = vec![QueueId(1)];
        let out = h.input(Input::UpsertAgent { agent });
        assert_eq!(offers(&out), vec![(11, 2)]);
    }

    #[test]
    fn removing_an_overflow_queue_takes_back_the_offers_made_through_it() {
        let mut h = Harness::new();
        let mut home = QueueConfig::new(QueueId(1));
        home.escalation = vec![EscalationStep {
            after: secs(20),
            action: EscalationAction::AddOverflowQueues {
                queues: vec![QueueId(2)],
            },
        }];
        h.queue(home);
        h.simple_queue(2);
        h.ready_agent(1, &[2], &[]);
        h.call(10, 1);
        h.call(11, 1);
        let out = h.advance(secs(20));
        assert_eq!(offers(&out), vec![(10, 1)], "through overflow queue 2");
        let out = h.input(Input::RemoveQueue { queue: QueueId(2) });
        assert_eq!(revokes(&out), vec![(10, 1, RevokeReason::AgentUnavailable)]);
        assert!(
            offers(&out).is_empty(),
            "agent 1 serves none of 1's queues: {out:?}"
        );
        assert!(h.offer_is_gone(1, 10));
        assert_eq!(h.state(10), Some(InteractionState::Queued));
        assert_eq!(
            h.engine
                .queue_position(InteractionId(10), h.now)
                .map(|p| p.position),
            Ok(1),
            "it waits with its place, ahead of 11"
        );
        assert!(h.engine.interactions[&InteractionId(10)]
            .escalation
            .overflow
            .is_empty());
        // It waits with its place: ahead of 11, which came later.
        h.agent(2, &[1], &[]);
        assert_eq!(offers(&h.status(2, ready())), vec![(10, 2)]);
    }
}
