//! Waiting-time rules: escalation steps and the SLA target of an interaction's queue.
//!
//! Each queued or offered interaction has at most one wait timer, set to whichever comes first:
//! its next escalation step (`enqueued_at + step.after`) or its SLA target. When it fires, every
//! step that is due applies in list order, each with an [`Output::Escalated`]; a breach of the SLA
//! target is reported once per interaction ([`Output::SlaBreached`]). If the needs or the queues
//! of a queued interaction widened, it is routed again at once.

use std::time::{Duration, Instant};

use crate::ids::{InteractionId, QueueId};
use crate::interaction::{Escalation, Stage};
use crate::output::Output;
use crate::queue::{EscalationAction, Queue, QueueConfig};
use crate::table::Table;
use crate::timer::Timer;
use crate::Engine;

impl Escalation {
    /// Accumulates one step's effect. Overflow queues that do not exist (or are the interaction's
    /// own) are skipped.
    pub(crate) fn apply(
        &mut self,
        action: &EscalationAction,
        own: QueueId,
        queues: &Table<QueueId, Queue>,
    ) {
        match action {
            EscalationAction::LowerSkillLevels { by } => {
                self.relaxation.lower_by = self.relaxation.lower_by.saturating_add(*by);
            }
            EscalationAction::DropSkills => self.relaxation.drop_skills = true,
            EscalationAction::AddOverflowQueues { queues: overflow } => {
                for &q in overflow {
                    if q != own && queues.contains_key(&q) && !self.overflow.contains(&q) {
                        self.overflow.push(q);
                    }
                }
            }
            EscalationAction::RaisePriority { by } => self.raise += i64::from(*by),
        }
    }
}

/// When, after its enqueue, the wait timer of an interaction of a queue with `config` is due: at
/// its next escalation step or its SLA target, whichever comes first; `None` if neither is left.
pub(crate) fn wait_due_after(
    config: &QueueConfig,
    next_step: usize,
    sla_breached: bool,
) -> Option<Duration> {
    let step = config.escalation.get(next_step).map(|step| step.after);
    let sla = config.sla.filter(|_| !sla_breached).map(|sla| sla.target);
    step.into_iter().chain(sla).min()
}

impl Engine {
    /// (Re)sets the wait timer of a queued or offered interaction.
    pub(crate) fn schedule_wait(&mut self, id: InteractionId) {
        let Some(inter) = self.interactions.get_mut(&id) else {
            return;
        };
        self.timers.cancel(inter.wait_timer.take());
        if !matches!(inter.stage, Stage::Queued | Stage::Offered { .. }) {
            return;
        }
        let config = &self
            .queues
            .get(&inter.queue)
            .expect("a queue with live interactions cannot be removed")
            .config;
        if let Some(after) = wait_due_after(config, inter.escalation.next_step, inter.sla_breached)
        {
            inter.wait_timer = self
                .timers
                .schedule_in(inter.enqueued_at, after, Timer::Wait(id));
        }
    }

