//! Queries for supervisors and callers: queue statistics ([`QueueStats`]) and queue position with
//! an estimated wait ([`QueuePosition`]).
//!
//! The wait estimate is deliberately simple and documented: `position × average handle time ÷
//! serving agents`, where the average handle time is a moving average (weight 1/8) of connect →
//! end of wrap-up in that queue, seeded with
//! [`EngineConfig::default_handle_time`](crate::EngineConfig), and serving agents are the queue's
//! agents that are ready inbound (idle or working). With nobody serving there is no estimate.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::capacity::{Channel, WorkKind};
use crate::error::Error;
use crate::ids::{InteractionId, QueueId};
use crate::interaction::Stage;
use crate::presence::{Presence, ReadyMode};
use crate::queue::Queue;
use crate::Engine;

/// A queue's live figures (for `queue.stats` events and the wallboard).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct QueueStats {
    /// The queue.
    pub queue: QueueId,
    /// Its interactions waiting for an agent.
    pub waiting: usize,
    /// Its interactions offered, not yet accepted.
    pub offered: usize,
    /// Its interactions connected or in wrap-up.
    pub in_progress: usize,
    /// Longest current wait among its waiting and offered interactions.
    pub longest_wait: Duration,
    /// Its agents ready inbound and holding no work.
    pub agents_ready: usize,
    /// Its agents reserved, busy or in wrap-up.
    pub agents_busy: usize,
    /// Its agents logged in but not taking inbound work (not ready, outbound, back office).
    pub agents_not_ready: usize,
    /// Moving average of handle time used for estimates.
    pub handle_time: Duration,
}

/// Where a waiting interaction stands in its queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct QueuePosition {
    /// The interaction.
    pub interaction: InteractionId,
    /// Its queue.
    pub queue: QueueId,
    /// Its channel.
    pub channel: Channel,
    /// 1 = next to be served among interactions of its kind in its queue (overflowed-in ones
    /// of higher rank count as ahead).
    pub position: usize,
    /// How long it has waited.
    pub waited: Duration,
    /// `position × handle time ÷ serving agents`; `None` when nobody serves the queue.
    pub estimated_wait: Option<Duration>,
    /// It has waited past its queue's SLA target (the breach was reported).
    pub sla_breached: bool,
}

fn estimate(queue: &Queue, position: usize, serving: usize) -> Option<Duration> {
    if serving == 0 {
        return None;
    }
    let nanos = queue.handle_time.as_nanos() * position as u128 / serving as u128;
    Some(Duration::from_nanos(
        u64::try_from(nanos).unwrap_or(u64::MAX),
    ))
}

impl Engine {
    /// Live figures of a queue.
    pub fn queue_stats(&self, id: QueueId, now: Instant) -> Result<QueueStats, Error> {
        let queue = self.queues.get(&id).ok_or(Error::UnknownQueue(id))?;
        let mut stats = QueueStats {
            queue: id,
            waiting: 0,
            offered: 0,
            in_progress: 0,
            longest_wait: Duration::ZERO,
            agents_ready: 0,
            agents_busy: 0,
            agents_not_ready: 0,
            handle_time: queue.handle_time,
        };
        for inter in queue
            .homed
            .iter()
            .filter_map(|&row| self.interactions.at(row))
        {
            match inter.stage {
                Stage::Queued => stats.waiting += 1,
                Stage::Offered { .. } => stats.offered += 1,
                Stage::Connected { .. } | Stage::WrapUp { .. } => {
                    stats.in_progress += 1;
                    continue;
                }
            }
            stats.longest_wait = stats
                .longest_wait
                .max(now.saturating_duration_since(inter.enqueued_at));
        }
        let members = self.members.get(&id).into_iter().flatten();
        for agent in members.filter_map(|a| self.agents.get(a)) {
            match agent.presence {
                Presence::Offline => {}
                Presence::Ready {
                    mode: ReadyMode::Inbound,
                } => stats.agents_ready += 1,
                Presence::Reserved | Presence::Busy | Presence::WrapUp => stats.agents_busy += 1,
                Presence::Ready { .. } | Presence::NotReady { .. } => stats.agents_not_ready += 1,
            }
        }
        Ok(stats)
    }

    /// Position and estimated wait of a queued interaction. Costs O(position).
    pub fn queue_position(&self, id: InteractionId, now: Instant) -> Result<QueuePosition, Error> {
        let inter = self
            .interactions
            .get(&id)
            .ok_or(Error::UnknownInteraction(id))?;
        let Some(key) = inter.wait_key else {
            return Err(Error::NotWaiting {
                interaction: id,
                state: inter.state(),
            });
        };
        let queue = self.queue_of(inter);
        let position = queue.waiting(inter.kind).ahead_of(&key) + 1;
        Ok(QueuePosition {
            interaction: id,
            queue: inter.queue,
            channel: inter.channel,
            position,
            waited: now.saturating_duration_since(inter.enqueued_at),
            estimated_wait: estimate(queue, position, self.serving(inter.queue)),
            sla_breached: inter.sla_breached,
        })
    }

