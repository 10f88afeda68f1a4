//! Interaction ids handed out before their rows are written, so that an interaction created
//! through the API can be routed at once while its insert waits for its group commit
//! (`Store::create_ahead`). The ids come in blocks reserved in the database: on SQLite by
//! moving the table's `AUTOINCREMENT` counter (`sqlite_sequence`) past the block, so inserts
//! that let SQLite choose (chats, calls, tickets) never take one of them; on PostgreSQL from
//! the table's sequence. A block is reserved when the store opens and the next one in the
//! background once less than half a block is left; while none is left, creates take the usual
//! way (written, then routed). Ids of a block not used up before vacd stops are never used
//! (ids have gaps, as after a rolled-back insert).

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use sqlx::Row;

use super::{begin_in, Backend, Result, Store};

/// Ids reserved at a time. At 20,000 creates/s a block lasts 0.2 s, and the next one is
/// reserved when half is left: time enough to wait for the writer between group commits.
const BLOCK: i64 = 4096;

/// How long after a failed reservation the next one is tried.
const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// The ids reserved and not yet handed out.
#[derive(Debug, Default)]
pub(super) struct Ids {
    reserved: Mutex<VecDeque<Range<i64>>>,
    /// Whether a reservation is under way.
    reserving: AtomicBool,
}

impl Ids {
    fn lock(&self) -> MutexGuard<'_, VecDeque<Range<i64>>> {
        // Every change is one call, so the ranges are consistent even after a holder panicked.
        self.reserved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes the next id and calls `use_id` with it before anyone can take another, so that
    /// what `use_id` sends leaves in the order of the ids. `None` when none is reserved.
    pub(super) fn take<R>(&self, use_id: impl FnOnce(i64) -> R) -> Option<R> {
        let mut reserved = self.lock();
        let front = reserved.front_mut()?;
        let id = front.start;
        front.start += 1;
        if front.is_empty() {
            reserved.pop_front();
        }
        Some(use_id(id))
    }

    /// Whether fewer than half a block is left and no reservation is under way; if so the
    /// caller is to reserve ([`Store::reserve_ids`]) and then call [`Ids::reserved`], and no
    /// other caller is told so meanwhile.
    pub(super) fn running_low(&self) -> bool {
        let left: i64 = self.lock().iter().map(|r| r.end - r.start).sum();
        left < BLOCK / 2 && !self.reserving.swap(true, Ordering::AcqRel)
    }

    /// The reservation [`Ids::running_low`] asked for is over (made, or failed and waited
    /// out).
    pub(super) fn reserved(&self) {
        self.reserving.store(false, Ordering::Release);
    }

    fn add(&self, ids: Vec<i64>) {
        let mut reserved = self.lock();
        for id in ids {
            match reserved.back_mut() {
                Some(last) if last.end == id => last.end += 1,
                _ => reserved.push_back(id..id + 1),
            }
        }
    }
}

impl Store {
    /// Reserves a block of interaction ids.
    pub(super) async fn reserve_ids(&self) -> Result<()> {
        self.reserve_block().await.map(|ids| self.ids.add(ids))
    }

    /// Reserves the next block in the background if [`Ids::running_low`] says so. After a
    /// failure the next try waits [`RETRY_PAUSE`]: meanwhile creates wait for their commit
    /// before routing, and the writer is not asked again and again while the database is down.
    pub(super) fn reserve_ids_if_low(&self) {
        if !self.ids.running_low() {
            return;
        }
        let store = self.clone();
        tokio::spawn(async move {
            if let Err(e) = store.reserve_ids().await {
                tracing::warn!(error = %e, retry_in = ?RETRY_PAUSE, "interaction ids not reserved; creates wait for their commit before routing");
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            store.ids.reserved();
        });
    }

    async fn reserve_block(&self) -> Result<Vec<i64>> {
        let mut writer = self.writer.acquire().await?;
        let ids = match self.backend {
            Backend::Sqlite => {
                let mut tx = begin_in(&mut writer, self.backend).await?;
                sqlx::query(
                    "INSERT INTO sqlite_sequence (name, seq) SELECT 'interactions', 0 \
                     WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'interactions')",
                )
                .execute(&mut *tx)
                .await?;
                let last: i64 = sqlx::query(
                    "UPDATE sqlite_sequence \
                     SET seq = MAX(seq, (SELECT COALESCE(MAX(id), 0) FROM interactions)) + $1 \
                     WHERE name = 'interactions' RETURNING seq",
                )
                .bind(BLOCK)
                .fetch_one(&mut *tx)
                .await?
                .try_get("seq")?;
                tx.commit().await?;
                (last - BLOCK + 1..=last).collect()
            }
            Backend::Postgres => {
                let rows = sqlx::query(
                    "SELECT nextval(pg_get_serial_sequence('interactions', 'id')) AS id \
                     FROM generate_series(1, $1)",
                )
                .bind(BLOCK)
                .fetch_all(&mut *writer)
                .await?;
                let mut ids = rows
                    .iter()
                    .map(|row| row.try_get::<i64, _>("id"))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                ids.sort_unstable();
                ids
            }
        };
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_taken_in_order_across_blocks() {
        let ids = Ids::default();
        assert_eq!(ids.take(|id| id), None);
        ids.add(vec![5, 6, 9]);
        let taken: Vec<i64> = std::iter::from_fn(|| ids.take(|id| id)).collect();
        assert_eq!(taken, [5, 6, 9]);
    }

    #[test]
    fn only_one_caller_is_told_to_reserve() {
        let ids = Ids::default();
        assert!(ids.running_low());
        assert!(!ids.running_low(), "a reservation is under way");
        ids.reserved();
        ids.add((1..=BLOCK).collect());
        assert!(!ids.running_low(), "a whole block is left");
    }
}
