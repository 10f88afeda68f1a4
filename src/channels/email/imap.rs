//! Fetching mail over IMAP (RFC 3501) with `async-imap`: connect (TLS, STARTTLS or plain),
//! log in, select the folder, then repeatedly take the messages not yet made tickets, store
//! each, and only after its ticket has committed mark it on the server (`\Deleted` and
//! expunge, or the keyword `$VacdTicket`). Between rounds it waits in IDLE (RFC 2177) when the
//! server offers it, else for the poll interval.
//!
//! Memory stays bounded: a round first asks for the messages' sizes and downloads them in
//! groups of at most `channels.max_message_bytes`; a message larger than that is not
//! downloaded — its header becomes the ticket (with a note) and the message stays on the
//! server.
//!
//! Each message's source key is `imap:<account>:<UIDVALIDITY>:<UID>`, so a message fetched
//! again after a crash between commit and marking is recognised by the store and only marked.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;

use super::transport::{self, MailStream};
use super::{Fetched, MailAccount, SessionError};
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
    let mut session = login(account, channels.config().stall()).await?;
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
    let mut skip = Skipped::default();
    loop {
        skip.failed.clear();
        loop {
            let fetched = round(
                channels,
                account,
                &mut session,
                generation,
                uidplus,
                &mut skip,
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

async fn login(account: &MailAccount, stall: Duration) -> Result<Session, SessionError> {
    let tcp = transport::connect(&account.host, account.port, stall).await?;
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

/// Stores up to one batch of waiting messages (but those in `skip`), in UID order, and marks
/// those committed; returns how many it looked at. Messages are downloaded in groups of at most
/// `max_message_bytes`; a larger one (or one whose size the server does not state) is stored
/// from its header and left on the server (flagged with the `flag` disposal, else added to
/// `skip`). The ones that could not be stored — or that the server did not deliver — join
/// `failed`.
async fn round(
    channels: &Channels,
    account: &MailAccount,
    session: &mut Session,
    generation: u32,
    uidplus: bool,
    skip: &mut Skipped,
) -> Result<usize, SessionError> {
    let query = match account.after_fetch {
        AfterFetch::Delete => "UNDELETED".to_owned(),
        AfterFetch::Flag => format!("UNKEYWORD {KEYWORD} UNDELETED"),
    };
    let mut uids: Vec<u32> = session.uid_search(&query).await?.into_iter().collect();
    let unmarked = uids.iter().filter(|uid| skip.marked.contains(uid)).count();
    if unmarked > 0 && !skip.unmarked_told {
        skip.unmarked_told = true;
        tracing::warn!(
            account = %account.key,
            unmarked,
            "the server keeps no mark vacd set on taken mail (a read-only folder, or a keyword it does not store?): they stay on the server and are skipped"
        );
    }
    uids.retain(|uid| {
        !skip.failed.contains(uid) && !skip.too_large.contains(uid) && !skip.marked.contains(uid)
    });
    uids.sort_unstable();
    uids.truncate(channels.config().fetch_batch);
    if uids.is_empty() {
        return Ok(0);
    }
    let limit = channels.config().max_message_bytes;
    let mut sizes = BTreeMap::new();
    {
        let mut fetches = session
            .uid_fetch(uid_set(&uids), "(UID RFC822.SIZE)")
            .await?;
        while let Some(fetch) = fetches.next().await {
            let fetch = fetch?;
            // Only the answers asked for (a server may slip in other messages' updates).
            if let Some(uid) = fetch.uid.filter(|uid| uids.binary_search(uid).is_ok()) {
                sizes.insert(uid, fetch.size);
            }
        }
    }
    let mut handled = Handled::default();
    let mut group = Vec::new();
    let mut group_bytes = 0usize;
    for (&uid, &size) in &sizes {
        match size.map(|s| s as usize).filter(|&s| s <= limit) {
            Some(size) => {
                if !group.is_empty() && group_bytes.saturating_add(size) > limit {
                    whole(channels, account, session, generation, &group, &mut handled).await?;
                    group.clear();
                    group_bytes = 0;
                }
                group.push(uid);
                group_bytes += size;
            }
            None => {
                // In UID order: what arrived before it is stored before it.
                whole(channels, account, session, generation, &group, &mut handled).await?;
                group.clear();
                group_bytes = 0;
                header_only(
                    channels,
                    account,
                    session,
                    generation,
                    uid,
                    size,
                    &mut handled,
                )
                .await?;
            }
        }
    }
    whole(channels, account, session, generation, &group, &mut handled).await?;
    if !handled.done.is_empty() {
        let flags = match account.after_fetch {
            AfterFetch::Delete => "+FLAGS.SILENT (\\Deleted)".to_owned(),
            AfterFetch::Flag => format!("+FLAGS.SILENT ({KEYWORD})"),
        };
        store_flags(session, &handled.done, &flags).await?;
        skip.marked.extend(&handled.done);
        if account.after_fetch == AfterFetch::Delete && uidplus {
            let mut expunged = std::pin::pin!(session.uid_expunge(uid_set(&handled.done)).await?);
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
    let mut flagged = Vec::new();
    for uid in handled.too_large {
        match account.after_fetch {
            AfterFetch::Flag => flagged.push(uid),
            AfterFetch::Delete => {
                skip.too_large.insert(uid);
            }
        }
    }
    if !flagged.is_empty() {
        store_flags(session, &flagged, &format!("+FLAGS.SILENT ({KEYWORD})")).await?;
        skip.marked.extend(&flagged);
    }
    // What the server did not deliver waits for the next wake-up like a failure, so that a
    // round of such messages does not start again at once.
    let looked = uids.len();
    for uid in uids {
        if !handled.done.contains(&uid) && !flagged.contains(&uid) && !skip.too_large.contains(&uid)
        {
            skip.failed.insert(uid);
        }
    }
    Ok(looked)
}

/// What a round did with its messages.
#[derive(Debug, Default)]
struct Handled {
    /// Stored whole (or dropped by screening): to be removed or flagged.
    done: Vec<u32>,
    /// Stored from their header: to stay on the server.
    too_large: Vec<u32>,
}

/// Downloads the messages `uids` (a group of at most `max_message_bytes`) and stores each.
async fn whole(
    channels: &Channels,
    account: &MailAccount,
    session: &mut Session,
    generation: u32,
    uids: &[u32],
    handled: &mut Handled,
) -> Result<(), SessionError> {
    if uids.is_empty() {
        return Ok(());
    }
    let mut messages = Vec::with_capacity(uids.len());
    {
        let mut fetches = session
            .uid_fetch(uid_set(uids), "(UID BODY.PEEK[])")
            .await?;
        while let Some(fetch) = fetches.next().await {
            let fetch = fetch?;
            if let (Some(uid), Some(body)) = (fetch.uid, fetch.body()) {
                if uids.contains(&uid) {
                    messages.push((uid, body.to_vec()));
                }
            }
        }
    }
    messages.sort_by_key(|(uid, _)| *uid);
    for (uid, raw) in messages {
        let source = source(account, generation, uid);
        match super::ingest(channels, account, &source, Fetched::Whole(&raw)).await {
            Ok(()) => handled.done.push(uid),
            // Left on the server: the next wake-up tries again.
            Err(e) => {
                tracing::error!(account = %account.key, source, error = %e, "mail not stored; kept on the server")
            }
        }
    }
    Ok(())
}

/// Stores message `uid`, too large to download (`size` bytes, if the server said), from its
/// header.
async fn header_only(
    channels: &Channels,
    account: &MailAccount,
    session: &mut Session,
    generation: u32,
    uid: u32,
    size: Option<u32>,
    handled: &mut Handled,
) -> Result<(), SessionError> {
    let mut header = None;
    {
        let mut fetches = session
            .uid_fetch(uid.to_string(), "(UID BODY.PEEK[HEADER])")
            .await?;
        while let Some(fetch) = fetches.next().await {
            let fetch = fetch?;
            if fetch.uid == Some(uid) {
                header = header.or_else(|| fetch.header().map(<[u8]>::to_vec));
            }
        }
    }
    let source = source(account, generation, uid);
    let Some(header) = header else {
        tracing::error!(account = %account.key, source, "the server did not deliver the header of a large mail; tried again next wake-up");
        return Ok(());
    };
    let limit = channels.config().max_message_bytes;
    tracing::warn!(account = %account.key, source, size, limit, "mail too large to download; its header becomes the ticket");
    let fetched = Fetched::Header {
        header: &header,
        size: size.map(u64::from),
    };
    match super::ingest(channels, account, &source, fetched).await {
        Ok(()) => handled.too_large.push(uid),
        Err(e) => {
            tracing::error!(account = %account.key, source, error = %e, "mail not stored; kept on the server")
        }
    }
    Ok(())
}

fn source(account: &MailAccount, generation: u32, uid: u32) -> String {
    format!("imap:{}:{generation}:{uid}", account.key)
}

/// What a session leaves alone when it looks for new mail.
#[derive(Debug, Default)]
struct Skipped {
    /// Could not be stored in this wake-up: left on the server, skipped until the next one,
    /// so that they neither hold back the mails behind them nor are fetched again and again
    /// without a pause.
    failed: HashSet<u32>,
    /// Too large to download, stored from their header and left on the server (the `delete`
    /// disposal): skipped for the rest of the session; a new one finds their tickets.
    too_large: HashSet<u32>,
    /// Stored and marked (deleted or flagged) in this session. A server that does not keep
    /// the mark (a read-only folder, a keyword it does not store, a refused STORE the client
    /// library reads as done) lists them again: skipped, they neither come back as duplicates
    /// round after round nor keep the session from the mail behind them.
    marked: HashSet<u32>,
    /// Whether that was logged in this session.
    unmarked_told: bool,
}

async fn store_flags(session: &mut Session, uids: &[u32], flags: &str) -> Result<(), SessionError> {
    let mut stored = session.uid_store(uid_set(uids), flags).await?;
    while let Some(r) = stored.next().await {
        r?;
    }
    Ok(())
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
