//! Group commit of the busiest writes: the creates of the catalog's resources ([`Store::create`])
//! and routing's outputs ([`Store::journal`]). One task takes every write waiting for it and
//! commits them in one transaction — for the creates one reference check per distinct
//! referenced row and rows of the same table and columns many per statement; then the outputs'
//! events (with the creates' audit events, in one append) and the changes they make to their
//! interactions — and answers each create once that transaction has committed. While one round
//! commits the next one gathers, so a round grows with the load and a lone write waits for
//! nothing. On SQLite a create and the outputs routing produced meanwhile share one commit
//! instead of taking the one write connection in turn; on PostgreSQL, where transactions commit
//! side by side, creates and outputs have a committer each. A committer keeps its connection
//! from round to round while work keeps coming (at most [`HOLD`]), and on SQLite restarts the
//! WAL between rounds once it is long (see `checkpoint`).
//!
//! Each create still gets its own answer: a create whose reference points nowhere gets its
//! `UnknownReference` and the rest of the round goes on; if anything else fails (a duplicate, a
//! database error) the whole transaction is rolled back, every create of the round is inserted
//! again in a transaction of its own, and the outputs are written batch by batch, so one bad
//! write costs only itself.
//!
//! A multi-row `INSERT … RETURNING` returns its rows in no documented order. Rows are matched to
//! requests by ascending id (both databases hand out ids in the order of the `VALUES` list, the
//! writer being the only one inserting on SQLite), and each match is checked against what the
//! request wrote; a mismatch counts as a failure and falls back as above.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use sqlx::any::AnyRow;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, Row};
use tokio::sync::{mpsc, oneshot};

use super::checkpoint;
use super::crud::{
    audit, bind, insert_rows, insert_rows_made_ahead, insert_values, row_to_json, select_list,
};
use super::events::{self, NewEvent};
use super::routing::{bind_padded_rows, output_changes, write_rows, OutputBatch, RowValues, ROWS};
use super::{
    begin_in, commit_failed, now_ms, padded_chunks, query_for, sized_chunks, AnyQuery, Backend,
    Error, Result, Store, Value, BEGIN_WRITE, CHUNK_SIZES,
};
use crate::catalog::{Column, Kind, Resource};

/// Most creates committed in one round.
const MAX_BATCH: usize = 512;

/// Most journal messages (routing's output batches) taken into one round.
const MAX_JOURNAL: usize = 512;

/// How long the committer keeps the writer connection while work keeps coming: taking it from
/// the pool and handing it back costs a trip to SQLite's worker thread and a task the runtime
/// must schedule, which under load took longer than the round itself. The other writers (chat
/// messages, call records, logins) wait at most this long for their turn.
const HOLD: Duration = Duration::from_millis(20);

/// One create waiting for its round.
pub(super) struct Create {
    resource: &'static Resource,
    tenant: i64,
    actor: Option<i64>,
    values: Vec<(&'static Column, Value)>,
    /// Set for a create made ahead ([`Store::create_ahead`]).
    preset: Option<Preset>,
    reply: oneshot::Sender<Result<Json>>,
}

/// The id and creation time of a row whose create was made ahead of its insert.
#[derive(Debug, Clone, Copy)]
pub(super) struct Preset {
    pub(super) id: i64,
    pub(super) at: i64,
}

impl Create {
    /// The audit event of its insert as row `id`, dated `at`.
    fn audited(&self, id: i64, at: i64) -> (NewEvent, i64) {
        let event = audit(self.resource.table, "created", self.tenant, self.actor, id);
        (event, at)
    }

