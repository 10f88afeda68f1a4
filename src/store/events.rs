//! The append-only event log: every state change, of routing and of administration alike, is one
//! row. Reports, audit and recovery read it; nothing updates or deletes a row (only the removal of
//! a whole tenant does).

use sqlx::{Any, AnyConnection};

use super::{now_ms, padded_chunks, query_for, AnyQuery, Backend, ChunkSql, Result, Store};

/// An event about to be appended.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub tenant: i64,
    /// Dotted name, e.g. `admin.queues.created`, `presence.changed`.
    pub kind: String,
    pub interaction_id: Option<i64>,
    pub agent_id: Option<i64>,
    pub queue_id: Option<i64>,
    /// JSON text.
    pub payload: String,
}

/// Appends inside a caller's transaction, so the event commits with the change it records.
pub(super) async fn append_in(tx: &mut sqlx::Transaction<'_, Any>, event: &NewEvent) -> Result<()> {
    append_at(tx, event, now_ms()).await
}

/// [`append_in`], dated `at` (Unix ms) instead of now.
pub(super) async fn append_at(
    tx: &mut sqlx::Transaction<'_, Any>,
    event: &NewEvent,
    at: i64,
) -> Result<()> {
    bind(sqlx::query(INSERT_ONE), [(event, at)])
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Values bound per event.
pub(super) const PARAMS: usize = 7;

/// One event (seven named parameters are cheap to bind on both databases).
const INSERT_ONE: &str =
    "INSERT INTO events (tenant_id, at, kind, interaction_id, agent_id, queue_id, payload) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// Appends many events, many rows per statement (in chunks of [`super::padded_chunks`]).
pub(super) async fn append_many(
    connection: &mut AnyConnection,
    backend: Backend,
    events: &[(NewEvent, i64)],
) -> Result<()> {
    for (chunk, size) in padded_chunks(events) {
        let sql = INSERT_MANY.get(backend, size);
        bind_padded(query_for(&sql, size * PARAMS), chunk, size)
            .execute(&mut *connection)
            .await?;
    }
    Ok(())
}

pub(super) static INSERT_MANY: ChunkSql = ChunkSql::new(insert_sql);

/// Binds a chunk of events to the insert of `size` rows, padded with rows of NULLs.
pub(super) fn bind_padded<'q>(
    query: AnyQuery<'q>,
    chunk: &'q [(NewEvent, i64)],
    size: usize,
) -> AnyQuery<'q> {
    let mut query = bind(query, chunk.iter().map(|(event, at)| (event, *at)));
    for _ in chunk.len()..size {
        query = bind_nulls(query);
    }
    query
}

/// The insert of up to `rows` events; [`bind`] binds their values, [`bind_nulls`] the rows of
/// NULLs that pad the statement, which it skips.
fn insert_sql(backend: Backend, rows: usize) -> String {
    let tuples = backend.values(rows, PARAMS);
    format!(
        "INSERT INTO events (tenant_id, at, kind, interaction_id, agent_id, queue_id, payload) \
         SELECT * FROM (VALUES {tuples}) AS v WHERE v.column1 IS NOT NULL"
    )
}

/// One padding row of [`insert_sql`].
fn bind_nulls(query: AnyQuery<'_>) -> AnyQuery<'_> {
    query
        .bind(None::<i64>)
        .bind(None::<i64>)
        .bind(None::<&str>)
        .bind(None::<i64>)
        .bind(None::<i64>)
        .bind(None::<i64>)
        .bind(None::<&str>)
}

/// Binds each event and the time it happened, borrowed for as long as the query lives.
fn bind<'q>(
    mut query: AnyQuery<'q>,
    events: impl IntoIterator<Item = (&'q NewEvent, i64)>,
) -> AnyQuery<'q> {
    for (event, at) in events {
        query = query
            .bind(event.tenant)
            .bind(at)
            .bind(event.kind.as_str())
            .bind(event.interaction_id)
            .bind(event.agent_id)
            .bind(event.queue_id)
            .bind(event.payload.as_str());
    }
    query
}

impl Store {
    pub async fn append_event(&self, event: &NewEvent) -> Result<()> {
        let mut tx = self.begin().await?;
        append_in(&mut tx, event).await?;
        tx.commit().await?;
        Ok(())
    }
}
