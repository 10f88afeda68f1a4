//! Matching: which agent gets which interaction, and the indexes that make it cheap.
//!
//! Two directions, one rule ("an agent is eligible for an interaction when it is ready inbound,
//! has free capacity for its kind, meets its needs and does not already hold it"):
//! - [`Engine::route`]: a queued interaction looks for agents, walking the idle index of its
//!   queue, then of its overflow queues, in each queue's strategy order (ring-all takes them all);
//! - [`Engine::pull_work`]: an agent that became available takes the best waiting interaction
//!   across all queues it serves (highest effective priority, then earliest enqueue order); a
//!   ring-all one rings the idle agents that may take it too.
//!
//! Together they keep one invariant after every input: no queued interaction has an eligible agent
//! sitting in the idle index of a queue it waits in. Every change that could create such a pair
//! (an agent freed, an interaction queued, needs relaxed, a queue changed) runs one of them.
//! [`Engine::settle_agent`] is the end of every change to an agent: pull work if asked, fix its
//! idle listing, report its presence.
//!
//! An idle-index entry counts only while the listing that made it is its agent's current one
//! (`Engine::listings`); entries of agents that became unavailable are left in place and
//! dropped lazily (see `idle.rs`).

use std::collections::VecDeque;
use std::time::Instant;

use crate::agent::Agent;
use crate::config::MissedOffer;
use crate::idle::IdleIndex;
use crate::ids::{AgentId, InteractionId, QueueId};
use crate::interaction::{Interaction, OfferedTo, Stage};
use crate::output::{Output, RevokeReason};
use crate::presence::AgentStatus;
use crate::queue::{Queue, WaitKey};
use crate::strategy::{Entrant, RankInputs, RankKey, Strategy};
use crate::table::Table;
use crate::timer::Timer;
use crate::Engine;

/// Whether `agent` may be offered `interaction` now.
#[inline]
pub(crate) fn eligible(agent: &Agent, interaction: &Interaction) -> bool {
    agent.free_kinds().contains(interaction.kind)
        && agent.skills.meets(&interaction.needs)
        && !agent.holds(interaction.id)
}

fn rank_key(queue: &Queue, agent: &Agent, inputs: RankInputs, listing: u64) -> RankKey {
    let entrant = Entrant {
        agent: agent.id,
        skills: agent.skills.summary(),
        slot: agent.slot,
        listing,
    };
    queue.config.strategy.rank_key(entrant, inputs, || {
        agent.skills.score(&queue.config.required_skills)
    })
}

/// Whether the agent of a current idle-index entry may be offered `interaction` now (the skill
/// summary in the key first, which spares most mismatches a visit to the agent's row).
fn entry_eligible(
    agents: &Table<AgentId, Agent>,
    interaction: &Interaction,
    key: &RankKey,
) -> bool {
    interaction.needs.may_be_met_by(key.skills)
        && agents
            .at(key.slot)
            .is_some_and(|agent| eligible(agent, interaction))
}

/// Adds to `chosen` (rows of agents) every agent idle and eligible for `inter` in the queues it
/// is visible in, in index order: the agents a ring-all offer rings. Drops the stale entries it
/// meets.
fn ring_idle(
    inter: &Interaction,
    queues: &mut Table<QueueId, Queue>,
    agents: &Table<AgentId, Agent>,
    listings: &[u64],
    chosen: &mut Vec<u32>,
) {
    for q in inter.visible_in() {
        let Some(queue) = visible_queue(queues, inter, q) else {
            continue;
        };
        // Visits every entry in order, keeping all but the stale ones it meets.
        queue.idle.compact(|key| {
            if !is_current(listings, key) {
                return false;
            }
            if !chosen.contains(&key.slot) && entry_eligible(agents, inter, key) {
                chosen.push(key.slot);
            }
            true
        });
    }
}

/// Whether an idle-index entry was made by its agent's current listing.
fn is_current(listings: &[u64], key: &RankKey) -> bool {
    usize::try_from(key.slot)
        .ok()
        .and_then(|slot| listings.get(slot))
        == Some(&key.listing)
}

