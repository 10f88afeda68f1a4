//! Reports over the event log (`crate::reports` has the arithmetic):
//! `GET /api/v1/reports/{queues|agents|tenant}?from=&to=&interval=&short_abandon_seconds=&format=`
//! — `from`/`to` Unix ms (default: today on the tenant's clock, until now), `interval` `15m`, `hour` (default)
//! or `day`, `format` `json` (default, `{"items": […]}`) or `csv`. Supervisors and admins.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::auth::Caller;
use super::error::{ApiPath, Error, Result};
use super::AppState;
use crate::catalog::Role;
use crate::reports::{self, AgentRow, Interval, QueueRow, Settings};
use crate::store::now_ms;

/// Waits and logins that began this long before `from` are still seen.
const LOOKBACK_MS: i64 = 86_400_000;

/// Events this long after `to` (until now) are read too: a call that entered at 23:59:55 and
/// was answered at 00:00:08 counts answered in yesterday's report, whatever `to` is asked.
/// Outside `[from, to)` they close waits, logins and handlings and count nothing themselves.
const LOOKAHEAD_MS: i64 = 86_400_000;
/// Events one report reads at most; a longer span is refused.
const MAX_EVENTS: i64 = 2_000_000;
/// Intervals one report spans at most (over 100 days of quarter hours, 27 years of days): the
/// rows of agents logged in through the span are made interval by interval.
const MAX_INTERVALS: i64 = 10_000;
/// The end of 9999 (UTC), in Unix ms: the latest `to`.
const LATEST_MS: i64 = 253_402_300_800_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    from: Option<i64>,
    to: Option<i64>,
    interval: Option<String>,
    short_abandon_seconds: Option<i64>,
    format: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/reports/{table}", tag = "reports",
    params(("table" = String, Path, description = "`queues`, `agents` or `tenant`"),
        ("from" = Option<i64>, Query, description = "span start, Unix ms, inclusive (default: today's start on the tenant's clock)"),
        ("to" = Option<i64>, Query, description = "span end, Unix ms, exclusive (default: now)"),
        ("interval" = Option<String>, Query, description = "`15m`, `hour` (default) or `day`"),
        ("short_abandon_seconds" = Option<i64>, Query, description = "abandons sooner are short (default 5)"),
        ("format" = Option<String>, Query, description = "`json` (default) or `csv`")),
    security(("bearer" = [])),
    responses((status = 200, description = "`{items: [...], from, to, time_zone}` (the tenant's clock the intervals follow), or CSV with a header line (docs/reports.md)"),
        (status = 400, description = "invalid query", body = super::error::ErrorBody),
        (status = 401, body = super::error::ErrorBody), (status = 403, body = super::error::ErrorBody),
        (status = 404, description = "no such report", body = super::error::ErrorBody),
        (status = 503, description = "journal_behind: routing's writes are behind (the database is down or slow); try again", body = super::error::ErrorBody)))]
pub async fn report(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(table): ApiPath<String>,
    params: std::result::Result<Query<Params>, QueryRejection>,
) -> Result<Response> {
    let who = caller.user_with(Role::Supervisor)?;
    let Query(params) = params?;
    let interval = match params.interval.as_deref() {
        None => Interval::Hour,
        Some(text) => Interval::parse(text)
            .ok_or_else(|| Error::InvalidQuery("interval is 15m, hour or day".into()))?,
    };
    let now = now_ms();
    let zone = state.store.tenant_clock(who.tenant_id).await?;
    let to = params.to.unwrap_or(now);
    let from = params
        .from
        .unwrap_or_else(|| Interval::Day.start_of(now, &zone));
    if from >= to {
        return Err(Error::InvalidQuery("`from` must be before `to`".into()));
    }
    if from < 0 || to > LATEST_MS {
        return Err(Error::InvalidQuery(
            "`from` and `to` are Unix milliseconds from 1970 to 9999".into(),
        ));
    }
    if (to - from) / interval.millis() > MAX_INTERVALS {
        return Err(Error::InvalidQuery(format!(
            "a report spans at most {MAX_INTERVALS} intervals: narrow `from`–`to` or widen `interval`"
        )));
    }
    let csv = match params.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(Error::InvalidQuery("format is json or csv".into())),
    };
    if !matches!(table.as_str(), "queues" | "agents" | "tenant") {
        return Err(Error::NotFound(format!("no report `{table}`")));
    }
    let settings = Settings {
        targets: state.store.sla_targets(who.tenant_id).await?,
        short_abandon_ms: params.short_abandon_seconds.unwrap_or(5).clamp(0, 3600) * 1000,
        interval,
        zone,
        from,
        to,
        now,
    };
    // Everything routed before this request is in the event log.
    state.routing.caught_up().await?;
    let events = state
        .store
        .report_events(
            who.tenant_id,
            from.saturating_sub(LOOKBACK_MS),
            to.saturating_add(LOOKAHEAD_MS).min(now + 1).max(to),
            MAX_EVENTS,
        )
        .await?
        .ok_or_else(|| Error::InvalidQuery("too many events: ask for a shorter span".into()))?;
    let report = reports::build(&events, &settings);
    let (header_line, lines, items) = match table.as_str() {
        "agents" => (
            AgentRow::CSV_HEADER,
            report.agents.iter().map(AgentRow::csv).collect::<Vec<_>>(),
            json!(report.agents),
        ),
        "tenant" => {
            let rows = reports::tenant_rows(&report);
            (
                QueueRow::CSV_HEADER,
                rows.iter().map(QueueRow::csv).collect(),
                json!(rows),
            )
        }
        _ => (
            QueueRow::CSV_HEADER,
            report.queues.iter().map(QueueRow::csv).collect(),
            json!(report.queues),
        ),
    };
    if csv {
        let mut body = String::from(header_line);
        for line in lines {
            body.push('\n');
            body.push_str(&line);
        }
        body.push('\n');
        return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response());
    }
    let time_zone = settings.zone.iana_name().unwrap_or("UTC");
    Ok(
        Json(json!({ "items": items, "from": from, "to": to, "time_zone": time_zone }))
            .into_response(),
    )
}
