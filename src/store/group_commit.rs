//! Group commit of creates. Every [`Store::create`] of the catalog's resources goes to one task
//! that takes all requests waiting for it, inserts them in one transaction — one reference check
//! per distinct referenced row, rows of the same table and columns many per statement, all audit
//! events together — and answers each request once that transaction has committed. While one
//! batch commits the next one gathers, so the batch grows with the load and a lone request waits
//! for nothing.
//!
//! Each request still gets its own answer: a request whose reference points nowhere gets its
//! `UnknownReference` and the rest of the batch goes on; if anything else fails (a duplicate, a
//! database error) the whole transaction is rolled back and every request of the batch is
//! inserted again in a transaction of its own, so one bad request costs only itself.
//!
//! A multi-row `INSERT … RETURNING` returns its rows in no documented order. Rows are matched to
//! requests by ascending id (both databases hand out ids in the order of the `VALUES` list, the
//! writer being the only one inserting on SQLite), and each match is checked against what the
//! request wrote; a mismatch counts as a failure and falls back as above.

use std::collections::HashMap;

use serde_json::Value as Json;
use sqlx::Row;
use tokio::sync::{mpsc, oneshot};

use super::crud::{audit, insert_rows, insert_values, row_to_json};
use super::events::{self, NewEvent};
use super::{now_ms, sized_chunks, Error, Result, Store, Value};
use crate::catalog::{Column, Kind, Resource};

/// Most requests committed in one transaction.
const MAX_BATCH: usize = 512;

/// One create waiting for its batch.
pub(super) struct Create {
    resource: &'static Resource,
    tenant: i64,
    actor: Option<i64>,
    values: Vec<(&'static Column, Value)>,
    reply: oneshot::Sender<Result<Json>>,
}

/// Hands a create to the committer and waits until its batch has committed.
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
        reply,
    };
    committer.send(create).await.map_err(|_| Error::Closed)?;
    answer.await.map_err(|_| Error::Closed)?
}

/// The committer: commits what has gathered, batch after batch, until every sender is gone.
/// `store` is a handle without a committer of its own (it writes directly).
pub(super) async fn run(store: Store, mut incoming: mpsc::Receiver<Create>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while incoming.recv_many(&mut batch, MAX_BATCH).await > 0 {
        metrics::histogram!(crate::metrics::CREATE_BATCH).record(batch.len() as f64);
        if batch.len() > 1 {
            match insert_batch(&store, &batch).await {
                Ok(outcomes) => {
                    for (create, outcome) in batch.drain(..).zip(outcomes) {
                        let _ = create.reply.send(outcome);
                    }
                    continue;
                }
                Err(e) => {
                    tracing::info!(error = %e, creates = batch.len(), "group commit failed; creating one by one");
                }
            }
        }
        for create in batch.drain(..) {
            let outcome = store
                .create_alone(create.resource, create.tenant, create.actor, &create.values)
                .await;
            let _ = create.reply.send(outcome);
        }
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

/// Inserts the batch in one transaction. `Ok` holds each request's outcome (in batch order)
/// after the commit; `Err` means nothing was committed.
async fn insert_batch(store: &Store, batch: &[Create]) -> Result<Vec<Result<Json>>> {
    let mut outcomes: Vec<Option<Result<Json>>> = batch.iter().map(|_| None).collect();
    let mut tx = store.begin().await?;

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
                    let sql = format!("SELECT id FROM {table} WHERE id = $1 AND tenant_id = $2");
                    let row = sqlx::query(&sql)
                        .bind(*target)
                        .bind(create.tenant)
                        .fetch_optional(&mut *tx)
                        .await?;
                    exists.insert(key, row.is_some());
                    row.is_some()
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
        let (names, row) = insert_values(create.resource, &create.values, now);
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

    let mut audits: Vec<(NewEvent, i64)> = Vec::new();
    for group in &groups {
        for chunk in sized_chunks(&group.rows) {
            let values: Vec<Vec<Value>> = chunk.iter().map(|(_, row)| row.clone()).collect();
            let rows = insert_rows(
                &mut tx,
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
                audits.push((
                    audit(
                        create.resource,
                        "created",
                        create.tenant,
                        create.actor,
                        ids[k],
                    ),
                    now,
                ));
                outcomes[i] = Some(Ok(created));
            }
        }
    }
    events::append_many(&mut tx, store.backend, &audits).await?;
    tx.commit().await?;
    Ok(outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Err(mismatch("a create got no outcome"))))
        .collect())
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
