//! Reports from the event log, as plain arithmetic over events (no database, no clock): per
//! queue and per agent, in intervals of 15 minutes, an hour or a day on the tenant's clock
//! (its time zone: a day runs from local midnight to local midnight, 23 or 25 hours when the
//! clocks change; every real hour is an interval of its own, the one a change repeats too).
//!
//! The definitions, which `docs/reports.md` states for users:
//! - A queue's **offered**, **answered**, **abandoned**, **short abandons**, **service level**,
//!   **ASA** and **longest wait** belong to the interval in which the interaction entered the
//!   queue (`routing.queued`), so that an interval's service level compares like with like.
//!   A wait ends with `routing.connected` (answered) or `routing.abandoned`; waits still open
//!   at the end of the data count as offered only. A supervisor's move to another queue
//!   (`routing.moved`) takes the wait with it: it counts in the new queue, from when it first
//!   entered the old one.
//! - **Service level** = answered within the queue's target ÷ (offered − short abandons);
//!   an abandon sooner than the short-abandon threshold is not held against the queue.
//! - **AHT** (average handle time) = talk (connected → ended) + wrap-up (ended → wrap-up
//!   ended), for handlings that *finished* in the interval, per queue and per agent.
//! - **Occupancy** of an agent = time handling work ÷ time logged in, both clipped to the
//!   interval — a call that runs across an interval boundary counts in each interval for the
//!   part inside it.

use std::collections::BTreeMap;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::Serialize;

/// One event as the reports read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Unix ms.
    pub at: i64,
    /// `routing.queued`, `routing.connected`, …
    pub kind: String,
    pub interaction: Option<i64>,
    pub agent: Option<i64>,
    pub queue: Option<i64>,
    /// For `routing.presence_changed`: whether the agent is logged in afterwards.
    pub logged_in: Option<bool>,
    /// For `routing.presence_changed`: a login (from `offline`).
    pub login: bool,
    /// For `routing.queued`: a wait restored after a restart, no new entry.
    pub restored: bool,
}

/// How long a report interval is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    QuarterHour,
    Hour,
    Day,
}

impl Interval {
    pub fn parse(text: &str) -> Option<Interval> {
        match text {
            "15m" => Some(Interval::QuarterHour),
            "hour" => Some(Interval::Hour),
            "day" => Some(Interval::Day),
            _ => None,
        }
    }

    /// The nominal length (a day on which the clocks change is an hour shorter or longer).
    pub fn millis(self) -> i64 {
        match self {
            Interval::QuarterHour => 15 * 60_000,
            Interval::Hour => 3_600_000,
            Interval::Day => 86_400_000,
        }
    }

    /// The start of the interval `at` falls in, on the clock of `zone`: a quarter hour or hour
    /// by the zone's offset at `at`, a day at local midnight (or when the day began, if a
    /// clock change skips midnight). Out of the time zone database's range: UTC's.
    pub fn start_of(self, at: i64, zone: &TimeZone) -> i64 {
        let length = self.millis();
        let utc = at.div_euclid(length) * length;
        let Ok(moment) = Timestamp::from_millisecond(at) else {
            return utc;
        };
        match self {
            Interval::Day => moment
                .to_zoned_datetime(zone.clone())
                .start_of_day()
                .map_or(utc, |midnight| midnight.timestamp().as_millisecond()),
            Interval::QuarterHour | Interval::Hour => {
                let offset = i64::from(zone.to_offset(moment).seconds()) * 1000;
                (at + offset).div_euclid(length) * length - offset
            }
        }
    }

    /// The start of the interval after the one that starts at `start` — always later, even
    /// where a half-hour clock change makes the zone's quarter hours or hours overlap.
    pub fn next(self, start: i64, zone: &TimeZone) -> i64 {
        // A day lasts 23 to 25 hours: 36 hours on is inside the next one.
        let inside = match self {
            Interval::Day => 36 * 3_600_000,
            Interval::QuarterHour | Interval::Hour => self.millis(),
        };
        self.start_of(start.saturating_add(inside), zone)
            .max(start + 1)
    }
}

/// What a report needs besides the events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Service-level target per queue, in ms (queues not listed: 20 s).
    pub targets: BTreeMap<i64, i64>,
    /// Abandons sooner than this (ms) are short abandons.
    pub short_abandon_ms: i64,
    pub interval: Interval,
    /// The tenant's clock, on which the intervals begin.
    pub zone: TimeZone,
    /// The reported span `[from, to)`, Unix ms; events outside still close open waits and
    /// handlings, but only intervals inside are reported.
    pub from: i64,
    pub to: i64,
    /// The time of the report: logins and handlings still open count up to here (or `to`, if
    /// earlier), not into intervals that have not happened.
    pub now: i64,
}

