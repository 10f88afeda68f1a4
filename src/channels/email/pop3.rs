//! Fetching mail over POP3 (RFC 1939, STLS from RFC 2595): log in, list the messages with
//! their sizes (LIST) and unique ids (UIDL), retrieve and store each (a too large one: only
//! its header, see [`session`]), mark those committed whole for deletion (DELE)
//! and end with QUIT, which is when the server deletes them. A crash before QUIT deletes
//! nothing; the next session fetches the same messages again, and their source keys
//! (`pop3:<account>:<UIDL>`) tell the store they are tickets already.
//!
//! POP3 has no push: sessions repeat every poll interval. Line parsing ([`status`],
//! [`unstuff`], [`listing`]) is separate from the socket.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::watch;

use super::transport::{self, MailStream};
use super::{Fetched, MailAccount, SessionError, Stored};
use crate::channels::config::Security;
use crate::channels::Channels;

/// Largest listing or header accepted (more is a server fault).
const MAX_LISTING: usize = 16 * 1024 * 1024;

struct Connection {
    stream: BufReader<MailStream>,
}

impl Connection {
    async fn line(&mut self) -> Result<String, SessionError> {
        let mut line = Vec::new();
        let n = (&mut self.stream)
            .take(64 * 1024)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Err(SessionError::Protocol(
                "the server closed the connection".into(),
            ));
        }
        Ok(String::from_utf8_lossy(&line).trim_end().to_owned())
    }

    /// Sends `command` and returns the text after `+OK`.
    async fn command(&mut self, command: &str) -> Result<String, SessionError> {
        self.stream
            .get_mut()
            .write_all(format!("{command}\r\n").as_bytes())
            .await?;
        self.stream.get_mut().flush().await?;
        let verb = command.split(' ').next().unwrap_or_default();
        let line = self.line().await?;
        if let Some(refusal) = line.strip_prefix("-ERR") {
            return Err(SessionError::Refused(format!("{verb}: {}", refusal.trim())));
        }
        status(&line).map_err(|e| SessionError::Protocol(format!("{verb}: {e}")))
    }

    /// Reads a multi-line response's body up to the terminating `.` line; more than `max`
    /// bytes (even in one line) is a server fault, read no further.
    async fn body(&mut self, max: usize) -> Result<Vec<u8>, SessionError> {
        let mut raw = Vec::new();
        loop {
            let start = raw.len();
            let room = (max + 1).saturating_sub(start) as u64;
            let n = (&mut self.stream)
                .take(room)
                .read_until(b'\n', &mut raw)
                .await?;
            if n == 0 {
                return Err(SessionError::Protocol(
                    "the server closed inside a response".into(),
                ));
            }
            let line = &raw[start..];
            if line == b".\r\n" || line == b".\n" {
                raw.truncate(start);
                return Ok(unstuff(&raw));
            }
            if raw.len() > max {
                return Err(SessionError::TooLarge(format!("more than {max} bytes")));
            }
        }
    }
}

/// Longest unique id RFC 1939 allows (§7, UIDL).
const MAX_UIDL: usize = 70;

/// The store's source key of the mail with unique id `id` on `account`: `pop3:<account>:<id>`,
/// or for an id longer than the RFC allows (which no index need take) its SHA-256.
fn source_key(account: &str, id: &str) -> String {
    if id.len() <= MAX_UIDL {
        format!("pop3:{account}:{id}")
    } else {
        format!("pop3:{account}:sha256:{}", hex::encode(Sha256::digest(id)))
    }
}

/// The text of a `+OK` status line, or the server's error.
fn status(line: &str) -> Result<String, String> {
    if let Some(rest) = line.strip_prefix("+OK") {
        Ok(rest.trim().to_owned())
    } else if let Some(rest) = line.strip_prefix("-ERR") {
        Err(rest.trim().to_owned())
    } else {
        Err(format!("unexpected reply `{line}`"))
    }
}

