//! The life of an interaction and its agents' presence: enqueue → offer → accept → connected →
//! end → wrap-up → done, with rejects, timeouts, abandons, transfers and status changes.
//!
//! Each handler validates first and mutates after, so a refused input changes nothing. Freed
//! agents are settled last ([`Engine::settle_agent`]) so that re-routing an interaction never
//! hands it straight back to the agent that just missed it while someone else could take it.

use std::time::{Duration, Instant};

use crate::agent::SlotState;
use crate::error::Error;
use crate::escalation::wait_due_after;
use crate::ids::{AgentId, InteractionId, QueueId};
use crate::input::TransferTarget;
use crate::interaction::{Escalation, Held, Interaction, NewInteraction, OfferedTo, Stage};
use crate::output::{Output, RevokeReason};
use crate::presence::AgentStatus;
use crate::timer::Timer;
use crate::Engine;

impl Engine {
    pub(crate) fn enqueue(&mut self, new: NewInteraction, now: Instant) -> Result<(), Error> {
        if let Some(inter) = self.interactions.get(&new.id) {
            return match inter.stage {
                Stage::WrapUp { .. } => self.written_again(new, now),
                _ => Err(Error::DuplicateInteraction(new.id)),
            };
        }
        let (id, queue, channel, priority) = (new.id, new.queue, new.channel, new.priority);
        let waited = new.restored.map(|r| r.waited).unwrap_or_default();
        let order = self.admit(new, now)?;
        self.push(Output::Queued {
            interaction: id,
            queue,
            channel,
            order,
            priority,
            waited,
        });
        self.route_or_wait(id, now);
        Ok(())
    }

    /// The customer wrote again while an agent wraps the interaction up (a reply to a ticket
    /// just answered): it waits again, a new wait, with what `new` says of it now (its queue,
    /// language, skills and priority), and the agent's wrap-up goes on (it ends without
    /// finishing the interaction).
    fn written_again(&mut self, new: NewInteraction, now: Instant) -> Result<(), Error> {
        if !self.queues.contains_key(&new.queue) {
            return Err(Error::UnknownQueue(new.queue));
        }
        let Some(inter) = self.interactions.get_mut(&new.id) else {
            return Err(Error::UnknownInteraction(new.id));
        };
        inter.language = new.language;
        inter.skills = new.skills;
        inter.priority = new.priority;
        self.wait_again_in(new.id, new.queue, now);
        Ok(())
    }

    /// Starts a new wait of `id` in `queue`: a new place at the back, escalation and the wait
    /// clock start over, and it is routed at once if it can be.
    fn wait_again_in(&mut self, id: InteractionId, queue: QueueId, now: Instant) {
        let order = self.take_order();
        let Some(inter) = self.interactions.get_mut(&id) else {
            return;
        };
        inter.enqueued_at = now;
        inter.escalation = Escalation::default();
        inter.order = order;
        inter.stage = Stage::Queued;
        let (channel, priority) = (inter.channel, inter.priority);
        self.rehome(id, queue);
        self.refresh_needs(id);
        self.push(Output::Queued {
            interaction: id,
            queue,
            channel,
            order,
            priority,
            waited: Duration::ZERO,
        });
        self.schedule_wait(id);
        self.route_or_wait(id, now);
    }

    /// Takes in a new or restored interaction as queued but not yet listed or routed; returns
    /// its enqueue order.
    #[inline]
    fn admit(&mut self, new: NewInteraction, now: Instant) -> Result<u64, Error> {
        // Field by field rather than through helpers, so that the hottest input looks each map
        // up as few times as it can. (Not through `entry`: that may grow the map, and a refused
        // input must change nothing.) The callers have checked that `new.id` is not live.
        let Some(home) = self.queues.slot(&new.queue) else {
            return Err(Error::UnknownQueue(new.queue));
        };
        let queue = self.queues.at(home).expect("the index names used rows");
        let (order, enqueued_at, applied, sla_breached) = match new.restored {
            Some(restored) => {
                self.next_order = self.next_order.max(restored.order.saturating_add(1));
                let enqueued_at = now.checked_sub(restored.waited).unwrap_or(now);
                (
                    restored.order,
                    enqueued_at,
                    restored.escalations_applied,
                    restored.sla_breached,
                )
            }
            None => {
                let order = self.next_order;
                self.next_order += 1;
                (order, now, 0, false)
            }
        };
        let mut escalation = Escalation::default();
        for step in queue.config.escalation.iter().take(applied) {
            escalation.apply(&step.action, new.queue, &self.queues);
            escalation.next_step += 1;
        }
        let needs = queue.needs_of(&new.skills, new.language, escalation.relaxation);
        let id = new.id;
        let wait_timer = wait_due_after(&queue.config, escalation.next_step, sla_breached)
            .and_then(|after| self.timers.schedule_in(enqueued_at, after, Timer::Wait(id)));
        let slot = self.interactions.insert_with(id, |_| Interaction {
            id,
            channel: new.channel,
            kind: new.channel.kind(),
            queue: new.queue,
            language: new.language,
            skills: new.skills,
            priority: new.priority,
            order,
            enqueued_at,
            escalation,
            needs,
            stage: Stage::Queued,
            wait_key: None,
            wait_timer,
            sla_breached,
            home,
            homed_at: 0,
        });
        self.home(slot);
        Ok(order)
    }

    /// Gives the agent back work it held when the tenant's routing stopped. Nothing is logged
    /// for the interaction (its rows already say connected or in wrap-up); an agent that is
    /// offline, as every agent is when routing starts, becomes not ready ("disconnected") as if
    /// its console had just gone, and a wrap-up starts its timer again.
    ///
    /// Refused if the agent already holds the id: an agent has one slot per interaction, and
    /// the id may be free again while the agent still wraps up its earlier part of it
    /// (transferred away, then abandoned or finished elsewhere).
    pub(crate) fn resume(&mut self, held: Held, now: Instant) -> Result<(), Error> {
        let Held {
            interaction,
            agent: agent_id,
            wrap_up,
        } = held;
        let id = interaction.id;
        let agent = self
            .agents
            .get(&agent_id)
            .ok_or(Error::UnknownAgent(agent_id))?;
        if agent.holds(id) {
            return Err(Error::AgentUnavailable(agent_id));
        }
        if self.interactions.contains_key(&id) {
            return Err(Error::DuplicateInteraction(id));
        }
        self.admit(interaction, now)?;
        let inter = self.interactions.get_mut(&id).expect("admitted just above");
        self.timers.cancel(inter.wait_timer.take());
        inter.stage = if wrap_up {
            Stage::WrapUp { agent: agent_id }
        } else {
            Stage::Connected { agent: agent_id }
        };
        let (queue, kind) = (inter.queue, inter.kind);
        let agent = self
            .agents
            .get_mut(&agent_id)
            .expect("checked it is known above");
        agent.add_slot(id, kind);
        if let Some(slot) = agent.slot_mut(id) {
            slot.state = SlotState::Connected { since: now, queue };
        }
        if agent.status == AgentStatus::Offline {
            agent.status = AgentStatus::disconnected();
        }
        if wrap_up {
            self.start_wrap_up(agent_id, id, now);
        } else {
            self.settle_agent(agent_id, now, false);
        }
        Ok(())
    }

