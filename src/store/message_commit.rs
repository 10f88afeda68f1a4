//! Group commit of chat messages. Every chat's actor hands its messages to one task that takes
//! all messages waiting for it — of any chat — inserts them with multi-row statements in one
//! transaction on the writer and answers each once that transaction has committed: a message is
//! still stored before it is acknowledged, but thousands of chats share a commit instead of
//! queueing one by one for SQLite's single writer.
//!
//! A message is stored once per (interaction, author, client id): a resend conflicts and is
//! answered with the row stored first, also when both copies are in the same batch. Rows are
//! matched to messages by that key; messages without a client id (which never conflict) are
//! matched by ascending id, as both databases hand out ids in the order of the `VALUES` list,
//! and each match is checked. The loop, and what happens when a batch fails, is `committer`'s.

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, Row};

use super::committer::Batch;
use super::{begin_on, now_ms, sized_chunks, Backend, ChunkSql, Error, Result};

/// The columns a message row is written with, in the order they are bound.
const COLUMNS: &str =
    "tenant_id, interaction_id, direction, author, body, created_at, client_id, whisper";

/// One message as it goes into `messages`.
#[derive(Clone, Debug)]
pub(super) struct Message {
    pub tenant: i64,
    pub interaction: i64,
    pub direction: &'static str,
    pub author: String,
    pub body: String,
    pub client_id: Option<String>,
    pub whisper: bool,
}

/// Where a message was stored: its row id and time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Stored {
    pub id: i64,
    pub at: i64,
}

/// The batches of chat messages.
pub(super) struct Messages;

impl Batch for Messages {
    type Write = Message;
    type Done = Stored;
    const WHAT: &'static str = "chat message";
    const MAX: usize = 1024;

    async fn write(writer: &AnyPool, backend: Backend, rows: &[&Message]) -> Result<Vec<Stored>> {
        store(writer, backend, rows).await
    }

    fn batched(size: usize) {
        metrics::histogram!(crate::metrics::CHAT_MESSAGE_BATCH).record(size as f64);
    }
}

/// The key a message with a client id is stored once under: interaction, author, client id.
type Key = (i64, String, String);

/// Stores `rows` in one transaction; `Ok` holds where each was stored, in order, after the
/// commit; `Err` means nothing was committed.
async fn store(writer: &AnyPool, backend: Backend, rows: &[&Message]) -> Result<Vec<Stored>> {
    let mut tx = begin_on(writer, backend).await?;
    let now = now_ms();
    let mut keyed: HashMap<Key, Stored> = HashMap::new();
    let mut anonymous: Vec<(i64, i64, String)> = Vec::new();
    for chunk in sized_chunks(rows) {
        for row in insert(&mut tx, backend, chunk, now).await? {
            let id: i64 = row.try_get("id")?;
            let interaction: i64 = row.try_get("interaction_id")?;
            let author: String = row.try_get("author")?;
            match row.try_get::<Option<String>, _>("client_id")? {
                Some(client_id) => {
                    keyed.insert((interaction, author, client_id), Stored { id, at: now });
                }
                None => anonymous.push((id, interaction, author)),
            }
        }
    }
    anonymous.sort_by_key(|(id, ..)| *id);
    let mut anonymous = anonymous.into_iter();
    let mut stored = Vec::with_capacity(rows.len());
    for row in rows {
        let Some(client_id) = &row.client_id else {
            let (id, interaction, author) = anonymous
                .next()
                .ok_or_else(|| mismatch("fewer rows returned than inserted"))?;
            if interaction != row.interaction || author != row.author {
                return Err(mismatch("a returned row does not match its message"));
            }
            stored.push(Stored { id, at: now });
            continue;
        };
        let key = (row.interaction, row.author.clone(), client_id.clone());
        let found = match keyed.get(&key) {
            Some(found) => *found,
            None => {
                // A resend of a message committed earlier.
                let earlier = sqlx::query(
                    "SELECT id, created_at FROM messages \
                     WHERE interaction_id = $1 AND author = $2 AND client_id = $3",
                )
                .bind(row.interaction)
                .bind(row.author.as_str())
                .bind(client_id.as_str())
                .fetch_one(&mut *tx)
                .await?;
                let found = Stored {
                    id: earlier.try_get("id")?,
                    at: earlier.try_get("created_at")?,
                };
                keyed.insert(key, found);
                found
            }
        };
        stored.push(found);
    }
    tx.commit().await.map_err(super::commit_failed)?;
    Ok(stored)
}

static INSERT: ChunkSql = ChunkSql::new(insert_sql);

/// The insert of `rows` messages that skips resends.
fn insert_sql(backend: Backend, rows: usize) -> String {
    let tuples = backend.values(rows, COLUMNS.split(',').count());
    format!(
        "INSERT INTO messages ({COLUMNS}) VALUES {tuples} \
         ON CONFLICT (interaction_id, author, client_id) DO NOTHING \
         RETURNING id, interaction_id, author, client_id"
    )
}

/// Inserts `rows` with one statement, skipping resends; returns the rows inserted.
async fn insert(
    tx: &mut sqlx::Transaction<'static, Any>,
    backend: Backend,
    rows: &[&Message],
    now: i64,
) -> std::result::Result<Vec<AnyRow>, sqlx::Error> {
    let sql = INSERT.get(backend, rows.len());
    let mut statement = sqlx::query(&sql);
    for row in rows {
        statement = statement
            .bind(row.tenant)
            .bind(row.interaction)
            .bind(row.direction)
            .bind(row.author.clone())
            .bind(row.body.clone())
            .bind(now)
            .bind(row.client_id.clone())
            .bind(i64::from(row.whisper));
    }
    statement.fetch_all(&mut **tx).await
}

fn mismatch(what: &str) -> Error {
    Error::Database(sqlx::Error::Protocol(format!(
        "chat message commit: {what}"
    )))
}