/// Removes the dot-stuffing of a multi-line body (a leading `..` is one `.`).
fn unstuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    for line in body.split_inclusive(|b| *b == b'\n') {
        out.extend_from_slice(
            line.strip_prefix(b".")
                .filter(|l| l.starts_with(b"."))
                .unwrap_or(line),
        );
    }
    out
}

/// `(message number, value)` pairs of a UIDL (unique ids) or LIST (sizes) listing. A server
/// may add more after the value (RFC 1939 §5: `1 96 (from a@b)`), which is not part of it.
fn listing(body: &[u8]) -> Vec<(u32, String)> {
    String::from_utf8_lossy(body)
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let n = words.next()?.parse().ok()?;
            Some((n, words.next()?.to_owned()))
        })
        .collect()
}

async fn open(account: &MailAccount, stall: Duration) -> Result<Connection, SessionError> {
    let tcp = transport::connect(&account.host, account.port, stall).await?;
    let stream = match account.security {
        Security::Tls => transport::tls(tcp, &account.host, account.ca_file.as_deref()).await?,
        _ => MailStream::Plain(tcp),
    };
    let mut conn = Connection {
        stream: BufReader::new(stream),
    };
    status(&conn.line().await?).map_err(|e| SessionError::Protocol(format!("greeting: {e}")))?;
    if account.security == Security::Starttls {
        conn.command("STLS").await?;
        let MailStream::Plain(tcp) = conn.stream.into_inner() else {
            return Err(SessionError::Protocol("STLS on a TLS connection".into()));
        };
        conn = Connection {
            stream: BufReader::new(
                transport::tls(tcp, &account.host, account.ca_file.as_deref()).await?,
            ),
        };
    }
    conn.command(&format!("USER {}", account.username)).await?;
    conn.command(&format!("PASS {}", account.password))
        .await
        .map_err(|e| SessionError::Login(e.to_string()))?;
    Ok(conn)
}

/// The mails an account's task leaves on the server and skips, from one session to the next
/// until vacd restarts (by UIDL).
#[derive(Debug, Default)]
pub(super) struct Left {
    /// Stored in part (too large, or attachments not all kept): their tickets exist.
    partial: HashSet<String>,
    /// The server refused to send or delete them (-ERR), or sent more than accepted: one of
    /// them holds back neither the mail behind it nor the deletions before it (POP3 deletes
    /// only at QUIT).
    refused: HashSet<String>,
}

impl Left {
    /// `body`, the answer for mail `id`; one that ran past the limit makes the mail skipped
    /// from now on (the session ends, the rest of the answer unread; the next goes past it).
    fn unless_too_large(
        &mut self,
        body: Result<Vec<u8>, SessionError>,
        id: &str,
        account: &MailAccount,
        source: &str,
    ) -> Result<Vec<u8>, SessionError> {
        if let Err(SessionError::TooLarge(e)) = &body {
            tracing::warn!(account = %account.key, source, error = %e, "the server sent more for a mail than accepted; it stays there and is skipped");
            self.refused.insert(id.to_owned());
        }
        body
    }
}

