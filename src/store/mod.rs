//! Persistence. [`Store`] wraps one sqlx `Any` pool that is either the embedded SQLite file (the
//! default) or PostgreSQL, chosen by `database.url`; both run the same queries against the same
//! schema (migrations under `migrations/sqlite` and `migrations/postgres`).
//!
//! The rest of vacd never sees SQL: `crud` stores the catalog's resources generically, `tenants`
//! and `sessions` hold what the admin API and login need beyond that, and `events` appends to the
//! event log. Everything is tenant-scoped: no function reads or writes a row without the tenant
//! that owns it.
//!
//! Writes that arrive many at a time are grouped: `group_commit` inserts the creates of many
//! concurrent requests and writes routing's outputs (the journal) many per transaction (on
//! SQLite both in one transaction per round; each create is answered when it has committed),
//! `message_commit` does the same for the messages of all chats, `call_commit` for the calls'
//! records. Multi-row statements are cut into chunks of a few fixed sizes ([`sized_chunks`]) so
//! the connections' statement caches keep hitting. On SQLite, `checkpoint` copies the WAL into
//! the database file beside the writer, so that no commit has to.

mod call_commit;
mod calls;
mod chat;
mod checkpoint;
mod committer;
mod crud;
mod customers;
mod events;
mod group_commit;
mod ids;
mod message_commit;
mod offer_details;
mod pg_lock;
mod reports;
mod routing;
mod rules;
mod sessions;
mod sip;
mod tenants;
mod tickets;

use std::borrow::Cow;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyArguments, AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Arguments, Executor, Row};
use tokio::sync::{mpsc, oneshot};

pub use calls::{CallEnd, CallResult, HangupBy, NewCall, QueueSounds, StartedCall};
pub use chat::{ChatRoute, ChatRow, ChatWidget, NewChat};
pub use crud::{Ahead, ListQuery, Page, Value};
pub use customers::CustomerCard;
pub use events::NewEvent;
pub use reports::{Person, MAX_TODAY_EVENTS};
pub use routing::{OutputBatch, RoutingSetup};
pub use sessions::{Login, Principal};
pub use sip::{ServiceNumber, SipUser};
pub use tenants::{Tenant, TenantUpdate};
pub use tickets::{
    Ingested, Joined, MailAccountRow, NewAttachment, NewOutbound, NewWritten, Outbound, Outcome,
    ReplyContext, WrittenAddress, ACKNOWLEDGER,
};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// What went wrong in the store, in words the API can map to a status code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not found")]
    NotFound,
    #[error("a {0} with these values already exists")]
    Duplicate(&'static str),
    #[error("this {0} is still referenced by other records")]
    InUse(&'static str),
    #[error("`{field}` refers to no {table} of this tenant")]
    UnknownReference {
        field: &'static str,
        table: &'static str,
    },
    #[error("the tenant still has {live} calls or chats in routing (waiting, offered or connected); delete it once they are over")]
    TenantBusy { live: i64 },
    #[error(
        "the tenant's last admin cannot be deleted or lose the role: make another user admin first"
    )]
    LastAdmin,
    #[error("`{0}` would make the hierarchy a cycle")]
    Cycle(&'static str),
    #[error("`{0}` would make the hierarchy deeper than {depth} levels", depth = crate::catalog::MAX_HIERARCHY_DEPTH)]
    TooDeep(&'static str),
    #[error("cannot create the database directory {path}: {source}")]
    Directory {
        path: String,
        source: std::io::Error,
    },
    /// Another process holds the database (see [`Store::open`]).
    #[error("{what} is in use by another vacd: one process per database")]
    Locked { what: String },
    #[error("cannot lock the database {path}: {source}")]
    Lock {
        path: String,
        source: std::io::Error,
    },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The connection broke while a commit was under way: what it wrote may have been stored
    /// (the cause is logged where it happened).
    #[error(
        "the database connection broke during the commit: the write may have been stored; \
         look for it before writing it again"
    )]
    CommitUnknown,
    #[error("the store is shutting down")]
    Closed,
    /// The PostgreSQL session holding the database's lock broke and the lock could not be
    /// taken again: another vacd may be routing on the database.
    #[error("the database's lock is lost: another vacd may be using the database")]
    LockLost,
    /// Content written once already, which only an admin may replace.
    #[error("attachment {0} has its content already; only an admin may replace it")]
    ContentStored(i64),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Routing's outputs were not all written within [`JOURNAL_WAIT`]: what the request would
    /// read may not show what routing did before it.
    #[error("routing's writes to the database are behind; try again shortly")]
    JournalBehind,
}

