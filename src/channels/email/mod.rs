//! Email in and out. [`supervise`] keeps one task per mail account running — accounts from the
//! config file and from the `mail_accounts` table, read again every reload interval so admin
//! changes apply without a restart — and each task reconnects with doubling back-off when its
//! server is unreachable (visible in `/ready` and `vacd_mail_account_up`). [`ingest`] is the
//! one path from raw message bytes to a ticket, shared by IMAP and POP3; `smtp` sends.

pub mod imap;
pub mod pop3;
pub mod smtp;
pub mod transport;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::config::{AfterFetch, MailAccountConfig, Protocol, Security, SmtpConfig};
use super::screening::{self, Verdict};
use super::{mime, threading, Channels};
use crate::language;
use crate::store::{self, MailAccountRow, NewAttachment, NewWritten, Outcome, WrittenAddress};

/// A mail account as the fetch tasks use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailAccount {
    /// `api:<id>` or `file:<address>`: names the account in logs, metrics and source keys.
    pub key: String,
    pub address: WrittenAddress,
    pub protocol: Protocol,
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub username: String,
    pub password: String,
    pub folder: String,
    pub after_fetch: AfterFetch,
    pub smtp: Option<SmtpConfig>,
    pub auto_reply_template: Option<String>,
    pub ca_file: Option<PathBuf>,
}

/// Why a mail server session ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("IMAP: {0}")]
    Imap(#[from] async_imap::error::Error),
    #[error("login refused: {0}")]
    Login(String),
    #[error("protocol: {0}")]
    Protocol(String),
    /// The server answered a command with an error (POP3 `-ERR`); the session is still usable.
    #[error("refused: {0}")]
    Refused(String),
    /// The server's answer ran past what is accepted (POP3); the connection cannot go on.
    #[error("answer larger than accepted: {0}")]
    TooLarge(String),
}

impl MailAccount {
    fn from_row(row: MailAccountRow) -> Option<MailAccount> {
        let key = format!("api:{}", row.id);
        let parsed = (|| {
            let smtp = match (&row.smtp_host, row.smtp_port, &row.smtp_security) {
                (Some(host), Some(port), Some(security)) => Some(SmtpConfig {
                    host: host.clone(),
                    port: u16::try_from(port).ok()?,
                    security: parse(security)?,
                    username: row.smtp_username.clone(),
                    password: row.smtp_password.clone(),
                }),
                _ => None,
            };
            Some(MailAccount {
                key: key.clone(),
                protocol: parse(&row.protocol)?,
                host: row.host.clone(),
                port: u16::try_from(row.port).ok()?,
                security: parse(&row.security)?,
                username: row.username.clone(),
                password: row.password.clone(),
                folder: row.folder.clone(),
                after_fetch: parse(&row.after_fetch)?,
                smtp,
                auto_reply_template: row.auto_reply_template.clone(),
                ca_file: None,
                address: row.address.clone(),
            })
        })();
        let Some(account) = parsed else {
            tracing::warn!(
                account = key,
                "mail account has invalid settings; not started"
            );
            return None;
        };
        // Rows written before the API checked this.
        let smtp = account.smtp.as_ref().map(|s| (s.host.as_str(), s.security));
        let problem = super::config::account_problem(
            account.protocol,
            account.after_fetch,
            &account.host,
            account.security,
            smtp,
        );
        if let Some(problem) = problem {
            tracing::warn!(account = key, problem, "mail account not started");
            return None;
        }
        Some(account)
    }

    fn from_config(config: &MailAccountConfig, address: WrittenAddress) -> MailAccount {
        MailAccount {
            key: format!("file:{}", config.address),
            address,
            protocol: config.protocol,
            host: config.host.clone(),
            port: config.port,
            security: config.security,
            username: config.username.clone(),
            password: config.password.clone(),
            folder: config.folder.clone(),
            after_fetch: config.after_fetch,
            smtp: config.smtp.clone(),
            auto_reply_template: config.auto_reply_template.clone(),
            ca_file: config.ca_file.clone(),
        }
    }
}

/// A setting stored as its serde name (`imap`, `starttls`, `delete`).
fn parse<T: serde::de::DeserializeOwned>(text: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::from(text)).ok()
}