    /// Connects an interaction the agent placed itself (click-to-dial) to it at once. Refused
    /// if the agent is offline, has no free capacity for the channel (blending applies,
    /// whatever its ready mode) or already holds the id.
    pub(crate) fn place(
        &mut self,
        interaction: NewInteraction,
        agent_id: AgentId,
        now: Instant,
    ) -> Result<(), Error> {
        let id = interaction.id;
        let kind = interaction.channel.kind();
        let agent = self
            .agents
            .get(&agent_id)
            .ok_or(Error::UnknownAgent(agent_id))?;
        if agent.status == AgentStatus::Offline || !agent.room().contains(kind) || agent.holds(id) {
            return Err(Error::AgentUnavailable(agent_id));
        }
        if self.interactions.contains_key(&id) {
            return Err(Error::DuplicateInteraction(id));
        }
        let channel = interaction.channel;
        let order = self.admit(interaction, now)?;
        let inter = self.interactions.get_mut(&id).expect("admitted just above");
        self.timers.cancel(inter.wait_timer.take());
        inter.stage = Stage::Connected { agent: agent_id };
        let queue = inter.queue;
        let agent = self
            .agents
            .get_mut(&agent_id)
            .expect("checked it is known above");
        agent.add_slot(id, kind);
        if let Some(slot) = agent.slot_mut(id) {
            slot.state = SlotState::Connected { since: now, queue };
        }
        self.push(Output::Placed {
            interaction: id,
            agent: agent_id,
            queue,
            channel,
            order,
        });
        self.settle_agent(agent_id, now, false);
        Ok(())
    }

    /// Adds the interaction in row `row` to the homed list of its queue.
    fn home(&mut self, row: u32) {
        let Some(inter) = self.interactions.at_mut(row) else {
            return;
        };
        let homed = &mut self
            .queues
            .at_mut(inter.home)
            .expect("a queue with live interactions cannot be removed")
            .homed;
        inter.homed_at = homed.len();
        homed.push(row);
    }

    /// Takes the interaction in row `row` out of the homed list of its queue; the last one of
    /// the list takes its place.
    fn unhome(&mut self, row: u32) {
        let Some(inter) = self.interactions.at(row) else {
            return;
        };
        let at = inter.homed_at;
        let homed = &mut self
            .queues
            .at_mut(inter.home)
            .expect("a queue with live interactions cannot be removed")
            .homed;
        homed.swap_remove(at);
        if let Some(&moved) = homed.get(at) {
            if let Some(moved) = self.interactions.at_mut(moved) {
                moved.homed_at = at;
            }
        }
    }

    /// Moves a live interaction to `queue`, which exists (transfer, supervisor move).
    pub(crate) fn rehome(&mut self, id: InteractionId, queue: QueueId) {
        let (Some(row), Some(home)) = (self.interactions.slot(&id), self.queues.slot(&queue))
        else {
            return;
        };
        self.unhome(row);
        if let Some(inter) = self.interactions.at_mut(row) {
            inter.queue = queue;
            inter.home = home;
        }
        self.home(row);
    }

    /// Removes a finished or abandoned interaction; returns it.
    fn forget(&mut self, id: InteractionId) -> Option<Interaction> {
        self.unhome(self.interactions.slot(&id)?);
        self.interactions.remove(&id)
    }

    /// Checks that an offer of `id` is pending for `agent`.
    fn pending_offer(&self, agent: AgentId, id: InteractionId) -> Result<&[AgentId], Error> {
        let inter = self
            .interactions
            .get(&id)
            .ok_or(Error::UnknownInteraction(id))?;
        if !self.agents.contains_key(&agent) {
            return Err(Error::UnknownAgent(agent));
        }
        match &inter.stage {
            Stage::Offered { agents, .. } if agents.contains(&agent) => Ok(agents),
            _ => Err(Error::OfferNotPending {
                interaction: id,
                agent,
            }),
        }
    }

    pub(crate) fn accept(
        &mut self,
        agent: AgentId,
        id: InteractionId,
        now: Instant,
    ) -> Result<(), Error> {
        // Accepted already by the same agent: the console and the phone answering at once
        // (whichever came second would otherwise hang up the call it just took).
        if matches!(
            self.interactions.get(&id).map(|i| &i.stage),
            Some(Stage::Connected { agent: holder }) if *holder == agent
        ) {
            return Ok(());
        }
        let others: Vec<AgentId> = self
            .pending_offer(agent, id)?
            .iter()
            .copied()
            .filter(|&a| a != agent)
            .collect();
        let inter = self
            .interactions
            .get_mut(&id)
            .expect("pending_offer checked it is live");
        if let Stage::Offered { timer, .. } = &mut inter.stage {
            self.timers.cancel(timer.take());
        }
        inter.stage = Stage::Connected { agent };
        self.timers.cancel(inter.wait_timer.take());
        let queue = inter.queue;
        let waited = now.saturating_duration_since(inter.enqueued_at);
        if let Some(slot) = self.agents.get_mut(&agent).and_then(|a| a.slot_mut(id)) {
            slot.state = SlotState::Connected { since: now, queue };
        }
        self.push(Output::Connected {
            interaction: id,
            agent,
            queue,
            waited,
        });
        self.settle_agent(agent, now, false);
        for &other in &others {
            self.revoke(id, other, RevokeReason::AnsweredElsewhere);
        }
        self.settle_freed(&others, now);
        Ok(())
    }