    /// A create made ahead, answered on `reply` with `Null` once written: its maker holds the
    /// row, which is not read back.
    pub(super) fn ahead(
        resource: &'static Resource,
        tenant: i64,
        actor: Option<i64>,
        values: &[(&'static Column, Value)],
        preset: Preset,
        reply: oneshot::Sender<Result<Json>>,
    ) -> Create {
        Create {
            resource,
            tenant,
            actor,
            values: values.to_vec(),
            preset: Some(preset),
            reply,
        }
    }
}

/// What routing hands the committer: outputs to write, a create made ahead (sent before the
/// outputs about it, so it is written in the same round as they are or an earlier one), or a
/// request to be told when everything sent before it is written.
pub(super) enum Journal {
    Batch(OutputBatch),
    Create(Create),
    Flushed(oneshot::Sender<()>),
}

/// Hands a create to the committer and waits until its round has committed.
pub(super) async fn submit(
    committer: &mpsc::Sender<Create>,
    resource: &'static Resource,
    tenant: i64,
    actor: Option<i64>,
    values: Vec<(&'static Column, Value)>,
) -> Result<Json> {
    let (reply, answer) = oneshot::channel();
    let create = Create {
        resource,
        tenant,
        actor,
        values,
        preset: None,
        reply,
    };
    committer.send(create).await.map_err(|_| Error::Closed)?;
    answer.await.map_err(|_| Error::Closed)?
}

/// The committer: commits what has gathered, round after round, until every sender of its
/// channels is gone. `store` is a handle without a committer of its own (it writes directly).
/// On SQLite one committer takes both channels (SQLite has one writer, and a round that holds
/// both commits once); on PostgreSQL creates and outputs get a committer each, whose
/// transactions commit side by side (each waits for its own WAL flush).
pub(super) async fn run(
    store: Store,
    mut creates: Option<mpsc::Receiver<Create>>,
    mut journal: Option<mpsc::UnboundedReceiver<Journal>>,
) {
    let mut wal = store.wal.clone();
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut journaled = Vec::with_capacity(MAX_JOURNAL);
    let (mut creating, mut journaling) = (creates.is_some(), journal.is_some());
    let mut held = None;
    let mut held_since = Instant::now();
    while creating || journaling {
        tokio::select! {
            n = async {
                match creates.as_mut() {
                    Some(creates) => creates.recv_many(&mut batch, MAX_BATCH).await,
                    None => 0,
                }
            }, if creating => creating = n > 0,
            n = async {
                match journal.as_mut() {
                    Some(journal) => journal.recv_many(&mut journaled, MAX_JOURNAL).await,
                    None => 0,
                }
            }, if journaling => journaling = n > 0,
        }
        // Whatever else is waiting joins the round.
        if let Some(creates) = creates.as_mut() {
            while batch.len() < MAX_BATCH {
                let Ok(create) = creates.try_recv() else {
                    break;
                };
                batch.push(create);
            }
        }
        if let Some(journal) = journal.as_mut() {
            while journaled.len() < MAX_JOURNAL {
                let Ok(message) = journal.try_recv() else {
                    break;
                };
                journaled.push(message);
            }
        }
        if held.is_none() {
            held_since = Instant::now();
        }
        commit(&store, &mut held, &mut batch, &mut journaled).await;
        if let (Some(writer), Some(wal)) = (held.as_mut(), wal.as_mut()) {
            checkpoint::restart_if_long(writer, wal).await;
        }
        // The writer is handed back when no work came in meanwhile or it was held for HOLD.
        let more = creates.as_ref().is_some_and(|c| !c.is_empty())
            || journal.as_ref().is_some_and(|j| !j.is_empty());
        if !more || held_since.elapsed() >= HOLD {
            held = None;
        }
    }
}

/// Commits one round on the writer connection in `held` (taken from the pool if empty) and
/// answers its creates and flush requests. A failed round hands the connection back first: its
/// one-by-one fallback takes connections from the pool.
async fn commit(
    store: &Store,
    held: &mut Option<PoolConnection<Any>>,
    batch: &mut Vec<Create>,
    journaled: &mut Vec<Journal>,
) {
    let mut outputs = Vec::new();
    let mut flushed = Vec::new();
    for message in journaled.drain(..) {
        match message {
            Journal::Batch(b) => outputs.push(b),
            Journal::Create(create) => batch.push(create),
            Journal::Flushed(done) => flushed.push(done),
        }
    }
    if !batch.is_empty() {
        metrics::histogram!(crate::metrics::CREATE_BATCH).record(batch.len() as f64);
    }
    let written: usize = outputs.iter().map(|b| b.outputs.len()).sum();
    metrics::counter!(crate::metrics::ROUTING_OUTPUTS).increment(written as u64);
    if !batch.is_empty() || !outputs.is_empty() {
        let written_round = match held {
            Some(connection) => write_round(store, connection, batch, &outputs).await,
            None => match store.writer.acquire().await {
                Ok(connection) => {
                    write_round(store, held.insert(connection), batch, &outputs).await
                }
                Err(e) => Err(e.into()),
            },
        };
        match written_round {
            Ok(outcomes) => {
                store.journal_written(written);
                for (create, outcome) in batch.drain(..).zip(outcomes) {
                    let _ = create.reply.send(outcome);
                }
            }
            Err(Error::CommitUnknown) => {
                // Written again, a create that was committed would be there twice: its caller
                // hears that it may be stored — unless it was made ahead, whose id tells whether
                // it is there. Outputs are written again all the same: an event logged twice is
                // better than one lost.
                *held = None;
                tracing::error!(
                    creates = batch.len(),
                    outputs = written,
                    "group commit's outcome unknown; only its creates made ahead are written again"
                );
                for create in batch.drain(..) {
                    let outcome = match create.preset {
                        // Its id makes writing it again safe: there once, it is not twice. A
                        // database that cannot take it for the moment leaves it unknown.
                        Some(preset) => store
                            .create_alone(
                                create.resource,
                                create.tenant,
                                create.actor,
                                &create.values,
                                Some(preset),
                            )
                            .await
                            .map_err(|e| {
                                if e.is_transient() {
                                    Error::CommitUnknown
                                } else {
                                    e
                                }
                            }),
                        None => Err(Error::CommitUnknown),
                    };
                    let _ = create.reply.send(outcome);
                }
                record_one_by_one(store, &outputs).await;
            }
            Err(e) => {
                *held = None;
                tracing::info!(error = %e, creates = batch.len(), outputs = written, "group commit failed; writing one by one");
                for create in batch.drain(..) {
                    let outcome = store
                        .create_alone(
                            create.resource,
                            create.tenant,
                            create.actor,
                            &create.values,
                            create.preset,
                        )
                        .await;
                    let _ = create.reply.send(outcome);
                }
                record_one_by_one(store, &outputs).await;
            }
        }
    }
    for done in flushed {
        let _ = done.send(());
    }
}

/// Writes the outputs of a failed round batch by batch, so that one bad batch costs only itself.
/// A batch the database could not take for the moment (its connection broke, it restarts, the
/// disk is full, another process holds SQLite's write lock: [`Error::is_transient`]) is tried
/// again, waiting longer each time, until it is written or the store closes: routing has moved
/// on and nobody else would write it. Meanwhile the next rounds wait in the journal.
async fn record_one_by_one(store: &Store, outputs: &[OutputBatch]) {
    for output in outputs {
        let (tenant, count) = (output.tenant, output.outputs.len());
        let written = until_taken(
            store,
            || store.record_outputs(std::slice::from_ref(output)),
            |e, pause| tracing::warn!(tenant, error = %e, outputs = count, retry_in = ?pause, "routing outputs not written yet; trying again"),
        )
        .await;
        if let Err(e) = written {
            tracing::error!(tenant, error = %e, outputs = count, "routing outputs lost from the event log");
        }
        store.journal_written(count);
    }
}

/// Makes `write` until it is done, fails for good or the store closes: after each failure the
/// database may get over ([`Error::is_transient`]) `retrying` hears of it and of the pause
/// before the next try — [`RETRY_FIRST`], then twice as long each time, at most
/// [`RETRY_LAST`]. `Err`: the failure that ended it.
pub(super) async fn until_taken<F, Fut>(
    store: &Store,
    mut write: F,
    retrying: impl Fn(&Error, Duration),
) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut pause = RETRY_FIRST;
    loop {
        let e = match write().await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if !e.is_transient() || store.writer.is_closed() {
            return Err(e);
        }
        retrying(&e, pause);
        metrics::counter!(crate::metrics::JOURNAL_RETRIES).increment(1);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RETRY_LAST);
    }
}

/// The first and the longest wait before a write the database could not take is tried again.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_LAST: Duration = Duration::from_secs(5);

/// Writes a round in one transaction on `connection` (a writer): the creates, then every event
/// (the creates' audit events and the outputs'), then the interactions the outputs change.
/// `Ok` holds each create's outcome (in batch order) after the commit; `Err` means nothing was
/// committed.
pub(super) async fn write_round(
    store: &Store,
    connection: &mut AnyConnection,
    batch: &[Create],
    outputs: &[OutputBatch],
) -> Result<Vec<Result<Json>>> {
    if store.backend == Backend::Sqlite {
        let count: usize = outputs.iter().map(|b| b.outputs.len()).sum();
        return match batch {
            [] if (1..=CHUNK_SIZES[0]).contains(&count) => {
                write_in_one_trip(connection, None, outputs).await
            }
            [create] if count <= CHUNK_SIZES[0] => {
                write_in_one_trip(connection, Some(create), outputs).await
            }
            _ => write_in_few_trips(store, connection, batch, outputs).await,
        };
    }
    let mut tx = begin_in(connection, store.backend).await?;
    let mut events = Vec::new();
    let outcomes = insert_batch(&mut tx, store, batch, &mut events, &mut None).await?;
    let rows = output_changes(outputs, &mut events);
    events::append_many(&mut tx, store.backend, &events).await?;
    write_rows(&mut tx, store.backend, &rows).await?;
    tx.commit().await.map_err(commit_failed)?;
    Ok(outcomes)
}

/// On SQLite every statement is a trip to the connection's worker thread and back (two thread
/// wake-ups), which at moderate load cost more than the statements. So a round of routing
/// outputs alone or with one create — most rounds: creates arrive one at a time — whose events
/// and row changes fit one statement each (at most 256 outputs, one event each) is sent as one
/// multi-statement query: `BEGIN IMMEDIATE`; for the create, a check of each reference it
/// makes, its insert (made only if every reference holds) and its audit event (only if it
/// inserted, naming the new id); the outputs' events and row changes; `COMMIT`. The check's row
/// says which reference points nowhere: that create gets its `UnknownReference` and the outputs
/// are committed all the same, as in a general round. `Err` means nothing was committed (the
/// transaction a failed statement left open is rolled back); once the `COMMIT` has run, only
/// the create's answer can go wrong, never the round (its fallback would write it twice).
async fn write_in_one_trip(
    connection: &mut AnyConnection,
    create: Option<&Create>,
    outputs: &[OutputBatch],
) -> Result<Vec<Result<Json>>> {
    let mut events = Vec::new();
    let rows = output_changes(outputs, &mut events);
    let tail = Tail::new(&events, &rows)
        .ok_or_else(|| mismatch("a one-trip round holds more than one chunk"))?;
    let insert = create.map(OneInsert::new);
    let mut sql = format!("{BEGIN_WRITE}; ");
    if let Some(insert) = &insert {
        insert.push_sql(&mut sql);
    }
    tail.push_sql(&mut sql);
    let params = insert.as_ref().map_or(0, OneInsert::params) + tail.params();
    let mut query = query_for(&sql, params);
    if let Some(insert) = &insert {
        query = insert.bind(query);
    }
    let returned = match tail.bind(query).fetch_all(&mut *connection).await {
        Ok(returned) => returned,
        Err(e) => {
            roll_back(connection).await;
            return Err(commit_failed(e));
        }
    };
    Ok(insert.map(|i| i.answer(&returned)).into_iter().collect())
}

/// A SQLite round of several creates: the creates as in a general round, `BEGIN IMMEDIATE`
/// sent with the first of their statements, then the events and row changes with the `COMMIT`
/// in one trip when they fit one statement each — three trips to SQLite's worker thread for a
/// round of creates of one kind that reference one row, instead of six. Every create's answer
/// is made before the `COMMIT` is sent; `Err` means nothing was committed.
async fn write_in_few_trips(
    store: &Store,
    connection: &mut AnyConnection,
    batch: &[Create],
    outputs: &[OutputBatch],
) -> Result<Vec<Result<Json>>> {
    let mut begin = Some(BEGIN_WRITE);
    let written = async {
        let mut events = Vec::new();
        let outcomes =
            insert_batch(&mut *connection, store, batch, &mut events, &mut begin).await?;
        let rows = output_changes(outputs, &mut events);
        match Tail::new(&events, &rows) {
            Some(tail) => {
                let mut sql = lead_sql(&mut begin);
                tail.push_sql(&mut sql);
                tail.bind(query_for(&sql, tail.params()))
                    .execute(&mut *connection)
                    .await
                    .map_err(commit_failed)?;
            }
            None => {
                if let Some(begin) = begin.take() {
                    sqlx::query(begin).execute(&mut *connection).await?;
                }
                events::append_many(&mut *connection, Backend::Sqlite, &events).await?;
                write_rows(&mut *connection, Backend::Sqlite, &rows).await?;
                sqlx::query("COMMIT")
                    .execute(&mut *connection)
                    .await
                    .map_err(commit_failed)?;
            }
        }
        Ok(outcomes)
    }
    .await;
    if written.is_err() {
        roll_back(connection).await;
    }
    written
}

/// `lead` (SQL still to be sent ahead of the next statement, such as a deferred `BEGIN`) as
/// the start of that statement's text, taking it.
fn lead_sql(lead: &mut Option<&'static str>) -> String {
    lead.take()
        .map(|sql| format!("{sql}; "))
        .unwrap_or_default()
}

/// Rolls back the transaction a failed statement of a round left open, if any.
async fn roll_back(connection: &mut AnyConnection) {
    if let Err(e) = sqlx::query("ROLLBACK").execute(connection).await {
        tracing::debug!(error = %e, "nothing to roll back after a failed round");
    }
}

/// The end of a SQLite round sent in the trip that commits it: the events' insert and the row
/// changes, each one statement padded to a chunk size, then `COMMIT`.
struct Tail<'a> {
    events: &'a [(NewEvent, i64)],
    rows: &'a [((i64, i64), RowValues)],
    event_size: Option<usize>,
    row_size: Option<usize>,
}

impl<'a> Tail<'a> {
    /// `None` when the events or the row changes need more than one statement.
    fn new(events: &'a [(NewEvent, i64)], rows: &'a [((i64, i64), RowValues)]) -> Option<Tail<'a>> {
        if events.len() > CHUNK_SIZES[0] || rows.len() > CHUNK_SIZES[0] {
            return None;
        }
        Some(Tail {
            events,
            rows,
            event_size: padded_chunks(events).next().map(|(_, size)| size),
            row_size: padded_chunks(rows).next().map(|(_, size)| size),
        })
    }