impl Engine {
    /// Offers the queued interaction in row `slot` to the best eligible agent(s), if there are
    /// any. Returns whether it is still queued (nobody could take it).
    pub(crate) fn route(&mut self, slot: u32, now: Instant) -> bool {
        let Some(inter) = self.interactions.at(slot) else {
            return false;
        };
        if inter.stage != Stage::Queued {
            return false;
        }
        // Entries of agents that stopped being available are dropped where a walk meets them.
        let listings = &self.listings;
        let agents = &self.agents;
        let mut chosen: Vec<u32> = Vec::new();
        let mut picked: Option<u32> = None;
        if self.queue_of(inter).config.strategy == Strategy::RingAll {
            ring_idle(inter, &mut self.queues, agents, listings, &mut chosen);
        } else {
            for q in inter.visible_in() {
                let Some(queue) = visible_queue(&mut self.queues, inter, q) else {
                    continue;
                };
                let strategy = queue.config.strategy;
                let pick = queue.idle.select_pruning(
                    strategy,
                    queue.rr_cursor,
                    |key| is_current(listings, key),
                    // Asked of current entries only, whose row holds their agent.
                    |key| entry_eligible(agents, inter, key),
                );
                if let Some(key) = pick {
                    picked = Some(key.slot);
                    queue.rr_cursor = Some(key.agent);
                    break;
                }
            }
        }
        // One agent unless ring-all: no list to allocate.
        let chosen: &[u32] = match &picked {
            Some(agent) => std::slice::from_ref(agent),
            None => &chosen,
        };
        if chosen.is_empty() {
            return true;
        }
        self.offer(slot, chosen, false, now);
        for &agent in chosen {
            self.settle_agent_at(agent, now, false);
        }
        false
    }

    /// Lets the available agent in row `agent_slot` take waiting work until it is full or
    /// nothing fits.
    fn pull_work(&mut self, agent_slot: u32, now: Instant) {
        loop {
            let Some(agent) = self.agents.at(agent_slot) else {
                return;
            };
            let mut free = agent.free_kinds();
            free.retain(|kind| self.waiting[kind.index()] > 0);
            if free.is_empty() {
                return;
            }
            let mut best: Option<WaitKey> = None;
            let summary = agent.skills.summary();
            for queue in agent.served.iter().filter_map(|&row| self.queues.at(row)) {
                for kind in free.iter() {
                    for key in queue.waiting(kind).iter() {
                        if best.is_some_and(|best| *key >= best) {
                            break;
                        }
                        if !key.may_be_met_by(summary) {
                            continue;
                        }
                        let meets = match key.inline_needs() {
                            Some(needs) => agent.skills.meets_all(needs),
                            None => agent.skills.meets(
                                &self
                                    .interactions
                                    .get(&key.interaction)
                                    .expect("waiting lists hold live interactions only")
                                    .needs,
                            ),
                        };
                        if meets && !agent.holds(key.interaction) {
                            best = Some(*key);
                            break;
                        }
                    }
                }
            }
            let Some(best) = best.and_then(|key| self.interactions.slot(&key.interaction)) else {
                return;
            };
            let inter = self
                .interactions
                .at(best)
                .expect("waiting lists hold live interactions only");
            if self.queue_of(inter).config.strategy != Strategy::RingAll {
                self.offer(best, &[agent_slot], false, now);
                continue;
            }
            // Agents freed together with this one were listed before it pulled (see
            // `Engine::settle_freed`): ring them too, not this agent alone.
            let mut chosen = vec![agent_slot];
            ring_idle(
                inter,
                &mut self.queues,
                &self.agents,
                &self.listings,
                &mut chosen,
            );
            self.offer(best, &chosen, false, now);
            for &other in &chosen[1..] {
                self.settle_agent_at(other, now, false);
            }
        }
    }

    /// Takes the queued interaction in row `slot` out of its waiting lists, reserves the agents
    /// in rows `agent_slots` and offers it to them; `direct` when it is offered straight to one
    /// agent rather than routed. The caller settles the agents.
    pub(crate) fn offer(&mut self, slot: u32, agent_slots: &[u32], direct: bool, now: Instant) {
        let inter = self
            .interactions
            .at_mut(slot)
            .expect("only live interactions are offered");
        unlist_waiting(inter, &mut self.queues, &mut self.waiting);
        let queue = self
            .queues
            .at(inter.home)
            .expect("a queue with live interactions cannot be removed");
        let timeout = queue.config.offer_timeout;
        let id = inter.id;
        let timer = self.timers.schedule_in(now, timeout, Timer::Offer(id));
        let mut offered = OfferedTo::new();
        for &agent_slot in agent_slots {
            let agent = self
                .agents
                .at_mut(agent_slot)
                .expect("only known agents are chosen");
            agent.add_slot(id, inter.kind);
            self.clock += 1;
            agent.last_activity = self.clock;
            offered.push(agent.id);
            self.outbox.push_back(Output::Offered {
                interaction: id,
                agent: agent.id,
                queue: inter.queue,
                channel: inter.channel,
                timeout,
            });
        }
        inter.stage = Stage::Offered {
            agents: offered,
            timer,
            direct,
        };
    }

