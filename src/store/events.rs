//! The append-only event log: every state change, of routing and of administration alike, is one
//! row. Reports, audit and recovery read it; nothing updates or deletes a row (only the removal of
//! a whole tenant does).

use sqlx::Any;

use super::{now_ms, Result, Store};

/// An event about to be appended.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub tenant: i64,
    /// Dotted name, e.g. `admin.queues.created`, `presence.changed`.
    pub kind: String,
    pub interaction_id: Option<i64>,
    pub agent_id: Option<i64>,
    pub queue_id: Option<i64>,
    pub payload: serde_json::Value,
}

/// Appends inside a caller's transaction, so the event commits with the change it records.
pub(super) async fn append_in(tx: &mut sqlx::Transaction<'_, Any>, event: &NewEvent) -> Result<()> {
    append_many(tx, &[(event.clone(), now_ms())]).await
}

/// Appends many events with one statement per call (the caller bounds the count).
pub(super) async fn append_many(
    tx: &mut sqlx::Transaction<'_, Any>,
    events: &[(NewEvent, i64)],
) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let rows = (0..events.len())
        .map(|i| {
            let p = i * 7;
            format!(
                "(${}, ${}, ${}, ${}, ${}, ${}, ${})",
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 5,
                p + 6,
                p + 7
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!("INSERT INTO events (tenant_id, at, kind, interaction_id, agent_id, queue_id, payload) VALUES {rows}");
    let mut query = sqlx::query(&sql);
    for (event, at) in events {
        query = query
            .bind(event.tenant)
            .bind(*at)
            .bind(event.kind.clone())
            .bind(event.interaction_id)
            .bind(event.agent_id)
            .bind(event.queue_id)
            .bind(event.payload.to_string());
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

impl Store {
    pub async fn append_event(&self, event: &NewEvent) -> Result<()> {
        let mut tx = self.begin().await?;
        append_in(&mut tx, event).await?;
        tx.commit().await?;
        Ok(())
    }
}