/// A queue's figures in one interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QueueRow {
    pub queue: i64,
    pub interval_start: i64,
    pub offered: u64,
    pub answered: u64,
    pub answered_in_target: u64,
    pub abandoned: u64,
    pub short_abandoned: u64,
    /// Fraction 0–1; `None` when nothing counts.
    pub service_level: Option<f64>,
    /// Average speed of answer, ms.
    pub asa_ms: Option<f64>,
    pub longest_wait_ms: i64,
    pub handled: u64,
    /// Average handle time, ms.
    pub aht_ms: Option<f64>,
    #[serde(skip)]
    wait_sum: i64,
    #[serde(skip)]
    handle_sum: i64,
}

/// An agent's figures in one interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AgentRow {
    pub agent: i64,
    pub interval_start: i64,
    pub answered: u64,
    pub handled: u64,
    pub aht_ms: Option<f64>,
    pub logged_in_ms: i64,
    pub busy_ms: i64,
    /// busy ÷ logged in, 0–1.
    pub occupancy: Option<f64>,
    #[serde(skip)]
    handle_sum: i64,
}

/// A report: rows per queue and per agent, ordered by interval then id.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    pub queues: Vec<QueueRow>,
    pub agents: Vec<AgentRow>,
}

/// An open wait of an interaction in a queue.
struct Wait {
    queue: i64,
    since: i64,
    /// Counted as offered in its queue. A wait restored after a restart with no entry seen
    /// (it entered before the events read, or it had been answered and was queued again
    /// because vacd stopped) is not: its answer is no queue figure either.
    counted: bool,
}

/// An agent's open handling of an interaction.
struct Handling {
    agent: i64,
    queue: Option<i64>,
    connected: i64,
    ended: Option<i64>,
    /// When vacd stopped during it (its agent was logged off then): it counts until there,
    /// however late its end is logged after the restart.
    cut: Option<i64>,
}

impl Handling {
    /// The handling `agent` begins at `at`, of work in `queue`.
    fn open(agent: i64, queue: Option<i64>, at: i64) -> Handling {
        Handling {
            agent,
            queue,
            connected: at,
            ended: None,
            cut: None,
        }
    }
}

struct Builder<'a> {
    settings: &'a Settings,
    queues: BTreeMap<(i64, i64), QueueRow>,
    agents: BTreeMap<(i64, i64), AgentRow>,
    /// Each agent's busy spans, merged and spread at the end: an agent with three chats at
    /// once is busy once, not three times (occupancy stays at most 1).
    busy: BTreeMap<i64, Vec<(i64, i64)>>,
    /// The interval last looked up, `[start, next)`: events come mostly in time order, so
    /// most fall in it, and the time zone is consulted once per interval, not once per event.
    /// Kept only when every moment in it starts there (not where a half-hour clock change
    /// makes intervals overlap).
    last: (i64, i64),
}

impl Builder<'_> {
    /// The start of the interval `at` falls in.
    fn start_of(&mut self, at: i64) -> i64 {
        let (start, next) = self.last;
        if (start..next).contains(&at) {
            return start;
        }
        let (interval, zone) = (self.settings.interval, &self.settings.zone);
        let start = interval.start_of(at, zone);
        let next = interval.next(start, zone);
        self.last = match interval.start_of(next - 1, zone) == start {
            true => (start, next),
            false => (0, 0),
        };
        start
    }

    fn reported(&self, at: i64) -> bool {
        at >= self.settings.from && at < self.settings.to
    }

    fn queue(&mut self, queue: i64, at: i64) -> Option<&mut QueueRow> {
        if !self.reported(at) {
            return None;
        }
        let start = self.start_of(at);
        Some(
            self.queues
                .entry((start, queue))
                .or_insert_with(|| QueueRow {
                    queue,
                    interval_start: start,
                    ..QueueRow::default()
                }),
        )
    }

    fn agent(&mut self, agent: i64, at: i64) -> Option<&mut AgentRow> {
        if !self.reported(at) {
            return None;
        }
        let start = self.start_of(at);
        Some(
            self.agents
                .entry((start, agent))
                .or_insert_with(|| AgentRow {
                    agent,
                    interval_start: start,
                    ..AgentRow::default()
                }),
        )
    }

    /// Adds the part of `[begin, end)` inside each reported interval to `field` of `agent`.
    fn spread(&mut self, agent: i64, begin: i64, end: i64, busy: bool) {
        let settings = self.settings;
        let mut start = self.start_of(begin.max(settings.from));
        while start < end.min(settings.to) {
            let next = settings.interval.next(start, &settings.zone);
            let part = end.min(next).min(settings.to) - begin.max(start).max(settings.from);
            if part > 0 {
                if let Some(row) = self.agent(agent, start.max(settings.from)) {
                    if busy {
                        row.busy_ms += part;
                    } else {
                        row.logged_in_ms += part;
                    }
                }
            }
            start = next;
        }
    }

    fn handled(&mut self, handling: &Handling, finished: i64) {
        let finished = handling.cut.map_or(finished, |cut| cut.min(finished));
        let time = finished - handling.connected;
        if let Some(queue) = handling.queue {
            if let Some(row) = self.queue(queue, finished) {
                row.handled += 1;
                row.handle_sum += time;
            }
        }
        if let Some(row) = self.agent(handling.agent, finished) {
            row.handled += 1;
            row.handle_sum += time;
        }
        self.busy_from(handling.agent, handling.connected, finished);
    }

    fn busy_from(&mut self, agent: i64, begin: i64, end: i64) {
        self.busy.entry(agent).or_default().push((begin, end));
    }

    /// Spreads each agent's busy time: the union of its spans.
    fn spread_busy(&mut self) {
        for (agent, mut spans) in std::mem::take(&mut self.busy) {
            spans.sort_unstable();
            let mut merged: Option<(i64, i64)> = None;
            for (begin, end) in spans {
                merged = match merged {
                    Some((b, e)) if begin <= e => Some((b, e.max(end))),
                    Some((b, e)) => {
                        self.spread(agent, b, e, true);
                        Some((begin, end))
                    }
                    None => Some((begin, end)),
                };
            }
            if let Some((b, e)) = merged {
                self.spread(agent, b, e, true);
            }
        }
    }
}