/// Every account that should run now.
async fn wanted(channels: &Channels) -> Result<Vec<MailAccount>, store::Error> {
    let mut accounts = Vec::new();
    for config in &channels.config().accounts {
        match channels
            .store()
            .service_address("email", &config.address)
            .await?
        {
            Some(address) => accounts.push(MailAccount::from_config(config, address)),
            None => {
                tracing::warn!(address = %config.address, "configured mail account names no email service address; not started")
            }
        }
    }
    for row in channels.store().mail_accounts().await? {
        accounts.extend(MailAccount::from_row(row));
    }
    Ok(accounts)
}

/// Keeps the account tasks in step with the configuration until `stop` turns true.
pub(super) async fn supervise(channels: Channels, mut stop: watch::Receiver<bool>) {
    let mut running: HashMap<String, (Arc<MailAccount>, JoinHandle<()>)> = HashMap::new();
    loop {
        match wanted(&channels).await {
            Ok(accounts) => {
                let keys: Vec<String> = accounts.iter().map(|a| a.key.clone()).collect();
                running.retain(|key, (account, task)| {
                    let keep = accounts.iter().any(|a| a == account.as_ref());
                    if !keep {
                        tracing::info!(
                            account = key,
                            "mail account changed or removed; its task stops"
                        );
                        task.abort();
                        channels.forget_account(key, account.address.id);
                    }
                    keep
                });
                for account in accounts {
                    if running.contains_key(&account.key) {
                        continue;
                    }
                    let account = Arc::new(account);
                    channels.register_account(&account);
                    let task = tokio::spawn(run(channels.clone(), account.clone(), stop.clone()));
                    running.insert(account.key.clone(), (account, task));
                }
                debug_assert!(running.keys().all(|k| keys.contains(k)));
            }
            Err(e) => tracing::warn!(error = %e, "mail accounts not read; trying again"),
        }
        tokio::select! {
            _ = tokio::time::sleep(channels.config().reload_interval()) => {}
            _ = stop.changed() => break,
        }
    }
    for (_, (_, task)) in running {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
}

/// One account's task: sessions, with back-off between failed ones, until `stop`.
async fn run(channels: Channels, account: Arc<MailAccount>, mut stop: watch::Receiver<bool>) {
    let mut backoff = Duration::from_secs(1);
    let mut suspects = imap::Suspects::default();
    let mut left = pop3::Left::default();
    loop {
        // Stopping cancels a session wherever it waits: what is committed stays committed,
        // and a message committed but not yet removed is recognised when fetched again.
        let mut cancel = stop.clone();
        let session = async {
            match account.protocol {
                Protocol::Imap => {
                    imap::session(&channels, &account, &mut stop, &mut suspects).await
                }
                Protocol::Pop3 => pop3::session(&channels, &account, &mut stop, &mut left).await,
            }
        };
        let result = tokio::select! {
            result = session => result,
            _ = cancel.wait_for(|stopped| *stopped) => return,
        };
        let error = match result {
            Ok(()) => return,
            Err(e) => e,
        };
        suspects.session_failed(&account);
        if channels.account_down(&account.key, &error.to_string()) {
            backoff = Duration::from_secs(1);
        }
        tracing::warn!(account = %account.key, host = %account.host, port = account.port, error = %error, retry_in = ?backoff, "mail server unreachable or failed; retrying");
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(channels.config().retry_max());
    }
}

/// What was downloaded of a message.
#[derive(Debug, Clone, Copy)]
pub enum Fetched<'a> {
    /// The whole message.
    Whole(&'a [u8]),
    /// Only the header of a message of `size` bytes, more than `channels.max_message_bytes`
    /// (or of unknown size: the server did not state it).
    Header { header: &'a [u8], size: Option<u64> },
}

/// What a source key gets when only part of the message was stored.
const PARTIAL: &str = "#partial";

/// What became of a fetched message that is dealt with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// It is a ticket (now or before), or screening dropped it: it may leave the server.
    Whole,
    /// Its ticket lacks part of it — only its header was downloaded, or attachments were over
    /// the limits (the notes say which): it stays on the server.
    Partial,
}

/// Stores one message fetched from `account` under `source` (see the store's exactly-once
/// rule). `Ok` means the message is dealt with, and says whether it may leave the server.
pub async fn ingest(
    channels: &Channels,
    account: &MailAccount,
    source: &str,
    fetched: Fetched<'_>,
) -> Result<Stored, store::Error> {
    let config = channels.config();
    let mail = match fetched {
        Fetched::Whole(raw) => mime::parse(raw, config.max_attachment_bytes),
        Fetched::Header { header, size } => {
            let mut mail = mime::parse(header, config.max_attachment_bytes);
            let limit = config.max_message_bytes;
            mail.problems
                .insert(0, mime::Problem::MessageTooLarge { size, limit });
            mail
        }
    };
    let own = [account.address.address.to_lowercase()];
    let auto_reply = match screening::screen(&mail, &own, &channels.config().rules) {
        Verdict::Drop(reason) => {
            tracing::info!(account = %account.key, source, message_id = ?mail.message_id, reason, "mail dropped by screening");
            metrics::counter!(crate::metrics::MAILS_DROPPED).increment(1);
            return Ok(Stored::Whole);
        }
        Verdict::Ticket { auto_reply } => auto_reply,
    };
    for problem in &mail.problems {
        tracing::warn!(account = %account.key, source, message_id = ?mail.message_id, %problem, "mail accepted with a problem");
    }
    let address = &account.address;
    // A mail not stored whole is stored under a key of its own; taken whole later (higher
    // limits, a server that now states its size), it joins that ticket instead of counting as
    // a duplicate — which would delete it from the server unread.
    let stored = if mail.problems.iter().any(mime::Problem::loses_content) {
        Stored::Partial
    } else {
        Stored::Whole
    };
    let partial_key = format!("{source}{PARTIAL}");
    let (source_key, open_ticket) = match stored {
        Stored::Partial => (partial_key, None),
        Stored::Whole => (
            source.to_owned(),
            channels
                .store()
                .ticket_of_source(address.tenant, &partial_key)
                .await?,
        ),
    };
    // Never our own address: answers would come back as loops.
    let answer_to = mail.answer_to(&own).filter(|a| !own.contains(&a.address));
    let identity = mail.identity(&own);
    let language = language::detect(&format!("{}\n{}", mail.subject, mail.text))
        .map(str::to_owned)
        .or_else(|| address.language.clone());
    let new = NewWritten {
        tenant: address.tenant,
        service_address: address.id,
        mailbox: address.mailbox,
        queue: address.queue,
        channel: "email",
        source_key,
        message_id: mail.message_id.clone(),
        parents: mail.parents.clone(),
        tag: threading::find_tag(&mail.subject),
        open_ticket,
        sender_name: identity.map(|f| f.display().to_owned()),
        contact: identity.map(|f| f.address.clone()),
        reply_to: answer_to
            .filter(|a| identity.is_none_or(|i| i.address != a.address))
            .map(|a| a.address.clone()),
        identity_kind: "email",
        recipients: mail.to.clone(),
        subject: mail.subject.clone(),
        text: mail.text.clone(),
        html: mail.html.clone(),
        language,
        attachments: mail
            .attachments
            .iter()
            .map(|a| NewAttachment {
                filename: a.filename.clone(),
                content_type: a.content_type.clone(),
                data: a.data.clone(),
            })
            .collect(),
        notes: mail.problems.iter().map(ToString::to_string).collect(),
        first_answer_due: address.first_answer_due(crate::store::now_ms()),
    };
    let ingested = channels.accept(&new).await?;
    if ingested.outcome == Outcome::Duplicate {
        let what = match stored {
            Stored::Whole => "mail already a ticket; removed from the server only",
            Stored::Partial => "mail already a ticket in part; left on the server",
        };
        tracing::info!(account = %account.key, source, message_id = ?mail.message_id, ticket = ingested.interaction, "{what}");
    }
    if ingested.outcome == Outcome::Created && auto_reply {
        if let Some(template) = account.auto_reply_template.clone() {
            let channels = channels.clone();
            let ticket = ingested.interaction;
            let tenant = address.tenant;
            tokio::spawn(async move {
                if let Err(e) = channels.acknowledge(tenant, ticket, &template).await {
                    tracing::warn!(tenant, ticket, error = %e, "acknowledgement not sent");
                }
            });
        }
    }
    Ok(stored)
}