    pub(crate) fn reject(
        &mut self,
        agent: AgentId,
        id: InteractionId,
        now: Instant,
    ) -> Result<(), Error> {
        self.pending_offer(agent, id)?;
        let orphaned = self.revoke(id, agent, RevokeReason::Rejected);
        let unavailable = self.miss(agent);
        // The missed interaction is re-routed first, then the agent's other offers (each keeps
        // its place in the queue).
        if orphaned {
            self.requeue(id, now);
        }
        if unavailable {
            self.withdraw_offers(agent, now);
        }
        self.settle_agent(agent, now, true);
        Ok(())
    }

    /// The offer timer of `id` fired: the agent offered it missed it. A ring-all offer that
    /// rang at several agents is missed by none of them (nobody was the one to answer it, and
    /// the missed-offer policy would take the whole group off at once): it rings again.
    pub(crate) fn offer_timed_out(&mut self, id: InteractionId, now: Instant) {
        let Some(Stage::Offered { agents, .. }) = self.interactions.get(&id).map(|i| &i.stage)
        else {
            return;
        };
        let agents = agents.clone();
        let blamed = agents.len() == 1;
        let mut orphaned = false;
        let mut unavailable = Vec::new();
        for &agent in &agents {
            orphaned = self.revoke(id, agent, RevokeReason::TimedOut);
            if blamed && self.miss(agent) {
                unavailable.push(agent);
            }
        }
        // The timed-out interaction first, then the other offers of the agents that missed it.
        if orphaned {
            if !blamed {
                // The group, hidden by the revokes, is listed again first: it rings at all of
                // them and anyone who turned ready meanwhile, not at a newcomer alone.
                self.list_again(&agents);
            }
            self.requeue(id, now);
        }
        for &agent in &unavailable {
            self.withdraw_offers(agent, now);
        }
        self.settle_freed(&agents, now);
    }

    pub(crate) fn abandon(&mut self, id: InteractionId, now: Instant) -> Result<(), Error> {
        self.let_go_waiting(id, None, now)
    }

    pub(crate) fn close(
        &mut self,
        id: InteractionId,
        by: AgentId,
        now: Instant,
    ) -> Result<(), Error> {
        self.let_go_waiting(id, Some(by), now)
    }

    /// A waiting (queued or offered) interaction leaves routing: abandoned by the customer
    /// (`by` none), or closed by agent `by` from outside routing.
    fn let_go_waiting(
        &mut self,
        id: InteractionId,
        by: Option<AgentId>,
        now: Instant,
    ) -> Result<(), Error> {
        let inter = self
            .interactions
            .get(&id)
            .ok_or(Error::UnknownInteraction(id))?;
        let agents = match &inter.stage {
            Stage::Queued => OfferedTo::new(),
            Stage::Offered { agents, .. } => agents.clone(),
            Stage::Connected { .. } | Stage::WrapUp { .. } => {
                return Err(Error::NotWaiting {
                    interaction: id,
                    state: inter.state(),
                })
            }
        };
        self.unlist_waiting(id);
        let reason = match by {
            None => RevokeReason::Abandoned,
            Some(_) => RevokeReason::AnsweredElsewhere,
        };
        for &agent in &agents {
            self.revoke(id, agent, reason);
        }
        let inter = self.forget(id).expect("checked it is live above");
        self.timers.cancel(inter.wait_timer);
        let (queue, waited) = (
            inter.queue,
            now.saturating_duration_since(inter.enqueued_at),
        );
        self.push(match by {
            None => Output::Abandoned {
                interaction: id,
                queue,
                waited,
            },
            Some(agent) => Output::Closed {
                interaction: id,
                queue,
                agent,
                waited,
            },
        });
        self.settle_freed(&agents, now);
        Ok(())
    }

    pub(crate) fn end(&mut self, id: InteractionId, now: Instant) -> Result<(), Error> {
        let inter = self
            .interactions
            .get_mut(&id)
            .ok_or(Error::UnknownInteraction(id))?;
        let Stage::Connected { agent } = inter.stage else {
            return Err(Error::NotConnected {
                interaction: id,
                state: inter.state(),
            });
        };
        inter.stage = Stage::WrapUp { agent };
        let home = inter.home;
        let wrap_up = self
            .queues
            .at(home)
            .expect("a queue with live interactions cannot be removed")
            .config
            .wrap_up;
        self.push(Output::Ended {
            interaction: id,
            agent,
            wrap_up,
        });
        self.start_wrap_up(agent, id, now);
        Ok(())
    }

    /// Moves the agent's slot of `id` from connected to wrap-up, with the timer of the
    /// interaction's current queue; a zero wrap-up ends at once.
    fn start_wrap_up(&mut self, agent: AgentId, id: InteractionId, now: Instant) {
        let Some(inter) = self.interactions.get(&id) else {
            return;
        };
        let wrap_up = self.queue_of(inter).config.wrap_up;
        let timer = if wrap_up.is_zero() {
            None
        } else {
            self.timers
                .schedule_in(now, wrap_up, Timer::WrapUp(agent, id))
        };
        if let Some(slot) = self.agents.get_mut(&agent).and_then(|a| a.slot_mut(id)) {
            if let SlotState::Connected { since, queue } = slot.state {
                slot.state = SlotState::WrapUp {
                    since,
                    queue,
                    timer,
                };
            }
        }
        if wrap_up.is_zero() {
            self.finish_wrap_up(agent, id, now);
        } else {
            self.settle_agent(agent, now, false);
        }
    }

    pub(crate) fn wrap_up_done(
        &mut self,
        agent: AgentId,
        id: InteractionId,
        now: Instant,
    ) -> Result<(), Error> {
        let slot = self
            .agents
            .get(&agent)
            .ok_or(Error::UnknownAgent(agent))?
            .slot(id);
        if !matches!(slot, Some(s) if matches!(s.state, SlotState::WrapUp { .. })) {
            return Err(Error::NotInWrapUp {
                interaction: id,
                agent,
            });
        }
        self.finish_wrap_up(agent, id, now);
        Ok(())
    }