impl Error {
    /// Whether the write may go through if tried again later: the connection broke or could not
    /// be had, the database is restarting, short of resources, or (SQLite) locked by another
    /// process past the busy timeout — not what the data itself makes it refuse.
    pub fn is_transient(&self) -> bool {
        let db = match self {
            Error::CommitUnknown => return true,
            Error::Database(sqlx::Error::Database(db)) => db,
            Error::Database(e) => {
                return matches!(
                    e,
                    sqlx::Error::Io(_)
                        | sqlx::Error::Tls(_)
                        | sqlx::Error::Protocol(_)
                        | sqlx::Error::PoolTimedOut
                        | sqlx::Error::WorkerCrashed
                )
            }
            _ => return false,
        };
        let Some(code) = db.code() else {
            return false;
        };
        match code.len() {
            // PostgreSQL's SQLSTATE: connection exception, insufficient resources, a shutdown
            // or restart (not a cancelled statement, which a retry would repeat), system
            // error, serialization failure, deadlock.
            5 => {
                ["08", "53", "57P", "58"]
                    .iter()
                    .any(|class| code.starts_with(class))
                    || matches!(code.as_ref(), "40001" | "40P01")
            }
            // SQLite's (extended) result code: BUSY, LOCKED, IOERR, FULL, CANTOPEN.
            _ => code
                .parse::<u32>()
                .is_ok_and(|code| matches!(code & 0xff, 5 | 6 | 10 | 13 | 14)),
        }
    }

    /// Whether the database refused a text it was given (PostgreSQL takes no NUL character,
    /// nor bytes that are not UTF-8): the caller's fault, whichever field it was.
    pub fn is_unstorable_text(&self) -> bool {
        match self {
            Error::Database(sqlx::Error::Database(db)) => {
                // character_not_in_repertoire, untranslatable_character
                matches!(db.code().as_deref(), Some("22021" | "22P05"))
            }
            _ => false,
        }
    }

