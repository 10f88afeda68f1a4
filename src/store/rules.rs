//! The store's side of classification: inside the transaction that creates an interaction,
//! [`classify_in`] reads the tenant's enabled routing rules and lets [`classify`] pick, before
//! the row is written (with the pick's queue and priority); [`log_in`] then logs the pick
//! (`routing.classified`) — so what a rule did is in the event log beside what routing did.
//! [`Store::rule_queue_before_words`] asks the rules ahead, without words or customer: where a
//! chat would start (the widget's availability), or whether a number without a queue has one.

use sqlx::{Any, AnyConnection, Row, Transaction};

use super::events::{append_in, NewEvent};
use super::{now_ms, Result, Store};
use crate::channels::sla::{self, BusinessHours};
use crate::classify::{classify, Decision, Facts, Hours, Rule};

/// The decision of the rule that classifies a new interaction of `tenant` described by
/// `facts`, if one does. A stored rule that cannot be read (hours written before they were
/// checked) is skipped with a warning rather than failing the interaction.
pub(super) async fn classify_in(
    conn: &mut AnyConnection,
    tenant: i64,
    facts: &Facts<'_>,
) -> Result<Option<Decision>> {
    let rows = sqlx::query(
        "SELECT r.id, r.channel, r.service_address_id, r.keywords, r.language, r.customer_id, \
         r.hours, r.outside_hours, r.queue_id, r.priority, t.time_zone FROM routing_rules r \
         JOIN tenants t ON t.id = r.tenant_id \
         WHERE r.tenant_id = $1 AND r.enabled <> 0 ORDER BY r.position, r.id",
    )
    .bind(tenant)
    .fetch_all(&mut *conn)
    .await?;
    // Every row carries the tenant's time zone.
    let clock = match rows.first() {
        Some(row) => sla::tenant_clock(tenant, &row.try_get::<String, _>("time_zone")?),
        None => return Ok(None),
    };
    let mut rules = Vec::with_capacity(rows.len());
    for row in &rows {
        let id: i64 = row.try_get("id")?;
        let hours = match row.try_get::<Option<String>, _>("hours")? {
            None => None,
            Some(text) => match BusinessHours::parse(&text) {
                Some(hours) => Some(Hours {
                    hours,
                    zone: clock.clone(),
                    outside: row.try_get::<i64, _>("outside_hours")? != 0,
                }),
                None => {
                    tracing::warn!(
                        tenant,
                        rule = id,
                        hours = text,
                        "rule's hours unreadable; rule skipped"
                    );
                    continue;
                }
            },
        };
        rules.push(Rule {
            id,
            channel: row.try_get("channel")?,
            service_address: row.try_get("service_address_id")?,
            keywords: row
                .try_get::<Option<String>, _>("keywords")?
                .map(|k| Rule::keywords(&k))
                .unwrap_or_default(),
            language: row.try_get("language")?,
            customer: row.try_get("customer_id")?,
            hours,
            queue: row.try_get("queue_id")?,
            priority: row
                .try_get::<Option<i64>, _>("priority")?
                .map(|p| p.clamp(0, 100) as i32),
        });
    }
    Ok(classify(&rules, facts))
}

impl Store {
    /// The queue the routing rules give a new interaction of `tenant` on `channel` through
    /// `service_address` now, judged before its words and its customer are known (so keyword
    /// and customer rules do not match); `None` when no rule does.
    pub(super) async fn rule_queue_before_words(
        &self,
        tenant: i64,
        channel: &str,
        service_address: i64,
        language: Option<&str>,
    ) -> Result<Option<i64>> {
        let facts = Facts {
            channel,
            service_address: Some(service_address),
            text: "",
            language,
            customer: None,
            at: now_ms(),
        };
        let mut conn = self.pool.acquire().await?;
        Ok(classify_in(&mut conn, tenant, &facts)
            .await?
            .map(|decision| decision.queue))
    }
}

/// Logs that `decision` classified the interaction `interaction` of `tenant`.
pub(super) async fn log_in(
    tx: &mut Transaction<'static, Any>,
    tenant: i64,
    interaction: i64,
    decision: &Decision,
) -> Result<()> {
    let event = NewEvent {
        tenant,
        kind: "routing.classified".into(),
        interaction_id: Some(interaction),
        agent_id: None,
        queue_id: Some(decision.queue),
        payload: serde_json::json!({
            "rule": decision.rule,
            "queue": decision.queue,
            "priority": decision.priority,
        })
        .to_string(),
    };
    append_in(tx, &event).await
}