    /// Offers a queued interaction to one known agent (a transfer or move to that agent). The
    /// caller settles the agent.
    pub(crate) fn offer_to(&mut self, id: InteractionId, agent: AgentId, now: Instant) {
        let slot = self
            .interactions
            .slot(&id)
            .expect("only live interactions are offered");
        let agent_slot = self
            .agents
            .slot(&agent)
            .expect("only known agents are chosen");
        self.offer(slot, &[agent_slot], true, now);
    }

    /// Withdraws the offer of `id` from `agent_id` and hides the agent from routing until the
    /// caller settles it (so that re-routing cannot pick it again first). Returns
    /// whether nobody holds the offer any more: then the caller re-queues or drops the interaction.
    pub(crate) fn revoke(
        &mut self,
        id: InteractionId,
        agent_id: AgentId,
        reason: RevokeReason,
    ) -> bool {
        let mut orphaned = false;
        if let Some(inter) = self.interactions.get_mut(&id) {
            if let Stage::Offered { agents, timer, .. } = &mut inter.stage {
                agents.retain(|a| *a != agent_id);
                if agents.is_empty() {
                    self.timers.cancel(timer.take());
                    orphaned = true;
                }
            }
        }
        let clock = self.tick();
        if let Some(agent) = self.agents.get_mut(&agent_id) {
            agent.take_slot(id);
            agent.last_activity = clock;
        }
        self.hide(agent_id);
        self.push(Output::OfferRevoked {
            interaction: id,
            agent: agent_id,
            reason,
        });
        orphaned
    }

    /// Puts an interaction nobody holds an offer of back in the queue (with its original order)
    /// and routes it again.
    pub(crate) fn requeue(&mut self, id: InteractionId, now: Instant) {
        if let Some(inter) = self.interactions.get_mut(&id) {
            inter.stage = Stage::Queued;
        }
        self.route_or_wait(id, now);
    }

    /// Routes a queued interaction that is in no waiting list; if nobody can take it now, it waits
    /// (routing first spares the waiting lists an insert and a remove for every interaction that
    /// finds an agent at once).
    pub(crate) fn route_or_wait(&mut self, id: InteractionId, now: Instant) {
        let Some(slot) = self.interactions.slot(&id) else {
            return;
        };
        if self.route(slot, now) {
            self.list_waiting(id);
        }
    }

    /// Withdraws every offer pending for an agent that stopped taking inbound work, and puts
    /// those nobody else holds back in the queue, keeping their place. The caller settles the
    /// agent.
    pub(crate) fn withdraw_offers(&mut self, agent_id: AgentId, now: Instant) {
        let offered = self
            .agents
            .get(&agent_id)
            .map(Agent::offered)
            .unwrap_or_default();
        self.withdraw(agent_id, offered, now);
    }

    /// [`Engine::withdraw_offers`] for the offers of `offered` only.
    pub(crate) fn withdraw(
        &mut self,
        agent_id: AgentId,
        offered: Vec<InteractionId>,
        now: Instant,
    ) {
        let mut orphans = Vec::new();
        for id in offered {
            if self.revoke(id, agent_id, RevokeReason::AgentUnavailable) {
                orphans.push(id);
            }
        }
        for id in orphans {
            self.requeue(id, now);
        }
    }

    /// Applies the missed-offer policy to an agent that rejected or let an offer time out.
    /// Returns whether it made the agent not ready: then the caller withdraws the agent's other
    /// offers ([`Engine::withdraw_offers`]) once it has re-routed the missed interaction, as
    /// for an agent that set itself not ready.
    pub(crate) fn miss(&mut self, agent_id: AgentId) -> bool {
        let MissedOffer::NotReady { reason } = &self.config.missed_offer else {
            return false;
        };
        let Some(agent) = self.agents.get_mut(&agent_id) else {
            return false;
        };
        agent.status = AgentStatus::NotReady {
            reason: reason.clone(),
        };
        true
    }

    /// Ends every change to an agent: optionally lets it pull waiting work, then fixes its idle
    /// listing and reports a presence change.
    ///
    /// The idle listing is made to match the agent's state. An agent that can take nothing more
    /// is only marked unlisted: its index entries turn stale and are dropped by the next walk
    /// that meets them or by its next listing, whichever comes first. That keeps "reserve an
    /// agent" from touching the indexes of all the queues it serves on every routing decision.
    pub(crate) fn settle_agent(&mut self, agent_id: AgentId, now: Instant, pull: bool) {
        if let Some(slot) = self.agents.slot(&agent_id) {
            self.settle_agent_at(slot, now, pull);
        }
    }

    /// Settles agents whose offers were all revoked by one change (a ring-all offer answered,
    /// missed, abandoned or moved), letting each pull waiting work. Revoking hid them; all but
    /// the first are listed again before the first pulls, so that a ring-all interaction one of
    /// them pulls rings the others too rather than that agent alone.
    pub(crate) fn settle_freed(&mut self, agents: &[AgentId], now: Instant) {
        self.list_again(agents.get(1..).unwrap_or_default());
        for &agent in agents {
            self.settle_agent(agent, now, true);
        }
    }