    fn push_sql(&self, sql: &mut String) {
        if let Some(size) = self.event_size {
            sql.push_str(&events::INSERT_MANY.get(Backend::Sqlite, size));
            sql.push_str("; ");
        }
        if let Some(size) = self.row_size {
            sql.push_str(&ROWS.get(Backend::Sqlite, size));
            sql.push_str("; ");
        }
        sql.push_str("COMMIT");
    }

    /// How many values [`Tail::bind`] binds.
    fn params(&self) -> usize {
        self.event_size.unwrap_or(0) * events::PARAMS
            + self.row_size.unwrap_or(0) * super::routing::ROW_PARAMS
    }

    /// Binds what [`Tail::push_sql`] wrote, in its order.
    fn bind<'q>(&self, mut query: AnyQuery<'q>) -> AnyQuery<'q>
    where
        'a: 'q,
    {
        if let Some(size) = self.event_size {
            query = events::bind_padded(query, self.events, size);
        }
        if let Some(size) = self.row_size {
            query = bind_padded_rows(query, self.rows, size);
        }
        query
    }
}

/// The one create of a one-trip round ([`write_in_one_trip`]).
struct OneInsert<'a> {
    create: &'a Create,
    /// Each reference the create makes: its column, the table and the row it names.
    references: Vec<(&'static Column, &'static str, i64)>,
    names: Vec<&'static str>,
    values: Vec<Value>,
    now: i64,
}

