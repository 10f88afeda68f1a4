//! The engine's timers: a min-heap of deadlines, so that [`Engine::poll_timeout`] is its top and
//! firing is popping it.
//!
//! Timers are cancelled explicitly (every owner keeps its [`TimerId`]), so nothing stale is ever
//! fired or reported. Equal deadlines fire in the order they were set.
//!
//! Most timers are cancelled long before they are due (an offer is answered, a waiting
//! interaction is taken), so cancelling must be cheap: it only empties the timer's row in a slab
//! (rows are reused), and the heap drops the dead entry when it reaches the top (the top is always
//! live) or when dead entries outnumber the live ones. Schedule and cancel are then a heap push
//! and two array writes instead of a B-tree insert and remove.
//!
//! [`Engine::poll_timeout`]: crate::Engine::poll_timeout

use std::cmp::Reverse;
use std::collections::BinaryHeap;
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

/// Handle of a scheduled timer, for cancelling it: deadline, sequence number (unique, so the
/// order never looks further) and slab row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TimerId(Instant, u64, u32);

#[derive(Clone, Debug, Default)]
pub(crate) struct Timers {
    /// Deadlines, earliest first; an entry whose row no longer holds its sequence number was
    /// cancelled. Invariant: the top, if any, is live.
    due: BinaryHeap<Reverse<TimerId>>,
    /// Scheduled, not yet fired or cancelled timers with their sequence numbers, by row.
    rows: Vec<Option<(u64, Timer)>>,
    /// Empty rows, for reuse.
    free: Vec<u32>,
    /// Number of live timers.
    live: usize,
    seq: u64,
}

impl Timers {
    #[inline]
    pub(crate) fn schedule(&mut self, at: Instant, timer: Timer) -> TimerId {
        self.seq += 1;
        let row = match self.free.pop() {
            Some(row) => row,
            None => {
                self.rows.push(None);
                u32::try_from(self.rows.len() - 1).expect("fewer than 2^32 live timers")
            }
        };
        self.rows[row as usize] = Some((self.seq, timer));
        self.live += 1;
        let id = TimerId(at, self.seq, row);
        self.due.push(Reverse(id));
        id
    }

    /// Schedules `timer` `after` from `now`, unless that instant is not representable (then it
    /// never fires).
    #[inline]
    pub(crate) fn schedule_in(
        &mut self,
        now: Instant,
        after: std::time::Duration,
        timer: Timer,
    ) -> Option<TimerId> {
        now.checked_add(after).map(|at| self.schedule(at, timer))
    }

    pub(crate) fn cancel(&mut self, id: Option<TimerId>) {
        let Some(id) = id else {
            return;
        };
        if self.take(id).is_none() {
            return;
        }
        self.drop_dead_top();
        if self.due.len() > 2 * self.live + 64 {
            let rows = &self.rows;
            self.due.retain(|Reverse(id)| is_live(rows, id));
        }
    }

    #[inline]
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.due.peek().map(|Reverse(id)| id.0)
    }

    /// Removes and returns the earliest timer due at or before `now`.
    #[inline]
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        let Reverse(id) = *self.due.peek()?;
        if id.0 > now {
            return None;
        }
        self.due.pop();
        let timer = self.take(id);
        self.drop_dead_top();
        timer
    }

    /// Empties the row of `id` if it is live; returns its timer.
    fn take(&mut self, id: TimerId) -> Option<Timer> {
        if !is_live(&self.rows, &id) {
            return None;
        }
        let (_, timer) = self.rows[id.2 as usize].take()?;
        self.free.push(id.2);
        self.live -= 1;
        Some(timer)
    }

    /// Restores the invariant that the top of the heap is live.
    fn drop_dead_top(&mut self) {
        while let Some(Reverse(id)) = self.due.peek() {
            if is_live(&self.rows, id) {
                break;
            }
            self.due.pop();
        }
    }
}

/// Whether the row of `id` still holds it.
fn is_live(rows: &[Option<(u64, Timer)>], id: &TimerId) -> bool {
    matches!(rows.get(id.2 as usize), Some(Some((seq, _))) if *seq == id.1)
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
