//! A supervisor moving waiting work: [`Input::Move`](crate::Input::Move) of a queued or offered
//! interaction to another queue or straight to an agent.
//!
//! A move is not a new wait. To a queue, the interaction keeps its enqueue order and its wait
//! clock, so it ranks in the new queue by when it first arrived and its waiting time (for
//! service level, ASA, the wallboard) runs on; the new queue's escalation steps apply as if it had
//! waited there from the start (steps already due fire at once), the old queue's relaxations and
//! overflow queues are dropped, and an SLA breach already reported is not reported again. To an
//! agent, it stays in its queue and is offered to that agent at once; if the agent misses the
//! offer it goes back to waiting with its place, like any missed offer. A pending offer is
//! revoked first (reason `moved`, not held against the agent).

use std::time::Instant;

use crate::error::Error;
use crate::ids::InteractionId;
use crate::input::TransferTarget;
use crate::interaction::{Escalation, OfferedTo, Stage};
use crate::output::{Output, RevokeReason};
use crate::Engine;

impl Engine {
    pub(crate) fn move_waiting(
        &mut self,
        id: InteractionId,
        to: TransferTarget,
        now: Instant,
    ) -> Result<(), Error> {
        let inter = self
            .interactions
            .get(&id)
            .ok_or(Error::UnknownInteraction(id))?;
        let offered: OfferedTo = match &inter.stage {
            Stage::Queued => OfferedTo::new(),
            Stage::Offered { agents, .. } => agents.clone(),
            Stage::Connected { .. } | Stage::WrapUp { .. } => {
                return Err(Error::NotMovable {
                    interaction: id,
                    state: inter.state(),
                })
            }
        };
        let from_queue = inter.queue;
        let queue = match to {
            TransferTarget::Queue { queue } => {
                if !self.queues.contains_key(&queue) {
                    return Err(Error::UnknownQueue(queue));
                }
                if queue == from_queue {
                    return Err(Error::AlreadyInQueue {
                        interaction: id,
                        queue,
                    });
                }
                queue
            }
            TransferTarget::Agent { agent } => {
                let target = self.agents.get(&agent).ok_or(Error::UnknownAgent(agent))?;
                if !target.free_kinds().contains(inter.kind) || target.holds(id) {
                    return Err(Error::AgentUnavailable(agent));
                }
                from_queue
            }
        };
        self.push(Output::Moved {
            interaction: id,
            from_queue,
            queue,
            to,
            order: inter.order,
        });
        self.unlist_waiting(id);
        for &agent in &offered {
            self.revoke(id, agent, RevokeReason::Moved);
        }
        let inter = self
            .interactions
            .get_mut(&id)
            .expect("checked it is live above");
        inter.stage = Stage::Queued;
        match to {
            TransferTarget::Queue { queue } => {
                inter.escalation = Escalation::default();
                self.rehome(id, queue);
                self.refresh_needs(id);
                self.schedule_wait(id);
                self.route_or_wait(id, now);
            }
            TransferTarget::Agent { agent } => {
                self.offer_to(id, agent, now);
                self.settle_agent(agent, now, false);
            }
        }
        self.settle_freed(&offered, now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::harness::*;
    use crate::*;

    fn move_to(id: u64, to: TransferTarget) -> Input {
        Input::Move {
            interaction: InteractionId(id),
            to,
        }
    }

    fn queue(id: u64) -> TransferTarget {
        TransferTarget::Queue { queue: QueueId(id) }
    }

    fn agent(id: u64) -> TransferTarget {
        TransferTarget::Agent { agent: AgentId(id) }
    }

    #[test]
    fn a_queued_interaction_moves_to_another_queue_keeping_its_order_and_wait() {
        let mut h = Harness::new();
        h.simple_queue(1);
        h.simple_queue(2);
        h.call(10, 1);
        h.advance(secs(30));
        h.call(11, 2);
        h.advance(secs(5));
        let out = h.input(move_to(10, queue(2)));
        assert_eq!(
            out,
            vec![Output::Moved {
                interaction: InteractionId(10),
                from_queue: QueueId(1),
                queue: QueueId(2),
                to: queue(2),
                order: 0,
            }],
            "a move is no new wait: no queued output"
        );
        let position = h
            .engine
            .queue_position(InteractionId(10), h.now)
            .expect("queued");
        assert_eq!(
            (position.queue, position.position, position.waited),
            (QueueId(2), 1, secs(35)),
            "ahead of the later arrival, with its whole wait"
        );
        let stats = h.engine.queue_stats(QueueId(1), h.now).expect("queue 1");
        assert_eq!(stats.waiting, 0);
        // An agent of queue 2 takes the moved interaction first; the wait counts from the start.
        h.ready_agent(1, &[2], &[]);
        h.advance(secs(1));
        let out = h.accept(1, 10);
        assert!(out.contains(&Output::Connected {
            interaction: InteractionId(10),
            agent: AgentId(1),
            queue: QueueId(2),
            waited: secs(36),
        }));
    }

    #[test]
    fn an_offered_interaction_is_revoked_then_moved() {
        let mut h = Harness::new();
        h.simple_queue(1);
        h.simple_queue(2);
        h.ready_agent(1, &[1], &[]);
        h.ready_agent(2, &[2], &[]);
        h.call(10, 1);
        assert_eq!(h.state(10), Some(InteractionState::Offered));
        let out = h.input(move_to(10, queue(2)));
        assert_eq!(revokes(&out), vec![(10, 1, RevokeReason::Moved)]);
        assert_eq!(
            offers(&out),
            vec![(10, 2)],
            "routed in the new queue at once"
        );
        assert_eq!(
            h.presence(1),
            Presence::Ready {
                mode: ReadyMode::Inbound
            },
            "a moved offer is not a missed one"
        );
        assert_eq!(h.engine.poll_timeout(), Some(h.now + secs(20)));
    }

    #[test]
    fn a_move_to_an_agent_offers_it_directly_and_a_miss_keeps_its_place() {
        let mut h = Harness::new();
        h.simple_queue(1);
        h.agent(1, &[], &[]);
        h.call(10, 1);
        h.call(11, 1);
        assert_eq!(
            h.try_input(move_to(11, agent(1))),
            Err(Error::AgentUnavailable(AgentId(1))),
            "not ready"
        );
        h.status(1, ready());
        let out = h.input(move_to(11, agent(1)));
        assert_eq!(
            out[0],
            Output::Moved {
                interaction: InteractionId(11),
                from_queue: QueueId(1),
                queue: QueueId(1),
                to: agent(1),
                order: 1,
            }
        );
        assert_eq!(
            offers(&out),
            vec![(11, 1)],
            "the agent serves no queue: skills or not"
        );
        assert_eq!(
            h.try_input(move_to(10, agent(1))),
            Err(Error::AgentUnavailable(AgentId(1))),
            "full"
        );
        h.reject(1, 11);
        let positions = h
            .engine
            .queue_positions(QueueId(1), h.now)
            .expect("queue 1");
        let order: Vec<u64> = positions.iter().map(|p| p.interaction.0).collect();
        assert_eq!(order, vec![10, 11], "back in its place after the miss");
    }

    #[test]
    fn bad_moves_are_refused_and_change_nothing() {
        let mut h = Harness::new();
        h.simple_queue(1);
        h.ready_agent(1, &[1], &[]);
        h.call(10, 1);
        h.accept(1, 10);
        h.call(11, 1);
        assert_eq!(
            h.try_input(move_to(10, queue(1))),
            Err(Error::NotMovable {
                interaction: InteractionId(10),
                state: InteractionState::Connected
            })
        );
        assert_eq!(
            h.try_input(move_to(11, queue(1))),
            Err(Error::AlreadyInQueue {
                interaction: InteractionId(11),
                queue: QueueId(1)
            })
        );
        assert_eq!(
            h.try_input(move_to(11, queue(9))),
            Err(Error::UnknownQueue(QueueId(9)))
        );
        assert_eq!(
            h.try_input(move_to(11, agent(9))),
            Err(Error::UnknownAgent(AgentId(9)))
        );
        assert_eq!(
            h.try_input(move_to(99, queue(1))),
            Err(Error::UnknownInteraction(InteractionId(99)))
        );
    }

    #[test]
    fn the_new_queues_escalation_applies_as_if_it_had_waited_there() {
        let mut h = Harness::new();
        h.simple_queue(1);
        let mut second = QueueConfig::new(QueueId(2));
        second.escalation = vec![EscalationStep {
            after: secs(10),
            action: EscalationAction::RaisePriority { by: 5 },
        }];
        h.queue(second);
        h.call(10, 1);
        h.advance(secs(15));
        let out = h.input(move_to(10, queue(2)));
        assert!(
            out.iter().any(|o| matches!(
                o,
                Output::Escalated {
                    interaction: InteractionId(10),
                    queue: QueueId(2),
                    step: 0,
                    ..
                }
            )),
            "the step due after 10 s of waiting applies at once: {out:?}"
        );
    }
}