impl<'a> OneInsert<'a> {
    fn new(create: &'a Create) -> OneInsert<'a> {
        let references = create
            .values
            .iter()
            .filter_map(|(column, value)| match (column.kind, value) {
                (Kind::Ref(table), Value::Int(Some(target))) => Some((*column, table, *target)),
                _ => None,
            })
            .collect();
        let now = create.preset.map_or_else(now_ms, |p| p.at);
        let (names, values) = insert_values(create.resource, &create.values, now, create.preset);
        OneInsert {
            create,
            references,
            names,
            values,
            now,
        }
    }

    /// The reference check, the guarded insert and its audit event.
    fn push_sql(&self, sql: &mut String) {
        let exists =
            |table: &str| format!("EXISTS (SELECT 1 FROM {table} WHERE id = ? AND tenant_id = ?)");
        let guard: Vec<String> = self.references.iter().map(|(_, t, _)| exists(t)).collect();
        if !guard.is_empty() {
            let checks: Vec<String> = guard
                .iter()
                .enumerate()
                .map(|(i, check)| format!("{check} AS ref{i}"))
                .collect();
            sql.push_str(&format!("SELECT {}; ", checks.join(", ")));
        }
        let resource = self.create.resource;
        let columns: Vec<&str> = std::iter::once("tenant_id")
            .chain(self.names.iter().copied())
            .collect();
        // A create made ahead is not read back (its maker holds the row), only counted.
        let (returning, counted) = match self.create.preset {
            Some(_) => (String::new(), "SELECT changes() AS inserted; "),
            None => (format!(" RETURNING {}", select_list(resource)), ""),
        };
        sql.push_str(&format!(
            "INSERT INTO {} ({}) SELECT ?{} {}{returning}; ",
            resource.table,
            columns.join(", "),
            ", ?".repeat(columns.len() - 1),
            if guard.is_empty() {
                String::new()
            } else {
                format!("WHERE {}", guard.join(" AND "))
            },
        ));
        sql.push_str(counted);
        sql.push_str(
            "INSERT INTO events (tenant_id, at, kind, interaction_id, agent_id, queue_id, payload) \
             SELECT ?, ?, ?, NULL, ?, NULL, json_object('id', last_insert_rowid(), 'table', ?) \
             WHERE changes() = 1; ",
        );
    }

    /// How many values [`OneInsert::bind`] binds.
    fn params(&self) -> usize {
        4 * self.references.len() + 1 + self.values.len() + 5
    }

    /// Binds what [`OneInsert::push_sql`] wrote, in its order.
    fn bind<'q>(&self, mut query: AnyQuery<'q>) -> AnyQuery<'q> {
        let (resource, tenant) = (self.create.resource, self.create.tenant);
        for (_, _, target) in &self.references {
            query = query.bind(*target).bind(tenant);
        }
        query = query.bind(tenant);
        for value in &self.values {
            query = bind(query, value);
        }
        for (_, _, target) in &self.references {
            query = query.bind(*target).bind(tenant);
        }
        let audited = audit(resource.table, "created", tenant, self.create.actor, 0);
        query
            .bind(tenant)
            .bind(self.now)
            .bind(audited.kind)
            .bind(audited.agent_id)
            .bind(resource.table)
    }

    /// The create's answer from the rows the committed trip returned: the reference check's
    /// (if it made one), then the inserted row (if every reference held) — for a create made
    /// ahead the count of rows inserted instead, and `Null`.
    fn answer(&self, returned: &[AnyRow]) -> Result<Json> {
        let mut returned = returned.iter();
        if !self.references.is_empty() {
            let checked = returned
                .next()
                .ok_or_else(|| mismatch("no reference check returned"))?;
            for (i, (column, table, _)) in self.references.iter().enumerate() {
                if checked.try_get::<i64, _>(format!("ref{i}").as_str())? == 0 {
                    return Err(Error::UnknownReference {
                        field: column.name,
                        table,
                    });
                }
            }
        }
        if self.create.preset.is_some() {
            let counted = returned
                .next()
                .ok_or_else(|| mismatch("the insert was not counted"))?;
            return match counted.try_get::<i64, _>("inserted")? {
                1 => Ok(Json::Null),
                _ => Err(mismatch("a create made ahead was not inserted")),
            };
        }
        let row = returned
            .next()
            .ok_or_else(|| mismatch("the insert returned no row"))?;
        row_to_json(self.create.resource, row)
    }
}