/// Computes the report from `events` in the order they happened.
pub fn build(events: &[Event], settings: &Settings) -> Report {
    let mut b = Builder {
        settings,
        queues: BTreeMap::new(),
        agents: BTreeMap::new(),
        busy: BTreeMap::new(),
        last: (0, 0),
    };
    let mut waits: BTreeMap<i64, Wait> = BTreeMap::new();
    let mut handlings: BTreeMap<(i64, i64), Handling> = BTreeMap::new();
    let mut logins: BTreeMap<i64, i64> = BTreeMap::new();
    // When each agent was last named by an event: where a stop left it.
    let mut last_seen: BTreeMap<i64, i64> = BTreeMap::new();
    for event in events {
        let at = event.at;
        match (event.kind.as_str(), event.interaction, event.agent) {
            ("routing.queued", Some(id), _) => {
                let Some(queue) = event.queue else { continue };
                if event.restored {
                    // The wait goes on from its first entry (seen earlier, or before the
                    // events read: then it counts from here, but offers nothing new).
                    waits.entry(id).or_insert(Wait {
                        queue,
                        since: at,
                        counted: false,
                    });
                    continue;
                }
                waits.insert(
                    id,
                    Wait {
                        queue,
                        since: at,
                        counted: true,
                    },
                );
                if let Some(row) = b.queue(queue, at) {
                    row.offered += 1;
                }
            }
            ("routing.moved", Some(id), _) => {
                let (Some(queue), Some(wait)) = (event.queue, waits.get_mut(&id)) else {
                    continue;
                };
                if queue == wait.queue {
                    continue;
                }
                let (from, since) = (std::mem::replace(&mut wait.queue, queue), wait.since);
                // A wait restored after a restart was never counted offered: nothing to move.
                if !wait.counted {
                    continue;
                }
                if let Some(row) = b.queue(from, since) {
                    row.offered = row.offered.saturating_sub(1);
                }
                if let Some(row) = b.queue(queue, since) {
                    row.offered += 1;
                }
            }
            // Answered: connected, or closed from the ticket desk while it waited (no
            // handling: nothing to time).
            ("routing.connected" | "routing.closed", Some(id), Some(agent)) => {
                let queue = waits.remove(&id).map(|wait| {
                    let waited = at - wait.since;
                    let target = settings.targets.get(&wait.queue).copied().unwrap_or(20_000);
                    if let Some(row) = b.queue(wait.queue, wait.since).filter(|_| wait.counted) {
                        row.answered += 1;
                        row.wait_sum += waited;
                        row.longest_wait_ms = row.longest_wait_ms.max(waited);
                        if waited <= target {
                            row.answered_in_target += 1;
                        }
                    }
                    wait.queue
                });
                // Connected without a wait (a transfer straight to an agent): its handle time
                // still belongs to the queue the connect names.
                let queue = queue.or(event.queue);
                if let Some(row) = b.agent(agent, at) {
                    row.answered += 1;
                }
                if event.kind == "routing.closed" {
                    continue;
                }
                handlings.insert((id, agent), Handling::open(agent, queue, at));
            }
            // A call the agent placed itself (click-to-dial): its handling, in no queue's
            // figures (it never waited in one) and not answered by the agent.
            ("routing.placed", Some(id), Some(agent)) => {
                handlings.insert((id, agent), Handling::open(agent, None, at));
            }
            ("routing.abandoned", Some(id), _) => {
                if let Some(wait) = waits.remove(&id) {
                    let waited = at - wait.since;
                    if let Some(row) = b.queue(wait.queue, wait.since).filter(|_| wait.counted) {
                        row.abandoned += 1;
                        row.longest_wait_ms = row.longest_wait_ms.max(waited);
                        if waited < settings.short_abandon_ms {
                            row.short_abandoned += 1;
                        }
                    }
                }
            }
            ("routing.ended" | "routing.transferred", Some(id), Some(agent)) => {
                if let Some(handling) = handlings.get_mut(&(id, agent)) {
                    handling.ended = Some(at);
                }
            }
            ("routing.wrap_up_ended", Some(id), Some(agent)) => {
                if let Some(handling) = handlings.remove(&(id, agent)) {
                    b.handled(&handling, at);
                }
            }
            ("routing.presence_changed", _, Some(agent)) => match event.logged_in {
                // A login while one is open: vacd stopped in between (nobody logs in twice
                // otherwise). What the stop left open ends where the agent was last seen,
                // not at this login: the downtime is neither logged in nor busy.
                Some(true) if event.login && logins.contains_key(&agent) => {
                    let since = logins.insert(agent, at).unwrap_or(at);
                    let end = last_seen.get(&agent).copied().unwrap_or(since).max(since);
                    b.spread(agent, since, end, false);
                    close_handlings(&mut b, &mut handlings, agent, end);
                }
                Some(true) => {
                    logins.entry(agent).or_insert(at);
                }
                // Logged off. An agent holding work cannot log off, except as vacd stops (every
                // agent is logged off then): what it held is cut here; its end, logged after the
                // restart, still counts it handled.
                Some(false) => {
                    if let Some(since) = logins.remove(&agent) {
                        b.spread(agent, since, at, false);
                    }
                    for handling in handlings.values_mut().filter(|h| h.agent == agent) {
                        handling.cut.get_or_insert(at);
                    }
                }
                None => {}
            },
            _ => {}
        }
        if let Some(agent) = event.agent {
            last_seen.insert(agent, at);
        }
    }
    // Open at the end of the data: handlings count as busy, logins as logged in, up to now
    // (or `to`, if earlier).
    let open_until = settings.to.min(settings.now);
    for handling in handlings.values() {
        let end = match handling.cut {
            Some(cut) => cut.max(handling.connected),
            None => open_until.max(handling.ended.unwrap_or(handling.connected)),
        };
        b.busy_from(handling.agent, handling.connected, end);
    }
    b.spread_busy();
    for (agent, since) in logins {
        b.spread(agent, since, open_until, false);
    }
    finish(b)
}

