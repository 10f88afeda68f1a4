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

const INSERT: &str =
    "INSERT INTO events (tenant_id, at, kind, interaction_id, agent_id, queue_id, payload) \
                      VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// Appends inside a caller's transaction, so the event commits with the change it records.
pub(super) async fn append_in(tx: &mut sqlx::Transaction<'_, Any>, event: &NewEvent) -> Result<()> {
    append_at(tx, event, now_ms()).await
}

/// Appends with the time the event happened (Unix milliseconds).
pub(super) async fn append_at(
    tx: &mut sqlx::Transaction<'_, Any>,
    event: &NewEvent,
    at: i64,
) -> Result<()> {
    sqlx::query(INSERT)
        .bind(event.tenant)
        .bind(at)
        .bind(event.kind.clone())
        .bind(event.interaction_id)
        .bind(event.agent_id)
        .bind(event.queue_id)
        .bind(event.payload.to_string())
        .execute(&mut **tx)
        .await?;
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
