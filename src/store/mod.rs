//! Persistence. [`Store`] wraps one sqlx `Any` pool that is either the embedded SQLite file (the
//! default) or PostgreSQL, chosen by `database.url`; both run the same queries against the same
//! schema (migrations under `migrations/sqlite` and `migrations/postgres`).
//!
//! The rest of vacd never sees SQL: `crud` stores the catalog's resources generically, `tenants`
//! and `sessions` hold what the admin API and login need beyond that, and `events` appends to the
//! event log. Everything is tenant-scoped: no function reads or writes a row without the tenant
//! that owns it.

mod calls;
mod crud;
mod events;
mod reports;
mod routing;
mod sessions;
mod sip;
mod tenants;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor, Row};

pub use calls::{CallEnd, CallResult, HangupBy, NewCall, StartedCall};
pub use crud::{ListQuery, Page, Value};
pub use events::NewEvent;
pub use reports::Person;
pub use routing::OutputBatch;
pub use sessions::{Login, Principal};
pub use sip::{ServiceNumber, SipUser};
pub use tenants::Tenant;

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
    #[error("`{0}` would make the hierarchy a cycle")]
    Cycle(&'static str),
    #[error("cannot create the database directory {path}: {source}")]
    Directory {
        path: String,
        source: std::io::Error,
    },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl Error {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    /// Reads (and, on PostgreSQL, writes).
    pool: AnyPool,
    /// Writes. On SQLite a pool of one connection: SQLite has one writer at a time, and waiting
    /// for the connection in the pool's fair queue is far cheaper than SQLite's sleeping
    /// busy handler. On PostgreSQL the same pool as `pool`.
    writer: AnyPool,
    backend: Backend,
}

impl Store {
    /// Opens the database (creating the SQLite file and its directory if needed) and applies
    /// pending migrations.
    pub async fn open(url: &str, max_connections: u32) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            create_sqlite_dir(url)?;
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let (pool, writer) = match backend {
            Backend::Sqlite => {
                let writer = sqlite_pool(1).connect(url).await?;
                (sqlite_pool(max_connections).connect(url).await?, writer)
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(max_connections)
                    .connect(url)
                    .await?;
                (pool.clone(), pool)
            }
        };
        let store = Store {
            pool,
            writer,
            backend,
        };
        store.migrate().await?;
        Ok(store)
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
        Ok(match self.backend {
            Backend::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.writer.begin().await?,
        })
    }

    pub async fn migrate(&self) -> Result<()> {
        self.migrator().run(&self.writer).await?;
        Ok(())
    }

    /// Reachable and every migration this build knows applied successfully.
    pub async fn ready(&self) -> Result<bool> {
        let row: AnyRow =
            sqlx::query("SELECT COUNT(*) AS n FROM _sqlx_migrations WHERE success = TRUE")
                .fetch_one(&self.pool)
                .await?;
        let applied: i64 = row.try_get("n")?;
        Ok(applied as usize >= self.migrator().iter().count())
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }
}

/// SQLite connections in write-ahead-log mode: readers run beside the writer; `synchronous =
/// NORMAL` syncs at checkpoints, which WAL keeps crash-safe (a power cut may lose the last
/// commits, never corrupt the file).
fn sqlite_pool(max_connections: u32) -> AnyPoolOptions {
    AnyPoolOptions::new().max_connections(max_connections).after_connect(|conn, _| {
        Box::pin(async move {
            conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000")
                .await?;
            Ok(())
        })
    })
}

/// `sqlite://data/vacd.db?mode=rwc` → make sure `data/` exists.
fn create_sqlite_dir(url: &str) -> Result<()> {
    let path = url
        .trim_start_matches("sqlite:")
        .trim_start_matches("//")
        .split('?')
        .next()
        .unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
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

/// Wall-clock time as stored: Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
