//! SQLite's WAL checkpoints, off the write path. By default the connection whose commit makes
//! the WAL pass 1,000 pages copies the WAL into the database file then and there, with two
//! fsyncs, while it holds the write lock; on this store's single writer that stalled every
//! create and routing output for about 20 ms, several times a second under load (the slowest
//! commits of the load test were all such checkpoints).
//!
//! So the writer runs with `wal_autocheckpoint = 0`, and [`run`] copies the WAL into the
//! database on a connection of its own (`PASSIVE`: beside the writer, never blocking it) every
//! [`INTERVAL`]. A WAL starts over only when a checkpoint has copied all of it, which under a
//! steady stream of writes never happens; once it holds [`RESTART_FRAMES`] frames, the group
//! committer, between two rounds, restarts it on the writer itself ([`restart_if_long`]): by
//! then nearly everything is copied, so that takes little. Doing the restart from the
//! checkpointer instead would hold off the writer, whose busy handler sleeps in steps of
//! milliseconds.
//!
//! The checkpointer reports the WAL's length after each checkpoint on a watch channel, whose
//! receivers every store handle carries; it ends when the store is closed or every handle is
//! gone. The last connection to close checkpoints what is left.

use std::time::Duration;

use sqlx::{AnyConnection, AnyPool, Row};
use tokio::sync::watch;

/// How often the WAL is copied into the database file. A checkpoint copies and fsyncs what
/// gathered since the last one, on the cores and the disk the writer uses: the more it does at
/// once, the longer the writer's commits beside it take (measured, not explained). At
/// 15,000 routed interactions/s a checkpoint every 100 ms (~11 MiB each) made the p99 of
/// create → offer 14–18 ms, every 20 ms 9–14 ms; every 5 ms was worse again (the fsyncs' own
/// cost).
const INTERVAL: Duration = Duration::from_millis(20);

/// WAL length (in pages) from which the group committer makes the WAL start over.
const RESTART_FRAMES: i64 = 8_192;

/// The WAL's length in pages, as the checkpointer last reported it.
pub(super) type WalFrames = watch::Receiver<i64>;

/// Checkpoints `checkpointer`'s database and reports the WAL's length on `frames` until
/// `writer` is closed or no receiver of `frames` is left.
pub(super) async fn run(checkpointer: AnyPool, writer: AnyPool, frames: watch::Sender<i64>) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if writer.is_closed() || frames.is_closed() {
            break;
        }
        match checkpoint(&checkpointer, "PASSIVE").await {
            Ok((_, log)) => {
                frames.send_replace(log);
            }
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; retrying"),
        }
    }
    checkpointer.close().await;
}

/// On the writer between two rounds: makes the WAL start over if the checkpointer's latest
/// report, not acted on yet, says it is long. A restart that a reader or the checkpointer (it
/// holds the checkpoint lock) was in the way of is tried again at the next report.
pub(super) async fn restart_if_long(writer: &mut AnyConnection, frames: &mut WalFrames) {
    if !frames.has_changed().unwrap_or(false) || *frames.borrow_and_update() < RESTART_FRAMES {
        return;
    }
    match restart(writer).await {
        Ok(false) => {}
        Ok(true) => {
            tracing::debug!("WAL restart put off: a reader or the checkpointer is in the way")
        }
        Err(e) => tracing::warn!(error = %e, "WAL restart failed; the WAL keeps growing"),
    }
}

/// Restarts the WAL without waiting: a reader still in the WAL (a long report, say) would keep
/// a restart waiting through the busy timeout, and every write behind it; without a busy
/// handler SQLite gives up at once. True when it gave up.
async fn restart(writer: &mut AnyConnection) -> Result<bool, sqlx::Error> {
    sqlx::query("PRAGMA busy_timeout = 0")
        .execute(&mut *writer)
        .await?;
    let restarted = checkpoint(&mut *writer, "RESTART").await;
    sqlx::query(super::BUSY_TIMEOUT)
        .execute(&mut *writer)
        .await?;
    Ok(restarted?.0)
}