/// Ends the handlings a crash of vacd left `agent` (seen again logging in) at `end`: busy until
/// then, or until each ended or was cut by a stop.
fn close_handlings(
    b: &mut Builder<'_>,
    handlings: &mut BTreeMap<(i64, i64), Handling>,
    agent: i64,
    end: i64,
) {
    let stale: Vec<_> = handlings
        .keys()
        .filter(|(_, a)| *a == agent)
        .copied()
        .collect();
    for key in stale {
        if let Some(h) = handlings.remove(&key) {
            let end = h.cut.or(h.ended).unwrap_or(end);
            b.busy_from(agent, h.connected, end.max(h.connected));
        }
    }
}

/// The tenant's figures per interval: the queues' rows summed (queue 0).
pub fn tenant_rows(report: &Report) -> Vec<QueueRow> {
    let mut sums: BTreeMap<i64, QueueRow> = BTreeMap::new();
    for row in &report.queues {
        let sum = sums.entry(row.interval_start).or_insert_with(|| QueueRow {
            interval_start: row.interval_start,
            ..QueueRow::default()
        });
        sum.offered += row.offered;
        sum.answered += row.answered;
        sum.answered_in_target += row.answered_in_target;
        sum.abandoned += row.abandoned;
        sum.short_abandoned += row.short_abandoned;
        sum.longest_wait_ms = sum.longest_wait_ms.max(row.longest_wait_ms);
        sum.handled += row.handled;
        sum.wait_sum += row.wait_sum;
        sum.handle_sum += row.handle_sum;
    }
    sums.into_values().map(QueueRow::derive).collect()
}

impl QueueRow {
    /// Fills the ratios from the counts and sums.
    fn derive(mut self) -> QueueRow {
        let counted = self.offered.saturating_sub(self.short_abandoned) as f64;
        self.service_level = ratio(self.answered_in_target as f64, counted);
        self.asa_ms = ratio(self.wait_sum as f64, self.answered as f64);
        self.aht_ms = ratio(self.handle_sum as f64, self.handled as f64);
        self
    }

    /// The CSV header matching [`QueueRow::csv`].
    pub const CSV_HEADER: &'static str = "queue,interval_start,offered,answered,answered_in_target,abandoned,short_abandoned,service_level,asa_ms,longest_wait_ms,handled,aht_ms";

    pub fn csv(&self) -> String {
        format!(
            "{},{},{},{},{},{},{},{},{},{},{},{}",
            self.queue,
            self.interval_start,
            self.offered,
            self.answered,
            self.answered_in_target,
            self.abandoned,
            self.short_abandoned,
            optional(self.service_level),
            optional(self.asa_ms),
            self.longest_wait_ms,
            self.handled,
            optional(self.aht_ms)
        )
    }
}

impl AgentRow {
    /// The CSV header matching [`AgentRow::csv`].
    pub const CSV_HEADER: &'static str =
        "agent,interval_start,answered,handled,aht_ms,logged_in_ms,busy_ms,occupancy";

