//! Fetching mail over IMAP (RFC 3501) with `async-imap`: connect (TLS, STARTTLS or plain),
//! log in, select the folder, then repeatedly take the messages not yet made tickets, store
//! each, and only after its ticket has committed mark it on the server (`\Deleted` and
//! expunge, or the keyword `$VacdTicket`). Between rounds it waits in IDLE (RFC 2177) when the
//! server offers it, else for the poll interval.
//!
//! Memory stays bounded: a round first asks for the messages' sizes and downloads them in
//! groups of at most `channels.max_message_bytes`; a message larger than that is not
//! downloaded — its header becomes the ticket (with a note) and the message stays on the
//! server, as does one whose attachments were not all kept.
//!
//! Each message's source key is `imap:<account>:<UIDVALIDITY>:<UID>`, so a message fetched
//! again after a crash between commit and marking is recognised by the store and only marked.
//!
//! A mail the server fails on — Dovecot ends the session with BYE when a message's file cannot
//! be read — would end every session at the same place and hold back all mail behind it; the
//! account's [`Suspects`] single it out and leave it on the server.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use async_imap::imap_proto::{Response, Status};
use async_imap::types::UnsolicitedResponse;
use futures_util::StreamExt;
use tokio::sync::watch;

use super::transport::{self, MailStream};
use super::{Fetched, MailAccount, SessionError, Stored};
use crate::channels::config::{AfterFetch, Security};
use crate::channels::Channels;

type Session = async_imap::Session<MailStream>;

/// The keyword of messages that are tickets already (the `flag` disposal).
const KEYWORD: &str = "$VacdTicket";

/// Sessions a mail may end while it is fetched alone before it is given up.
const MAX_STRIKES: u32 = 3;

/// What an account's task keeps from one IMAP session to the next: the mails a session was
/// fetching when it died. They are suspects, fetched one at a time from then on, and cleared
/// once a round with them goes through; one that ends [`MAX_STRIKES`] sessions alone is given
/// up — left on the server and skipped, with an error in the log, until vacd restarts or the
/// folder's UIDVALIDITY changes.
#[derive(Debug, Default)]
pub(super) struct Suspects {
    generation: u32,
    /// The mails of the command in flight.
    in_flight: Vec<u32>,
    /// Mails to fetch alone, with the sessions that ended while each was fetched alone.
    strikes: HashMap<u32, u32>,
    given_up: HashSet<u32>,
}

impl Suspects {
    /// The session ended with an error: what it was fetching becomes suspect.
    pub(super) fn session_failed(&mut self, account: &MailAccount) {
        if let [uid] = self.in_flight[..] {
            let strikes = self.strikes.entry(uid).or_default();
            *strikes += 1;
            if *strikes >= MAX_STRIKES {
                self.strikes.remove(&uid);
                self.given_up.insert(uid);
                tracing::error!(account = %account.key, source = source(account, self.generation, uid), sessions = MAX_STRIKES, "the mail server fails whenever this mail is fetched: it stays there and is skipped until vacd restarts");
            }
        } else {
            for uid in &self.in_flight {
                self.strikes.entry(*uid).or_default();
            }
        }
        self.in_flight.clear();
    }

    fn select(&mut self, generation: u32) {
        if self.generation != generation {
            *self = Suspects {
                generation,
                ..Suspects::default()
            };
        }
        self.in_flight.clear();
    }

    /// Narrows `uids` (sorted) to a round's batch: at most `batch`, given up ones left out,
    /// a suspect alone. Returns whether more wait behind it.
    fn batch(&self, uids: &mut Vec<u32>, batch: usize) -> bool {
        uids.retain(|uid| !self.given_up.contains(uid));
        let waiting = uids.len();
        uids.truncate(batch);
        match uids.iter().position(|uid| self.strikes.contains_key(uid)) {
            Some(0) => uids.truncate(1),
            Some(first) => uids.truncate(first),
            None => {}
        }
        waiting > uids.len()
    }

    fn fetching(&mut self, uids: &[u32]) {
        self.in_flight.clear();
        self.in_flight.extend_from_slice(uids);
    }

    /// A round went through: its mails are no suspects.
    fn cleared(&mut self, uids: &[u32]) {
        self.in_flight.clear();
        for uid in uids {
            self.strikes.remove(uid);
        }
    }
}

