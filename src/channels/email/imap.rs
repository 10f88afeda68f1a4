//! Fetching mail over IMAP (RFC 3501) with `async-imap`: connect (TLS, STARTTLS or plain),
//! log in, select the folder, then repeatedly take the messages not yet made tickets, store
//! each, and only after its ticket has committed mark it on the server (`\Deleted` and
//! expunge, or the keyword `$VacdTicket`). Between rounds it waits in IDLE (RFC 2177) when the
//! server offers it, else for the poll interval.
//!
//! Each message's source key is `imap:<account>:<UIDVALIDITY>:<UID>`, so a message fetched
//! again after a crash between commit and marking is recognised by the store and only marked.

use std::collections::HashSet;

use futures_util::StreamExt;
use tokio::sync::watch;

use super::transport::{self, MailStream};
use super::{MailAccount, SessionError};
use crate::channels::config::{AfterFetch, Security};
use crate::channels::Channels;

type Session = async_imap::Session<MailStream>;

/// The keyword of messages that are tickets already (the `flag` disposal).
const KEYWORD: &str = "$VacdTicket";

/// One connection's life: returns `Ok` when told to stop, an error when the connection failed.
pub(super) async fn session(
    channels: &Channels,
    account: &MailAccount,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), SessionError> {
    let mut session = login(account).await?;
    let mailbox = session.select(&account.folder).await?;
    let generation = mailbox.uid_validity.unwrap_or(0);
    let capabilities = session.capabilities().await?;
    let idle = capabilities.has_str("IDLE");
    // Without UIDPLUS, EXPUNGE removes every \Deleted message of the folder, which are only
    // ours when nobody else marks messages there.
    let uidplus = capabilities.has_str("UIDPLUS");
    drop(capabilities);
    channels.account_up(&account.key);
    tracing::info!(account = %account.key, host = %account.host, idle, "IMAP session open");
    // Mails that could not be stored in this wake-up: left on the server, skipped until the
    // next one, so that they neither hold back the mails behind them nor are fetched again
    // and again without a pause.
    let mut failed = HashSet::new();
    loop {
        failed.clear();
        loop {
            let fetched = round(
                channels,
                account,
                &mut session,
                generation,
                uidplus,
                &mut failed,
            )
            .await?;
            if fetched < channels.config().fetch_batch {
                break;
            }
        }
        if *stop.borrow() {
            let _ = session.logout().await;
            return Ok(());
        }
        if idle {
            let mut handle = session.idle();
            handle.init().await?;
            let (wait, interrupt) = handle.wait_with_timeout(channels.config().poll_interval());
            tokio::select! {
                result = wait => { result?; }
                _ = stop.changed() => { drop(interrupt); }
            }
            session = handle.done().await?;
        } else {
            tokio::select! {
                _ = tokio::time::sleep(channels.config().poll_interval()) => {}
                _ = stop.changed() => {}
            }
            session.noop().await?;
        }
    }
}

async fn login(account: &MailAccount) -> Result<Session, SessionError> {
    let tcp = transport::connect(&account.host, account.port).await?;
    let stream = match account.security {
        Security::Tls => transport::tls(tcp, &account.host, account.ca_file.as_deref()).await?,
        Security::Plain => MailStream::Plain(tcp),
        Security::Starttls => {
            let mut client = async_imap::Client::new(tcp);
            greeting(&mut client).await?;
            client.run_command_and_check_ok("STARTTLS", None).await?;
            transport::tls(
                client.into_inner(),
                &account.host,
                account.ca_file.as_deref(),
            )
            .await?
        }
    };
    let mut client = async_imap::Client::new(stream);
    if account.security != Security::Starttls {
        greeting(&mut client).await?;
    }
    client
        .login(&account.username, &account.password)
        .await
        .map_err(|(e, _)| SessionError::Login(e.to_string()))
}

async fn greeting<T>(client: &mut async_imap::Client<T>) -> Result<(), SessionError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + std::fmt::Debug + Send,
{
    match client.read_response().await {
        Some(Ok(_)) => Ok(()),
        Some(Err(e)) => Err(SessionError::Io(e)),
        None => Err(SessionError::Protocol(
            "the server closed before its greeting".into(),
        )),
    }
}

/// Stores up to one batch of waiting messages (but those in `failed`) and marks those
/// committed; returns how many it fetched. The ones that could not be stored join `failed`.
async fn round(
    channels: &Channels,
    account: &MailAccount,
    session: &mut Session,
    generation: u32,
    uidplus: bool,
    failed: &mut HashSet<u32>,
) -> Result<usize, SessionError> {
    let query = match account.after_fetch {
        AfterFetch::Delete => "UNDELETED".to_owned(),
        AfterFetch::Flag => format!("UNKEYWORD {KEYWORD} UNDELETED"),
    };
    let mut uids: Vec<u32> = session.uid_search(&query).await?.into_iter().collect();
    uids.retain(|uid| !failed.contains(uid));
    uids.sort_unstable();
    uids.truncate(channels.config().fetch_batch);
    if uids.is_empty() {
        return Ok(0);
    }
    let set = uid_set(&uids);
    let mut messages = Vec::with_capacity(uids.len());
    {
        let mut fetches = session.uid_fetch(&set, "(UID BODY.PEEK[])").await?;
        while let Some(fetch) = fetches.next().await {
            let fetch = fetch?;
            if let (Some(uid), Some(body)) = (fetch.uid, fetch.body()) {
                messages.push((uid, body.to_vec()));
            }
        }
    }
    let fetched = messages.len();
    let mut done = Vec::with_capacity(fetched);
    for (uid, raw) in messages {
        let source = format!("imap:{}:{generation}:{uid}", account.key);
        match super::ingest(channels, account, &source, &raw).await {
            Ok(()) => done.push(uid),
            // Left on the server: the next wake-up tries again.
            Err(e) => {
                failed.insert(uid);
                tracing::error!(account = %account.key, source, error = %e, "mail not stored; kept on the server")
            }
        }
    }
    if !done.is_empty() {
        let set = uid_set(&done);
        let flags = match account.after_fetch {
            AfterFetch::Delete => "+FLAGS.SILENT (\\Deleted)".to_owned(),
            AfterFetch::Flag => format!("+FLAGS.SILENT ({KEYWORD})"),
        };
        {
            let mut stored = session.uid_store(&set, &flags).await?;
            while let Some(r) = stored.next().await {
                r?;
            }
        }
        if account.after_fetch == AfterFetch::Delete && uidplus {
            let mut expunged = std::pin::pin!(session.uid_expunge(&set).await?);
            while let Some(r) = expunged.next().await {
                r?;
            }
        } else if account.after_fetch == AfterFetch::Delete {
            let mut expunged = std::pin::pin!(session.expunge().await?);
            while let Some(r) = expunged.next().await {
                r?;
            }
        }
    }
    Ok(fetched)
}

/// `1:3,7,9:10` for sorted UIDs.
fn uid_set(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && Some(uids[i + 1]) == end.checked_add(1) {
            i += 1;
            end = uids[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::uid_set;

    #[test]
    fn uid_sets_are_compact() {
        assert_eq!(uid_set(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(uid_set(&[5]), "5");
        assert_eq!(uid_set(&[]), "");
        assert_eq!(
            uid_set(&[u32::MAX, 1]),
            "4294967295,1",
            "no overflow past the largest UID"
        );
    }
}