/// Polls until `stop`: one POP3 session per poll interval. A message larger than
/// `channels.max_message_bytes` (by LIST) is not retrieved: its header (`TOP n 0`) becomes the
/// ticket and the message stays on the server, left alone from then on (in `left`; after a
/// restart, its source key finds the ticket again); so does one whose attachments were not all
/// kept.
pub(super) async fn session(
    channels: &Channels,
    account: &MailAccount,
    stop: &mut watch::Receiver<bool>,
    left: &mut Left,
) -> Result<(), SessionError> {
    let limit = channels.config().max_message_bytes;
    loop {
        let mut conn = open(account, channels.config().stall()).await?;
        conn.command("LIST").await?;
        let sizes: HashMap<u32, u64> = listing(&conn.body(MAX_LISTING).await?)
            .into_iter()
            .filter_map(|(n, size)| Some((n, size.parse().ok()?)))
            .collect();
        conn.command("UIDL").await?;
        let ids = listing(&conn.body(MAX_LISTING).await?);
        for (n, id) in ids {
            if left.partial.contains(&id) || left.refused.contains(&id) {
                continue;
            }
            let source = source_key(&account.key, &id);
            // A message LIST left out counts as too large: its size is unknown.
            let size = sizes.get(&n).copied();
            let raw;
            let fetched = match size.filter(|&s| s <= limit as u64) {
                Some(_) => match conn.command(&format!("RETR {n}")).await {
                    Ok(_) => {
                        // Dot-stuffing may double a message's size.
                        let body = conn.body(limit.saturating_mul(2).max(MAX_LISTING)).await;
                        raw = left.unless_too_large(body, &id, account, &source)?;
                        Fetched::Whole(&raw)
                    }
                    Err(SessionError::Refused(e)) => {
                        tracing::warn!(account = %account.key, source, error = %e, "the server refused to send a mail; skipped");
                        left.refused.insert(id);
                        continue;
                    }
                    Err(e) => return Err(e),
                },
                None => {
                    tracing::warn!(account = %account.key, source, size, limit, "mail too large to download; its header becomes the ticket");
                    // TOP is optional (RFC 1939): without it, the ticket is the note alone.
                    raw = match conn.command(&format!("TOP {n} 0")).await {
                        Ok(_) => {
                            let body = conn.body(MAX_LISTING).await;
                            left.unless_too_large(body, &id, account, &source)?
                        }
                        Err(SessionError::Refused(e)) => {
                            tracing::warn!(account = %account.key, source, error = %e, "the server cannot send only the header");
                            Vec::new()
                        }
                        Err(e) => return Err(e),
                    };
                    Fetched::Header { header: &raw, size }
                }
            };
            match super::ingest(channels, account, &source, fetched).await {
                Ok(Stored::Partial) => {
                    left.partial.insert(id);
                }
                Ok(Stored::Whole) => match conn.command(&format!("DELE {n}")).await {
                    Ok(_) => {}
                    // Stored: a later session finds it a duplicate once the server lets go.
                    Err(SessionError::Refused(e)) => {
                        tracing::warn!(account = %account.key, source, error = %e, "the server refused to delete a stored mail; skipped");
                        left.refused.insert(id);
                    }
                    Err(e) => return Err(e),
                },
                Err(e) => {
                    tracing::error!(account = %account.key, source, error = %e, "mail not stored; kept on the server")
                }
            }
        }
        conn.command("QUIT").await?;
        // Up once a session went through: one that keeps failing on the way (on the same
        // mail, say) is down and retried with growing back-off.
        channels.account_up(&account.key);
        tokio::select! {
            _ = tokio::time::sleep(channels.config().poll_interval()) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_keys_stay_short() {
        assert_eq!(source_key("file:a", "17"), "pop3:file:a:17");
        let long = "x".repeat(MAX_UIDL + 1);
        let key = source_key("file:a", &long);
        assert!(key.starts_with("pop3:file:a:sha256:"), "{key}");
        assert_eq!(key.len(), "pop3:file:a:sha256:".len() + 64);
        assert_ne!(key, source_key("file:a", &"y".repeat(MAX_UIDL + 1)));
    }

    #[test]
    fn status_lines() {
        assert_eq!(status("+OK 2 messages"), Ok("2 messages".into()));
        assert_eq!(
            status("-ERR no such message"),
            Err("no such message".into())
        );
        assert!(status("* junk").is_err());
    }

    #[test]
    fn dot_stuffing_is_undone() {
        assert_eq!(unstuff(b"a\r\n..b\r\n.c\r\n"), b"a\r\n.b\r\n.c\r\n");
    }

    #[test]
    fn listings() {
        assert_eq!(
            listing(b"1 abc\r\n2 def\r\nbad\r\n"),
            [(1, "abc".into()), (2, "def".into())]
        );
        // What a server adds after a size is no part of it.
        assert_eq!(
            listing(b"1 96 (from a@example.test)\r\n2  120\r\n"),
            [(1, "96".into()), (2, "120".into())]
        );
    }
}