    /// The wait timer of `id` fired: apply due escalation steps, report an SLA breach.
    pub(crate) fn wait_timer_fired(&mut self, id: InteractionId, now: Instant) {
        let Some(inter) = self.interactions.get_mut(&id) else {
            return;
        };
        inter.wait_timer = None;
        let queued = match inter.stage {
            Stage::Queued => true,
            Stage::Offered { .. } => false,
            Stage::Connected { .. } | Stage::WrapUp { .. } => return,
        };
        let config = &self
            .queues
            .get(&inter.queue)
            .expect("a queue with live interactions cannot be removed")
            .config;
        let waited = now.saturating_duration_since(inter.enqueued_at);
        let due = config
            .escalation
            .iter()
            .enumerate()
            .skip(inter.escalation.next_step)
            .take_while(|(_, step)| step.after <= waited)
            .map(|(index, step)| (index, step.action.clone()))
            .collect::<Vec<_>>();
        let breach = config
            .sla
            .filter(|sla| !inter.sla_breached && sla.target <= waited)
            .map(|sla| sla.target);
        let queue = inter.queue;
        if queued && !due.is_empty() {
            self.unlist_waiting(id);
        }
        let inter = self
            .interactions
            .get_mut(&id)
            .expect("checked it is live above");
        for (step, action) in &due {
            inter.escalation.apply(action, queue, &self.queues);
            inter.escalation.next_step = step + 1;
        }
        if breach.is_some() {
            inter.sla_breached = true;
        }
        for (step, action) in due.iter().cloned() {
            self.push(Output::Escalated {
                interaction: id,
                queue,
                step,
                action,
            });
        }
        if let Some(target) = breach {
            self.push(Output::SlaBreached {
                interaction: id,
                queue,
                waited,
                target,
            });
        }
        self.schedule_wait(id);
        if !due.is_empty() {
            self.refresh_needs(id);
            if queued {
                self.route_or_wait(id, now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::harness::*;
    use crate::*;

    const GERMAN: u32 = 100;

    fn escalating_queue(id: u64, steps: Vec<(u64, EscalationAction)>) -> QueueConfig {
        let mut queue = QueueConfig::new(QueueId(id));
        queue.required_skills = vec![req(1, 8)];
        queue.escalation = steps
            .into_iter()
            .map(|(after, action)| EscalationStep {
                after: secs(after),
                action,
            })
            .collect();
        queue
    }

    fn german_call(id: u64, queue: u64) -> NewInteraction {
        let mut call = interaction(id, Channel::Call, queue);
        call.language = Some(SkillId(GERMAN));
        call
    }

    fn escalated(outputs: &[Output]) -> Vec<usize> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Escalated { step, .. } => Some(*step),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn lowering_skill_levels_widens_the_pool_after_the_wait() {
        let mut h = Harness::new();
        h.queue(escalating_queue(
            1,
            vec![
                (30, EscalationAction::LowerSkillLevels { by: 2 }),
                (60, EscalationAction::LowerSkillLevels { by: 2 }),
            ],
        ));
        h.ready_agent(1, &[1], &[(1, 5), (GERMAN, 1)]);
        h.enqueue(german_call(10, 1));
        assert_eq!(h.engine.poll_timeout(), Some(h.now + secs(30)));
        let out = h.advance(secs(30));
        assert_eq!(escalated(&out), vec![0]);
        assert!(offers(&out).is_empty(), "8 - 2 = 6 > 5");
        let out = h.advance(secs(30));
        assert_eq!(escalated(&out), vec![1]);
        assert_eq!(offers(&out), vec![(10, 1)], "8 - 4 = 4 <= 5");
    }

    fn priority(h: &Harness, id: u64) -> i64 {
        h.engine
            .interaction(InteractionId(id))
            .expect("live")
            .priority
    }

    /// Steps changed while an interaction waits count from the waiting time of the last step it
    /// got: one inserted before it is not applied after the fact, and the step it got is not
    /// applied again.
    #[test]
    fn a_step_inserted_before_the_last_one_applied_changes_nothing_for_the_waiting() {
        let raise = |by| EscalationAction::RaisePriority { by };
        let mut h = Harness::new();
        h.queue(escalating_queue(1, vec![(60, raise(5)), (120, raise(100))]));
        h.enqueue(german_call(10, 1));
        assert_eq!(escalated(&h.advance(secs(61))), vec![0]);
        assert_eq!(priority(&h, 10), 5);
        h.queue(escalating_queue(
            1,
            vec![(30, raise(1000)), (60, raise(5)), (120, raise(100))],
        ));
        assert_eq!(priority(&h, 10), 5, "neither step applied again");
        assert!(escalated(&h.advance(secs(1))).is_empty());
        let out = h.advance(secs(58));
        assert_eq!(escalated(&out), vec![2], "the next step, at its time");
        assert_eq!(priority(&h, 10), 105);
    }

    /// A step removed after an interaction got it takes nothing from the next one.
    #[test]
    fn removing_a_step_already_applied_keeps_the_next_one() {
        let raise = |by| EscalationAction::RaisePriority { by };
        let mut h = Harness::new();
        h.queue(escalating_queue(1, vec![(30, raise(1)), (60, raise(10))]));
        h.enqueue(german_call(10, 1));
        assert_eq!(escalated(&h.advance(secs(45))), vec![0]);
        h.queue(escalating_queue(1, vec![(60, raise(10))]));
        let out = h.advance(secs(15));
        assert_eq!(
            escalated(&out),
            vec![0],
            "the 60 s step, first of the new list"
        );
        assert_eq!(priority(&h, 10), 11);
    }

    /// Steps added before an interaction got any apply as they would have: at once if due.
    #[test]
    fn steps_added_before_any_applied_are_due_by_the_waiting_time() {
        let raise = |by| EscalationAction::RaisePriority { by };
        let mut h = Harness::new();
        h.queue(escalating_queue(1, vec![(90, raise(10))]));
        h.enqueue(german_call(10, 1));
        h.advance(secs(40));
        let queue = escalating_queue(1, vec![(30, raise(1)), (90, raise(10))]);
        let mut out = h.input(Input::UpsertQueue { queue });
        out.extend(h.advance(secs(0)));
        assert_eq!(escalated(&out), vec![0]);
        assert_eq!(priority(&h, 10), 1);
    }

    #[test]
    fn dropping_skills_keeps_the_language() {
        let mut h = Harness::new();
        h.queue(escalating_queue(
            1,
            vec![(10, EscalationAction::DropSkills)],
        ));
        h.ready_agent(1, &[1], &[]);
        h.ready_agent(2, &[1], &[(GERMAN, 2)]);
        h.enqueue(german_call(10, 1));
        let out = h.advance(secs(10));
        assert_eq!(
            out[0],
            Output::Escalated {
                interaction: InteractionId(10),
                queue: QueueId(1),
                step: 0,
                action: EscalationAction::DropSkills
            }
        );
        assert_eq!(offers(&out), vec![(10, 2)]);
    }

    #[test]
    fn overflow_queues_lend_their_agents() {
        let mut h = Harness::new();
        let mut home = QueueConfig::new(QueueId(1));
        home.escalation = vec![EscalationStep {
            after: secs(20),
            action: EscalationAction::AddOverflowQueues {
                queues: vec![QueueId(2), QueueId(3)],
            },
        }];
        h.queue(home);
        h.simple_queue(2);
        h.simple_queue(3);
        h.agent(2, &[2], &[]);
        h.ready_agent(3, &[3], &[(GERMAN, 1)]);
        h.enqueue(german_call(10, 1));
        h.call(11, 2);
        let out = h.advance(secs(20));
        assert_eq!(
            offers(&out),
            vec![(10, 3)],
            "agent 3 of overflow queue 3 takes it"
        );
        h.input(Input::Abandon {
            interaction: InteractionId(10),
        });
        h.status(3, not_ready("break"));
        // An agent of an overflow queue that frees up later pulls overflowed work by rank.
        h.call(12, 1);
        h.advance(secs(20));
        h.agent(2, &[2], &[]);
        let out = h.status(2, ready());
        assert_eq!(offers(&out), vec![(11, 2)], "11 was enqueued before 12");
        h.accept(2, 11);
        let out = h.end(11);
        assert_eq!(offers(&out), vec![(12, 2)]);
        assert_eq!(
            h.engine.interaction(InteractionId(12)).map(|i| i.overflow),
            Some(vec![QueueId(2), QueueId(3)])
        );
    }

    #[test]
    fn raising_priority_moves_an_interaction_ahead() {
        let mut h = Harness::new();
        let mut queue = QueueConfig::new(QueueId(1));
        queue.escalation = vec![EscalationStep {
            after: secs(60),
            action: EscalationAction::RaisePriority { by: 10 },
        }];
        h.queue(queue);
        let mut vip = QueueConfig::new(QueueId(2));
        vip.priority = 5;
        h.queue(vip);
        h.agent(1, &[1, 2], &[]);
        h.call(10, 1);
        h.advance(secs(30));
        h.call(11, 2);
        h.advance(secs(30));
        assert_eq!(
            h.engine.interaction(InteractionId(10)).map(|i| i.priority),
            Some(10)
        );
        assert_eq!(offers(&h.status(1, ready())), vec![(10, 1)]);
    }

    #[test]
    fn sla_breach_is_reported_once_and_not_after_answer() {
        let mut h = Harness::new();
        let mut queue = QueueConfig::new(QueueId(1));
        queue.sla = Some(ServiceLevel {
            target: secs(20),
            percent: 80,
        });
        h.queue(queue);
        h.call(10, 1);
        h.call(11, 1);
        h.advance(secs(19));
        h.ready_agent(1, &[1], &[]);
        h.accept(1, 10);
        let breached = |h: &Harness| {
            h.engine
                .queue_position(InteractionId(11), h.now)
                .expect("waiting")
                .sla_breached
        };
        assert!(!breached(&h));
        let out = h.advance(secs(1));
        assert!(breached(&h), "the supervisors' listing shows the breach");
        assert_eq!(
            out,
            vec![Output::SlaBreached {
                interaction: InteractionId(11),
                queue: QueueId(1),
                waited: secs(20),
                target: secs(20)
            }]
        );
        assert_eq!(
            h.engine.poll_timeout(),
            None,
            "reported once, nothing else scheduled"
        );
        assert!(h.advance(secs(100)).is_empty());
    }

    #[test]
    fn restored_escalation_state_is_not_logged_twice() {
        let mut h = Harness::new();
        h.queue(escalating_queue(
            1,
            vec![
                (30, EscalationAction::LowerSkillLevels { by: 1 }),
                (60, EscalationAction::LowerSkillLevels { by: 1 }),
                (600, EscalationAction::DropSkills),
            ],
        ));
        h.advance(secs(1000));
        let mut call = german_call(10, 1);
        call.restored = Some(Restored {
            order: 3,
            waited: secs(90),
            escalations_applied: 1,
            sla_breached: false,
        });
        let out = h.enqueue(call);
        assert_eq!(
            escalated(&out),
            vec![1],
            "step 0 was logged before the restart"
        );
        assert_eq!(h.engine.poll_timeout(), Some(h.now + secs(510)));
        h.ready_agent(1, &[1], &[(1, 6), (GERMAN, 1)]);
        assert_eq!(h.state(10), Some(InteractionState::Offered), "8 - 2 = 6");
    }
}