    pub fn csv(&self) -> String {
        format!(
            "{},{},{},{},{},{},{},{}",
            self.agent,
            self.interval_start,
            self.answered,
            self.handled,
            optional(self.aht_ms),
            self.logged_in_ms,
            self.busy_ms,
            optional(self.occupancy)
        )
    }
}

fn optional(value: Option<f64>) -> String {
    value.map(|v| format!("{v:.4}")).unwrap_or_default()
}

fn ratio(part: f64, whole: f64) -> Option<f64> {
    (whole > 0.0).then(|| part / whole)
}

fn finish(b: Builder<'_>) -> Report {
    let queues = b.queues.into_values().map(QueueRow::derive).collect();
    let agents = b
        .agents
        .into_values()
        .map(|mut row| {
            row.aht_ms = ratio(row.handle_sum as f64, row.handled as f64);
            row.occupancy = ratio(row.busy_ms as f64, row.logged_in_ms as f64);
            row
        })
        .collect();
    Report { queues, agents }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;
    const Q: i64 = 7;

    fn event(at: i64, kind: &str, interaction: i64, agent: Option<i64>) -> Event {
        Event {
            at,
            kind: format!("routing.{kind}"),
            interaction: Some(interaction),
            agent,
            queue: Some(Q),
            logged_in: None,
            login: false,
            restored: false,
        }
    }

    fn presence(at: i64, agent: i64, logged_in: bool) -> Event {
        Event {
            at,
            kind: "routing.presence_changed".into(),
            interaction: None,
            agent: Some(agent),
            queue: None,
            logged_in: Some(logged_in),
            login: logged_in,
            restored: false,
        }
    }

    fn settings(interval: Interval, from: i64, to: i64) -> Settings {
        Settings {
            targets: BTreeMap::from([(Q, 20_000)]),
            short_abandon_ms: 5_000,
            interval,
            zone: TimeZone::UTC,
            from,
            to,
            now: to,
        }
    }

    /// A call the agent placed itself is its handled work — busy time, handle time — but no
    /// answer, and nothing in its queue's figures.
    #[test]
    fn a_placed_call_is_the_agents_work_in_no_queues_figures() {
        let events = vec![
            presence(0, 1, true),
            event(MIN, "placed", 1, Some(1)),
            event(4 * MIN, "ended", 1, Some(1)),
            event(5 * MIN, "wrap_up_ended", 1, Some(1)),
        ];
        let report = build(&events, &settings(Interval::Hour, 0, 60 * MIN));
        let agent = &report.agents[0];
        assert_eq!((agent.answered, agent.handled), (0, 1));
        assert_eq!(agent.aht_ms, Some(4.0 * 60_000.0));
        assert_eq!(agent.busy_ms, 4 * MIN);
        assert!(
            report
                .queues
                .iter()
                .all(|q| q.offered == 0 && q.handled == 0),
            "{:?}",
            report.queues
        );
    }

    /// A wait restored after a restart goes on from its first entry: no second offer, and the
    /// answer's wait counts from the first queueing.
    #[test]
    fn a_restored_wait_is_no_new_entry() {
        let restored = Event {
            restored: true,
            ..event(5 * MIN, "queued", 1, None)
        };
        let events = vec![
            event(MIN, "queued", 1, None),
            restored,
            event(6 * MIN, "connected", 1, Some(1)),
        ];
        let report = build(&events, &settings(Interval::Hour, 0, 60 * MIN));
        let q = &report.queues[0];
        assert_eq!((q.offered, q.answered), (1, 1));
        assert_eq!(q.asa_ms, Some(5.0 * 60_000.0));
    }

    /// A wait restored after a restart with no entry seen (it began before `from`) was never
    /// counted offered; moved to another queue, it is not counted there either.
    #[test]
    fn a_restored_wait_moved_counts_in_neither_queue() {
        const Q2: i64 = 8;
        let events = vec![
            Event {
                restored: true,
                ..event(MIN, "queued", 1, None)
            },
            Event {
                queue: Some(Q2),
                ..event(2 * MIN, "moved", 1, None)
            },
            Event {
                queue: Some(Q2),
                ..event(3 * MIN, "connected", 1, Some(1))
            },
        ];
        let report = build(&events, &settings(Interval::Hour, 0, 60 * MIN));
        for q in &report.queues {
            assert_eq!((q.offered, q.answered), (0, 0), "queue {}", q.queue);
        }
    }

    /// vacd stopped while an agent was logged in and on a call: the login and the call end
    /// where the agent was last seen, not at the next login; the chat connected before the
    /// stop and queued again after it is answered once in its queue.
    #[test]
    fn what_a_stop_left_open_ends_where_it_was_last_seen() {
        let hour = 60 * MIN;
        let restored = Event {
            restored: true,
            ..event(10 * hour + MIN, "queued", 2, None)
        };
        let events = vec![
            presence(8 * hour, 1, true),
            event(9 * hour, "queued", 1, None),
            event(9 * hour, "connected", 1, Some(1)),
            event(9 * hour + 30 * MIN, "queued", 2, None),
            event(9 * hour + 30 * MIN, "connected", 2, Some(1)),
            // vacd stops; it starts at 10:00 and the agent logs in again.
            presence(10 * hour, 1, true),
            restored,
            event(10 * hour + 2 * MIN, "connected", 2, Some(1)),
            event(10 * hour + 10 * MIN, "ended", 2, Some(1)),
            event(10 * hour + 10 * MIN, "wrap_up_ended", 2, Some(1)),
            presence(11 * hour, 1, false),
        ];
        let report = build(&events, &settings(Interval::Day, 0, 24 * hour));
        let agent = &report.agents[0];
        assert_eq!(
            agent.logged_in_ms,
            (90 + 60) * MIN,
            "08:00–09:30 and 10:00–11:00"
        );
        assert_eq!(agent.busy_ms, (30 + 8) * MIN, "09:00–09:30 and 10:02–10:10");
        let q = &report.queues[0];
        assert_eq!((q.offered, q.answered), (2, 2), "the chat answered once");
    }

    /// vacd stopped while an agent was handling two emails and logged it off (as a stop does):
    /// login and work end at the stop, even if the agent never logs in again; the email whose
    /// end the restart logs counts handled, with its time up to the stop.
    #[test]
    fn a_stop_logs_the_agent_off_and_cuts_what_it_held() {
        let hour = 60 * MIN;
        let events = vec![
            presence(8 * hour, 1, true),
            event(9 * hour, "queued", 1, None),
            event(9 * hour, "connected", 1, Some(1)),
            event(9 * hour + 10 * MIN, "queued", 2, None),
            event(9 * hour + 10 * MIN, "connected", 2, Some(1)),
            presence(9 * hour + 20 * MIN, 1, false),
            event(12 * hour, "wrap_up_ended", 1, Some(1)),
        ];
        let report = build(&events, &settings(Interval::Day, 0, 24 * hour));
        let agent = &report.agents[0];
        assert_eq!(agent.logged_in_ms, 80 * MIN, "08:00–09:20");
        assert_eq!(agent.busy_ms, 20 * MIN, "09:00–09:20, not until now");
        assert_eq!(agent.handled, 1);
        assert_eq!(agent.aht_ms, Some((20 * MIN) as f64), "up to the stop");
    }

    /// A transfer straight to another agent starts no wait, but the second agent's handling
    /// counts in the queue's handle time all the same.
    #[test]
    fn a_handling_after_a_transfer_to_an_agent_counts_in_its_queue() {
        let (a, b) = (Some(1), Some(2));
        let events = vec![
            event(0, "queued", 1, None),
            event(MIN, "connected", 1, a),
            event(3 * MIN, "transferred", 1, a),
            event(3 * MIN, "wrap_up_ended", 1, a),
            event(4 * MIN, "connected", 1, b),
            event(10 * MIN, "ended", 1, b),
            event(10 * MIN, "wrap_up_ended", 1, b),
        ];
        let report = build(&events, &settings(Interval::Hour, 0, 60 * MIN));
        let q = &report.queues[0];
        assert_eq!((q.offered, q.answered, q.handled), (1, 1, 2), "{q:?}");
    }

    /// Hand-computed: three calls in one hour.
    /// 1: waits 10 s, answered, talks 4 min, wraps up 1 min → in target, handle 5 min.
    /// 2: waits 30 s, answered, talks 2 min, no wrap-up → out of target, handle 2 min.
    /// 3: abandons after 3 s (short) ; 4: abandons after 40 s.
    #[test]
    fn service_level_asa_aht_and_abandons_by_hand() {
        let a = Some(1);
        let events = vec![
            presence(0, 1, true),
            event(MIN, "queued", 1, None),
            event(MIN + 10_000, "connected", 1, a),
            event(5 * MIN + 10_000, "ended", 1, a),
            event(6 * MIN + 10_000, "wrap_up_ended", 1, a),
            event(10 * MIN, "queued", 2, None),
            event(10 * MIN + 30_000, "connected", 2, a),
            event(12 * MIN + 30_000, "ended", 2, a),
            event(12 * MIN + 30_000, "wrap_up_ended", 2, a),
            event(20 * MIN, "queued", 3, None),
            event(20 * MIN + 3_000, "abandoned", 3, None),
            event(30 * MIN, "queued", 4, None),
            event(30 * MIN + 40_000, "abandoned", 4, None),
            presence(60 * MIN, 1, false),
        ];
        let report = build(&events, &settings(Interval::Hour, 0, 60 * MIN));
        assert_eq!(report.queues.len(), 1);
        let q = &report.queues[0];
        assert_eq!(
            (q.offered, q.answered, q.abandoned, q.short_abandoned),
            (4, 2, 2, 1)
        );
        assert_eq!(q.answered_in_target, 1);
        // 1 in target of (4 offered − 1 short abandon).
        assert_eq!(q.service_level, Some(1.0 / 3.0));
        assert_eq!(q.asa_ms, Some(20_000.0));
        assert_eq!(q.longest_wait_ms, 40_000);
        assert_eq!(q.handled, 2);
        assert_eq!(q.aht_ms, Some((5.0 * 60_000.0 + 2.0 * 60_000.0) / 2.0));
        let agent = &report.agents[0];
        assert_eq!(agent.busy_ms, 7 * MIN);
        assert_eq!(agent.logged_in_ms, 60 * MIN);
        assert_eq!(agent.occupancy, Some(7.0 / 60.0));
    }

    /// A call waits 30 s in queue Q, is moved to queue 2 and answered there 10 s later: it
    /// counts in queue 2 only, with its whole 40 s wait (inside queue 2's 60 s target).
    #[test]
    fn a_moved_wait_counts_in_the_new_queue_from_its_first_arrival() {
        let mut moved = event(MIN + 30_000, "moved", 1, None);
        moved.queue = Some(2);
        let events = vec![
            event(MIN, "queued", 1, None),
            moved,
            Event {
                queue: Some(2),
                ..event(MIN + 40_000, "connected", 1, Some(1))
            },
        ];
        let mut settings = settings(Interval::Hour, 0, 60 * MIN);
        settings.targets.insert(2, 60_000);
        let report = build(&events, &settings);
        let rows: Vec<_> = report
            .queues
            .iter()
            .map(|q| {
                (
                    q.queue,
                    q.offered,
                    q.answered,
                    q.answered_in_target,
                    q.asa_ms,
                )
            })
            .collect();
        assert_eq!(rows, vec![(2, 1, 1, 1, Some(40_000.0)), (Q, 0, 0, 0, None)]);
    }

    /// A call from 10:50 to 11:20 (wrap-up to 11:25) seen in 15-minute intervals: the wait
    /// and the answer belong to 10:45, the handle time to 11:15 where it finished, the busy
    /// time is split 10 + 15 + 10 minutes.
    #[test]
    fn intervals_that_cut_through_a_call() {
        let a = Some(1);
        let ten_forty_five = 10 * 60 * MIN + 45 * MIN;
        let events = vec![
            presence(10 * 60 * MIN, 1, true),
            event(ten_forty_five + 4 * MIN, "queued", 1, None),
            event(ten_forty_five + 5 * MIN, "connected", 1, a),
            event(11 * 60 * MIN + 20 * MIN, "ended", 1, a),
            event(11 * 60 * MIN + 25 * MIN, "wrap_up_ended", 1, a),
        ];
        let from = ten_forty_five;
        let to = 11 * 60 * MIN + 30 * MIN;
        let report = build(&events, &settings(Interval::QuarterHour, from, to));
        let queue_rows: Vec<_> = report
            .queues
            .iter()
            .map(|q| (q.interval_start - from, q.offered, q.answered, q.handled))
            .collect();
        assert_eq!(
            queue_rows,
            vec![(0, 1, 1, 0), (30 * MIN, 0, 0, 1)],
            "answered where it arrived, handled where it finished"
        );
        assert_eq!(
            report.queues[0].service_level,
            Some(0.0),
            "waited 60 s > 20 s"
        );
        assert_eq!(report.queues[1].aht_ms, Some(35.0 * MIN as f64));
        let busy: Vec<_> = report
            .agents
            .iter()
            .map(|r| {
                (
                    r.interval_start - from,
                    r.busy_ms / MIN,
                    r.logged_in_ms / MIN,
                )
            })
            .collect();
        assert_eq!(
            busy,
            vec![(0, 10, 15), (15 * MIN, 15, 15), (30 * MIN, 10, 15)]
        );
    }

    /// Three chats at once are one busy hour, not three: occupancy stays at most 1.
    #[test]
    fn an_agent_busy_with_several_at_once_is_busy_once() {
        let a = Some(1);
        let hour = 60 * MIN;
        let mut events = vec![presence(0, 1, true)];
        for chat in 1..=3 {
            events.push(event(chat * MIN, "queued", chat, None));
            events.push(event(chat * MIN, "connected", chat, a));
        }
        for chat in 1..=3 {
            events.push(event(50 * MIN + chat * MIN, "ended", chat, a));
            events.push(event(50 * MIN + chat * MIN, "wrap_up_ended", chat, a));
        }
        events.push(presence(hour, 1, false));
        let report = build(&events, &settings(Interval::Hour, 0, hour));
        let row = &report.agents[0];
        assert_eq!(
            (row.busy_ms / MIN, row.logged_in_ms / MIN),
            (52, 60),
            "from the first connect to the last end"
        );
        assert!(row.occupancy.is_some_and(|o| o <= 1.0), "{row:?}");
    }

    /// Time before `from` is not reported, even in the interval `from` falls in; time after
    /// `now` has not happened.
    #[test]
    fn agent_time_is_clipped_to_the_span_and_to_now() {
        let hour = 60 * MIN;
        let events = vec![presence(8 * hour, 1, true), presence(17 * hour, 1, false)];
        let report = build(&events, &settings(Interval::Day, 12 * hour, 24 * hour));
        assert_eq!(report.agents[0].logged_in_ms, 5 * hour, "12:00 to 17:00");
        let still_in = vec![presence(8 * hour, 1, true)];
        let at_noon = Settings {
            now: 12 * hour,
            ..settings(Interval::Hour, 0, 24 * hour)
        };
        let report = build(&still_in, &at_noon);
        let logged: i64 = report.agents.iter().map(|r| r.logged_in_ms).sum();
        assert_eq!(logged, 4 * hour, "08:00 to now, not to the end of the day");
    }

    #[test]
    fn open_waits_count_as_offered_only_and_empty_figures_are_none() {
        let events = vec![event(MIN, "queued", 1, None)];
        let report = build(&events, &settings(Interval::Day, 0, 86_400_000));
        let q = &report.queues[0];
        assert_eq!((q.offered, q.answered, q.abandoned), (1, 0, 0));
        assert_eq!(q.service_level, Some(0.0));
        assert_eq!((q.asa_ms, q.aht_ms), (None, None));
        assert!(Interval::parse("week").is_none());
        let tenant = tenant_rows(&report);
        assert_eq!(tenant[0].queue, 0);
        assert_eq!(tenant[0].offered, 1);
        assert_eq!(tenant[0].csv(), "0,0,1,0,0,0,0,0.0000,,0,0,");
        assert_eq!(
            Interval::QuarterHour.start_of(16 * MIN + 5, &TimeZone::UTC),
            15 * MIN
        );
    }

    /// 2026-10-25, the day Berlin's clocks go back from 03:00 to 02:00, has 25 hours; its hour
    /// 02:00–03:00 happens twice, as two intervals. In Kolkata (+05:30) hours begin at half past
    /// UTC's.
    #[test]
    fn intervals_follow_the_tenant_clock() {
        let hour = 60 * MIN;
        let berlin = crate::channels::sla::time_zone("Europe/Berlin").expect("Berlin");
        let midnight = 1_792_879_200_000; // 2026-10-25T00:00:00+02:00
        let day = Interval::Day;
        assert_eq!(day.start_of(midnight + 20 * hour, &berlin), midnight);
        assert_eq!(day.next(midnight, &berlin), midnight + 25 * hour);
        assert_eq!(
            day.start_of(midnight, &TimeZone::UTC),
            midnight + 2 * hour - 86_400_000
        );
        let (first, second) = (midnight + 2 * hour, midnight + 3 * hour); // 02:00 CEST, 02:00 CET
        assert_eq!(Interval::Hour.start_of(first + 30 * MIN, &berlin), first);
        assert_eq!(Interval::Hour.start_of(second + 30 * MIN, &berlin), second);
        assert_eq!(Interval::Hour.next(first, &berlin), second);
        let kolkata = crate::channels::sla::time_zone("Asia/Kolkata").expect("Kolkata");
        assert_eq!(Interval::Hour.start_of(hour + 10 * MIN, &kolkata), 30 * MIN);
        // Lord Howe Island goes from +10:30 to +11 at 02:00 local time on 2026-10-04 (15:30
        // UTC the day before), so its hours overlap there: a wait and its answer still count
        // in one row, the hour the wait began in.
        let lord_howe = crate::channels::sla::time_zone("Australia/Lord_Howe").expect("Lord Howe");
        let change = 1_791_041_400_000; // 2026-10-03T15:30:00Z
        let wait_began = change - 45 * MIN; // 01:15 local
        let answered = change - 20 * MIN; // 01:40 local
        let events = vec![
            event(wait_began, "queued", 1, None),
            event(answered, "connected", 1, Some(1)),
        ];
        let report = build(
            &events,
            &Settings {
                zone: lord_howe.clone(),
                ..settings(Interval::Hour, change - 3 * hour, change + hour)
            },
        );
        let q = &report.queues[0];
        assert_eq!(
            q.interval_start,
            Interval::Hour.start_of(wait_began, &lord_howe)
        );
        assert_eq!((q.offered, q.answered), (1, 1), "{:?}", report.queues);

        // An agent logged in all that day: 25 hours in its one row, split in the day's hours.
        let events = vec![
            presence(midnight - hour, 1, true),
            presence(midnight + 26 * hour, 1, false),
        ];
        let in_berlin = |interval| Settings {
            zone: berlin.clone(),
            ..settings(interval, midnight, midnight + 25 * hour)
        };
        let report = build(&events, &in_berlin(Interval::Day));
        let rows: Vec<_> = report
            .agents
            .iter()
            .map(|r| (r.interval_start, r.logged_in_ms))
            .collect();
        assert_eq!(rows, vec![(midnight, 25 * hour)]);
        let report = build(&events, &in_berlin(Interval::Hour));
        assert_eq!(report.agents.len(), 25);
        assert!(report.agents.iter().all(|r| r.logged_in_ms == hour));
    }
}
