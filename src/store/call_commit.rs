//! Group commit of call records. The call actors' starts and ends go to one task that writes
//! all of them waiting at the moment in one transaction on the writer and answers each once it
//! has committed: at a thousand calls a second, calls share their `BEGIN` and `COMMIT` (two of
//! the six or four statements a call's write costs, each a hand-off to SQLite's worker thread)
//! instead of queueing one by one for SQLite's single writer.
//!
//! The loop, and what happens when a batch fails, is `committer`'s.

use sqlx::AnyPool;

use super::calls::{end_in, start_in};
use super::committer::Batch;
use super::{begin_on, Backend, CallEnd, Error, NewCall, Result, StartedCall};

/// A write of a call's record.
pub(super) enum Job {
    Start(NewCall),
    End(CallEnd),
}

/// What a write produced.
pub(super) enum Done {
    Started(StartedCall),
    Ended,
}

/// The batches of call records.
pub(super) struct Calls;

impl Batch for Calls {
    type Write = Job;
    type Done = Done;
    const WHAT: &'static str = "call record";
    const MAX: usize = 256;

    async fn write(writer: &AnyPool, backend: Backend, jobs: &[&Job]) -> Result<Vec<Done>> {
        let mut tx = begin_on(writer, backend).await?;
        let mut done = Vec::with_capacity(jobs.len());
        for job in jobs {
            done.push(match job {
                Job::Start(call) => Done::Started(start_in(&mut tx, backend, call).await?),
                Job::End(end) => {
                    end_in(&mut tx, end).await?;
                    Done::Ended
                }
            });
        }
        tx.commit().await.map_err(super::commit_failed)?;
        Ok(done)
    }
}

/// A write answered with another kind of outcome than it asked for (cannot happen).
pub(super) fn mismatch() -> Error {
    Error::Database(sqlx::Error::Protocol(
        "call commit: an outcome of the wrong kind".into(),
    ))
}