    /// Turns constraint violations into domain errors about `what` (a schema name).
    fn classify(e: sqlx::Error, what: &'static str) -> Error {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => Error::Duplicate(what),
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => Error::InUse(what),
            sqlx::Error::RowNotFound => Error::NotFound,
            _ => Error::Database(e),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// The error of a failed trip that carried a transaction's `COMMIT`: the database's refusal
/// means nothing was committed; anything else (the connection broke, SQLite's worker thread
/// died) leaves the outcome unknown, and the writes must not be made again.
fn commit_failed(e: sqlx::Error) -> Error {
    match e {
        sqlx::Error::Database(_) => Error::Database(e),
        e => {
            tracing::error!(error = %e, "the connection broke during a commit");
            Error::CommitUnknown
        }
    }
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, AnyArguments<'q>>;

/// A query of `sql` with room for `params` bound values: a multi-row statement binds hundreds,
/// and its argument list grown one value at a time was copied a dozen times on the way.
fn query_for(sql: &str, params: usize) -> AnyQuery<'_> {
    let mut arguments = AnyArguments::default();
    arguments.reserve(params, 0);
    sqlx::query_with(sql, arguments)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Requests waiting for the group committer at most; more make creators wait for room.
const PENDING_CREATES: usize = 4096;

/// Chat messages waiting for their committer at most; more make chats wait for room.
const PENDING_MESSAGES: usize = 8192;

/// Call record writes waiting for their committer at most; more make calls wait for room.
const PENDING_CALL_WRITES: usize = 4096;

/// How long a request that reads what routing wrote waits for the journal to catch up
/// ([`Store::caught_up`]).
pub const JOURNAL_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Clone)]
pub struct Store {
    /// Reads (and, on PostgreSQL, writes).
    pool: AnyPool,
    /// Writes. On SQLite a pool of one connection: SQLite has one writer at a time, and waiting
    /// for the connection in the pool's fair queue is far cheaper than SQLite's sleeping
    /// busy handler. On PostgreSQL the same pool as `pool`.
    writer: AnyPool,
    backend: Backend,
    /// The group committer of creates; `None` in the committer's own handle, which writes
    /// directly.
    creates: Option<mpsc::Sender<group_commit::Create>>,
    /// The same committer's journal of routing outputs (`None` in its own handle).
    journal: Option<mpsc::UnboundedSender<group_commit::Journal>>,
    /// Routing outputs handed to the journal and not yet written (or given up on).
    journal_pending: Arc<AtomicU64>,
    /// The group committer of chat messages.
    messages: mpsc::Sender<committer::Pending<message_commit::Messages>>,
    /// The group committer of call records.
    calls: mpsc::Sender<committer::Pending<call_commit::Calls>>,
    /// Live sessions already read from the database (see `sessions`).
    sessions: Arc<sessions::Cache>,
    /// Interaction rows just created, for their first offer (see `offer_details`).
    fresh: Arc<offer_details::Fresh>,
    /// Interaction ids reserved for creates made ahead of their insert (see `ids`).
    ids: Arc<ids::Ids>,
    /// On SQLite, the checkpointer's reports of the WAL's length (see `checkpoint`).
    wal: Option<checkpoint::WalFrames>,
    /// The lock that keeps a second process out (see [`Store::open`]); let go by
    /// [`Store::close`] or when the last handle is dropped.
    lock: Arc<std::sync::Mutex<Option<Held>>>,
}

/// What holds a database for this process.
enum Held {
    /// A SQLite file's lock file, locked (held, never read).
    File { _locked: std::fs::File },
    /// PostgreSQL's advisory lock, held by a watched session of its own.
    Postgres(pg_lock::PgLock),
}

impl Store {
    /// Opens the database (creating the SQLite file and its directory if needed) and applies
    /// pending migrations. The database is locked for this process: routing holds each
    /// tenant's state in memory and the writes of two processes would interleave, so a second
    /// vacd on it is refused before it writes anything. A SQLite file by its lock file
    /// (`<file>.lock`, locked); PostgreSQL by an advisory lock a session of its own holds. Both
    /// are let go of when the process ends, however it ends.
    pub async fn open(url: &str, max_connections: u32) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let mut lock = None;
        let backend = if url.starts_with("sqlite:") {
            if let Some(path) = sqlite_path(url) {
                create_sqlite_dir(path)?;
                lock = Some(Held::File {
                    _locked: lock_sqlite(path)?,
                });
            }
            Backend::Sqlite
        } else {
            lock = Some(Held::Postgres(pg_lock::PgLock::take(url).await?));
            Backend::Postgres
        };
        let (pool, writer) = match backend {
            Backend::Sqlite => {
                // A writer is never left broken in the pool (a failed transaction is rolled
                // back), so it is not tested with a round trip each time it is taken.
                let writer = sqlite_pool(1, WRITER_PRAGMAS)
                    .test_before_acquire(false)
                    .connect(url)
                    .await?;
                (sqlite_pool(max_connections, "").connect(url).await?, writer)
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(max_connections)
                    .connect(url)
                    .await?;
                (pool.clone(), pool)
            }
        };
        let (messages, pending) = mpsc::channel(PENDING_MESSAGES);
        tokio::spawn(committer::run::<message_commit::Messages>(
            writer.clone(),
            backend,
            pending,
        ));
        let (calls, pending) = mpsc::channel(PENDING_CALL_WRITES);
        tokio::spawn(committer::run::<call_commit::Calls>(
            writer.clone(),
            backend,
            pending,
        ));
        let mut store = Store {
            pool,
            writer,
            backend,
            creates: None,
            journal: None,
            journal_pending: Arc::default(),
            messages,
            calls,
            sessions: Arc::default(),
            fresh: Arc::default(),
            ids: Arc::default(),
            wal: None,
            lock: Arc::new(std::sync::Mutex::new(lock)),
        };
        store.migrate().await?;
        store.reserve_ids().await?;
        let (creates, incoming) = mpsc::channel(PENDING_CREATES);
        let (journal, journaled) = mpsc::unbounded_channel();
        match backend {
            Backend::Sqlite => {
                let (reports, frames) = tokio::sync::watch::channel(0);
                tokio::spawn(checkpoint::run(
                    sqlite_pool(1, "").connect(url).await?,
                    store.writer.clone(),
                    reports,
                ));
                store.wal = Some(frames);
                tokio::spawn(group_commit::run(
                    store.clone(),
                    Some(incoming),
                    Some(journaled),
                ));
            }
            Backend::Postgres => {
                tokio::spawn(group_commit::run(store.clone(), Some(incoming), None));
                tokio::spawn(group_commit::run(store.clone(), None, Some(journaled)));
            }
        }
        store.creates = Some(creates);
        store.journal = Some(journal);
        Ok(store)
    }

