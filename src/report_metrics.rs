//! Today's report figures as Prometheus gauges on `/metrics`: per tenant and queue offered,
//! answered, abandoned, service level, ASA, AHT and longest wait; occupancy per agent and per
//! tenant — the same arithmetic as the reports (`crate::reports`, interval = the tenant's
//! current day on its clock), so a dashboard and `GET /api/v1/reports/queues?interval=day`
//! never disagree.
//!
//! Refreshed on scrape, cheaply: the routing journal is flushed (while the database cannot take
//! routing's writes, for at most `store::JOURNAL_WAIT`, and the figures stay as they were), then
//! a tenant's figures are recomputed from the event log only when it has new events or a new
//! minute began since the last scrape; otherwise the gauges keep their values. The minute,
//! because occupancy goes on changing without events (an agent on a call grows busier), and
//! because on PostgreSQL a newer event id may commit before an older one the last look missed. [`ReportGauges`]
//! remembers, per tenant, the newest event and the minute it computed. One scrape at a time
//! refreshes (the others wait their turn, and then find little left to do), so `/metrics` asked
//! in a loop or by many at once costs at most one refresh under way. Figures with nothing to
//! average are `NaN`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::metrics as names;
use crate::reports;
use crate::routing::RoutingHandle;
use crate::store::{self, now_ms, Store};

/// What the last scrape computed: per tenant, its newest event id and the minute (Unix ms / 60 000).
#[derive(Clone, Default)]
pub struct ReportGauges {
    seen: Arc<Mutex<HashMap<i64, (i64, i64)>>>,
    /// One refresh at a time: scrapes side by side would each read every busy tenant's day.
    refreshing: Arc<tokio::sync::Mutex<()>>,
}

impl ReportGauges {
    /// Brings every tenant's gauges up to date with the event log.
    pub async fn refresh(&self, store: &Store, routing: &RoutingHandle) {
        // While the database cannot take routing's writes, the scrape still answers (with
        // the figures as last refreshed): it is how the operator sees the outputs pending.
        // Waited for before the turn, so that scrapes meanwhile do not wait one after another.
        if routing.caught_up().await.is_err() {
            return;
        }
        let _turn = self.refreshing.lock().await;
        let tenants = match store.tenant_ids().await {
            Ok(tenants) => tenants,
            Err(err) => {
                tracing::warn!(%err, "report gauges not refreshed");
                return;
            }
        };
        let now = now_ms();
        let minute = now / 60_000;
        for tenant in tenants {
            let last = match store.last_event_id(tenant).await {
                Ok(last) => last,
                Err(err) => {
                    tracing::warn!(tenant, %err, "report gauges not refreshed");
                    continue;
                }
            };
            let seen = self.lock().get(&tenant).copied();
            if seen == Some((last, minute)) {
                continue;
            }
            match publish(store, tenant, now).await {
                Ok(true) => {
                    self.lock().insert(tenant, (last, minute));
                }
                Ok(false) => {
                    tracing::warn!(tenant, "too many events today for the report gauges")
                }
                Err(err) => tracing::warn!(tenant, %err, "report gauges not refreshed"),
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, (i64, i64)>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn seconds(ms: Option<f64>) -> f64 {
    ms.map_or(f64::NAN, |ms| ms / 1000.0)
}

/// Computes `tenant`'s figures for its day so far (on its clock) and sets its gauges; `false`
/// when the day has too many events.
async fn publish(store: &Store, tenant: i64, now: i64) -> store::Result<bool> {
    let Some((settings, report)) = store.today_report(tenant, now).await? else {
        return Ok(false);
    };
    let (people, _) = store.floor_labels(tenant).await?;
    let label = tenant.to_string();
    for &queue in settings.targets.keys() {
        let row = report.queues.iter().find(|r| r.queue == queue);
        let labels = [("tenant", label.clone()), ("queue", queue.to_string())];
        let count = |f: fn(&reports::QueueRow) -> u64| row.map_or(0.0, |r| f(r) as f64);
        metrics::gauge!(names::QUEUE_OFFERED, &labels).set(count(|r| r.offered));
        metrics::gauge!(names::QUEUE_ANSWERED, &labels).set(count(|r| r.answered));
        metrics::gauge!(names::QUEUE_ABANDONED, &labels).set(count(|r| r.abandoned));
        metrics::gauge!(names::QUEUE_SERVICE_LEVEL, &labels)
            .set(row.and_then(|r| r.service_level).unwrap_or(f64::NAN));
        metrics::gauge!(names::QUEUE_ASA, &labels).set(seconds(row.and_then(|r| r.asa_ms)));
        metrics::gauge!(names::QUEUE_AHT, &labels).set(seconds(row.and_then(|r| r.aht_ms)));
        metrics::gauge!(names::QUEUE_LONGEST_WAIT, &labels)
            .set(seconds(row.map(|r| r.longest_wait_ms as f64)));
    }
    let (mut busy, mut logged_in) = (0i64, 0i64);
    for person in &people {
        let row = report.agents.iter().find(|r| r.agent == person.id);
        if let Some(row) = row {
            busy += row.busy_ms;
            logged_in += row.logged_in_ms;
        }
        let labels = [("tenant", label.clone()), ("agent", person.id.to_string())];
        metrics::gauge!(names::AGENT_OCCUPANCY, &labels)
            .set(row.and_then(|r| r.occupancy).unwrap_or(f64::NAN));
    }
    let occupancy = if logged_in > 0 {
        busy as f64 / logged_in as f64
    } else {
        f64::NAN
    };
    metrics::gauge!(names::TENANT_OCCUPANCY, "tenant" => label).set(occupancy);
    Ok(true)
}