    /// Ends the agent's wrap-up of `id` (timer or explicit), frees its capacity and, if the
    /// interaction ended with this agent, finishes it.
    pub(crate) fn finish_wrap_up(&mut self, agent_id: AgentId, id: InteractionId, now: Instant) {
        let clock = self.tick();
        let Some(agent) = self.agents.get_mut(&agent_id) else {
            return;
        };
        let Some(slot) = agent.slot(id).copied() else {
            return;
        };
        let SlotState::WrapUp {
            since,
            queue,
            timer,
        } = slot.state
        else {
            return;
        };
        agent.take_slot(id);
        agent.last_activity = clock;
        self.timers.cancel(timer);
        if let Some(queue) = self.queues.get_mut(&queue) {
            queue.record_handle_time(now.saturating_duration_since(since));
        }
        self.push(Output::WrapUpEnded {
            interaction: id,
            agent: agent_id,
        });
        let finished = self
            .interactions
            .get(&id)
            .is_some_and(|i| i.stage == Stage::WrapUp { agent: agent_id });
        if finished && self.forget(id).is_some() {
            self.push(Output::Done { interaction: id });
        }
        self.settle_agent(agent_id, now, true);
    }

    pub(crate) fn transfer(
        &mut self,
        id: InteractionId,
        to: TransferTarget,
        now: Instant,
    ) -> Result<(), Error> {
        let inter = self
            .interactions
            .get(&id)
            .ok_or(Error::UnknownInteraction(id))?;
        let Stage::Connected { agent: from } = inter.stage else {
            return Err(Error::NotConnected {
                interaction: id,
                state: inter.state(),
            });
        };
        match to {
            TransferTarget::Agent { agent } => {
                if agent == from {
                    return Err(Error::TransferToSelf {
                        interaction: id,
                        agent,
                    });
                }
                let target = self.agents.get(&agent).ok_or(Error::UnknownAgent(agent))?;
                if !target.free_kinds().contains(inter.kind) || target.holds(id) {
                    return Err(Error::AgentUnavailable(agent));
                }
            }
            TransferTarget::Queue { queue } => {
                if !self.queues.contains_key(&queue) {
                    return Err(Error::UnknownQueue(queue));
                }
            }
        }
        let wrap_up = self.queue_of(inter).config.wrap_up;
        self.push(Output::Transferred {
            interaction: id,
            from,
            to,
            wrap_up,
        });
        // The transferring agent's part is over; its wrap-up runs with the old queue's timer.
        let timer = if wrap_up.is_zero() {
            None
        } else {
            self.timers
                .schedule_in(now, wrap_up, Timer::WrapUp(from, id))
        };
        if let Some(slot) = self.agents.get_mut(&from).and_then(|a| a.slot_mut(id)) {
            if let SlotState::Connected { since, queue } = slot.state {
                slot.state = SlotState::WrapUp {
                    since,
                    queue,
                    timer,
                };
            }
        }
        // The interaction starts a new wait: escalation and the wait clock start over.
        match to {
            TransferTarget::Queue { queue } => self.wait_again_in(id, queue, now),
            TransferTarget::Agent { agent } => {
                let inter = self
                    .interactions
                    .get_mut(&id)
                    .expect("checked it is live above");
                inter.enqueued_at = now;
                inter.escalation = Escalation::default();
                self.refresh_needs(id);
                self.offer_to(id, agent, now);
                self.schedule_wait(id);
                self.settle_agent(agent, now, false);
            }
        }
        if wrap_up.is_zero() {
            self.finish_wrap_up(from, id, now);
        } else {
            self.settle_agent(from, now, false);
        }
        Ok(())
    }

