//! What reports and the supervisors' feed read: the routing events of a tenant in a time span
//! (in the order they were appended), the queues' service-level targets, the labels and
//! presence times the feed shows, and a tenant's report of its day so far (the feed's totals
//! and the `/metrics` day gauges).

use std::collections::BTreeMap;

use serde_json::Value as Json;
use sqlx::Row;

use super::{Result, Store};
use crate::reports::{self, Event, Interval, Report, Settings};

/// Events one tenant's day may have at most for its figures of today to be computed.
pub const MAX_TODAY_EVENTS: i64 = 2_000_000;
/// Waits and logins that began this long before the tenant's midnight still count today.
const TODAY_LOOKBACK_MS: i64 = 86_400_000;

/// The event kinds reports are built from.
const KINDS: &str =
    "'routing.queued', 'routing.connected', 'routing.closed', 'routing.abandoned', \
    'routing.ended', 'routing.transferred', 'routing.wrap_up_ended', 'routing.presence_changed', \
    'routing.moved', 'routing.placed'";

impl Store {
    /// `tenant`'s report of its day so far, on its clock, at `now` (Unix ms) — what the
    /// supervisors' feed and the `/metrics` day gauges show — with the settings it was made
    /// with; `None` when the day has more events than [`MAX_TODAY_EVENTS`].
    pub async fn today_report(&self, tenant: i64, now: i64) -> Result<Option<(Settings, Report)>> {
        let zone = self.tenant_clock(tenant).await?;
        let settings = Settings {
            targets: self.sla_targets(tenant).await?,
            short_abandon_ms: 5_000,
            interval: Interval::Day,
            from: Interval::Day.start_of(now, &zone),
            zone,
            to: now + 1,
            now,
        };
        let events = self
            .report_events(
                tenant,
                settings.from - TODAY_LOOKBACK_MS,
                settings.to,
                MAX_TODAY_EVENTS,
            )
            .await?;
        Ok(events.map(|events| {
            let report = reports::build(&events, &settings);
            (settings, report)
        }))
    }

    /// Routing events of `tenant` with `from <= at < to`, oldest first; at most `limit`
    /// (`None` when there are more: the caller should ask for a shorter span).
    pub async fn report_events(
        &self,
        tenant: i64,
        from: i64,
        to: i64,
        limit: i64,
    ) -> Result<Option<Vec<Event>>> {
        let sql = format!(
            "SELECT at, kind, interaction_id, agent_id, queue_id, payload FROM events \
             WHERE tenant_id = $1 AND at >= $2 AND at < $3 AND kind IN ({KINDS}) \
             ORDER BY id LIMIT $4"
        );
        let rows = sqlx::query(&sql)
            .bind(tenant)
            .bind(from)
            .bind(to)
            .bind(limit + 1)
            .fetch_all(&self.pool)
            .await?;
        if rows.len() as i64 > limit {
            return Ok(None);
        }
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            let kind: String = row.try_get("kind")?;
            let (logged_in, login) = if kind == "routing.presence_changed" {
                let payload: String = row.try_get("payload")?;
                let payload = serde_json::from_str::<Json>(&payload).ok();
                let online =
                    |side: &str| payload.as_ref().map(|p| p[side]["presence"] != "offline");
                let to = online("to");
                (to, to == Some(true) && online("from") == Some(false))
            } else {
                (None, false)
            };
            // Only a restored wait's payload names how long it had waited.
            let restored = kind == "routing.queued"
                && row.try_get::<String, _>("payload")?.contains("\"waited\"");
            events.push(Event {
                at: row.try_get("at")?,
                kind,
                interaction: row.try_get("interaction_id")?,
                agent: row.try_get("agent_id")?,
                queue: row.try_get("queue_id")?,
                logged_in,
                login,
                restored,
            });
        }
        Ok(Some(events))
    }

    /// Each queue's service-level target in ms.
    pub async fn sla_targets(&self, tenant: i64) -> Result<BTreeMap<i64, i64>> {
        let rows = sqlx::query("SELECT id, sla_seconds FROM queues WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("id")?,
                    row.try_get::<i64, _>("sla_seconds")? * 1000,
                ))
            })
            .collect()
    }
}

/// What the supervisors' feed shows of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub id: i64,
    pub name: String,
    pub team: Option<i64>,
}

impl Store {
    /// The id of the newest event of `tenant` (0 if none): the feed recomputes today's
    /// figures only when it changed.
    pub async fn last_event_id(&self, tenant: i64) -> Result<i64> {
        let row = sqlx::query("SELECT COALESCE(MAX(id), 0) AS id FROM events WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("id")?)
    }

    /// When each agent's presence last changed (Unix ms).
    pub async fn presence_since(&self, tenant: i64) -> Result<BTreeMap<i64, i64>> {
        let rows = sqlx::query(
            "SELECT agent_id, MAX(at) AS at FROM events WHERE tenant_id = $1 \
             AND kind = 'routing.presence_changed' AND agent_id IS NOT NULL GROUP BY agent_id",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("agent_id")?, row.try_get("at")?)))
            .collect()
    }

    /// Users (id, display name, team) and queue names of a tenant, for labels.
    pub async fn floor_labels(&self, tenant: i64) -> Result<(Vec<Person>, BTreeMap<i64, String>)> {
        let users = sqlx::query("SELECT id, display_name, team_id FROM users WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                Ok(Person {
                    id: row.try_get("id")?,
                    name: row.try_get("display_name")?,
                    team: row.try_get("team_id")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let queues = sqlx::query("SELECT id, name FROM queues WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| Ok((row.try_get("id")?, row.try_get("name")?)))
            .collect::<Result<BTreeMap<_, _>>>()?;
        Ok((users, queues))
    }
}