/// Runs a checkpoint in `mode`: whether it was kept from completing, and the WAL's length in
/// pages (-1 when the database is not in WAL mode).
async fn checkpoint<'e, E>(executor: E, mode: &str) -> Result<(bool, i64), sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(&format!("PRAGMA wal_checkpoint({mode})"))
        .fetch_one(executor)
        .await?;
    Ok((row.try_get::<i64, _>(0)? != 0, row.try_get::<i64, _>(1)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::resources::new_values;
    use crate::catalog::SKILLS;
    use crate::store::{sqlite_pool, Store, WRITER_PRAGMAS};
    use sqlx::pool::PoolConnection;
    use sqlx::Connection;

    fn url(dir: &tempfile::TempDir) -> String {
        format!("sqlite://{}/vacd.db?mode=rwc", dir.path().display())
    }

    fn size(path: &std::path::Path) -> u64 {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }

    /// A writer as the store has it, without a checkpointer beside it, on a database with a
    /// table `t` (the WAL checkpoints nothing on its own).
    async fn writer(dir: &tempfile::TempDir) -> PoolConnection<sqlx::Any> {
        sqlx::any::install_default_drivers();
        let pool = sqlite_pool(1, WRITER_PRAGMAS)
            .connect(&url(dir))
            .await
            .expect("writer");
        let mut writer = pool.acquire().await.expect("connection");
        sqlx::query("CREATE TABLE t (v TEXT)")
            .execute(&mut *writer)
            .await
            .expect("table");
        writer
    }

    /// Fifty rows of a kilobyte in one transaction.
    async fn write(writer: &mut AnyConnection) {
        let mut tx = writer.begin().await.expect("begin");
        for _ in 0..50 {
            sqlx::query("INSERT INTO t VALUES (?)")
                .bind("y".repeat(1000))
                .execute(&mut *tx)
                .await
                .expect("insert");
        }
        tx.commit().await.expect("commit");
    }

    #[tokio::test]
    async fn the_checkpointer_copies_the_wal_into_the_database_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&url(&dir), 2).await.expect("store opens");
        let file = dir.path().join("vacd.db");
        let tenant = store.create_tenant("t", "T").await.expect("tenant").id;
        let before = size(&file);
        let mut reports = store
            .wal
            .clone()
            .expect("a SQLite store has a checkpointer");
        // The writer does not checkpoint: what it writes reaches the file only through the
        // checkpointer.
        for n in 0..50 {
            let skill = new_values(&SKILLS, serde_json::json!({ "name": format!("skill {n}") }))
                .expect("valid");
            store
                .create(&SKILLS, tenant, None, &skill)
                .await
                .expect("created");
        }
        // A report may come from a checkpoint begun before the last write; the one after it
        // began after the writes.
        reports.borrow_and_update();
        tokio::time::timeout(Duration::from_secs(10), async {
            while size(&file) <= before {
                reports.changed().await.expect("the checkpointer runs");
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the database file stayed at {before} bytes"));
        store.close().await;
    }

    #[tokio::test]
    async fn a_long_wal_starts_over_on_the_writer_and_a_short_one_does_not() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut writer = writer(&dir).await;
        let wal = dir.path().join("vacd.db-wal");
        write(&mut writer).await;
        let first = size(&wal);
        assert!(first > 0, "written to the WAL");

        // Short of the limit: the WAL goes on growing.
        let (report, mut frames) = watch::channel(0);
        report.send_replace(RESTART_FRAMES - 1);
        restart_if_long(&mut writer, &mut frames).await;
        write(&mut writer).await;
        let grown = size(&wal);
        assert!(
            grown > first,
            "WAL of {grown} bytes after {first}: no restart"
        );

        // At the limit: restarted, so the next write begins again at the start of the file.
        report.send_replace(RESTART_FRAMES);
        restart_if_long(&mut writer, &mut frames).await;
        assert!(
            !frames.has_changed().expect("open"),
            "the report is acted on once"
        );
        write(&mut writer).await;
        assert_eq!(size(&wal), grown, "the WAL started over instead of growing");
    }

    #[tokio::test]
    async fn a_restart_does_not_wait_for_a_reader_in_the_wal() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut writer = writer(&dir).await;
        write(&mut writer).await;
        // A reader holding a snapshot of the WAL (a long report, say).
        let reader = sqlite_pool(1, "")
            .connect(&url(&dir))
            .await
            .expect("reader");
        let mut reader = reader.acquire().await.expect("connection");
        sqlx::query("BEGIN")
            .execute(&mut *reader)
            .await
            .expect("begin");
        sqlx::query("SELECT count(*) FROM t")
            .fetch_one(&mut *reader)
            .await
            .expect("read");
        let (report, mut frames) = watch::channel(0);
        report.send_replace(RESTART_FRAMES);
        // Without giving up at once it would wait out the 5 s busy timeout.
        tokio::time::timeout(
            Duration::from_secs(2),
            restart_if_long(&mut writer, &mut frames),
        )
        .await
        .expect("the restart gave way to the reader");
        let timeout: i64 = sqlx::query("PRAGMA busy_timeout")
            .fetch_one(&mut *writer)
            .await
            .expect("busy timeout")
            .try_get(0)
            .expect("a number");
        assert_eq!(timeout, 5000, "the writer waits for locks again");
        // The reader is unharmed, and once it is done the restart goes through.
        sqlx::query("COMMIT")
            .execute(&mut *reader)
            .await
            .expect("commit");
        report.send_replace(RESTART_FRAMES);
        restart_if_long(&mut writer, &mut frames).await;
        let wal = dir.path().join("vacd.db-wal");
        let before = size(&wal);
        write(&mut writer).await;
        assert_eq!(size(&wal), before, "the WAL started over");
    }
}
