//! The loop the group committers share (`message_commit`, `call_commit`): writes are handed to
//! one task with [`submit`]; the task takes every write waiting, has them written in one
//! transaction by its [`Batch`], and answers each once that transaction has committed. While one
//! batch commits the next gathers, so a batch grows with the load and a lone write waits for
//! nothing. If a batch fails, each of its writes is done again in a transaction of its own, so
//! one bad write costs only itself — unless the connection broke during the commit, when the
//! batch may be stored and is not written again.

use std::future::Future;

use sqlx::AnyPool;
use tokio::sync::{mpsc, oneshot};

use super::{Backend, Error, Result};

/// What a committer writes, and how.
pub(super) trait Batch {
    type Write: Send + Sync;
    type Done: Send;
    /// Names the writes in log lines.
    const WHAT: &'static str;
    /// Most writes in one transaction.
    const MAX: usize;

    /// Writes `writes` in one transaction on `writer`; `Ok` holds what each produced, in order,
    /// after the commit; `Err` means nothing was committed.
    fn write(
        writer: &AnyPool,
        backend: Backend,
        writes: &[&Self::Write],
    ) -> impl Future<Output = Result<Vec<Self::Done>>> + Send;

    /// Called with each batch's size (for a metric).
    fn batched(_size: usize) {}
}

/// One write waiting for its batch.
pub(super) struct Pending<B: Batch> {
    write: B::Write,
    reply: oneshot::Sender<Result<B::Done>>,
}

/// Hands `write` to the committer and waits until its batch has committed.
pub(super) async fn submit<B: Batch>(
    committer: &mpsc::Sender<Pending<B>>,
    write: B::Write,
) -> Result<B::Done> {
    let (reply, answer) = oneshot::channel();
    committer
        .send(Pending { write, reply })
        .await
        .map_err(|_| Error::Closed)?;
    answer.await.map_err(|_| Error::Closed)?
}

/// The committer: commits what has gathered, batch after batch, until every sender is gone.
pub(super) async fn run<B: Batch>(
    writer: AnyPool,
    backend: Backend,
    mut incoming: mpsc::Receiver<Pending<B>>,
) {
    let mut batch = Vec::with_capacity(B::MAX);
    while incoming.recv_many(&mut batch, B::MAX).await > 0 {
        B::batched(batch.len());
        let writes: Vec<&B::Write> = batch.iter().map(|p| &p.write).collect();
        match B::write(&writer, backend, &writes).await {
            Ok(done) => {
                for (pending, done) in batch.drain(..).zip(done) {
                    let _ = pending.reply.send(Ok(done));
                }
            }
            Err(Error::CommitUnknown) => {
                // Written again, what did commit would be there twice: each caller hears that
                // its write may be stored (a chat message is sent again with its client id,
                // which finds the stored one).
                tracing::error!(
                    writes = batch.len(),
                    "{} batch's outcome unknown; not written again",
                    B::WHAT
                );
                for pending in batch.drain(..) {
                    let _ = pending.reply.send(Err(Error::CommitUnknown));
                }
            }
            Err(e) if batch.len() == 1 => {
                if let Some(pending) = batch.pop() {
                    let _ = pending.reply.send(Err(e));
                }
            }
            Err(e) => {
                tracing::info!(error = %e, writes = batch.len(), "{} batch failed; writing one by one", B::WHAT);
                for pending in batch.drain(..) {
                    let done = B::write(&writer, backend, &[&pending.write])
                        .await
                        .and_then(|done| {
                            done.into_iter().next().ok_or_else(|| {
                                Error::Database(sqlx::Error::Protocol(format!(
                                    "{}: a write without an outcome",
                                    B::WHAT
                                )))
                            })
                        });
                    let _ = pending.reply.send(done);
                }
            }
        }
    }
}
