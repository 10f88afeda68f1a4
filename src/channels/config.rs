//! The `[channels]` section of the configuration: how often mail servers are polled, limits on
//! what is accepted, screening rules, mail accounts given in the file (beside those
//! administered through `/api/v1/mail-accounts`), the fax/letter directories and the SMS
//! gateway. [`ChannelsConfig::validate`] checks what serde cannot.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::screening::Rule;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChannelsConfig {
    /// How often a mail account without IMAP IDLE (or a POP3 one) is checked, in milliseconds;
    /// also the longest an IDLE waits before checking anyway.
    pub poll_interval_ms: u64,
    /// The longest wait between reconnects to an unreachable mail server (the back-off doubles
    /// from one second up to this), in seconds.
    pub retry_max_seconds: u64,
    /// How often the administered mail accounts are read again, in milliseconds.
    pub reload_interval_ms: u64,
    /// Messages fetched from a mail server in one go.
    pub fetch_batch: usize,
    /// Largest attachment kept; larger ones are noted in the ticket and dropped.
    pub max_attachment_bytes: usize,
    /// Largest mail downloaded, as the server states its size. A larger one becomes a ticket
    /// from its header alone, with a note, and stays on the server for someone to fetch with a
    /// mail client. Also what IMAP downloads at once: a round's messages are fetched in groups
    /// of at most this many bytes (or one message).
    pub max_message_bytes: usize,
    /// A customer acknowledged within this many seconds gets no acknowledgement of another new
    /// ticket (RFC 3834 §2); 0 acknowledges every one.
    pub acknowledgement_interval_seconds: u64,
    /// Screening rules applied to every inbound mail.
    pub rules: Vec<Rule>,
    /// Mail accounts given in the file.
    pub accounts: Vec<MailAccountConfig>,
    /// Watched inbox directories of fax and letter service addresses.
    pub directories: Vec<DirectoryConfig>,
    pub sms: SmsConfig,
    /// A TrueType font (`.ttf`, or the first face of a `.ttc`) that letters are printed in,
    /// embedded in each: every character it has a glyph for can be printed. Without it,
    /// Helvetica, which every PDF reader has, but only for Windows-1252's characters.
    pub letter_font: Option<PathBuf>,
    /// Its bold face, for a letter's subject line; `letter_font` itself if not given.
    pub letter_bold_font: Option<PathBuf>,
}

/// A mail account: where its mail is fetched from and where its replies are sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailAccountConfig {
    /// The email service address (it names tenant, mailbox and queue).
    pub address: String,
    pub protocol: Protocol,
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub username: String,
    pub password: String,
    #[serde(default = "inbox")]
    pub folder: String,
    #[serde(default)]
    pub after_fetch: AfterFetch,
    #[serde(default)]
    pub smtp: Option<SmtpConfig>,
    /// Name of the template sent as acknowledgement of a new ticket; none when absent.
    #[serde(default)]
    pub auto_reply_template: Option<String>,
    /// PEM file of extra trusted certificate authorities (a private mail server's).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn inbox() -> String {
    "INBOX".into()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub security: Security,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Imap,
    Pop3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Security {
    /// TLS from the first byte (IMAPS 993, POP3S 995, SMTPS 465).
    Tls,
    /// Plain connection upgraded with STARTTLS / STLS before logging in.
    Starttls,
    /// No encryption: only for loopback test servers.
    Plain,
}

/// What happens to a message on the server once its ticket is committed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AfterFetch {
    /// Deleted (IMAP: `\Deleted` and expunged; POP3: DELE).
    #[default]
    Delete,
    /// IMAP only: kept, with the keyword `$VacdTicket` set (and skipped from then on).
    Flag,
}

/// A fax or letter inbox directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryConfig {
    /// The service address (of kind `fax` or `letter`) whose inbox this is.
    pub address: String,
    pub kind: DirectoryKind,
    /// Where TIFF and PDF files are dropped (with an optional `name.json` beside them).
    pub inbox: PathBuf,
    /// Where letter replies are written as PDF files.
    #[serde(default)]
    pub outbox: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DirectoryKind {
    Fax,
    Letter,
}

impl DirectoryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DirectoryKind::Fax => "fax",
            DirectoryKind::Letter => "letter",
        }
    }
}