    /// Positions and estimated waits of all interactions queued in a queue (its own, not the
    /// overflowed-in ones), in service order per kind. One pass over its waiting lists.
    pub fn queue_positions(&self, id: QueueId, now: Instant) -> Result<Vec<QueuePosition>, Error> {
        let queue = self.queues.get(&id).ok_or(Error::UnknownQueue(id))?;
        let serving = self.serving(id);
        let mut positions = Vec::new();
        for kind in WorkKind::ALL {
            for (index, key) in queue.waiting(kind).iter().enumerate() {
                let Some(inter) = self.interactions.get(&key.interaction) else {
                    continue;
                };
                if inter.queue != id {
                    continue;
                }
                positions.push(QueuePosition {
                    interaction: key.interaction,
                    queue: id,
                    channel: inter.channel,
                    position: index + 1,
                    waited: now.saturating_duration_since(inter.enqueued_at),
                    estimated_wait: estimate(queue, index + 1, serving),
                    sla_breached: inter.sla_breached,
                });
            }
        }
        Ok(positions)
    }

    /// Agents of the queue that are ready inbound (idle or working).
    fn serving(&self, id: QueueId) -> usize {
        self.members
            .get(&id)
            .into_iter()
            .flatten()
            .filter_map(|a| self.agents.get(a))
            .filter(|a| a.status.takes_inbound())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::harness::*;
    use crate::*;

    #[test]
    fn stats_count_interactions_and_agents() {
        let mut h = Harness::new();
        h.simple_queue(1);
        h.ready_agent(1, &[1], &[]);
        h.ready_agent(2, &[1], &[]);
        h.ready_agent(3, &[1], &[]);
        h.agent(4, &[1], &[]);
        h.status(4, not_ready("training"));
        h.agent(5, &[1], &[]);
        h.call(10, 1);
        h.accept(1, 10);
        h.call(11, 1);
        h.status(3, not_ready("break"));
        h.call(12, 1);
        h.advance(secs(4));
        h.call(13, 1);
        h.advance(secs(3));
        let stats = h
            .engine
            .queue_stats(QueueId(1), h.now)
            .expect("known queue");
        assert_eq!(
            stats,
            QueueStats {
                queue: QueueId(1),
                waiting: 2,
                offered: 1,
                in_progress: 1,
                longest_wait: secs(7),
                agents_ready: 0,
                agents_busy: 2,
                agents_not_ready: 2,
                handle_time: secs(180),
            }
        );
        assert_eq!(
            h.engine.queue_stats(QueueId(9), h.now),
            Err(Error::UnknownQueue(QueueId(9)))
        );
    }

    #[test]
    fn position_and_estimated_wait() {
        let mut h = Harness::new();
        h.simple_queue(1);
        h.ready_agent(1, &[1], &[]);
        h.ready_agent(2, &[1], &[]);
        // Two handled calls of 60 s and 100 s move the average from 180 s.
        for (id, agent, talk) in [(10, 1, 60), (11, 2, 100)] {
            h.call(id, 1);
            h.accept(agent, id);
            h.advance(secs(talk));
            h.end(id);
        }
        let handle_time = secs(180) - secs(120) / 8;
        let handle_time = handle_time - (handle_time - secs(100)) / 8;
        h.call(20, 1);
        h.call(21, 1);
        h.call(22, 1);
        h.call(23, 1);
        let position = h
            .engine
            .queue_position(InteractionId(23), h.now)
            .expect("queued");
        assert_eq!(position.position, 2);
        assert_eq!(position.estimated_wait, Some(handle_time * 2 / 2));
        let all = h
            .engine
            .queue_positions(QueueId(1), h.now)
            .expect("known queue");
        let ids: Vec<(u64, usize)> = all.iter().map(|p| (p.interaction.0, p.position)).collect();
        assert_eq!(ids, vec![(22, 1), (23, 2)]);
        assert_eq!(
            h.engine.queue_position(InteractionId(20), h.now),
            Err(Error::NotWaiting {
                interaction: InteractionId(20),
                state: InteractionState::Offered
            })
        );
        h.status(1, not_ready("x"));
        h.status(2, not_ready("x"));
        let alone = h
            .engine
            .queue_position(InteractionId(22), h.now)
            .expect("queued");
        assert_eq!(alone.estimated_wait, None, "nobody serving");
        assert!(alone.waited == Duration::ZERO);
    }
}
