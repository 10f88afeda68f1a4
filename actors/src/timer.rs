//! The engine's timers: one ordered map of deadlines, so that [`Engine::poll_timeout`] is the
//! first key and firing is popping from the front.
//!
//! Timers are cancelled explicitly (every owner keeps its [`TimerId`]), so nothing stale is ever
//! fired or reported. Equal deadlines fire in the order they were set.
//!
//! [`Engine::poll_timeout`]: crate::Engine::poll_timeout

use std::collections::BTreeMap;
use std::time::Instant;

use crate::ids::{AgentId, InteractionId};

/// What is due when a timer fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// The interaction's next escalation step or SLA target is due.
    Wait(InteractionId),
    /// The pending offer(s) of the interaction expire.
    Offer(InteractionId),
    /// The agent's wrap-up of the interaction ends.
    WrapUp(AgentId, InteractionId),
}

/// Handle of a scheduled timer, for cancelling it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TimerId(Instant, u64);

#[derive(Clone, Debug, Default)]
pub(crate) struct Timers {
    due: BTreeMap<TimerId, Timer>,
    seq: u64,
}

impl Timers {
    pub(crate) fn schedule(&mut self, at: Instant, timer: Timer) -> TimerId {
        self.seq += 1;
        let id = TimerId(at, self.seq);
        self.due.insert(id, timer);
        id
    }

    /// Schedules `timer` `after` from `now`, unless that instant is not representable (then it
    /// never fires).
    pub(crate) fn schedule_in(
        &mut self,
        now: Instant,
        after: std::time::Duration,
        timer: Timer,
    ) -> Option<TimerId> {
        now.checked_add(after).map(|at| self.schedule(at, timer))
    }

    pub(crate) fn cancel(&mut self, id: Option<TimerId>) {
        if let Some(id) = id {
            self.due.remove(&id);
        }
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.due.keys().next().map(|id| id.0)
    }

    /// Removes and returns the earliest timer due at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        let entry = self.due.first_entry()?;
        if entry.key().0 > now {
            return None;
        }
        Some(entry.remove())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn fires_in_deadline_then_schedule_order_and_cancels() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        let late = timers.schedule(t0 + Duration::from_secs(5), Timer::Wait(InteractionId(1)));
        timers.schedule(t0 + Duration::from_secs(1), Timer::Offer(InteractionId(2)));
        timers.schedule(t0 + Duration::from_secs(1), Timer::Offer(InteractionId(3)));
        assert_eq!(timers.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(timers.pop_due(t0), None);
        let now = t0 + Duration::from_secs(10);
        assert_eq!(timers.pop_due(now), Some(Timer::Offer(InteractionId(2))));
        assert_eq!(timers.pop_due(now), Some(Timer::Offer(InteractionId(3))));
        timers.cancel(Some(late));
        assert_eq!(timers.pop_due(now), None);
        assert_eq!(timers.next_deadline(), None);
    }
}