    /// Lists agents that revoking hid as their state wants again, so that routing may pick
    /// them.
    pub(crate) fn list_again(&mut self, agents: &[AgentId]) {
        for agent in agents {
            if let Some(slot) = self.agents.slot(agent) {
                self.relist(slot);
            }
        }
    }

    /// [`Engine::settle_agent`] for the agent in row `slot`.
    fn settle_agent_at(&mut self, slot: u32, now: Instant, pull: bool) {
        if pull {
            self.pull_work(slot, now);
        }
        self.relist(slot);
        if let Some(agent) = self.agents.at_mut(slot) {
            report_presence(agent, &mut self.outbox);
        }
    }

    /// Makes the idle listing of the agent in row `slot` match its state.
    fn relist(&mut self, slot: u32) {
        let Some(agent) = self.agents.at_mut(slot) else {
            return;
        };
        let wanted = agent.wanted_listing();
        if wanted != agent.listed {
            match wanted {
                Some(inputs) => self.list(slot, inputs),
                None => end_listing(agent, &mut self.listings),
            }
        }
    }

    /// Removes an agent's current entries from the idle indexes of its queues at once (before
    /// its queues change or it is removed).
    pub(crate) fn unlist(&mut self, agent_id: AgentId) {
        self.hide(agent_id);
        let Some(agent) = self.agents.get_mut(&agent_id) else {
            return;
        };
        for (q, key) in agent.listed_keys.drain(..) {
            if let Some(queue) = self.queues.get_mut(&q) {
                queue.idle.remove(&key);
            }
        }
    }

    /// Ends the agent's current listing at once: every entry it made turns stale.
    pub(crate) fn hide(&mut self, agent_id: AgentId) {
        if let Some(agent) = self.agents.get_mut(&agent_id) {
            end_listing(agent, &mut self.listings);
        }
    }

    /// Lists the agent in row `slot` in the idle indexes of its queues, ranked by `inputs`; the
    /// entries of its previous listing turn stale.
    fn list(&mut self, slot: u32, inputs: RankInputs) {
        let Some(agent) = self.agents.at_mut(slot) else {
            return;
        };
        agent.listed_keys.clear();
        self.last_listing += 1;
        let listing = self.last_listing;
        if let Some(row) = usize::try_from(agent.slot)
            .ok()
            .and_then(|slot| self.listings.get_mut(slot))
        {
            *row = listing;
        }
        let mut overgrown = Vec::new();
        for &row in &agent.served {
            let Some(queue) = self.queues.at_mut(row) else {
                continue;
            };
            let q = queue.config.id;
            let key = rank_key(queue, agent, inputs, listing);
            let listings = &self.listings;
            queue
                .idle
                .insert_over_stale(key, |k| is_current(listings, k));
            agent.listed_keys.push((q, key));
            if queue.idle.len() > 2 * queue.members + 16 {
                overgrown.push(q);
            }
        }
        agent.listed = Some(inputs);
        for q in overgrown {
            self.compact_idle(q);
        }
    }

    /// Drops every stale entry of queue `q`'s idle index.
    fn compact_idle(&mut self, q: QueueId) {
        let Some(queue) = self.queues.get_mut(&q) else {
            return;
        };
        let listings = &self.listings;
        queue.idle.compact(|key| is_current(listings, key));
    }

    /// Re-indexes queue `q`'s available agents (after it was created or its strategy or
    /// required skills changed).
    pub(crate) fn rebuild_idle(&mut self, q: QueueId) {
        let Some(queue) = self.queues.get_mut(&q) else {
            return;
        };
        queue.idle = IdleIndex::new(queue.config.strategy);
        let Some(members) = self.members.get(&q) else {
            return;
        };
        for agent_id in members {
            let Some(agent) = self.agents.get_mut(agent_id) else {
                continue;
            };
            let Some(inputs) = agent.listed else {
                continue;
            };
            let listing = usize::try_from(agent.slot)
                .ok()
                .and_then(|slot| self.listings.get(slot))
                .copied()
                .unwrap_or(0);
            let key = rank_key(queue, agent, inputs, listing);
            queue.idle.insert(key);
            match agent.listed_keys.iter_mut().find(|(lq, _)| *lq == q) {
                Some(entry) => entry.1 = key,
                None => agent.listed_keys.push((q, key)),
            }
        }
    }

    /// Recomputes a live interaction's effective needs from its queue, own skills, language and
    /// escalation.
    pub(crate) fn refresh_needs(&mut self, id: InteractionId) {
        let Some(inter) = self.interactions.get_mut(&id) else {
            return;
        };
        let queue = self
            .queues
            .at(inter.home)
            .expect("a queue with live interactions cannot be removed");
        inter.needs = queue.needs_of(&inter.skills, inter.language, inter.escalation.relaxation);
    }