/// One connection's life: returns `Ok` when told to stop, an error when the connection failed
/// (what it was fetching then is in `suspects`).
pub(super) async fn session(
    channels: &Channels,
    account: &MailAccount,
    stop: &mut watch::Receiver<bool>,
    suspects: &mut Suspects,
) -> Result<(), SessionError> {
    let mut session = login(account, channels.config().stall()).await?;
    let mailbox = session.select(&account.folder).await?;
    let generation = mailbox.uid_validity.unwrap_or(0);
    suspects.select(generation);
    let capabilities = session.capabilities().await?;
    let idle = capabilities.has_str("IDLE");
    // Without UIDPLUS, EXPUNGE removes every \Deleted message of the folder, which are only
    // ours when nobody else marks messages there.
    let uidplus = capabilities.has_str("UIDPLUS");
    drop(capabilities);
    tracing::info!(account = %account.key, host = %account.host, idle, "IMAP session open");
    let mut skip = Skipped::default();
    let mut up = false;
    loop {
        skip.failed.clear();
        loop {
            let more = round(
                channels,
                account,
                &mut session,
                uidplus,
                &mut skip,
                suspects,
            )
            .await?;
            // Up once a round went through: a session that keeps failing inside its first one
            // (on the same mail, say) is down and retried with growing back-off.
            if !up {
                channels.account_up(&account.key);
                up = true;
            }
            if !more {
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

/// Stores up to one batch of waiting messages (but those in `skip`, and a suspect alone), in
/// UID order, and marks those committed; returns whether more wait. Messages are downloaded in groups of at most
/// `max_message_bytes`; a larger one (or one whose size the server does not state) is stored
/// from its header. What is stored in part is left on the server (flagged with the `flag`
/// disposal, else added to `skip`). The ones that could not be stored — or that the server did not deliver — join
/// `failed`.
async fn round(
    channels: &Channels,
    account: &MailAccount,
    session: &mut Session,
    uidplus: bool,
    skip: &mut Skipped,
    suspects: &mut Suspects,
) -> Result<bool, SessionError> {
    let query = match account.after_fetch {
        AfterFetch::Delete => "UNDELETED".to_owned(),
        AfterFetch::Flag => format!("UNKEYWORD {KEYWORD} UNDELETED"),
    };
    let mut uids: Vec<u32> = session.uid_search(&query).await?.into_iter().collect();
    // Marks the server kept are done with: only those it lists again are remembered, so that
    // a session open for weeks does not remember every mail it took.
    let listed: HashSet<u32> = uids.iter().copied().collect();
    skip.marked.retain(|uid| listed.contains(uid));
    let unmarked = skip.marked.len();
    if unmarked > 0 && !skip.unmarked_told {
        skip.unmarked_told = true;
        tracing::warn!(
            account = %account.key,
            unmarked,
            "the server keeps no mark vacd set on taken mail (a read-only folder, or a keyword it does not store?): they stay on the server and are skipped"
        );
    }
    uids.retain(|uid| {
        !skip.failed.contains(uid) && !skip.partial.contains(uid) && !skip.marked.contains(uid)
    });
    uids.sort_unstable();
    let more = suspects.batch(&mut uids, channels.config().fetch_batch);
    if uids.is_empty() {
        return Ok(false);
    }
    let limit = channels.config().max_message_bytes;
    let mut sizes = BTreeMap::new();
    suspects.fetching(&uids);
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
    said_bye(session)?;
    let mut handled = Handled::default();
    let mut group = Vec::new();
    let mut group_bytes = 0usize;
    for (&uid, &size) in &sizes {
        match size.map(|s| s as usize).filter(|&s| s <= limit) {
            Some(size) => {
                if !group.is_empty() && group_bytes.saturating_add(size) > limit {
                    whole(channels, account, session, &group, &mut handled, suspects).await?;
                    group.clear();
                    group_bytes = 0;
                }
                group.push(uid);
                group_bytes += size;
            }
            None => {
                // In UID order: what arrived before it is stored before it.
                whole(channels, account, session, &group, &mut handled, suspects).await?;
                group.clear();
                group_bytes = 0;
                header_only(
                    channels,
                    account,
                    session,
                    uid,
                    size,
                    &mut handled,
                    suspects,
                )
                .await?;
            }
        }
    }
    whole(channels, account, session, &group, &mut handled, suspects).await?;
    suspects.cleared(&uids);
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
    for uid in handled.partial {
        match account.after_fetch {
            AfterFetch::Flag => flagged.push(uid),
            AfterFetch::Delete => {
                skip.partial.insert(uid);
            }
        }
    }
    if !flagged.is_empty() {
        store_flags(session, &flagged, &format!("+FLAGS.SILENT ({KEYWORD})")).await?;
        skip.marked.extend(&flagged);
    }
    // What the server did not deliver waits for the next wake-up like a failure, so that a
    // round of such messages does not start again at once.
    for uid in uids {
        if !handled.done.contains(&uid) && !flagged.contains(&uid) && !skip.partial.contains(&uid) {
            skip.failed.insert(uid);
        }
    }
    Ok(more)
}

/// What a round did with its messages.
#[derive(Debug, Default)]
struct Handled {
    /// Stored whole (or dropped by screening): to be removed or flagged.
    done: Vec<u32>,
    /// Stored in part: to stay on the server.
    partial: Vec<u32>,
}

impl Handled {
    fn add(&mut self, uid: u32, stored: Stored) {
        match stored {
            Stored::Whole => self.done.push(uid),
            Stored::Partial => self.partial.push(uid),
        }
    }
}

/// Downloads the messages `uids` (a group of at most `max_message_bytes`) and stores each.
async fn whole(
    channels: &Channels,
    account: &MailAccount,
    session: &mut Session,
    uids: &[u32],
    handled: &mut Handled,
    suspects: &mut Suspects,
) -> Result<(), SessionError> {
    if uids.is_empty() {
        return Ok(());
    }
    let generation = suspects.generation;
    suspects.fetching(uids);
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
    said_bye(session)?;
    messages.sort_by_key(|(uid, _)| *uid);
    if messages.len() < uids.len() {
        let missing: Vec<u32> = uids
            .iter()
            .filter(|uid| !messages.iter().any(|(m, _)| m == *uid))
            .copied()
            .collect();
        tracing::warn!(account = %account.key, generation, uids = ?missing, "the server did not deliver these mails; kept there and tried again next wake-up");
    }
    for (uid, raw) in messages {
        let source = source(account, generation, uid);
        match super::ingest(channels, account, &source, Fetched::Whole(&raw)).await {
            Ok(stored) => handled.add(uid, stored),
            // Left on the server: the next wake-up tries again.
            Err(e) => {
                tracing::error!(account = %account.key, source, error = %e, "mail not stored; kept on the server")
            }
        }
    }
    Ok(())
}

/// Most of a large mail's header downloaded (a partial fetch: the server sends no more, and
/// what is cut off is lost to the ticket only, the mail staying on the server).
const MAX_HEADER_BYTES: usize = 1024 * 1024;

/// Stores message `uid`, too large to download (`size` bytes, if the server said), from its
/// header (its first [`MAX_HEADER_BYTES`]).
async fn header_only(
    channels: &Channels,
    account: &MailAccount,
    session: &mut Session,
    uid: u32,
    size: Option<u32>,
    handled: &mut Handled,
    suspects: &mut Suspects,
) -> Result<(), SessionError> {
    let generation = suspects.generation;
    suspects.fetching(&[uid]);
    let mut header = None;
    {
        let mut fetches = session
            .uid_fetch(
                uid.to_string(),
                format!("(UID BODY.PEEK[HEADER]<0.{MAX_HEADER_BYTES}>)"),
            )
            .await?;
        while let Some(fetch) = fetches.next().await {
            let fetch = fetch?;
            if fetch.uid == Some(uid) {
                header = header.or_else(|| fetch.header().map(<[u8]>::to_vec));
            }
        }
    }
    said_bye(session)?;
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
        Ok(stored) => handled.add(uid, stored),
        Err(e) => {
            tracing::error!(account = %account.key, source, error = %e, "mail not stored; kept on the server")
        }
    }
    Ok(())
}

/// An error if the server said BYE. `async-imap` hands a BYE in the middle of a FETCH to the
/// unsolicited responses and ends the FETCH as if it had been answered, though the connection
/// is gone; looking here after each FETCH also keeps that channel from filling up.
fn said_bye(session: &mut Session) -> Result<(), SessionError> {
    let mut bye = None;
    while let Ok(response) = session.unsolicited_responses.try_recv() {
        if let UnsolicitedResponse::Other(data) = response {
            if let Response::Data {
                status: Status::Bye,
                information,
                ..
            } = data.parsed()
            {
                bye = Some(information.as_deref().unwrap_or_default().to_owned());
            }
        }
    }
    match bye {
        Some(reason) => Err(SessionError::Protocol(format!(
            "the server said BYE: {reason}"
        ))),
        None => Ok(()),
    }
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
    /// Stored in part and left on the server (the `delete` disposal): skipped for the rest of
    /// the session; a new one finds their tickets.
    partial: HashSet<u32>,
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