/// The rows a group of requests (same tenant, table and columns) inserts.
struct Group {
    tenant: i64,
    resource: &'static Resource,
    names: Vec<&'static str>,
    /// Indexes into the batch, with the values each inserts.
    rows: Vec<(usize, Vec<Value>)>,
}

/// Inserts the batch on `connection` (inside a transaction, or `lead` begins it) and adds their
/// audit events to `audits`; each request's outcome, in batch order. `lead` goes out with the
/// first statement, if the batch needs any.
async fn insert_batch(
    connection: &mut AnyConnection,
    store: &Store,
    batch: &[Create],
    audits: &mut Vec<(NewEvent, i64)>,
    lead: &mut Option<&'static str>,
) -> Result<Vec<Result<Json>>> {
    let mut outcomes: Vec<Option<Result<Json>>> = batch.iter().map(|_| None).collect();

    // References: each distinct target looked up once.
    let mut exists: HashMap<(&'static str, i64, i64), bool> = HashMap::new();
    for (i, create) in batch.iter().enumerate() {
        for (column, value) in &create.values {
            let (Kind::Ref(table), Value::Int(Some(target))) = (column.kind, value) else {
                continue;
            };
            let key = (table, create.tenant, *target);
            let found = match exists.get(&key) {
                Some(found) => *found,
                None => {
                    let sql = format!(
                        "{}SELECT id FROM {table} WHERE id = $1 AND tenant_id = $2",
                        lead_sql(lead)
                    );
                    // All rows, not the first result: a `lead` statement yields a result of
                    // its own, which sqlx's `Any` driver would take for the answer.
                    let found = !sqlx::query(&sql)
                        .bind(*target)
                        .bind(create.tenant)
                        .fetch_all(&mut *connection)
                        .await?
                        .is_empty();
                    exists.insert(key, found);
                    found
                }
            };
            if !found {
                outcomes[i] = Some(Err(Error::UnknownReference {
                    field: column.name,
                    table,
                }));
                break;
            }
        }
    }

    let now = now_ms();
    let mut groups: Vec<Group> = Vec::new();
    for (i, create) in batch.iter().enumerate() {
        if outcomes[i].is_some() {
            continue;
        }
        let (names, row) = insert_values(create.resource, &create.values, now, create.preset);
        let same = |g: &&mut Group| {
            g.tenant == create.tenant
                && std::ptr::eq(g.resource, create.resource)
                && g.names == names
        };
        match groups.iter_mut().find(same) {
            Some(group) => group.rows.push((i, row)),
            None => groups.push(Group {
                tenant: create.tenant,
                resource: create.resource,
                names,
                rows: vec![(i, row)],
            }),
        }
    }

    for group in &mut groups {
        if group.names.contains(&"id") {
            insert_made_ahead(&mut *connection, store.backend, batch, group, audits, lead).await?;
            for (i, _) in &group.rows {
                outcomes[*i] = Some(Ok(Json::Null));
            }
            continue;
        }
        // Rows are matched to the ids returned in ascending order.
        for chunk in sized_chunks(&group.rows) {
            let values: Vec<Vec<Value>> = chunk.iter().map(|(_, row)| row.clone()).collect();
            let rows = insert_rows(
                &mut *connection,
                &lead_sql(lead),
                store.backend,
                group.resource,
                group.tenant,
                &group.names,
                &values,
            )
            .await?;
            if rows.len() != chunk.len() {
                return Err(mismatch("fewer rows returned than inserted"));
            }
            let mut ids = Vec::with_capacity(rows.len());
            for row in &rows {
                ids.push(row.try_get::<i64, _>("id")?);
            }
            let mut order: Vec<usize> = (0..rows.len()).collect();
            order.sort_by_key(|&k| ids[k]);
            for (&(i, _), k) in chunk.iter().zip(order) {
                let created = row_to_json(group.resource, &rows[k])?;
                let create = &batch[i];
                if !wrote(&created, &create.values) {
                    return Err(mismatch("a returned row does not match its request"));
                }
                audits.push(create.audited(ids[k], now));
                outcomes[i] = Some(Ok(created));
            }
        }
    }
    Ok(outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Err(mismatch("a create got no outcome"))))
        .collect())
}