    /// Lists a queued interaction in the waiting lists of its queue and overflow queues.
    pub(crate) fn list_waiting(&mut self, id: InteractionId) {
        let Some(inter) = self.interactions.get_mut(&id) else {
            return;
        };
        let queues = &mut self.queues;
        inter.escalation.overflow.retain(|q| queues.contains_key(q));
        let priority = queues
            .at(inter.home)
            .expect("a queue with live interactions cannot be removed")
            .config
            .priority;
        let key =
            WaitKey::new(inter.effective_priority(priority), inter.order, id).needing(&inter.needs);
        if inter.wait_key.replace(key).is_none() {
            self.waiting[inter.kind.index()] += 1;
        }
        for q in inter.visible_in() {
            if let Some(queue) = visible_queue(queues, inter, q) {
                queue.waiting_mut(inter.kind).insert(key);
            }
        }
    }

    /// Takes an interaction out of every waiting list it is in.
    pub(crate) fn unlist_waiting(&mut self, id: InteractionId) {
        if let Some(inter) = self.interactions.get_mut(&id) {
            unlist_waiting(inter, &mut self.queues, &mut self.waiting);
        }
    }
}

/// Takes `inter` out of every waiting list it is in; `waiting` counts queued interactions per
/// kind.
fn unlist_waiting(
    inter: &mut Interaction,
    queues: &mut Table<QueueId, Queue>,
    waiting: &mut [usize; 3],
) {
    let Some(key) = inter.wait_key.take() else {
        return;
    };
    waiting[inter.kind.index()] -= 1;
    for q in inter.visible_in() {
        if let Some(queue) = visible_queue(queues, inter, q) {
            queue.waiting_mut(inter.kind).remove(&key);
        }
    }
}

/// Queue `q` among those `inter` is visible in: its home by row, an overflow queue by id.
fn visible_queue<'q>(
    queues: &'q mut Table<QueueId, Queue>,
    inter: &Interaction,
    q: QueueId,
) -> Option<&'q mut Queue> {
    if q == inter.queue {
        queues.at_mut(inter.home)
    } else {
        queues.get_mut(&q)
    }
}

/// Ends the agent's current listing at once: every entry it made turns stale.
fn end_listing(agent: &mut Agent, listings: &mut [u64]) {
    agent.listed = None;
    if let Some(listing) = usize::try_from(agent.slot)
        .ok()
        .and_then(|slot| listings.get_mut(slot))
    {
        *listing = 0;
    }
}

/// Reports the agent's presence into `outbox` if it changed since last reported.
fn report_presence(agent: &mut Agent, outbox: &mut VecDeque<Output>) {
    let presence = agent.current_presence();
    if presence != agent.presence {
        let from = std::mem::replace(&mut agent.presence, presence.clone());
        outbox.push_back(Output::PresenceChanged {
            agent: agent.id,
            from,
            to: presence,
        });
    }
}

#[cfg(test)]
mod tests {
    use crate::harness::*;
    use crate::*;

    /// Queue 1 with `strategy`.
    fn queue_with(strategy: Strategy) -> QueueConfig {
        let mut queue = QueueConfig::new(QueueId(1));
        queue.strategy = strategy;
        queue
    }

    #[test]
    fn offers_only_to_ready_inbound_agents() {
        let mut h = Harness::new();
        h.simple_queue(1);
        h.agent(1, &[1], &[]);
        h.agent(2, &[1], &[]);
        h.status(
            2,
            AgentStatus::Ready {
                mode: ReadyMode::Outbound,
            },
        );
        assert!(
            offers(&h.call(10, 1)).is_empty(),
            "offline and outbound agents get nothing"
        );
        assert_eq!(h.state(10), Some(InteractionState::Queued));
        let out = h.status(1, ready());
        assert_eq!(offers(&out), vec![(10, 1)]);
    }

    #[test]
    fn required_skill_level_and_language_decide() {
        let mut h = Harness::new();
        let mut queue = QueueConfig::new(QueueId(1));
        queue.required_skills = vec![req(5, 6)];
        h.queue(queue);
        const GERMAN: u32 = 100;
        const FRENCH: u32 = 101;
        h.ready_agent(1, &[1], &[(5, 5), (GERMAN, 3)]);
        h.ready_agent(2, &[1], &[(5, 9), (FRENCH, 10)]);
        h.ready_agent(3, &[1], &[(5, 6), (GERMAN, 1)]);
        let mut call = interaction(10, Channel::Call, 1);
        call.language = Some(SkillId(GERMAN));
        assert_eq!(
            offers(&h.enqueue(call)),
            vec![(10, 3)],
            "level 5 < 6, no German"
        );
        let mut call = interaction(11, Channel::Call, 1);
        call.language = Some(SkillId(GERMAN));
        call.skills = vec![req(7, 1)];
        assert!(offers(&h.enqueue(call)).is_empty(), "nobody has skill 7");
    }