    /// Hands routing outputs to the group committer, which writes them with its next round
    /// (see `group_commit`).
    pub fn journal(&self, batch: OutputBatch) {
        let (tenant, outputs) = (batch.tenant, batch.outputs.len());
        let journal = self.journal.as_ref();
        // Counted before the committer can take it, so that the count never drops below zero.
        self.journal_pending
            .fetch_add(outputs as u64, Ordering::Relaxed);
        let sent = journal.is_some_and(|j| j.send(group_commit::Journal::Batch(batch)).is_ok());
        if !sent {
            self.journal_pending
                .fetch_sub(outputs as u64, Ordering::Relaxed);
            tracing::error!(
                tenant,
                outputs,
                "the store's committer is gone; routing outputs not persisted"
            );
        }
    }

    /// Returns once every routing output handed to [`Store::journal`] before is written.
    pub async fn flushed(&self) {
        let Some(journal) = &self.journal else { return };
        let (done, written) = oneshot::channel();
        if journal.send(group_commit::Journal::Flushed(done)).is_ok() {
            let _ = written.await;
        }
    }

    /// `outputs` handed to the journal are written (or given up on).
    fn journal_written(&self, outputs: usize) {
        self.journal_pending
            .fetch_sub(outputs as u64, Ordering::Relaxed);
    }

    /// Routing outputs handed to [`Store::journal`] that the database has yet to take (while
    /// it cannot, they pile up in memory; `/metrics` shows them).
    pub fn journal_pending(&self) -> u64 {
        self.journal_pending.load(Ordering::Relaxed)
    }