/// Inserts a group of creates made ahead (their ids are reserved, so nothing needs to be read
/// back: their makers hold the rows) and adds their audit events. Every row must be inserted:
/// one whose id is taken is a mismatch, and the creates are then written one by one.
async fn insert_made_ahead(
    connection: &mut AnyConnection,
    backend: Backend,
    batch: &[Create],
    group: &Group,
    audits: &mut Vec<(NewEvent, i64)>,
    lead: &mut Option<&'static str>,
) -> Result<()> {
    // The inserted rows are counted from the query's changes, which on SQLite a `BEGIN` sent
    // ahead in the same query would not reset (the last round's would count): sent alone.
    if let Some(begin) = lead.take() {
        sqlx::query(begin).execute(&mut *connection).await?;
    }
    for chunk in sized_chunks(&group.rows) {
        let inserted = insert_rows_made_ahead(
            &mut *connection,
            backend,
            group.resource,
            group.tenant,
            &group.names,
            chunk.iter().map(|(_, row)| row.as_slice()),
        )
        .await?;
        if inserted != chunk.len() as u64 {
            return Err(mismatch("a create made ahead found its id taken"));
        }
        for (i, _) in chunk {
            let create = &batch[*i];
            let Some(preset) = create.preset else {
                return Err(mismatch("a create made ahead has no id"));
            };
            audits.push(create.audited(preset.id, preset.at));
        }
    }
    Ok(())
}