    #[test]
    fn can_serve_asks_for_a_ready_member_with_capacity_and_the_language() {
        let mut h = Harness::new();
        let mut queue = QueueConfig::new(QueueId(1));
        queue.required_skills = vec![req(5, 6)];
        h.queue(queue);
        h.simple_queue(2);
        const GERMAN: u32 = 100;
        let german = Some(SkillId(GERMAN));
        h.agent(1, &[1], &[(5, 7), (GERMAN, 3)]);
        assert!(
            !h.engine.can_serve(QueueId(1), Channel::Chat, german),
            "offline"
        );
        h.status(1, ready());
        assert!(h.engine.can_serve(QueueId(1), Channel::Chat, german));
        assert!(
            !h.engine
                .can_serve(QueueId(1), Channel::Chat, Some(SkillId(101))),
            "no French"
        );
        assert!(
            !h.engine.can_serve(QueueId(2), Channel::Chat, None),
            "not a member"
        );
        assert!(
            !h.engine.can_serve(QueueId(9), Channel::Chat, None),
            "no queue"
        );
        h.call(10, 1);
        h.accept(1, 10);
        assert!(
            !h.engine.can_serve(QueueId(1), Channel::Chat, german),
            "a call blocks chats"
        );
    }

    #[test]
    fn longest_idle_is_the_default() {
        let mut h = Harness::new();
        h.simple_queue(1);
        h.ready_agent(1, &[1], &[]);
        h.ready_agent(2, &[1], &[]);
        h.ready_agent(3, &[1], &[]);
        assert_eq!(offers(&h.call(10, 1)), vec![(10, 1)]);
        assert_eq!(offers(&h.call(11, 1)), vec![(11, 2)]);
        h.accept(1, 10);
        h.end(10);
        assert_eq!(offers(&h.call(12, 1)), vec![(12, 3)]);
        assert_eq!(
            offers(&h.call(13, 1)),
            vec![(13, 1)],
            "agent 1 finished before 3 got busy"
        );
    }

    #[test]
    fn least_occupied_spreads_chats() {
        let mut h = Harness::new();
        h.queue(queue_with(Strategy::LeastOccupied));
        h.ready_agent(1, &[1], &[]);
        h.ready_agent(2, &[1], &[]);
        let mut got = Vec::new();
        for id in 10..14 {
            let out = h.enqueue(interaction(id, Channel::Chat, 1));
            got.extend(offers(&out));
        }
        assert_eq!(got, vec![(10, 1), (11, 2), (12, 1), (13, 2)]);
    }

    #[test]
    fn best_skill_prefers_the_highest_levels() {
        let mut h = Harness::new();
        let mut queue = queue_with(Strategy::BestSkill);
        queue.required_skills = vec![req(1, 1), req(2, 1)];
        h.queue(queue);
        h.ready_agent(1, &[1], &[(1, 3), (2, 3)]);
        h.ready_agent(2, &[1], &[(1, 9), (2, 4)]);
        h.ready_agent(3, &[1], &[(1, 5), (2, 5)]);
        assert_eq!(offers(&h.call(10, 1)), vec![(10, 2)]);
        assert_eq!(offers(&h.call(11, 1)), vec![(11, 3)]);
        assert_eq!(offers(&h.call(12, 1)), vec![(12, 1)]);
    }

    #[test]
    fn round_robin_takes_turns_by_id() {
        let mut h = Harness::new();
        h.queue(queue_with(Strategy::RoundRobin));
        h.ready_agent(3, &[1], &[]);
        h.ready_agent(1, &[1], &[]);
        h.ready_agent(2, &[1], &[]);
        let mut got = Vec::new();
        for id in 10..14 {
            let out = h.call(id, 1);
            got.extend(offers(&out));
            h.accept(got[got.len() - 1].1, id);
            h.end(id);
        }
        assert_eq!(got, vec![(10, 1), (11, 2), (12, 3), (13, 1)]);
    }

