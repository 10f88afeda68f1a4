//! The PostgreSQL advisory lock that keeps a second vacd off a database, held by a session of
//! its own — and watched: a session that ended (PostgreSQL restarted, the network dropped, an
//! `idle_session_timeout`) takes the lock with it, and a second vacd could then take it and
//! route beside this one. Every [`CHECK_EVERY`] the session is asked a question, which also
//! keeps it from idling; if it is gone, the lock is taken again on a new session, and while
//! another process holds it the store reports it lost ([`PgLock::watch`]: `/ready` answers 503,
//! so that a load balancer sends this vacd nothing) and tries again at every check.

use std::time::Duration;

use sqlx::{AnyConnection, Connection, Row};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::{Error, Result};

/// The PostgreSQL advisory lock of a vacd database ("vacd" in ASCII).
const ADVISORY_LOCK: i64 = 0x7661_6364;

/// How often the lock's session is checked.
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// The lock, held by its watcher task until [`PgLock::release`].
pub(super) struct PgLock {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
    lost: watch::Receiver<bool>,
}

impl PgLock {
    /// Takes the lock of the database at `url`; `Error::Locked` if another process has it.
    pub(super) async fn take(url: &str) -> Result<PgLock> {
        let session = lock(url).await?;
        let (stop, stopped) = oneshot::channel();
        let (lost, watched) = watch::channel(false);
        let task = tokio::spawn(watch(url.to_owned(), session, stopped, lost));
        Ok(PgLock {
            stop,
            task,
            lost: watched,
        })
    }

    /// Whether this process does not hold the lock now (another may), and when that changes.
    pub(super) fn watch(&self) -> watch::Receiver<bool> {
        self.lost.clone()
    }

    /// Lets go of the lock and ends its session.
    pub(super) async fn release(self) {
        let _ = self.stop.send(());
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "the database lock's watcher failed");
        }
    }
}

/// A new session holding the lock.
async fn lock(url: &str) -> Result<AnyConnection> {
    let mut session = AnyConnection::connect(url).await?;
    let row = sqlx::query("SELECT pg_try_advisory_lock($1) AS held")
        .bind(ADVISORY_LOCK)
        .fetch_one(&mut session)
        .await?;
    if row.try_get::<bool, _>("held")? {
        Ok(session)
    } else {
        Err(Error::Locked {
            what: "the PostgreSQL database".into(),
        })
    }
}

async fn watch(
    url: String,
    mut session: AnyConnection,
    mut stop: oneshot::Receiver<()>,
    lost: watch::Sender<bool>,
) {
    let mut check = tokio::time::interval(CHECK_EVERY);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    check.tick().await;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = check.tick() => {}
        }
        // A session that does not answer within the check's time (a network gone silent)
        // counts as broken; the stop is heard meanwhile.
        let asked = sqlx::query("SELECT 1").execute(&mut session);
        let answered = tokio::select! {
            _ = &mut stop => break,
            answered = tokio::time::timeout(CHECK_EVERY, asked) => matches!(answered, Ok(Ok(_))),
        };
        if answered {
            // Its session holds the lock for as long as it lives.
            if lost.send_replace(false) {
                tracing::warn!("the database's lock is this vacd's again");
            }
            continue;
        }
        let again = tokio::select! {
            _ = &mut stop => break,
            again = tokio::time::timeout(CHECK_EVERY, lock(&url)) => {
                again.unwrap_or(Err(Error::Closed))
            }
        };
        match again {
            Ok(again) => {
                session = again;
                if lost.send_replace(false) {
                    tracing::warn!("the database's lock is this vacd's again");
                } else {
                    tracing::warn!(
                        "the session holding the database's lock broke; the lock is taken again"
                    );
                }
            }
            Err(e) => {
                if !lost.send_replace(true) {
                    tracing::error!(error = %e, "the database's lock is lost (its session broke or went silent) and cannot be taken again: another vacd may be routing on this database; not ready until it is back");
                }
            }
        }
    }
    // Let go of explicitly: the server drops a closed session's locks only once its backend has
    // wound down, after the close returned — a vacd started right after (a restart) found the
    // database still locked.
    if !*lost.borrow() {
        let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(ADVISORY_LOCK)
            .execute(&mut session)
            .await;
        if let Err(e) = unlocked {
            tracing::warn!(error = %e, "the database's lock not let go of; it goes with the session");
        }
    }
    if let Err(e) = session.close().await {
        tracing::debug!(error = %e, "the lock's session did not close cleanly");
    }
}