/// Whether `row` (as returned) holds the readable values a request wrote.
fn wrote(row: &Json, values: &[(&'static Column, Value)]) -> bool {
    values
        .iter()
        .filter(|(c, _)| c.readable())
        .all(|(c, v)| match v {
            Value::Int(Some(n)) => row[c.name].as_i64() == Some(*n),
            Value::Text(Some(s)) => row[c.name].as_str() == Some(s.as_str()),
            Value::Int(None) | Value::Text(None) => row[c.name].is_null(),
        })
}

fn mismatch(what: &str) -> Error {
    Error::Database(sqlx::Error::Protocol(format!("group commit: {what}")))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use sqlx::Connection;
    use tokio::sync::Notify;
    use vacd_actors::{AgentId, Output, Presence};

    use super::*;

    /// What a test's subscriber logged, and a bell rung at every line.
    #[derive(Clone, Default)]
    struct Logged {
        text: Arc<Mutex<Vec<u8>>>,
        bell: Arc<Notify>,
    }

    impl std::io::Write for Logged {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.text
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(bytes);
            self.bell.notify_one();
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Logged {
        async fn until(&self, line: &str) {
            loop {
                let bell = self.bell.notified();
                let text = self.text.lock().unwrap_or_else(|e| e.into_inner()).clone();
                if String::from_utf8_lossy(&text).contains(line) {
                    return;
                }
                tokio::time::timeout(Duration::from_secs(30), bell)
                    .await
                    .unwrap_or_else(|_| panic!("no {line:?} logged"));
            }
        }
    }

    /// Another process holds SQLite's write lock past the busy timeout: the routing outputs a
    /// failed round left are tried again until it lets go, and then written — not lost.
    #[tokio::test]
    async fn outputs_the_database_cannot_take_yet_are_written_once_it_can() {
        let logged = Logged::default();
        let writer = logged.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::WARN)
            .finish();
        let _logging = tracing::subscriber::set_default(subscriber);

        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}/vacd.db?mode=rwc", dir.path().display());
        let store = Store::open(&url, 2).await.expect("store opens");
        let tenant = store.create_tenant("t", "T").await.expect("tenant").id;
        // The writer gives up on a lock at once instead of after five seconds.
        sqlx::query("PRAGMA busy_timeout = 0")
            .execute(&mut *store.writer.acquire().await.expect("writer"))
            .await
            .expect("busy timeout");
        let mut other = sqlx::AnyConnection::connect(&url).await.expect("connects");
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut other)
            .await
            .expect("the other process holds the write lock");

        let outputs = vec![OutputBatch {
            tenant,
            at: std::time::SystemTime::now(),
            outputs: vec![Output::PresenceChanged {
                agent: AgentId(1),
                from: Presence::Offline,
                to: Presence::Busy,
            }],
        }];
        let writing = {
            let store = store.clone();
            tokio::spawn(async move { record_one_by_one(&store, &outputs).await })
        };
        logged.until("not written yet; trying again").await;
        sqlx::query("ROLLBACK")
            .execute(&mut other)
            .await
            .expect("lets go");
        writing.await.expect("written");
        let written: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM events WHERE tenant_id = ? AND kind = 'routing.presence_changed'",
        )
        .bind(tenant)
        .fetch_one(&store.pool)
        .await
        .expect("counted")
        .try_get("n")
        .expect("a number");
        assert_eq!(written, 1);
        let logged = String::from_utf8_lossy(&logged.text.lock().expect("log")).into_owned();
        assert!(!logged.contains("lost"), "{logged}");
        store.close().await;
    }
}