    #[test]
    fn ring_all_offers_everyone_and_the_first_accept_wins() {
        let mut h = Harness::new();
        h.queue(queue_with(Strategy::RingAll));
        h.ready_agent(1, &[1], &[]);
        h.ready_agent(2, &[1], &[]);
        h.ready_agent(3, &[1], &[]);
        let out = h.call(10, 1);
        assert_eq!(offers(&out), vec![(10, 1), (10, 2), (10, 3)]);
        assert!((1..=3).all(|a| h.presence(a) == Presence::Reserved));
        let out = h.reject(3, 10);
        assert_eq!(revokes(&out), vec![(10, 3, RevokeReason::Rejected)]);
        assert_eq!(
            h.state(10),
            Some(InteractionState::Offered),
            "still ringing at 1 and 2"
        );
        let out = h.accept(2, 10);
        assert_eq!(
            revokes(&out),
            vec![(10, 1, RevokeReason::AnsweredElsewhere)]
        );
        assert_eq!(
            h.presence(1),
            Presence::Ready {
                mode: ReadyMode::Inbound
            }
        );
        assert_eq!(h.presence(2), Presence::Busy);
        assert_eq!(
            h.presence(3),
            Presence::NotReady {
                reason: "missed".into()
            }
        );
    }

    #[test]
    fn ring_all_timeout_revokes_everyone_and_rings_again_missed_by_nobody() {
        let mut h = Harness::new();
        h.queue(queue_with(Strategy::RingAll));
        h.ready_agent(1, &[1], &[]);
        h.ready_agent(2, &[1], &[]);
        h.call(10, 1);
        let out = h.advance(secs(20));
        assert_eq!(
            revokes(&out),
            vec![
                (10, 1, RevokeReason::TimedOut),
                (10, 2, RevokeReason::TimedOut)
            ]
        );
        assert_eq!(
            offers(&out),
            vec![(10, 1), (10, 2)],
            "rings the group again"
        );
        assert!((1..=2).all(|a| h.presence(a) == Presence::Reserved));
    }

    /// An agent who turned ready while the group rang is rung with the group when it rings
    /// again — not alone, to be blamed for missing what rang at several.
    #[test]
    fn ring_all_rings_again_at_the_group_and_whoever_joined_it() {
        let mut h = Harness::new();
        h.queue(queue_with(Strategy::RingAll));
        h.ready_agent(1, &[1], &[]);
        h.ready_agent(2, &[1], &[]);
        assert_eq!(offers(&h.call(10, 1)), vec![(10, 1), (10, 2)]);
        h.ready_agent(3, &[1], &[]);
        let out = h.advance(secs(20));
        let mut rung = offers(&out);
        rung.sort_unstable();
        assert_eq!(rung, vec![(10, 1), (10, 2), (10, 3)]);
        assert!((1..=3).all(|a| h.presence(a) == Presence::Reserved));
    }

    #[test]
    fn ring_all_timeout_at_a_single_agent_is_that_agents_miss() {
        let mut h = Harness::new();
        h.queue(queue_with(Strategy::RingAll));
        h.ready_agent(1, &[1], &[]);
        h.call(10, 1);
        let out = h.advance(secs(20));
        assert_eq!(revokes(&out), vec![(10, 1, RevokeReason::TimedOut)]);
        assert_eq!(h.state(10), Some(InteractionState::Queued));
        assert_eq!(
            h.presence(1),
            Presence::NotReady {
                reason: "missed".into()
            }
        );
    }

    #[test]
    fn ring_all_rings_everyone_again_after_a_timeout_when_misses_stay_ready() {
        let config = EngineConfig {
            missed_offer: MissedOffer::StayReady,
            ..EngineConfig::default()
        };
        let mut h = Harness::with_config(config);
        h.queue(queue_with(Strategy::RingAll));
        h.ready_agent(1, &[1], &[]);
        h.ready_agent(2, &[1], &[]);
        assert_eq!(offers(&h.call(10, 1)), vec![(10, 1), (10, 2)]);
        let out = h.advance(secs(20));
        assert_eq!(
            revokes(&out),
            vec![
                (10, 1, RevokeReason::TimedOut),
                (10, 2, RevokeReason::TimedOut)
            ]
        );
        assert_eq!(offers(&out), vec![(10, 1), (10, 2)]);
        let out = h.advance(secs(20));
        assert_eq!(offers(&out), vec![(10, 1), (10, 2)], "and every time");
    }

    #[test]
    fn ring_all_rings_the_next_waiting_call_at_everyone_the_answer_frees() {
        let mut h = Harness::new();
        h.queue(queue_with(Strategy::RingAll));
        h.ready_agent(1, &[1], &[]);
        h.ready_agent(2, &[1], &[]);
        h.ready_agent(3, &[1], &[]);
        h.call(10, 1);
        assert!(offers(&h.call(11, 1)).is_empty());
        let out = h.accept(1, 10);
        assert_eq!(offers(&out), vec![(11, 2), (11, 3)]);
    }

