//! Group commit of call records. The call actors' starts and ends go to one task that writes
//! all of them waiting at the moment in one transaction on the writer and answers each once it
//! has committed: at a thousand calls a second, calls share their `BEGIN` and `COMMIT` (two of
//! the six or four statements a call's write costs, each a hand-off to SQLite's worker thread)
//! instead of queueing one by one for SQLite's single writer.
//!
//! If one write of a batch fails, the batch is rolled back and every write is done again in a
//! transaction of its own, so one bad write costs only itself.

use sqlx::AnyPool;
use tokio::sync::{mpsc, oneshot};

use super::calls::{end_in, start_in};
use super::{begin_on, Backend, CallEnd, Error, NewCall, Result, StartedCall};

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 256;

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

/// One write waiting for its batch.
pub(super) struct Pending {
    job: Job,
    reply: oneshot::Sender<Result<Done>>,
}

/// Hands a write to the committer and waits until its batch has committed.
pub(super) async fn submit(committer: &mpsc::Sender<Pending>, job: Job) -> Result<Done> {
    let (reply, answer) = oneshot::channel();
    committer
        .send(Pending { job, reply })
        .await
        .map_err(|_| Error::Closed)?;
    answer.await.map_err(|_| Error::Closed)?
}

/// The committer: commits what has gathered, batch after batch, until every sender is gone.
pub(super) async fn run(writer: AnyPool, backend: Backend, mut incoming: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while incoming.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let jobs: Vec<&Job> = batch.iter().map(|p| &p.job).collect();
        match write(&writer, backend, &jobs).await {
            Ok(done) => {
                for (pending, done) in batch.drain(..).zip(done) {
                    let _ = pending.reply.send(Ok(done));
                }
            }
            Err(e) if batch.len() == 1 => {
                if let Some(pending) = batch.pop() {
                    let _ = pending.reply.send(Err(e));
                }
            }
            Err(e) => {
                tracing::info!(error = %e, writes = batch.len(), "call record batch failed; writing one by one");
                for pending in batch.drain(..) {
                    let done = write(&writer, backend, &[&pending.job])
                        .await
                        .and_then(|done| done.into_iter().next().ok_or_else(mismatch));
                    let _ = pending.reply.send(done);
                }
            }
        }
    }
}

/// Writes `jobs` in one transaction; `Ok` holds what each produced, in order, after the
/// commit; `Err` means nothing was committed.
async fn write(writer: &AnyPool, backend: Backend, jobs: &[&Job]) -> Result<Vec<Done>> {
    let mut tx = begin_on(writer, backend).await?;
    let mut done = Vec::with_capacity(jobs.len());
    for job in jobs {
        done.push(match job {
            Job::Start(call) => Done::Started(start_in(&mut tx, call).await?),
            Job::End(end) => {
                end_in(&mut tx, end).await?;
                Done::Ended
            }
        });
    }
    tx.commit().await?;
    Ok(done)
}

/// A write answered with another kind of outcome than it asked for (cannot happen).
pub(super) fn mismatch() -> Error {
    Error::Database(sqlx::Error::Protocol(
        "call commit: an outcome of the wrong kind".into(),
    ))
}