    /// [`Store::flushed`] for a request that reads what routing wrote: waits at most
    /// [`JOURNAL_WAIT`], then gives up with [`Error::JournalBehind`] (the database is down or
    /// slow and the journal keeps trying) instead of holding the request for as long as that
    /// lasts.
    pub async fn caught_up(&self) -> Result<()> {
        match tokio::time::timeout(JOURNAL_WAIT, self.flushed()).await {
            Ok(()) => Ok(()),
            Err(_) => {
                tracing::warn!(
                    wait = ?JOURNAL_WAIT,
                    pending = self.journal_pending(),
                    "routing's outputs not all written in time; not waiting longer"
                );
                Err(Error::JournalBehind)
            }
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    fn migrator(&self) -> &'static Migrator {
        match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    /// A write transaction. SQLite takes the write lock at once (`BEGIN IMMEDIATE`): a deferred
    /// transaction that reads first could not upgrade to a writer once another connection has
    /// committed, and would fail instead of waiting.
    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        begin_on(&self.writer, self.backend).await
    }

    pub async fn migrate(&self) -> Result<()> {
        self.migrator().run(&self.writer).await?;
        Ok(())
    }

    /// Reachable, still this process's (see `pg_lock`), and every migration this build knows
    /// applied successfully.
    pub async fn ready(&self) -> Result<bool> {
        if self.lock_watch().is_some_and(|lost| *lost.borrow()) {
            return Err(Error::LockLost);
        }
        let row: AnyRow =
            sqlx::query("SELECT COUNT(*) AS n FROM _sqlx_migrations WHERE success = TRUE")
                .fetch_one(&self.pool)
                .await?;
        let applied: i64 = row.try_get("n")?;
        Ok(applied as usize >= self.migrator().iter().count())
    }

    /// On PostgreSQL, whether the database's lock is lost now, and when that changes.
    pub fn lock_watch(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        match &*self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            Some(Held::Postgres(lock)) => Some(lock.watch()),
            _ => None,
        }
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
        // Closed: another process may have the database now.
        let held = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(Held::Postgres(lock)) = held {
            lock.release().await;
        }
    }
}

impl Backend {
    /// The `n`th (1-based) bind parameter of a statement. SQLite gets anonymous `?`s, bound in
    /// order: sqlx resolves every named parameter (`$n`) with `sqlite3_bind_parameter_name`,
    /// which scans the statement's parameter list, so binding a multi-row statement's `$n`s
    /// costs quadratic time. PostgreSQL knows only `$n`. Parameters must therefore appear in
    /// the SQL in the order they are bound, each once.
    fn param(self, n: usize) -> String {
        match self {
            Backend::Sqlite => "?".to_owned(),
            Backend::Postgres => format!("${n}"),
        }
    }