    #[test]
    fn capacity_limits_chats_and_a_call_blocks_the_rest() {
        let mut h = Harness::new();
        h.simple_queue(1);
        h.ready_agent(1, &[1], &[]);
        let mut got = Vec::new();
        for id in 10..14 {
            got.extend(offers(&h.enqueue(interaction(id, Channel::Chat, 1))));
        }
        assert_eq!(got, vec![(10, 1), (11, 1), (12, 1)], "3 chats at most");
        assert_eq!(h.state(13), Some(InteractionState::Queued));
        // Chats do not block a call; a call blocks everything else.
        assert_eq!(offers(&h.call(20, 1)), vec![(20, 1)]);
        h.input(Input::Abandon {
            interaction: InteractionId(10),
        });
        assert_eq!(
            h.state(13),
            Some(InteractionState::Queued),
            "the call blocks chat 13"
        );
        let out = h.input(Input::Abandon {
            interaction: InteractionId(20),
        });
        assert_eq!(offers(&out), vec![(13, 1)]);
        assert!(offers(&h.enqueue(interaction(30, Channel::Email, 1))).len() == 1);
    }

    #[test]
    fn exclusive_blending_per_agent_and_independent_per_engine() {
        let config = EngineConfig {
            blending: Blending::Independent,
            ..EngineConfig::default()
        };
        let mut h = Harness::with_config(config);
        h.simple_queue(1);
        let mut exclusive = AgentConfig::new(AgentId(1));
        exclusive.queues = vec![QueueId(1)];
        exclusive.blending = Some(Blending::Exclusive);
        h.input(Input::UpsertAgent { agent: exclusive });
        h.status(1, ready());
        h.ready_agent(2, &[1], &[]);
        assert_eq!(
            offers(&h.enqueue(interaction(10, Channel::Chat, 1))),
            vec![(10, 1)]
        );
        // Agent 1 holds a chat: only chats for it; the call goes to agent 2.
        assert_eq!(offers(&h.call(11, 1)), vec![(11, 2)]);
        // Independent: agent 2 on a call still takes an email.
        assert_eq!(
            offers(&h.enqueue(interaction(12, Channel::Email, 1))),
            vec![(12, 2)]
        );
    }

    #[test]
    fn per_agent_capacity_overrides_the_default() {
        let mut h = Harness::new();
        h.simple_queue(1);
        let mut agent = AgentConfig::new(AgentId(1));
        agent.queues = vec![QueueId(1)];
        agent.capacity = Some(Capacity {
            calls: 0,
            chats: 1,
            tickets: 0,
        });
        h.input(Input::UpsertAgent { agent });
        h.status(1, ready());
        assert!(offers(&h.call(10, 1)).is_empty());
        assert_eq!(
            offers(&h.enqueue(interaction(11, Channel::Chat, 1))),
            vec![(11, 1)]
        );
        assert!(offers(&h.enqueue(interaction(12, Channel::Chat, 1))).is_empty());
    }

    #[test]
    fn a_freed_agent_takes_the_best_across_its_queues() {
        let mut h = Harness::new();
        h.simple_queue(1);
        let mut vip = QueueConfig::new(QueueId(2));
        vip.priority = 5;
        h.queue(vip);
        h.simple_queue(3);
        h.ready_agent(1, &[1, 2, 3], &[]);
        h.call(10, 1);
        h.accept(1, 10);
        h.call(11, 3); // oldest in a normal queue
        h.call(12, 1);
        h.call(13, 2); // youngest but in the priority queue
        h.call(14, 3);
        let mut served = Vec::new();
        let mut current = 10;
        for _ in 0..4 {
            let out = h.end(current);
            let got = offers(&out);
            assert_eq!(got.len(), 1);
            current = got[0].0;
            served.push(current);
            h.accept(1, current);
        }
        assert_eq!(served, vec![13, 11, 12, 14]);
    }

    #[test]
    fn own_priority_ranks_within_a_queue() {
        let mut h = Harness::new();
        h.simple_queue(1);
        h.agent(1, &[1], &[]);
        h.call(10, 1);
        let mut urgent = interaction(11, Channel::Call, 1);
        urgent.priority = 1;
        h.enqueue(urgent);
        assert_eq!(offers(&h.status(1, ready())), vec![(11, 1)]);
    }

    #[test]
    fn a_freed_chat_agent_fills_all_its_free_capacity() {
        let mut h = Harness::new();
        h.simple_queue(1);
        h.agent(1, &[1], &[]);
        for id in 10..15 {
            h.enqueue(interaction(id, Channel::Chat, 1));
        }
        let out = h.status(1, ready());
        assert_eq!(offers(&out), vec![(10, 1), (11, 1), (12, 1)]);
        assert_eq!(
            out.last(),
            Some(&Output::PresenceChanged {
                agent: AgentId(1),
                from: Presence::Offline,
                to: Presence::Reserved
            })
        );
    }
}