/// The generic HTTP SMS gateway.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmsConfig {
    /// Bearer token the gateway sends with `POST /api/v1/sms/inbound`; empty disables it.
    pub inbound_token: String,
    /// Where outgoing SMS are POSTed as `{"from", "to", "text"}`; none disables sending.
    pub outbound_url: Option<String>,
    /// Bearer token sent to `outbound_url`.
    pub outbound_token: Option<String>,
}

impl Default for ChannelsConfig {
    fn default() -> Self {
        ChannelsConfig {
            poll_interval_ms: 30_000,
            retry_max_seconds: 300,
            reload_interval_ms: 10_000,
            fetch_batch: 200,
            max_attachment_bytes: 20 * 1024 * 1024,
            max_message_bytes: 64 * 1024 * 1024,
            acknowledgement_interval_seconds: 3600,
            rules: Vec::new(),
            accounts: Vec::new(),
            directories: Vec::new(),
            sms: SmsConfig::default(),
            letter_font: None,
            letter_bold_font: None,
        }
    }
}

impl ChannelsConfig {
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }

    /// How long a mail server may leave a read or write of vacd's waiting before the session
    /// is given up: a poll interval (an IMAP IDLE waits that long for news) and 10 s more.
    pub fn stall(&self) -> Duration {
        self.poll_interval() + Duration::from_secs(10)
    }

    pub fn retry_max(&self) -> Duration {
        Duration::from_secs(self.retry_max_seconds)
    }

    pub fn reload_interval(&self) -> Duration {
        Duration::from_millis(self.reload_interval_ms)
    }

    /// `(key, problem)` of the first invalid value.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.poll_interval_ms < 10 {
            return Err(("channels.poll_interval_ms", "must be at least 10".into()));
        }
        if self.reload_interval_ms < 10 {
            return Err(("channels.reload_interval_ms", "must be at least 10".into()));
        }
        if self.retry_max_seconds == 0 {
            return Err(("channels.retry_max_seconds", "must be at least 1".into()));
        }
        if self.fetch_batch == 0 {
            return Err(("channels.fetch_batch", "must be at least 1".into()));
        }
        if self.max_message_bytes < 1024 {
            return Err(("channels.max_message_bytes", "must be at least 1024".into()));
        }
        for a in &self.accounts {
            let smtp = a.smtp.as_ref().map(|s| (s.host.as_str(), s.security));
            if let Some(problem) =
                account_problem(a.protocol, a.after_fetch, &a.host, a.security, smtp)
            {
                return Err(("channels.accounts", format!("`{}`: {problem}", a.address)));
            }
            if a.host.trim().is_empty() || a.username.is_empty() {
                return Err((
                    "channels.accounts.host",
                    format!("`{}` needs a host and a username", a.address),
                ));
            }
        }
        if self.letter_bold_font.is_some() && self.letter_font.is_none() {
            return Err((
                "channels.letter_bold_font",
                "needs `letter_font`, the regular face, too".into(),
            ));
        }
        if let Some(url) = &self.sms.outbound_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err((
                    "channels.sms.outbound_url",
                    format!("`{url}` is not an http(s) URL"),
                ));
            }
        }
        Ok(())
    }
}
/// What is wrong with a mail account's settings, wherever they come from (the config file,
/// the API, a stored row): POP3 cannot flag a message (it would delete what the admin meant
/// to keep), and no password goes unencrypted to anything but this machine (`smtp`: the SMTP
/// server's host and security, if any).
pub fn account_problem(
    protocol: Protocol,
    after_fetch: AfterFetch,
    host: &str,
    security: Security,
    smtp: Option<(&str, Security)>,
) -> Option<String> {
    if protocol == Protocol::Pop3 && after_fetch == AfterFetch::Flag {
        return Some("POP3 cannot flag messages; use delete".into());
    }
    let servers = [
        (Some((host, security)), "mail server"),
        (smtp, "SMTP server"),
    ];
    for (server, what) in servers {
        let Some((host, security)) = server else {
            continue;
        };
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host
                .trim_matches(|c| c == '[' || c == ']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if security == Security::Plain && !loopback {
            return Some(format!(
                "the {what} {host} is not on this machine: `plain` would send the password \
                 unencrypted; use tls or starttls"
            ));
        }
    }
    None
}