    /// The `VALUES` list of a multi-row statement: `rows` tuples of `width` parameters,
    /// numbered in order from 1 (`(?, ?), (?, ?)` or `($1, $2), ($3, $4)`).
    fn values(self, rows: usize, width: usize) -> String {
        let mut n = 0;
        (0..rows)
            .map(|_| {
                let params: Vec<String> = (0..width)
                    .map(|_| {
                        n += 1;
                        self.param(n)
                    })
                    .collect();
                format!("({})", params.join(", "))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A write transaction on `writer` (see [`Store::begin`]).
async fn begin_on(
    writer: &AnyPool,
    backend: Backend,
) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
    Ok(match backend {
        Backend::Sqlite => writer.begin_with(BEGIN_WRITE).await?,
        Backend::Postgres => writer.begin().await?,
    })
}

/// A write transaction on a writer connection already at hand (see [`Store::begin`]).
async fn begin_in(
    connection: &mut sqlx::AnyConnection,
    backend: Backend,
) -> Result<sqlx::Transaction<'_, sqlx::Any>> {
    use sqlx::Connection;
    Ok(match backend {
        Backend::Sqlite => connection.begin_with(BEGIN_WRITE).await?,
        Backend::Postgres => connection.begin().await?,
    })
}

const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// Chunk sizes of multi-row statements, largest first. Few distinct sizes mean few distinct
/// statements, which the connections prepare once and then find in their statement cache.
const CHUNK_SIZES: [usize; 5] = [256, 64, 16, 4, 1];

/// A multi-row statement's SQL for each backend and chunk size, built the first time it is
/// needed (formatting a statement of 64 rows cost more than binding its values).
pub(super) struct ChunkSql {
    build: fn(Backend, usize) -> String,
    built: [[OnceLock<String>; CHUNK_SIZES.len()]; 2],
}

impl ChunkSql {
    pub(super) const fn new(build: fn(Backend, usize) -> String) -> ChunkSql {
        ChunkSql {
            build,
            built: [const { [const { OnceLock::new() }; CHUNK_SIZES.len()] }; 2],
        }
    }

    /// The statement for `rows` rows (built afresh for a size that is no chunk size).
    pub(super) fn get(&'static self, backend: Backend, rows: usize) -> Cow<'static, str> {
        let Some(size) = CHUNK_SIZES.iter().position(|s| *s == rows) else {
            return Cow::Owned((self.build)(backend, rows));
        };
        let slot = &self.built[backend as usize][size];
        Cow::Borrowed(slot.get_or_init(|| (self.build)(backend, rows)))
    }
}

/// `items` cut into chunks of the sizes in [`CHUNK_SIZES`], largest first.
fn sized_chunks<T>(mut items: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        let size = CHUNK_SIZES.into_iter().find(|s| *s <= items.len())?;
        let (chunk, rest) = items.split_at(size);
        items = rest;
        Some(chunk)
    })
}

/// `items` cut into as few statements of the sizes in [`CHUNK_SIZES`] as hold them: full
/// chunks of the largest size, then the rest in one chunk of the smallest size that holds it.
/// Each chunk comes with its statement's size; the rows it lacks are bound as NULLs, which the
/// statement skips. On SQLite every statement is a trip to the connection's worker thread and
/// back, so 11 events are one statement of 16 rows rather than five of 4, 4, 1, 1 and 1.
fn padded_chunks<T>(mut items: &[T]) -> impl Iterator<Item = (&[T], usize)> {
    std::iter::from_fn(move || {
        if items.is_empty() {
            return None;
        }
        let largest = CHUNK_SIZES[0];
        let size = CHUNK_SIZES
            .into_iter()
            .rev()
            .find(|s| *s >= items.len())
            .unwrap_or(largest);
        let (chunk, rest) = items.split_at(items.len().min(largest));
        items = rest;
        Some((chunk, size))
    })
}

/// How long a SQLite connection waits for a lock held by another one (set on every
/// connection; `checkpoint` sets it back with this after doing without for a while).
/// The queue of a mailbox ($2, of tenant $1) that serves a language ($3, a language skill's
/// name): the one of highest priority among those requiring that skill.
const LANGUAGE_QUEUE: &str = "SELECT q.id FROM queues q \
     JOIN queue_skills qs ON qs.queue_id = q.id \
     JOIN skills k ON k.id = qs.skill_id AND k.kind = 'language' AND k.name = $3 \
     WHERE q.tenant_id = $1 AND q.mailbox_id = $2 \
     ORDER BY q.priority DESC, q.id LIMIT 1";

const BUSY_TIMEOUT: &str = "PRAGMA busy_timeout = 5000";

/// SQLite connections in write-ahead-log mode: readers run beside the writer; `synchronous =
/// NORMAL` syncs at checkpoints, which WAL keeps crash-safe (a power cut may lose the last
/// commits, never corrupt the file). `pragmas`, if any, run on each connection after those.
fn sqlite_pool(max_connections: u32, pragmas: &'static str) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max_connections)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL")
                    .await?;
                conn.execute(BUSY_TIMEOUT).await?;
                if !pragmas.is_empty() {
                    conn.execute(pragmas).await?;
                }
                Ok(())
            })
        })
}

/// The writer leaves checkpoints to `checkpoint`.
const WRITER_PRAGMAS: &str = "PRAGMA wal_autocheckpoint = 0";

/// `sqlite://data/vacd.db?mode=rwc` → `data/vacd.db`; `None` for an in-memory database.
fn sqlite_path(url: &str) -> Option<&str> {
    let path = url
        .trim_start_matches("sqlite:")
        .trim_start_matches("//")
        .split('?')
        .next()
        .unwrap_or_default();
    (!path.is_empty() && path != ":memory:" && !url.contains("mode=memory")).then_some(path)
}