    pub(crate) fn set_status(
        &mut self,
        agent_id: AgentId,
        status: AgentStatus,
        now: Instant,
    ) -> Result<(), Error> {
        let agent = self
            .agents
            .get(&agent_id)
            .ok_or(Error::UnknownAgent(agent_id))?;
        if agent.status == status {
            return Ok(());
        }
        if status == AgentStatus::Offline && agent.has_work() {
            return Err(Error::AgentHasWork(agent_id));
        }
        let takes_inbound = status.takes_inbound();
        let clock = self.tick();
        let agent = self
            .agents
            .get_mut(&agent_id)
            .expect("checked it is known above");
        agent.status = status;
        agent.last_activity = clock;
        if !takes_inbound {
            self.withdraw_offers(agent_id, now);
        }
        self.settle_agent(agent_id, now, takes_inbound);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::harness::*;
    use crate::*;

    fn presence_changes(outputs: &[Output], agent: u64) -> Vec<(Presence, Presence)> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::PresenceChanged { agent: a, from, to } if a.0 == agent => {
                    Some((from.clone(), to.clone()))
                }
                _ => None,
            })
            .collect()
    }

    fn inbound() -> Presence {
        Presence::Ready {
            mode: ReadyMode::Inbound,
        }
    }

    /// Agent 1 turns ready inbound while it holds call 10 (in queue 1, 30 s of wrap-up): call
    /// 12 arriving meanwhile is offered to nobody; call 10 ends (its outputs are returned),
    /// and once its wrap-up is over the agent takes call 12.
    fn end_then_take_the_waiting_call(h: &mut Harness) -> Vec<Output> {
        h.status(1, ready());
        assert!(offers(&h.call(12, 1)).is_empty(), "busy with call 10");
        let ended = h.end(10);
        let out = h.advance(secs(30));
        assert!(out.contains(&Output::Done {
            interaction: InteractionId(10)
        }));
        assert_eq!(
            offers(&out),
            vec![(12, 1)],
            "free again, it takes the waiting call"
        );
        ended
    }

    fn queue_with_wrap_up(id: u64, wrap_up: Duration) -> QueueConfig {
        let mut queue = QueueConfig::new(QueueId(id));
        queue.wrap_up = wrap_up;
        queue
    }

    /// Work an agent held before its tenant's routing restarted is the agent's again: the agent
    /// shows as not ready ("disconnected") with it, it counts against the agent's capacity,
    /// ends and wraps up as work does; held wrap-up gets its timer again. A resume naming an
    /// unknown agent or a live interaction is refused and changes nothing.
    #[test]
    fn held_work_is_the_agents_again_after_a_restart() {
        let mut h = Harness::new();
        h.queue(queue_with_wrap_up(1, secs(30)));
        h.agent(1, &[1], &[]);
        h.agent(2, &[1], &[]);
        let resume = |id, agent, wrap_up| Input::Resume {
            held: Held {
                interaction: interaction(id, Channel::Call, 1),
                agent: AgentId(agent),
                wrap_up,
            },
        };
        let out = h.input(resume(10, 1, false));
        assert_eq!(
            out,
            vec![Output::PresenceChanged {
                agent: AgentId(1),
                from: Presence::Offline,
                to: Presence::Busy
            }],
            "no event for the interaction: its rows say connected already"
        );
        assert_eq!(h.state(10), Some(InteractionState::Connected));
        assert_eq!(
            h.engine.agent(AgentId(1)).map(|a| a.status),
            Some(AgentStatus::disconnected())
        );
        assert_eq!(
            h.try_input(resume(11, 9, false)),
            Err(Error::UnknownAgent(AgentId(9)))
        );
        assert_eq!(
            h.try_input(resume(10, 2, false)),
            Err(Error::DuplicateInteraction(InteractionId(10)))
        );

        // Ready again on its console, the agent still holds the call: nothing more is offered.
        let out = end_then_take_the_waiting_call(&mut h);
        assert_eq!(
            presence_changes(&out, 1),
            vec![(Presence::Busy, Presence::WrapUp)]
        );
        h.accept(1, 12);

        let out = h.input(resume(20, 2, true));
        assert_eq!(
            presence_changes(&out, 2),
            vec![(Presence::Offline, Presence::WrapUp)]
        );
        assert_eq!(
            h.engine.poll_timeout(),
            Some(h.now + secs(30)),
            "wrap-up timer"
        );
        let out = h.advance(secs(30));
        assert!(out.contains(&Output::Done {
            interaction: InteractionId(20)
        }));
        assert_eq!(
            presence_changes(&out, 2),
            vec![(
                Presence::WrapUp,
                Presence::NotReady {
                    reason: "disconnected".into()
                }
            )]
        );
    }

    /// A call the agent placed itself is connected to it at once: logged as placed, the agent
    /// busy and its call capacity taken (no inbound call is offered to it meanwhile, even when
    /// it turns ready inbound); it ends into the queue's wrap-up and is done. Placing needs a
    /// logged-in agent with room for the channel.
    #[test]
    fn a_placed_call_is_connected_at_once_and_takes_the_agents_capacity() {
        let mut h = Harness::new();
        h.queue(queue_with_wrap_up(1, secs(30)));
        h.agent(1, &[1], &[]);
        let place = |id| Input::Place {
            interaction: interaction(id, Channel::Call, 1),
            agent: AgentId(1),
        };
        assert_eq!(
            h.try_input(place(10)),
            Err(Error::AgentUnavailable(AgentId(1))),
            "an offline agent places nothing"
        );
        assert_eq!(h.state(10), None, "a refused place leaves nothing behind");
        h.status(
            1,
            AgentStatus::Ready {
                mode: ReadyMode::Outbound,
            },
        );
        let out = h.input(place(10));
        assert_eq!(
            out[0],
            Output::Placed {
                interaction: InteractionId(10),
                agent: AgentId(1),
                queue: QueueId(1),
                channel: Channel::Call,
                order: 0,
            }
        );
        assert!(!out.iter().any(|o| matches!(o, Output::Queued { .. })));
        assert_eq!(
            presence_changes(&out, 1),
            vec![(
                Presence::Ready {
                    mode: ReadyMode::Outbound
                },
                Presence::Busy
            )]
        );
        assert_eq!(h.state(10), Some(InteractionState::Connected));
        assert_eq!(
            h.try_input(place(11)),
            Err(Error::AgentUnavailable(AgentId(1))),
            "one call at a time"
        );
        let out = end_then_take_the_waiting_call(&mut h);
        assert!(out.contains(&Output::Ended {
            interaction: InteractionId(10),
            agent: AgentId(1),
            wrap_up: secs(30),
        }));
    }

    /// An agent holds one slot per interaction. Its earlier part of an interaction (transferred
    /// away, then abandoned) may still be in wrap-up when the id is free again: resuming the id
    /// to that agent is refused, instead of leaving it a second, never-answered slot.
    #[test]
    fn resume_of_an_id_the_agent_still_wraps_up_is_refused() {
        let mut h = Harness::new();
        h.queue(queue_with_wrap_up(1, secs(30)));
        h.agent(3, &[1], &[]);
        let resume = || Input::Resume {
            held: Held {
                interaction: interaction(4, Channel::Call, 1),
                agent: AgentId(3),
                wrap_up: false,
            },
        };
        h.input(resume());
        h.input(Input::Transfer {
            interaction: InteractionId(4),
            to: TransferTarget::Queue { queue: QueueId(1) },
        });
        h.input(Input::Abandon {
            interaction: InteractionId(4),
        });
        assert_eq!(
            h.try_input(resume()),
            Err(Error::AgentUnavailable(AgentId(3)))
        );
        let out = h.advance(secs(30));
        assert!(out.contains(&Output::WrapUpEnded {
            interaction: InteractionId(4),
            agent: AgentId(3)
        }));
        // Its wrap-up over, the agent holds nothing and takes the id again.
        h.input(resume());
        let agent = h.engine.agent(AgentId(3)).expect("agent 3 exists");
        let work: Vec<_> = agent
            .work
            .iter()
            .map(|w| (w.interaction, w.state))
            .collect();
        assert_eq!(work, [(InteractionId(4), WorkState::Connected)]);
    }

    #[test]
    fn full_lifecycle_with_every_event() {
        let mut h = Harness::new();
        h.queue(queue_with_wrap_up(1, secs(30)));
        h.agent(1, &[1], &[]);
        let out = h.status(1, ready());
        assert_eq!(
            presence_changes(&out, 1),
            vec![(Presence::Offline, inbound())]
        );
        h.advance(secs(1));
        let out = h.call(10, 1);
        assert_eq!(
            out,
            vec![
                Output::Queued {
                    interaction: InteractionId(10),
                    queue: QueueId(1),
                    channel: Channel::Call,
                    order: 0,
                    priority: 0,
                    waited: Duration::ZERO
                },
                Output::Offered {
                    interaction: InteractionId(10),
                    agent: AgentId(1),
                    queue: QueueId(1),
                    channel: Channel::Call,
                    timeout: secs(20)
                },
                Output::PresenceChanged {
                    agent: AgentId(1),
                    from: inbound(),
                    to: Presence::Reserved
                },
            ]
        );
        assert_eq!(
            h.engine.poll_timeout(),
            Some(h.now + secs(20)),
            "offer deadline"
        );
        h.advance(secs(5));
        let out = h.accept(1, 10);
        assert_eq!(
            out,
            vec![
                Output::Connected {
                    interaction: InteractionId(10),
                    agent: AgentId(1),
                    queue: QueueId(1),
                    waited: secs(5)
                },
                Output::PresenceChanged {
                    agent: AgentId(1),
                    from: Presence::Reserved,
                    to: Presence::Busy
                },
            ]
        );
        assert_eq!(
            h.engine.poll_timeout(),
            None,
            "nothing to time out while connected"
        );
        h.advance(secs(60));
        let out = h.end(10);
        assert_eq!(
            out,
            vec![
                Output::Ended {
                    interaction: InteractionId(10),
                    agent: AgentId(1),
                    wrap_up: secs(30)
                },
                Output::PresenceChanged {
                    agent: AgentId(1),
                    from: Presence::Busy,
                    to: Presence::WrapUp
                },
            ]
        );
        assert_eq!(h.state(10), Some(InteractionState::WrapUp));
        assert!(h.advance(secs(29)).is_empty());
        let out = h.advance(secs(1));
        assert_eq!(
            out,
            vec![
                Output::WrapUpEnded {
                    interaction: InteractionId(10),
                    agent: AgentId(1)
                },
                Output::Done {
                    interaction: InteractionId(10)
                },
                Output::PresenceChanged {
                    agent: AgentId(1),
                    from: Presence::WrapUp,
                    to: inbound()
                },
            ]
        );
        assert_eq!(h.state(10), None, "done interactions are forgotten");
        assert_eq!(h.engine.live_interactions(), 0);
    }

    #[test]
    fn written_again_during_wrap_up_waits_again_and_the_wrap_up_goes_on() {
        let mut h = Harness::new();
        h.queue(queue_with_wrap_up(1, secs(30)));
        h.ready_agent(1, &[1], &[]);
        let email = || interaction(10, Channel::Email, 1);
        h.enqueue(email());
        h.accept(1, 10);
        h.end(10);
        h.ready_agent(2, &[1], &[]);
        // The customer answers while agent 1 wraps up.
        let out = h.enqueue(email());
        assert!(
            matches!(out.first(), Some(Output::Queued { interaction, .. }) if *interaction == InteractionId(10)),
            "{out:?}"
        );
        assert_eq!(
            offers(&out),
            vec![(10, 2)],
            "not to the agent wrapping it up"
        );
        assert_eq!(h.presence(1), Presence::WrapUp);
        h.accept(2, 10);
        let out = h.advance(secs(30));
        assert!(out.contains(&Output::WrapUpEnded {
            interaction: InteractionId(10),
            agent: AgentId(1)
        }));
        assert!(
            !out.contains(&Output::Done {
                interaction: InteractionId(10)
            }),
            "agent 2 has it now"
        );
        assert_eq!(h.state(10), Some(InteractionState::Connected));
    }

    #[test]
    fn wrap_up_done_ends_wrap_up_early() {
        let mut h = Harness::new();
        h.queue(queue_with_wrap_up(1, secs(30)));
        h.ready_agent(1, &[1], &[]);
        h.call(10, 1);
        h.accept(1, 10);
        h.end(10);
        h.call(11, 1);
        assert_eq!(
            h.state(11),
            Some(InteractionState::Queued),
            "wrap-up holds the agent"
        );
        let done = Input::WrapUpDone {
            agent: AgentId(1),
            interaction: InteractionId(10),
        };
        let out = h.input(done.clone());
        assert!(out.contains(&Output::Done {
            interaction: InteractionId(10)
        }));
        assert_eq!(
            offers(&out),
            vec![(11, 1)],
            "the freed agent takes waiting work"
        );
        assert_eq!(
            h.try_input(done),
            Err(Error::NotInWrapUp {
                interaction: InteractionId(10),
                agent: AgentId(1)
            })
        );
        assert!(h
            .engine
            .poll_timeout()
            .is_some_and(|t| t == h.now + secs(20)));
    }

    #[test]
    fn accept_needs_a_pending_offer_for_that_agent() {
        let mut h = Harness::new();
        h.simple_queue(1);
        h.ready_agent(1, &[1], &[]);
        h.ready_agent(2, &[1], &[]);
        h.call(10, 1);
        let not_pending = Error::OfferNotPending {
            interaction: InteractionId(10),
            agent: AgentId(2),
        };
        let accept = |agent, id| Input::Accept {
            agent: AgentId(agent),
            interaction: InteractionId(id),
        };
        assert_eq!(h.try_input(accept(2, 10)), Err(not_pending));
        assert_eq!(
            h.try_input(accept(9, 10)),
            Err(Error::UnknownAgent(AgentId(9)))
        );
        assert_eq!(
            h.try_input(accept(1, 99)),
            Err(Error::UnknownInteraction(InteractionId(99)))
        );
        // Past the offer timeout the offer is gone, even if the timer was not polled yet.
        h.now += secs(20);
        assert_eq!(
            h.try_input(accept(1, 10)),
            Err(Error::OfferNotPending {
                interaction: InteractionId(10),
                agent: AgentId(1)
            })
        );
        h.engine.drain_outputs().for_each(drop);
        h.accept(2, 10);
        h.engine.drain_outputs().for_each(drop);
        assert_eq!(
            h.try_input(accept(2, 10)),
            Ok(Vec::new()),
            "accepting twice changes nothing"
        );
        assert_eq!(
            h.try_input(accept(1, 10)),
            Err(Error::OfferNotPending {
                interaction: InteractionId(10),
                agent: AgentId(1)
            }),
            "another agent"
        );
    }

    #[test]
    fn reject_reroutes_at_once_and_the_agent_goes_not_ready_missed() {
        let mut h = Harness::new();
        h.simple_queue(1);
        h.ready_agent(1, &[1], &[]);
        h.ready_agent(2, &[1], &[]);
        h.call(10, 1);
        let out = h.reject(1, 10);
        assert_eq!(revokes(&out), vec![(10, 1, RevokeReason::Rejected)]);
        assert_eq!(offers(&out), vec![(10, 2)]);
        assert_eq!(
            presence_changes(&out, 1),
            vec![(
                Presence::Reserved,
                Presence::NotReady {
                    reason: "missed".into()
                }
            )]
        );
    }

    #[test]
    fn a_missed_interaction_keeps_its_place() {
        let mut h = Harness::new();
        h.simple_queue(1);
        h.ready_agent(1, &[1], &[]);
        h.ready_agent(2, &[1], &[]);
        h.call(10, 1);
        h.call(11, 1);
        h.accept(2, 11);
        h.call(12, 1);
        // 10 times out at agent 1 while 12 waits; when agent 2 frees up it gets 10 first.
        let out = h.advance(secs(20));
        assert_eq!(revokes(&out), vec![(10, 1, RevokeReason::TimedOut)]);
        assert!(offers(&out).is_empty());
        let out = h.end(11);
        assert_eq!(offers(&out), vec![(10, 2)]);
    }

    #[test]
    fn missed_offers_can_leave_the_agent_ready() {
        let config = EngineConfig {
            missed_offer: MissedOffer::StayReady,
            ..EngineConfig::default()
        };
        let mut h = Harness::with_config(config);
        h.simple_queue(1);
        h.ready_agent(1, &[1], &[]);
        h.ready_agent(2, &[1], &[]);
        h.call(10, 1);
        let out = h.advance(secs(20));
        assert_eq!(offers(&out), vec![(10, 2)], "someone else first");
        assert_eq!(h.presence(1), inbound());
        let out = h.reject(2, 10);
        assert_eq!(offers(&out), vec![(10, 1)], "back to the only ready agent");
    }

    /// Agent 1 is offered chats 10 then 11, five seconds apart; agent 2 becomes ready after.
    fn two_chats_offered_to_agent_1(config: EngineConfig) -> Harness {
        let mut h = Harness::with_config(config);
        h.simple_queue(1);
        h.ready_agent(1, &[1], &[]);
        h.enqueue(interaction(10, Channel::Chat, 1));
        h.advance(secs(5));
        h.enqueue(interaction(11, Channel::Chat, 1));
        h.ready_agent(2, &[1], &[]);
        let offered = h.engine.agent(AgentId(1)).expect("agent 1 exists").work;
        assert_eq!(offered.len(), 2, "both chats offered to agent 1");
        h
    }

    /// A miss that makes the agent not ready withdraws its other pending offers at once, as
    /// setting itself not ready does, instead of leaving them to time out at an agent that
    /// takes nothing; the missed interaction is re-routed first.
    #[test]
    fn a_rejected_offer_withdraws_the_agents_other_offers() {
        let mut h = two_chats_offered_to_agent_1(EngineConfig::default());
        let out = h.reject(1, 10);
        assert_eq!(
            revokes(&out),
            vec![
                (10, 1, RevokeReason::Rejected),
                (11, 1, RevokeReason::AgentUnavailable)
            ]
        );
        assert_eq!(offers(&out), vec![(10, 2), (11, 2)]);
        assert_eq!(
            presence_changes(&out, 1),
            vec![(
                Presence::Reserved,
                Presence::NotReady {
                    reason: "missed".into()
                }
            )]
        );

        // An agent that stays ready after a miss keeps its other offers.
        let config = EngineConfig {
            missed_offer: MissedOffer::StayReady,
            ..EngineConfig::default()
        };
        let mut h = two_chats_offered_to_agent_1(config);
        let out = h.reject(1, 10);
        assert_eq!(revokes(&out), vec![(10, 1, RevokeReason::Rejected)]);
        assert_eq!(offers(&out), vec![(10, 2)]);
        assert_eq!(h.presence(1), Presence::Reserved);
    }

    /// The same for an offer that times out.
    #[test]
    fn a_timed_out_offer_withdraws_the_agents_other_offers() {
        let mut h = two_chats_offered_to_agent_1(EngineConfig::default());
        let out = h.advance(secs(15));
        assert_eq!(
            revokes(&out),
            vec![
                (10, 1, RevokeReason::TimedOut),
                (11, 1, RevokeReason::AgentUnavailable)
            ]
        );
        assert_eq!(offers(&out), vec![(10, 2), (11, 2)]);
        assert_eq!(
            h.presence(1),
            Presence::NotReady {
                reason: "missed".into()
            }
        );
    }

    #[test]
    fn abandon_while_queued_or_offered_but_not_once_connected() {
        let mut h = Harness::new();
        h.simple_queue(1);
        h.call(10, 1);
        h.advance(secs(7));
        let out = h.input(Input::Abandon {
            interaction: InteractionId(10),
        });
        assert_eq!(
            out,
            vec![Output::Abandoned {
                interaction: InteractionId(10),
                queue: QueueId(1),
                waited: secs(7)
            }]
        );
        h.ready_agent(1, &[1], &[]);
        h.call(11, 1);
        let out = h.input(Input::Abandon {
            interaction: InteractionId(11),
        });
        assert_eq!(revokes(&out), vec![(11, 1, RevokeReason::Abandoned)]);
        assert_eq!(h.presence(1), inbound());
        h.call(12, 1);
        h.accept(1, 12);
        assert_eq!(
            h.try_input(Input::Abandon {
                interaction: InteractionId(12)
            }),
            Err(Error::NotWaiting {
                interaction: InteractionId(12),
                state: InteractionState::Connected
            })
        );
    }

    #[test]
    fn a_waiting_interaction_closed_by_an_agent_is_answered_not_abandoned() {
        let mut h = Harness::new();
        h.simple_queue(1);
        h.call(10, 1);
        h.advance(secs(5));
        let out = h.input(Input::Close {
            interaction: InteractionId(10),
            agent: AgentId(9),
        });
        assert_eq!(
            out,
            vec![Output::Closed {
                interaction: InteractionId(10),
                queue: QueueId(1),
                agent: AgentId(9),
                waited: secs(5)
            }]
        );
        // Offered to someone else: that offer is answered elsewhere.
        h.ready_agent(1, &[1], &[]);
        h.call(11, 1);
        let out = h.input(Input::Close {
            interaction: InteractionId(11),
            agent: AgentId(9),
        });
        assert_eq!(
            revokes(&out),
            vec![(11, 1, RevokeReason::AnsweredElsewhere)]
        );
        assert_eq!(h.presence(1), inbound());
        h.call(12, 1);
        h.accept(1, 12);
        assert!(
            h.try_input(Input::Close {
                interaction: InteractionId(12),
                agent: AgentId(9)
            })
            .is_err(),
            "a connected interaction is ended, not closed"
        );
    }

    #[test]
    fn end_needs_a_connected_interaction() {
        let mut h = Harness::new();
        h.simple_queue(1);
        h.call(10, 1);
        assert_eq!(
            h.try_input(Input::End {
                interaction: InteractionId(10)
            }),
            Err(Error::NotConnected {
                interaction: InteractionId(10),
                state: InteractionState::Queued
            })
        );
    }

    #[test]
    fn transfer_to_a_queue_requeues_and_wraps_up_the_first_agent() {
        let mut h = Harness::new();
        h.queue(queue_with_wrap_up(1, secs(10)));
        h.simple_queue(2);
        h.ready_agent(1, &[1], &[]);
        h.ready_agent(2, &[2], &[]);
        h.call(10, 1);
        h.accept(1, 10);
        let out = h.input(Input::Transfer {
            interaction: InteractionId(10),
            to: TransferTarget::Queue { queue: QueueId(2) },
        });
        assert_eq!(
            out[..2],
            [
                Output::Transferred {
                    interaction: InteractionId(10),
                    from: AgentId(1),
                    to: TransferTarget::Queue { queue: QueueId(2) },
                    wrap_up: secs(10)
                },
                Output::Queued {
                    interaction: InteractionId(10),
                    queue: QueueId(2),
                    channel: Channel::Call,
                    order: 1,
                    priority: 0,
                    waited: Duration::ZERO
                },
            ]
        );
        assert_eq!(offers(&out), vec![(10, 2)]);
        assert_eq!(h.presence(1), Presence::WrapUp);
        let out = h.advance(secs(10));
        assert_eq!(
            out[0],
            Output::WrapUpEnded {
                interaction: InteractionId(10),
                agent: AgentId(1)
            }
        );
        assert!(!out.contains(&Output::Done {
            interaction: InteractionId(10)
        }));
        h.accept(2, 10);
        let out = h.end(10);
        assert!(out.contains(&Output::Done {
            interaction: InteractionId(10)
        }));
    }

    #[test]
    fn transfer_to_an_agent_offers_it_directly() {
        let mut h = Harness::new();
        h.simple_queue(1);
        h.ready_agent(1, &[1], &[]);
        h.agent(2, &[], &[]);
        h.call(10, 1);
        h.accept(1, 10);
        let to_2 = Input::Transfer {
            interaction: InteractionId(10),
            to: TransferTarget::Agent { agent: AgentId(2) },
        };
        assert_eq!(
            h.try_input(to_2.clone()),
            Err(Error::AgentUnavailable(AgentId(2)))
        );
        assert_eq!(
            h.try_input(Input::Transfer {
                interaction: InteractionId(10),
                to: TransferTarget::Agent { agent: AgentId(1) },
            }),
            Err(Error::TransferToSelf {
                interaction: InteractionId(10),
                agent: AgentId(1)
            })
        );
        h.status(2, ready());
        let out = h.input(to_2);
        assert_eq!(offers(&out), vec![(10, 2)]);
        assert_eq!(
            h.presence(1),
            inbound(),
            "no wrap-up configured: agent 1 is free"
        );
        // A missed transfer goes back to the queue (agent 1 serves it).
        let out = h.reject(2, 10);
        assert_eq!(offers(&out), vec![(10, 1)]);
    }

    #[test]
    fn not_ready_while_reserved_revokes_and_reroutes() {
        let mut h = Harness::new();
        h.simple_queue(1);
        h.ready_agent(1, &[1], &[]);
        h.ready_agent(2, &[1], &[]);
        h.call(10, 1);
        let out = h.status(1, not_ready("break"));
        assert_eq!(revokes(&out), vec![(10, 1, RevokeReason::AgentUnavailable)]);
        assert_eq!(offers(&out), vec![(10, 2)]);
        assert_eq!(
            h.presence(1),
            Presence::NotReady {
                reason: "break".into()
            }
        );
    }

    #[test]
    fn not_ready_while_busy_applies_after_the_work() {
        let mut h = Harness::new();
        h.queue(queue_with_wrap_up(1, secs(5)));
        h.ready_agent(1, &[1], &[]);
        h.call(10, 1);
        h.accept(1, 10);
        let out = h.status(1, not_ready("lunch"));
        assert!(out.is_empty(), "still busy");
        assert_eq!(
            h.try_input(Input::SetStatus {
                agent: AgentId(1),
                status: AgentStatus::Offline
            }),
            Err(Error::AgentHasWork(AgentId(1)))
        );
        h.end(10);
        h.call(11, 1);
        let out = h.advance(secs(5));
        assert_eq!(
            presence_changes(&out, 1),
            vec![(
                Presence::WrapUp,
                Presence::NotReady {
                    reason: "lunch".into()
                }
            )]
        );
        assert!(offers(&out).is_empty());
        let out = h.status(1, AgentStatus::Offline);
        assert_eq!(
            presence_changes(&out, 1),
            vec![(
                Presence::NotReady {
                    reason: "lunch".into()
                },
                Presence::Offline
            )]
        );
        assert_eq!(
            h.try_input(Input::SetStatus {
                agent: AgentId(9),
                status: ready()
            }),
            Err(Error::UnknownAgent(AgentId(9)))
        );
    }

    #[test]
    fn duplicate_or_misdirected_enqueue_is_refused() {
        let mut h = Harness::new();
        h.simple_queue(1);
        h.call(10, 1);
        assert_eq!(
            h.try_input(Input::Enqueue {
                interaction: interaction(10, Channel::Chat, 1)
            }),
            Err(Error::DuplicateInteraction(InteractionId(10)))
        );
        assert_eq!(
            h.try_input(Input::Enqueue {
                interaction: interaction(11, Channel::Chat, 9)
            }),
            Err(Error::UnknownQueue(QueueId(9)))
        );
    }

    #[test]
    fn restored_interactions_keep_their_order() {
        let mut h = Harness::new();
        h.simple_queue(1);
        h.advance(secs(100));
        let mut later = interaction(11, Channel::Call, 1);
        later.restored = Some(Restored {
            order: 41,
            waited: secs(10),
            escalations_applied: 0,
            sla_breached: false,
        });
        h.enqueue(later);
        let mut earlier = interaction(10, Channel::Call, 1);
        earlier.restored = Some(Restored {
            order: 40,
            waited: secs(30),
            escalations_applied: 0,
            sla_breached: false,
        });
        let out = h.enqueue(earlier);
        assert!(
            matches!(out[0], Output::Queued { waited, .. } if waited == secs(30)),
            "a restored wait says how long it has waited"
        );
        let out = h.call(12, 1);
        assert!(
            matches!(out[0], Output::Queued { order: 42, waited, .. } if waited.is_zero()),
            "new orders continue after restored ones"
        );
        let position = h
            .engine
            .queue_position(InteractionId(10), h.now)
            .expect("queued");
        assert_eq!((position.position, position.waited), (1, secs(30)));
        h.ready_agent(1, &[1], &[]);
        assert_eq!(
            h.engine.agent(AgentId(1)).map(|a| a.work[0].interaction),
            Some(InteractionId(10))
        );
    }
}