/// Takes the lock of the SQLite database at `path`, or says who holds it.
fn lock_sqlite(path: &str) -> Result<std::fs::File> {
    let lock_path = format!("{path}.lock");
    let failed = |source| Error::Lock {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(failed)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Locked {
            what: format!("{path} (its lock file {lock_path} is held)"),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(failed(e)),
    }
}

/// The directory of the SQLite database at `path` exists.
fn create_sqlite_dir(path: &str) -> Result<()> {
    match Path::new(path).parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(|source| Error::Directory {
                path: dir.display().to_string(),
                source,
            })
        }
        _ => Ok(()),
    }
}

/// `value` without NUL characters, which PostgreSQL's text cannot hold (a mail may carry them).
pub(crate) fn text(value: &str) -> String {
    value.replace('\0', "")
}

/// At most `max` characters of `text` (the catalog's limits), storable (see [`text`]).
pub(crate) fn truncate(text: &str, max: usize) -> String {
    text.chars().filter(|c| *c != '\0').take(max).collect()
}

/// The classes of PostgreSQL's advisory transaction locks (the first of their two keys: a key
/// space of vacd's own, apart from the database's lock): the ingests of one Message-ID, and the
/// writers that meet one customer identity, each in turn. SQLite has one writer: its
/// transactions are in turn already.
const MESSAGE_ID_LOCKS: i32 = 1;
const IDENTITY_LOCKS: i32 = 2;

/// The second key of the advisory lock of `parts` in `tenant` (a hash: two may share one, and
/// wait for each other for nothing).
fn advisory_key(tenant: i64, parts: &[&str]) -> i32 {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new().chain_update(tenant.to_le_bytes());
    for part in parts {
        hash = hash.chain_update(part.as_bytes()).chain_update([0]);
    }
    let digest = hash.finalize();
    i32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Wall-clock time as stored: Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_everything_in_fixed_sizes() {
        for n in 0..300 {
            let items: Vec<usize> = (0..n).collect();
            let chunks: Vec<&[usize]> = sized_chunks(&items).collect();
            assert_eq!(chunks.concat(), items);
            assert!(chunks.iter().all(|c| CHUNK_SIZES.contains(&c.len())));
            assert!(chunks.windows(2).all(|w| w[0].len() >= w[1].len()));
        }
    }

    #[test]
    fn padded_chunks_cover_everything_in_as_few_statements_as_fit() {
        for n in 0..300 {
            let items: Vec<usize> = (0..n).collect();
            let chunks: Vec<(&[usize], usize)> = padded_chunks(&items).collect();
            let rows: Vec<&[usize]> = chunks.iter().map(|(c, _)| *c).collect();
            assert_eq!(rows.concat(), items);
            assert_eq!(chunks.len(), n.div_ceil(CHUNK_SIZES[0]), "{n} items");
            for (chunk, size) in &chunks {
                assert!(CHUNK_SIZES.contains(size));
                assert!(chunk.len() <= *size);
                // No smaller statement would hold the chunk.
                assert!(CHUNK_SIZES.iter().all(|s| s >= size || *s < chunk.len()));
            }
        }
        let sizes: Vec<usize> = padded_chunks(&[0; 11]).map(|(_, s)| s).collect();
        assert_eq!(sizes, [16]);
    }

    #[test]
    fn parameters_per_backend() {
        assert_eq!(Backend::Sqlite.param(3), "?");
        assert_eq!(Backend::Postgres.param(3), "$3");
        assert_eq!(Backend::Sqlite.values(2, 2), "(?, ?), (?, ?)");
        assert_eq!(Backend::Postgres.values(2, 3), "($1, $2, $3), ($4, $5, $6)");
    }
}
